"""The pages: a layer (``layers report ZIP --html``, and every build), two layers (``layers diff --html``), a plan.

Each is one self-contained HTML file: its style, its data and its one
script inline, nothing fetched (the Content-Security-Policy says so too:
``default-src 'none'``, the script allowed by its hash). The trees come
from ``tree`` (condensed, so a page stays well under 2 MB), their boxes from
``layout``, the drawing and zooming from ``script``. Bars (Lambda's 250 MB,
the 50 MB direct upload, /tmp) are plain HTML, sized here.

Every name and value from a zip, a report or a recipe is untrusted: text
is escaped here (``html.escape``), the JSON block has ``<``, ``>`` and
``&`` escaped so it cannot end its ``<script>``, and the script writes
names as text only. Colours come from this module's tables, never from the
input.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import stat
from pathlib import Path

from ..compare import Comparison
from ..errors import UsageError
from ..files import write_output_file
from ..measure import human
from ..plan import MIB, TMP_HEADROOM, BudgetPlan, usable
from ..recipe import DIRECT_UPLOAD_LIMIT, UNZIPPED_LIMIT
from .layout import HEIGHT, WIDTH, Placed, lay_out
from .script import SCRIPT
from .tree import (
    KEPT,
    KINDS,
    LATER_FATES,
    Item,
    Node,
    before_items,
    build_tree,
    condense,
    kind_of,
    packed_archive,
    packed_items,
    strip_prefix,
    zip_members,
)

MAX_PAGE_BYTES = 2 << 20
KIND_COLOURS = {"shared object": "#f4a582", "bytecode": "#c2a5cf", "source": "#92c5de", "data": "#a6dba0",
                "metadata": "#fee08b"}
KIND_LABELS = {"shared object": "shared object (.so)", "bytecode": "bytecode (.pyc)", "source": "source (.py, C)",
               "data": "data", "metadata": "metadata (.dist-info)"}
FATE_COLOURS = {KEPT: "#d9d9d9", "installer-bytecode": "#8dd3c7", "drop": "#fb8072", "recipe-remove": "#80b1d3",
                "tests": "#fdb462", "scripts": "#b3de69", "headers": "#fccde5", "docs-examples": "#bc80bd",
                "debug-symbols": "#ffed6f", "dist-info": "#ccebc5", "trace-prune": "#e5c494", "bytecode": "#c2a5cf",
                "later": "#969696"}
SPARE_COLOURS = ("#b3b3b3", "#a6cee3", "#b2df8a", "#cab2d6", "#ffff99")
STATUS_COLOURS = {"same": "#e3e3e3", "grew": "#ef8a62", "shrank": "#67a9cf", "appeared": "#7fbf7b",
                  "went": "#c2a5cf", "changed": "#fee08b", "mode": "#d8b365"}
STATUS_LABELS = {"same": "the same in both", "grew": "grew", "shrank": "shrank", "appeared": "only in the second",
                 "went": "only in the first", "changed": "same size, other bytes", "mode": "file mode differs"}
BAR_COLOURS = ("#4e79a7", "#59a14f", "#edc948", "#b07aa1", "#76b7b2", "#ff9da7", "#9c755f", "#e15759")

_STYLE = """
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;padding:12px 16px;
color:#222;background:#fff}
h1{font-size:19px;margin:0 0 2px}h2{font-size:14px;margin:10px 0 4px}
.sub{color:#555;margin:0 0 6px}
.verdicts{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
.verdicts li{max-width:100%}.verdicts b{padding:0 5px;border-radius:3px;color:#fff}
.pass b{background:#2e7d32}.fail b{background:#c62828}.warn b{background:#ef6c00}
.verdicts .how{color:#555}
.bar{display:flex;height:24px;border:1px solid #888;border-radius:3px;overflow:hidden;position:relative;
background:#f3f3f3}
.seg{height:100%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-size:11px;line-height:22px;
padding:0 4px;color:#fff;border-right:1px solid #fff}
.seg.reserve{background:repeating-linear-gradient(45deg,#f28e2b,#f28e2b 4px,#f7b36b 4px,#f7b36b 8px)}
.seg.left{background:#f3f3f3;color:#333}.seg.over{background:#c62828}
.limit{position:absolute;top:0;bottom:0;border-left:2px dashed #c62828}
.barnote{color:#444;margin:2px 0 8px}
.maps{display:flex;gap:14px;align-items:flex-start}
.panel{flex:1 1 0;min-width:0}
.panel svg{width:100%;height:auto;display:block;border:1px solid #999;background:#fafafa}
.panel nav{min-height:20px;margin:2px 0}
.panel nav button{font:inherit;border:0;background:none;color:#1a5fb4;cursor:pointer;padding:0;text-decoration:underline}
.box rect{stroke:#fff;stroke-width:1}.box.dir>rect:first-child{stroke:#555}
.box rect.inner{stroke:#fff;stroke-width:.5;opacity:.9}
.box:hover>rect:first-child{stroke:#000;stroke-width:2}.dir{cursor:zoom-in}
.label{fill:#111;pointer-events:none}.size{fill:#333;pointer-events:none}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;margin:4px 0;padding:0;list-style:none}
.sw{display:inline-block;width:11px;height:11px;border:1px solid #777;margin-right:4px;vertical-align:-1px}
.how{color:#555;font-size:12px;margin:2px 0}
table{border-collapse:collapse;margin:4px 0;font-size:12px}
td,th{border-bottom:1px solid #ddd;padding:2px 8px 2px 0;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
#tip{position:absolute;z-index:5;background:#fffbe6;border:1px solid #888;padding:4px 6px;white-space:pre;
font-size:12px;pointer-events:none;max-width:640px;overflow:hidden;box-shadow:1px 1px 4px rgba(0,0,0,.3)}
.none{color:#777;font-style:italic}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _int(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _get(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- out: where a page goes -----------------------------------------------------


def check_out(path: Path, option: str = "--html") -> None:
    """Refuse, before any work, an OUT that is not a file this can replace: a directory, a device, a FIFO."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{option}: cannot use {path}: {exc.strerror or exc}",
                         hint="give the path of an .html file to write") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a device or special file")
        raise UsageError(f"{option}: {path} is {kind}, not a file this can replace",
                         hint="give the path of an .html file to write (it is replaced whole)")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{option}: {parent} is not a directory, so {path.name} cannot be written there",
                         hint="make the directory first, or give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: {parent} is not writable", hint="give a path in a directory you can write")


def write_page(path: Path, text: str) -> None:
    """Write the page beside its place, then rename it there: a reader never sees half a page."""
    write_output_file(path, text, hint="give the path of an .html file to write", option="--html")


# --- the parts of a page ---------------------------------------------------------


def _document(title: str, body: str, data: dict | None) -> str:
    script = ""
    policy = "default-src 'none'; style-src 'unsafe-inline'"
    if data is not None:
        digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
        policy += f"; script-src 'sha256-{digest}'"
        script = (f'<script type="application/json" id="data">{script_json(data)}</script>\n'
                  f"<script>{SCRIPT}</script>\n")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n<div id=\"tip\" hidden></div>\n{script}</body></html>\n")


def script_json(data: object) -> str:
    """JSON that cannot end the ``<script>`` it sits in, whatever strings it holds."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _node_json(placed: Placed) -> dict:
    node = placed.node
    out: dict = {"n": node.name, "b": node.bytes, "f": node.files, "k": node.key}
    if placed.view:
        out["v"] = [round(v, 2) for v in placed.view]
    if placed.inset:
        out["i"] = [round(v, 2) for v in placed.inset]
    if node.note:
        out["t"] = node.note
    if node.detail:
        out["d"] = node.detail
    if len(node.keys) > 1:
        out["m"] = sorted(([k, v] for k, v in node.keys.items()), key=lambda kv: -kv[1])
    if placed.children is not None:
        out["c"] = [_node_json(child) for child in placed.children]
    return out


def _panel_data(tree: Node, colours: dict[str, str], labels: dict[str, str], title: str) -> tuple[dict, str]:
    condensed, how = condense(tree)
    keys = {node.key for node in condensed.walk()} | set(tree.keys)
    spare = iter(SPARE_COLOURS * (1 + len(keys) // len(SPARE_COLOURS)))
    chosen = {key: colours.get(key) or next(spare) for key in sorted(keys)}
    data = {"tree": _node_json(lay_out(condensed)), "colors": chosen,
            "labels": {key: labels.get(key, key) for key in sorted(keys)}, "title": title}
    return data, how


def _panel_html(name: str, heading: str, how: str, legend: str, after: str = "") -> str:
    return (f'<div class="panel" data-tree="{esc(name)}" id="panel-{esc(name)}"><h2>{heading}</h2><nav></nav>'
            f'<svg viewBox="0 0 {WIDTH:g} {HEIGHT:g}" role="img" aria-label="{esc(name)} treemap"></svg>'
            f'{legend}<p class="how">{esc(how)}. Click a box to zoom in; Escape or the path above goes back.</p>'
            f"{after}</div>")


def _legend(keys: dict[str, int], colours: dict[str, str], labels: dict[str, str], order: tuple[str, ...] = (),
            short: bool = False) -> str:
    ranked = [k for k in order if k in keys] + sorted((k for k in keys if k not in order), key=lambda k: -keys[k])
    items = "".join(f'<li title="{esc(f"{labels.get(k, k)}: {keys[k]:,} bytes")}">'
                    f'<span class="sw" style="background:{colours[k]}"></span>'
                    f"{esc(k if short else labels.get(k, k))} {esc(human(keys[k]))}</li>" for k in ranked if k in colours)
    return f'<ul class="legend">{items}</ul>'


def _bar(title: str, limit: int, segments: list[tuple[str, int, str]], note: str = "", reserve: int = 0) -> str:
    """A bar of ``limit`` bytes holding ``segments`` (label, bytes, colour); past the limit it grows, in red."""
    used = sum(size for _, size, _ in segments) + reserve
    scale = max(limit, used) or 1
    parts = []
    for label, size, colour in segments:
        if not size:
            continue
        share = 100 * size / scale
        parts.append(f'<span class="seg" style="width:{share:.3f}%;background:{colour}" '
                     f'title="{esc(f"{label}: {size:,} bytes ({human(size)})")}">{esc(label)} {esc(human(size))}</span>')
    if reserve:
        parts.append(f'<span class="seg reserve" style="width:{100 * reserve / scale:.3f}%" '
                     f'title="{esc(f"the recipe reserve: {reserve:,} bytes ({human(reserve)})")}">reserve '
                     f"{esc(human(reserve))}</span>")
    left = limit - used
    if left > 0:
        parts.append(f'<span class="seg left" style="width:{100 * left / scale:.3f}%" '
                     f'title="{esc(f"left: {left:,} bytes ({human(left)})")}">left {esc(human(left))}</span>')
    else:
        parts.append(f'<span class="limit" style="left:{100 * limit / scale:.3f}%" '
                     f'title="{esc(f"the limit: {limit:,} bytes; over by {-left:,}")}"></span>')
    status = (f'<span style="color:#c62828">over by {esc(human(-left))}</span>' if left < 0 else
              f"{esc(human(left))} left" if left else "exactly full")
    return (f'<h2>{esc(title)}: {esc(human(used))} of {esc(human(limit))}, {status}</h2>'
            f'<div class="bar" title="{esc(f"{used:,} of {limit:,} bytes")}">{"".join(parts)}</div>'
            + (f'<p class="barnote">{esc(note)}</p>' if note else ""))


def _verdict(state: str, name: str, word: str, how: str) -> str:
    return f'<li class="{state}"><b>{esc(word)}</b> {esc(name)} <span class="how">{esc(how)}</span></li>'


# --- a layer ------------------------------------------------------------------------


def layer_page(zip_path: Path, report: dict) -> str:
    """One layer: its tree (a packed layer's: the archive's) beside the installed tree, its budget, its verdicts."""
    members = zip_members(zip_path)
    counted = sum(size for _, size in members)
    pack = report.get("pack") if isinstance(report.get("pack"), dict) else None
    archive = packed_archive(zip_path) if pack else None
    if archive:
        items = packed_items(zip_path, archive)
    else:
        items = zip_items_of(members)
    after = build_tree(items)
    recipe, runtime, arch = (_text(report.get(k)) for k in ("recipe", "runtime", "architecture"))
    panels, parts = {}, []
    after_title = "the archive, unpacked" if archive else "in the layer"
    data, how = _panel_data(after, KIND_COLOURS, KIND_LABELS, after_title)
    panels["after"] = data
    heading = (f"{'unpacked from ' + esc(archive.rsplit('/', 1)[-1]) if archive else 'in the layer'}: "
               f"{esc(human(after.bytes))} in {after.files:,} files")
    parts.append(_panel_html("after", heading, how, _legend(after.keys, KIND_COLOURS, KIND_LABELS, KINDS)))
    before = before_items(report)
    rules = _rules_table(report)
    if before is not None:
        tree = build_tree(before)
        labels = _fate_labels(report)
        data, how = _panel_data(tree, FATE_COLOURS, labels, "installed")
        panels["before"] = data
        heading = f"installed, before stripping: {esc(human(tree.bytes))} in {tree.files:,} files"
        parts.append(_panel_html("before", heading, how, _legend(tree.keys, data["colors"], labels, (KEPT,), short=True),
                                 rules))
    else:
        parts.append('<div class="panel"><h2>installed, before stripping</h2><p class="none">This report has no '
                     "record of the installed tree (it was built before layers recorded one): rebuild the layer "
                     f"to see it.</p>{rules}</div>")
    title = f"{recipe} for {runtime} {arch}"
    budget = report.get("budget") if isinstance(report.get("budget"), dict) else {}
    zipped = _int(_get(report, "zip", "zipped_bytes"))
    sub = (f"{human(counted)} unzipped in {len(members):,} files, {human(zipped)} zipped "
           f"({'direct upload' if zipped <= DIRECT_UPLOAD_LIMIT else 'published through S3: over 50 MB'})"
           f"; built {_text(report.get('built_at'))} by layers {_text(report.get('builder_version'))}"
           f"; {zip_path.name}")
    body = [(f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(sub)}</p>"
             f'<ul class="verdicts">{_verdicts(report)}</ul></header>')]
    segments = [(f"{'packed layer (counted)' if archive else 'this layer'}", counted, BAR_COLOURS[0])]
    note = ""
    if archive:
        archive_bytes = next((size for name, size in members if name == archive), 0)
        note = (f"Lambda counts the zip as it unzips: {human(counted)}, of which the archive is "
                f"{human(archive_bytes)} and the stubs, unpacker and decoder {human(counted - archive_bytes)}. "
                f"The archive unpacks to {human(after.bytes)} in {_text(pack.get('unpack_dir'))} at the first import.")
    body.append(_bar("Lambda's 250 MB (unzipped, function and layers)", UNZIPPED_LIMIT, segments, note,
                     reserve=_int(budget.get("reserve_bytes"))))
    if archive:
        storage = _int(pack.get("ephemeral_storage_mb")) * MIB or 512 * MIB
        body.append(_bar(f"/tmp of an EphemeralStorage of {storage // MIB} MB ({human(usable(storage))} usable)",
                         usable(storage), [("unpacked tree", after.bytes, BAR_COLOURS[1]),
                                           ("the function's own files", TMP_HEADROOM, BAR_COLOURS[3])]))
    body.append(f'<section class="maps">{"".join(parts)}</section>')
    return _document(title, "\n".join(body), {"panels": panels})


def zip_items_of(members: list[tuple[str, int]]) -> list[Item]:
    strip = strip_prefix(name for name, _ in members)
    return [Item(name[len("python/"):] if strip else name, size, kind_of(name)) for name, size in members]


def _verdicts(report: dict) -> str:
    out = []
    load = _get(report, "verification", "load_check")
    if isinstance(load, dict):
        status = _text(load.get("status"))
        out.append(_verdict("pass" if status == "passed" else "fail", "load check", status or "unknown",
                            _text(load.get("how"))))
    else:
        out.append(_verdict("warn", "load check", "not run", "the report is from a build before the load check"))
    verified = _get(report, "verification", "verified") is True
    how = _text(_get(report, "verification", "how"))
    out.append(_verdict("pass" if verified else "fail", "smoke test", "passed" if verified else "NOT verified", how))
    grafted = _get(report, "grafted", "grafted")
    if isinstance(grafted, list) and grafted:
        names = ", ".join(_text(_get(g, "soname")) for g in grafted[:8])
        out.append(_verdict("warn", "grafted", f"{len(grafted)} grafted", names))
    packed = _get(report, "pack", "verification")
    if isinstance(packed, dict):
        ok = packed.get("verified") is True
        out.append(_verdict("pass" if ok else "fail", "packed smoke test", "passed" if ok else "NOT verified",
                            "through the layer's own unpacker, " + _text(packed.get("how"))))
    return "".join(out)


def _rules(report: dict) -> list[dict]:
    rules = _get(report, "strip", "rules")
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _fate_labels(report: dict) -> dict[str, str]:
    labels = {KEPT: "kept in the layer", **{k: f"{k}: {v}" for k, v in LATER_FATES.items()}}
    for rule in _rules(report):
        name = _text(rule.get("rule"))
        if name:
            labels[name] = f"{name}: {_text(rule.get('description'))}"
    return labels


def _rules_table(report: dict) -> str:
    rules = _rules(report)
    if not rules:
        return ""
    rows = "".join(
        f'<tr><td><span class="sw" style="background:{FATE_COLOURS.get(_text(r.get("rule")), SPARE_COLOURS[0])}">'
        f'</span>{esc(_text(r.get("rule")))}</td><td>{esc(_text(r.get("description")))}</td>'
        f'<td class="n">{_int(r.get("files")):,}</td>'
        f'<td class="n" title="{_int(r.get("bytes")):,} bytes">{esc(human(_int(r.get("bytes"))))}</td></tr>'
        for r in rules)
    removed = _int(_get(report, "strip", "bytes_removed"))
    return (f'<h2>what each strip rule removed: {esc(human(removed))} in all</h2><table><tr><th>rule</th>'
            f'<th>what</th><th class="n">files</th><th class="n">bytes</th></tr>{rows}</table>')


# --- two layers ------------------------------------------------------------------


def diff_page(first: Path, second: Path, comparison: Comparison) -> str:
    """Two zips side by side: each file coloured by what became of it, with ``compare``'s reason."""
    a, b = zip_members(first), zip_members(second)
    strip = strip_prefix([n for n, _ in a] + [n for n, _ in b])
    sizes_a, sizes_b = dict(a), dict(b)
    why = {d.path: d for d in comparison.differences}

    def status(name: str, here: dict, there: dict, only: str) -> tuple[str, str]:
        difference = why.get(name)
        if difference is None:
            return "same", ""
        if difference.kind.startswith("only in"):
            return only, difference.reason
        if difference.kind == "mode":
            return "mode", difference.reason
        mine, theirs = here[name], there[name]
        grown = mine - theirs if only == "appeared" else theirs - mine
        detail = f"{difference.reason}; first {sizes_a[name]:,} bytes, second {sizes_b[name]:,} bytes"
        return ("grew" if grown > 0 else "shrank" if grown < 0 else "changed"), detail

    def items(members, here, there, only):
        out = []
        for name, size in members:
            key, detail = status(name, here, there, only)
            out.append(Item(name[len("python/"):] if strip else name, size, key, detail=detail or kind_of(name)))
        return out

    trees = (build_tree(items(a, sizes_a, sizes_b, "went")), build_tree(items(b, sizes_b, sizes_a, "appeared")))
    panels, parts = {}, []
    for name, path, tree in (("first", first, trees[0]), ("second", second, trees[1])):
        data, how = _panel_data(tree, STATUS_COLOURS, STATUS_LABELS, path.name)
        panels[name] = data
        heading = f"{esc(name)}: {esc(path.name)}, {esc(human(tree.bytes))} in {tree.files:,} files"
        parts.append(_panel_html(name, heading, how, _legend(tree.keys, data["colors"], STATUS_LABELS)))
    grew = sum(max(0, sizes_b[n] - sizes_a[n]) for n in sizes_a.keys() & sizes_b.keys())
    shrank = sum(max(0, sizes_a[n] - sizes_b[n]) for n in sizes_a.keys() & sizes_b.keys())
    appeared = sum(sizes_b[n] for n in sizes_b.keys() - sizes_a.keys())
    went = sum(sizes_a[n] for n in sizes_a.keys() - sizes_b.keys())
    total_a, total_b = sum(sizes_a.values()), sum(sizes_b.values())
    change = total_b - total_a
    sub = (f"{human(total_a)} to {human(total_b)} ({'+' if change >= 0 else '-'}{human(abs(change))}): "
           f"{human(appeared)} appeared, {human(went)} went, files in both grew by {human(grew)} and shrank by "
           f"{human(shrank)}; {len(comparison.differences):,} differences")
    title = f"{first.name} vs {second.name}"
    body = [f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(sub)}</p></header>",
            f'<section class="maps">{"".join(parts)}</section>', _differences_table(comparison, sizes_a, sizes_b)]
    return _document(title, "\n".join(body), {"panels": panels})


MAX_TABLE_ROWS = 400


def _differences_table(comparison: Comparison, a: dict[str, int], b: dict[str, int]) -> str:
    if not comparison.differences:
        return '<p class="none">Same files, same contents.</p>'
    ranked = sorted(comparison.differences, key=lambda d: (-abs(b.get(d.path, 0) - a.get(d.path, 0)), d.path))
    rows = "".join(f'<tr><td>{esc(d.path)}</td><td>{esc(d.kind)}</td><td>{esc(d.reason)}</td>'
                   f'<td class="n">{_size_cell(a.get(d.path))}</td><td class="n">{_size_cell(b.get(d.path))}</td></tr>'
                   for d in ranked[:MAX_TABLE_ROWS])
    more = len(ranked) - MAX_TABLE_ROWS
    tail = (f'<p class="none">and {more:,} more (smaller) differences: layers diff --json lists them all</p>'
            if more > 0 else "")
    return (f"<h2>the differences, biggest change first</h2><table><tr><th>path</th><th>difference</th>"
            f'<th>reason</th><th class="n">first</th><th class="n">second</th></tr>{rows}</table>{tail}')


def _size_cell(size: int | None) -> str:
    return "" if size is None else f'<span title="{size:,} bytes">{esc(human(size))}</span>'


# --- a plan ---------------------------------------------------------------------------


def plan_page(plan: BudgetPlan) -> str:
    """Lambda's budgets as bars holding the function, every layer and every model, and the recommendation."""
    colours = iter(BAR_COLOURS * 4)
    colour = {("function", ""): next(colours)}
    for item in plan.layers:
        colour[("layer", item.name)] = next(colours)
    for item in plan.models:
        colour[("model", item.name)] = next(colours)
    function = [("function code", plan.function, colour[("function", "")])]
    layers = [(f"layer {i.name}", i.bytes, colour[("layer", i.name)]) for i in plan.layers]
    models = [(f"model {i.name}", i.bytes, colour[("model", i.name)]) for i in plan.models]
    body = [("<header><h1>where the function, its layers and its models fit</h1>"
             f'<p class="sub">{len(plan.layers)} layer(s), {len(plan.models)} model(s); /tmp (EphemeralStorage) '
             f"{esc(plan.ephemeral // MIB)} MB</p></header>")]
    body.append(_bar("250 MB unzipped: the function, its layers and models in the package", UNZIPPED_LIMIT,
                     function + layers + models,
                     "what Lambda unzips for the function, all its layers together (a packed layer counts its "
                     "archive, not what it unpacks to)"))
    body.append(_bar("50 MB zipped, a direct upload: the function's zip with its models", DIRECT_UPLOAD_LIMIT,
                     function + models, "the unzipped sizes stand for the zipped ones here (the most they can be); "
                                        "over 50 MB a zip goes through S3"))
    tmp_option = next((o for o in plan.options if o.name == "s3-tmp"), None)
    tmp_check = tmp_option.checks[-1] if tmp_option else None
    unpacked = [(f"layer {i.name} unpacked", i.tmp_bytes, colour[("layer", i.name)]) for i in plan.layers
                if i.tmp_bytes]
    limit = tmp_check.limit if tmp_check else usable(plan.ephemeral)
    body.append(_bar(f"/tmp: the usable part of the EphemeralStorage the s3-tmp option needs "
                     f"({human(limit)})", limit,
                     unpacked + [(f"{label} in /tmp", size, c) for label, size, c in models]
                     + [("the function's own files", TMP_HEADROOM, "#bab0ac")],
                     "with the models in S3, fetched to /tmp at cold start (builder.runtime.model_loader); "
                     "packed layers unpack there in every option but the image"))
    rows = []
    for option in plan.options:
        for i, check in enumerate(option.checks):
            count = check.measure == "layers"
            value = str(check.value) if count else human(check.value)
            limit_text = str(check.limit) if count else human(check.limit)
            title = "" if count else f' title="{check.value:,} of {check.limit:,} bytes"'
            verdict = '<b style="color:#2e7d32">fits</b>' if check.ok else '<b style="color:#c62828">over</b>'
            rows.append(f"<tr><td>{esc(option.title) if i == 0 else ''}</td><td>{esc(check.measure)}</td>"
                        f'<td class="n"{title}>{esc(value)}</td><td class="n">{esc(limit_text)}</td>'
                        f"<td>{verdict}</td></tr>")
    body.append('<h2>the options</h2><table><tr><th>option</th><th>measure</th><th class="n">needs</th>'
                f'<th class="n">limit</th><th></th></tr>{"".join(rows)}</table>')
    best = plan.recommended
    body.append(f'<h2 id="recommended">recommended: {esc(best.title)}</h2><p>{esc(best.advice)}</p>' if best else
                '<h2 id="recommended" style="color:#c62828">nothing fits: even a container image is over 10 GB</h2>')
    items = "".join(f"<tr><td>{esc(label)}</td><td class=\"n\" title=\"{size:,} bytes\">{esc(human(size))}</td>"
                    f"<td>{esc(source)}</td></tr>"
                    for label, size, source in [("function code", plan.function, "--function-size")]
                    + [(f"layer {i.name}", i.bytes, i.source) for i in plan.layers]
                    + [(f"model {i.name}", i.bytes, i.source) for i in plan.models])
    body.append(f'<h2>what the function carries</h2><table><tr><th>item</th><th class="n">size</th>'
                f"<th>from</th></tr>{items}</table>")
    return _document("layers plan", "\n".join(body), None)
