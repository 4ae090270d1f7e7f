"""What changed between two locks: packages per platform, python, base image, variables."""

from __future__ import annotations

from ..lockfile import Lock, Package


def _vkey(version: str):
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(version), ())
    except InvalidVersion:
        parts = []
        for piece in version.replace("-", ".").replace("_", ".").split("."):
            parts.append((0, int(piece), "") if piece.isdigit() else (1, 0, piece))
        return (1, None, tuple(parts))


def compare_versions(a: str, b: str) -> int:
    ka, kb = _vkey(a), _vkey(b)
    if ka[0] == kb[0] == 0:
        return (ka[1] > kb[1]) - (ka[1] < kb[1])
    ta, tb = ka[2] or ((0, 0, a),), kb[2] or ((0, 0, b),)
    return (ta > tb) - (ta < tb)


def _pkg(p: Package) -> dict:
    out = {"manager": p.manager, "name": p.name, "version": p.version}
    if p.get("build"):
        out["build"] = p.get("build")
    return out


def diff_locks(a: Lock, b: Lock) -> dict:
    out: dict = {
        "content_hash": [a.content_hash, b.content_hash],
        "identical": a.content_hash == b.content_hash,
        "python": None if a.python == b.python else [a.python, b.python],
        "base_image": None,
        "apt_packages": {"added": [], "removed": []},
        "variables": {"added": {}, "removed": {}, "changed": {}},
        "platforms_added": sorted(set(b.platforms) - set(a.platforms)),
        "platforms_removed": sorted(set(a.platforms) - set(b.platforms)),
        "platforms": {},
    }
    base_a = a.image.get("reference") or a.image.get("base")
    base_b = b.image.get("reference") or b.image.get("base")
    if base_a != base_b:
        out["base_image"] = [base_a, base_b]
    apt_a, apt_b = set(a.image.get("apt-packages", [])), set(b.image.get("apt-packages", []))
    out["apt_packages"] = {"added": sorted(apt_b - apt_a), "removed": sorted(apt_a - apt_b)}
    for key in sorted(set(a.variables) | set(b.variables)):
        va, vb = a.variables.get(key), b.variables.get(key)
        if va is None:
            out["variables"]["added"][key] = vb
        elif vb is None:
            out["variables"]["removed"][key] = va
        elif va != vb:
            out["variables"]["changed"][key] = [va, vb]
    for plat in sorted(set(a.platforms) | set(b.platforms)):
        pa = {(p.manager, p.name): p for p in a.for_platform(plat)}
        pb = {(p.manager, p.name): p for p in b.for_platform(plat)}
        python = None
        if a.platform_python(plat) != b.platform_python(plat) and plat in a.platforms and plat in b.platforms:
            python = [a.platform_python(plat), b.platform_python(plat)]
        changes: dict[str, list[dict]] = {"added": [], "removed": [], "upgraded": [], "downgraded": [], "rebuilt": []}
        for pkey in sorted(set(pa) | set(pb)):
            x, y = pa.get(pkey), pb.get(pkey)
            if x is None:
                assert y is not None  # pkey comes from pa or pb
                changes["added"].append(_pkg(y))
            elif y is None:
                changes["removed"].append(_pkg(x))
            elif x.version != y.version:
                kind = "upgraded" if compare_versions(x.version, y.version) < 0 else "downgraded"
                changes[kind].append({"manager": x.manager, "name": x.name, "from": x.version, "to": y.version})
            elif x.sha256 != y.sha256 or x.url != y.url:
                changes["rebuilt"].append(
                    {
                        "manager": x.manager,
                        "name": x.name,
                        "version": x.version,
                        "from": x.get("build") or x.sha256[:12],
                        "to": y.get("build") or y.sha256[:12],
                    }
                )
        if python or any(changes.values()):
            out["platforms"][plat] = {"python": python, **changes}
    return out


def render(d: dict, left: str, right: str) -> list[str]:
    lines = [f"--- {left}  {d['content_hash'][0][:19]}", f"+++ {right}  {d['content_hash'][1][:19]}"]
    if d["identical"]:
        lines.append("identical content")
        return lines
    if d["python"]:
        lines.append(f"python: {d['python'][0]} -> {d['python'][1]}")
    if d["base_image"]:
        lines.append(f"base image: {d['base_image'][0]} -> {d['base_image'][1]}")
    for pkg in d["apt_packages"]["added"]:
        lines.append(f"apt: + {pkg}")
    for pkg in d["apt_packages"]["removed"]:
        lines.append(f"apt: - {pkg}")
    v = d["variables"]
    for key, val in v["added"].items():
        lines.append(f"variable: + {key}={val}")
    for key, val in v["removed"].items():
        lines.append(f"variable: - {key}={val}")
    for key, (x, y) in v["changed"].items():
        lines.append(f"variable: ~ {key}: {x} -> {y}")
    for plat in d["platforms_added"]:
        lines.append(f"platform: + {plat}")
    for plat in d["platforms_removed"]:
        lines.append(f"platform: - {plat}")
    for plat, e in d["platforms"].items():
        lines.append(f"[{plat}]")
        if e["python"]:
            lines.append(f"  python {e['python'][0]} -> {e['python'][1]}")
        for p in e["added"]:
            lines.append(f"  + {p['name']} {p['version']} ({p['manager']})")
        for p in e["removed"]:
            lines.append(f"  - {p['name']} {p['version']} ({p['manager']})")
        for p in e["upgraded"]:
            lines.append(f"  ↑ {p['name']} {p['from']} -> {p['to']} ({p['manager']})")
        for p in e["downgraded"]:
            lines.append(f"  ↓ {p['name']} {p['from']} -> {p['to']} ({p['manager']})")
        for p in e["rebuilt"]:
            lines.append(f"  ~ {p['name']} {p['version']}: {p['from']} -> {p['to']} ({p['manager']})")
    return lines
