// Enhancements only: every page works without this script.
"use strict";
document.documentElement.classList.add("js");

// Copy buttons: copy the command next to the button.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var code = button.parentElement.querySelector("code");
  var text = code ? code.textContent : "";
  function done() { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy"; }, 1500); }
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(done, function () { select(code); });
  } else {
    select(code);
  }
});

function select(node) {
  if (!node) return;
  var range = document.createRange();
  range.selectNodeContents(node);
  var sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

// The compare form of the static site: go to the exported diff page of the two versions.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute("data-static-diffs")) return;
  event.preventDefault();
  var a = parseInt(form.elements.a.value.split("@").pop(), 10);
  var b = parseInt(form.elements.b.value.split("@").pop(), 10);
  if (a > b) { var t = a; a = b; b = t; }
  var have = form.getAttribute("data-static-diffs").split(" ");
  var name = "diff-" + a + "-" + b + ".html";
  var note = form.querySelector(".note");
  if (a === b || have.indexOf(a + "-" + b) < 0) {
    if (note) note.textContent = "That pair was not exported; the links below list the exported diffs.";
    return;
  }
  window.location.href = name;
});
