// Package search of the exported (static) catalog: the same query language and matching
// as `mlenv search` (mlenv/ui/search.py), run in the browser over search-data.js.
// PEP 440 is a port of packaging 26 (Version._key and the specifier ranges of
// packaging/_ranges.py); tests/ui/test_ui_browser.py checks it against packaging itself.
// Numbers beyond 2^53 lose precision here (Python's are exact).
"use strict";

var MlenvSearch = (function () {
  // --- PEP 440 versions ---------------------------------------------------------------
  var VERSION = new RegExp(
    "^\\s*v?(?:(?:([0-9]+)!)?([0-9]+(?:\\.[0-9]+)*)" +
    "([-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?([0-9]+)?)?" +
    "((?:-([0-9]+))|(?:[-_.]?(post|rev|r)[-_.]?([0-9]+)?))?" +
    "([-_.]?(dev)[-_.]?([0-9]+)?)?)" +
    "(?:\\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?\\s*$", "i");
  var LETTERS = { alpha: "a", beta: "b", c: "rc", pre: "rc", preview: "rc" };
  var PRE_RANK = { a: 0, b: 1, rc: 2 };
  var INF = Infinity;

  function parseVersion(text) {
    var m = VERSION.exec(text);
    if (!m) return null;
    var v = {
      epoch: m[1] ? Number(m[1]) : 0,
      release: m[2].split(".").map(Number),
      pre: null, post: null, dev: null, local: null,
    };
    if (m[4]) {
      var letter = m[4].toLowerCase();
      v.pre = [LETTERS[letter] || letter, m[5] ? Number(m[5]) : 0];
    }
    if (m[6]) v.post = m[7] ? Number(m[7]) : (m[9] ? Number(m[9]) : 0);
    if (m[10]) v.dev = m[12] ? Number(m[12]) : 0;
    if (m[13]) {
      v.local = m[13].split(/[-_.]/).map(function (p) {
        return /^[0-9]+$/.test(p) ? Number(p) : p.toLowerCase();
      });
    }
    return v;
  }

  function isPrerelease(v) { return v.pre !== null || v.dev !== null; }

  function key(v) {
    var release = v.release.slice();
    while (release.length && release[release.length - 1] === 0) release.pop();
    var preRank, preN;
    if (v.pre === null && v.post === null && v.dev !== null) { preRank = -1; preN = 0; }
    else if (v.pre === null) { preRank = 3; preN = 0; }
    else { preRank = PRE_RANK[v.pre[0]]; preN = v.pre[1]; }
    var suffix = [preRank, preN, v.post === null ? 0 : 1, v.post === null ? 0 : v.post,
      v.dev === null ? 1 : 0, v.dev === null ? 0 : v.dev];
    var k = [v.epoch, release, suffix];
    if (v.local !== null) {
      k.push(v.local.map(function (s) { return typeof s === "number" ? [s, ""] : [-1, s]; }));
    }
    return k;
  }

  function cmp(a, b) {
    if (Array.isArray(a) && Array.isArray(b)) {
      var n = Math.min(a.length, b.length);
      for (var i = 0; i < n; i++) {
        var c = cmp(a[i], b[i]);
        if (c) return c;
      }
      return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
    }
    if (typeof a !== typeof b) throw new Error("incomparable version keys");
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function make(v, changes) {
    var out = { epoch: v.epoch, release: v.release, pre: v.pre, post: v.post, dev: v.dev, local: v.local };
    for (var k in changes) out[k] = changes[k];
    return out;
  }

  // Boundary keys (packaging/_ranges.py BoundaryVersion).
  function afterLocals(v) { var k = key(v); return [k[0], k[1], k[2], [[INF, ""]]]; }
  function afterPosts(v) {
    var k = key(v);
    return [k[0], k[1], [k[2][0], k[2][1], 1, INF, 1, 0], [[INF, ""]]];
  }
  function justAfter(v) { return key(v).concat([[]]); }
  var LOW = [-INF], HIGH = [INF];
  var MIN_VERSION = key(parseVersion("0.dev0"));

  function nextPrefixDev0(v) {
    var r = v.release.slice(0, -1).concat([v.release[v.release.length - 1] + 1]);
    return key({ epoch: v.epoch, release: r, pre: null, post: null, dev: 0, local: null });
  }
  function baseDev0(v) { return key({ epoch: v.epoch, release: v.release, pre: null, post: null, dev: 0, local: null }); }

  // [lower key, upper key] intervals: a version matches when lower <= key < upper.
  function ranges(op, text, v) {
    if (/\.\*$/.test(text)) {
      if (op === "==") return [[baseDev0(v), nextPrefixDev0(v)]];
      return [[LOW, baseDev0(v)], [nextPrefixDev0(v), HIGH]];
    }
    var hasLocal = text.indexOf("+") >= 0;
    switch (op) {
      case ">=": return [[key(v), HIGH]];
      case "<=": return [[LOW, afterLocals(v)]];
      case ">":
        if (v.dev !== null) return [[key(make(v, { dev: v.dev + 1, local: null })), HIGH]];
        if (v.post !== null) return [[key(make(v, { post: v.post + 1, dev: 0, local: null })), HIGH]];
        return [[afterPosts(v), HIGH]];
      case "<":
        var bound = isPrerelease(v) ? key(v) : key(make(v, { dev: 0, local: null }));
        if (cmp(bound, MIN_VERSION) <= 0) return [];
        return [[LOW, bound]];
      case "~=":
        var prefix = make(v, { release: v.release.slice(0, -1) });
        return [[key(v), nextPrefixDev0(prefix)]];
      case "==": return [[key(v), hasLocal ? justAfter(v) : afterLocals(v)]];
      case "!=": return [[LOW, key(v)], [hasLocal ? justAfter(v) : afterLocals(v), HIGH]];
    }
    throw new Error("unknown operator " + op);
  }

  // Which (operator, version) packaging's Specifier accepts (its regex, per operator).
  var PRE = "(?:[-_.]?(?:alpha|beta|preview|pre|a|b|c|rc)[-_.]?[0-9]*)?";
  var POST = "(?:(?:-[0-9]+)|(?:[-_.]?(?:post|rev|r)[-_.]?[0-9]*))?";
  var DEV = "(?:[-_.]?dev[-_.]?[0-9]*)?";
  var LOCAL = "(?:\\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?";
  var SPEC = {
    "==": new RegExp("^v?(?:[0-9]+!)?[0-9]+(?:\\.[0-9]+)*(?:\\.\\*|" + PRE + POST + DEV + LOCAL + ")$", "i"),
    "~=": new RegExp("^v?(?:[0-9]+!)?[0-9]+(?:\\.[0-9]+)+" + PRE + POST + DEV + "$", "i"),
    "<": new RegExp("^v?(?:[0-9]+!)?[0-9]+(?:\\.[0-9]+)*" + PRE + POST + DEV + "$", "i"),
  };
  SPEC["!="] = SPEC["=="];
  SPEC["<="] = SPEC[">="] = SPEC[">"] = SPEC["<"];

  function specVersion(op, text) {
    if (!SPEC[op] || !SPEC[op].test(text)) return null;
    return parseVersion(text.replace(/\.\*$/, ""));
  }

  // --- loose order of versions that are not PEP 440 (mlenv/ui/search.py loose_key) -----
  function looseKey(text) {
    var parts = text.toLowerCase().match(/[0-9]+|[a-z]+/g) || [];
    return parts.map(function (t) { return /^[0-9]/.test(t) ? [1, Number(t), ""] : [0, 0, t]; });
  }

  function clauseMatches(op, want, version) {
    if (op === "===") return version.trim().toLowerCase() === want.toLowerCase();
    var spec = specVersion(op, want);
    var parsed = parseVersion(version);
    if (spec && parsed) {
      var k = key(parsed);
      var rs = ranges(op, want, spec);
      for (var i = 0; i < rs.length; i++) {
        if (cmp(k, rs[i][0]) < 0) return false;
        if (cmp(k, rs[i][1]) < 0) return true;
      }
      return false;
    }
    if (op === "~=") return false;
    if (/\.\*$/.test(want)) {
      var pk = looseKey(want.slice(0, -2));
      var hit = cmp(looseKey(version).slice(0, pk.length), pk) === 0;
      return op === "==" ? hit : !hit;
    }
    var c = cmp(looseKey(version), looseKey(want));
    return { "==": c === 0, "!=": c !== 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0 }[op];
  }

  // --- queries (mlenv/ui/search.py parse_query) ------------------------------------------
  var QUERY = /^\s*(?:([A-Za-z]+)\s*:\s*)?([^\s<>=!~,:]+)\s*([\s\S]*?)\s*$/;
  var NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
  var CLAUSE = /^\s*(===|~=|==|!=|<=|>=|<|>)\s*(\S+?)\s*$/;
  var VERSION_TEXT = /^[A-Za-z0-9](?:[A-Za-z0-9._+!-]*[A-Za-z0-9])?(?:\.\*)?$/;

  function normalize(name) { return name.replace(/[-_.]+/g, "-").toLowerCase(); }

  function parseQuery(text) {
    if (!text || !text.trim()) throw new Error("empty package query");
    if (text.length > 500) throw new Error("package query too long");
    var m = QUERY.exec(text);
    if (!m) throw new Error("cannot read the package query");
    var manager = m[1] === undefined ? null : m[1].toLowerCase();
    if (manager !== null && manager !== "conda" && manager !== "pypi") throw new Error("unknown package manager " + manager);
    if (!NAME.test(m[2])) throw new Error("invalid package name " + m[2]);
    var clauses = [];
    if (m[3]) {
      m[3].split(",").forEach(function (piece) {
        var c = CLAUSE.exec(piece);
        if (!c) throw new Error("invalid version specifier " + piece.trim());
        var op = c[1], version = c[2];
        if (op !== "===") {
          if (!VERSION_TEXT.test(version)) throw new Error("invalid version " + version);
          if (/\.\*$/.test(version) && op !== "==" && op !== "!=") throw new Error("a trailing .* only goes with == and !=");
          if (op === "~=" && !specVersion(op, version)) throw new Error("~= needs a PEP 440 version with at least two release numbers");
        }
        clauses.push([op, version]);
      });
    }
    return { name: normalize(m[2]), manager: manager, clauses: clauses };
  }

  function queryText(q) {
    return (q.manager ? q.manager + ":" : "") + q.name + q.clauses.map(function (c) { return c[0] + c[1]; }).join(",");
  }

  function matches(q, version) {
    return q.clauses.every(function (c) { return clauseMatches(c[0], c[1], version); });
  }

  // --- the page --------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function run(data, params, out) {
    var text = params.get("q") || "";
    var platform = params.get("platform") || "";
    var archived = params.get("archived") === "1";
    out.textContent = "";
    if (!text.trim()) return;
    var q;
    try { q = parseQuery(text); } catch (e) {
      out.appendChild(el("p", { "class": "notice", id: "query-error" }, [String(e.message)]));
      return;
    }
    var hits = [];
    var searched = data.versions.filter(function (v) { return archived || !v.archived; });
    searched.forEach(function (v) {
      data.locks[v.lock].forEach(function (r) {
        // r: [platform, manager, name, key, alias, version]
        if (r[3] !== q.name && r[4] !== q.name) return;
        if (q.manager && r[1] !== q.manager) return;
        if (platform && r[0] !== platform) return;
        if (!matches(q, r[5])) return;
        hits.push({ v: v, r: r });
      });
    });
    hits.sort(function (a, b) {
      return cmp([a.v.name, -a.v.version, a.r[0], a.r[1], a.r[2]], [b.v.name, -b.v.version, b.r[0], b.r[1], b.r[2]]);
    });
    var refs = {}, names = {};
    hits.forEach(function (h) { refs[h.v.name + "@" + h.v.version] = 1; names[h.v.name] = 1; });
    var summary = el("p", { id: "summary" }, [
      el("strong", {}, [String(Object.keys(refs).length)]), " version(s) of ",
      el("strong", {}, [String(Object.keys(names).length)]), " environment(s) match ",
      el("code", {}, [queryText(q)]), platform ? " on " + platform : "", ", among " + searched.length + " version(s).",
    ]);
    out.appendChild(summary);
    if (!hits.length) return;
    var body = el("tbody");
    hits.forEach(function (h) {
      var first = el("td", {}, [el("a", { "class": "hit", href: h.v.page }, [h.v.name + "@" + h.v.version])]);
      h.v.labels.forEach(function (l) { first.appendChild(document.createTextNode(" ")); first.appendChild(el("span", { "class": "badge label" }, [l])); });
      if (h.v.archived) { first.appendChild(document.createTextNode(" ")); first.appendChild(el("span", { "class": "badge archived" }, ["archived"])); }
      var pkg = data.packages[h.r[3]];
      body.appendChild(el("tr", {}, [
        first,
        el("td", {}, [h.r[0]]),
        el("td", {}, [pkg ? el("a", { href: pkg }, [h.r[2]]) : h.r[2]]),
        el("td", { "class": "mono" }, [h.r[5]]),
        el("td", {}, [el("span", { "class": "badge " + h.r[1] }, [h.r[1] === "conda" ? "conda" : "PyPI"])]),
        el("td", { "class": "mono" }, [h.v.created.slice(0, 16).replace("T", " ")]),
      ]));
    });
    var head = el("thead", {}, [el("tr", {}, ["Environment version", "Platform", "Package", "Version", "From", "Created"].map(function (t) { return el("th", {}, [t]); }))]);
    out.appendChild(el("table", { "class": "hits", id: "hits" }, [head, body]));
  }

  function start() {
    var out = document.getElementById("results");
    if (!out || !window.MLENV_SEARCH) return;
    var params = new URLSearchParams(window.location.search);
    var form = document.getElementById("search-form");
    if (form) {
      form.elements.q.value = params.get("q") || "";
      form.elements.platform.value = params.get("platform") || "";
      form.elements.archived.checked = params.get("archived") === "1";
    }
    run(window.MLENV_SEARCH, params, out);
  }

  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }
  return { parseVersion: parseVersion, key: key, clauseMatches: clauseMatches, parseQuery: parseQuery,
           queryText: queryText, matches: matches, looseKey: looseKey, normalize: normalize };
})();
