"""One index of what was published: ``layers arns --all --format json|html``.

Manifests in (``manifest.load_all`` reads and validates every
``published/*.json``), text out: ``index_json`` is the data, ``index_html``
a page of it. For each recipe, a table of region × layer (one layer per
architecture) giving the version and ARN, then each layer's details per
region: the runtimes and every other field its manifest entry holds (sha256,
CodeSha256, lock digest, build identity, published_at, and sizes where a
manifest records them). Nothing is looked up elsewhere, and nothing a
manifest lacks is made up.

The page is one self-contained file (inline CSS, no script, no font, image
or link to load), readable offline, from GitHub Pages or an S3 website; its
Content-Security-Policy forbids loading anything, so even a mistake here
could not make it fetch. Every value from a manifest goes through
``html.escape``. ``write_output`` writes the result (or any other
``--output``) by a rename from a temporary file beside it.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

from ..files import check_output_file, write_output_file
from .manifest import Entry, Manifest

INDEX_FORMAT = 1
# Shown in the grid, so left out of the per-region details.
_GRID_FIELDS = ("layer_name", "architecture", "region", "arn", "version")
_LABELS = {"sha256": "zip sha256", "code_sha256": "CodeSha256", "lock_digest": "lock digest",
           "identity": "build identity", "published_at": "published at", "runtimes": "runtimes",
           "ssm": "SSM parameters"}


# -- the data ----------------------------------------------------------------------------
def _detail_fields() -> list[str]:
    # Every field an entry has, so one added to the manifest shows up here without a change.
    return [f.name for f in dataclasses.fields(Entry) if f.name not in _GRID_FIELDS]


def _layers(manifest: Manifest, region: str | None) -> dict[str, list[Entry]]:
    by_layer: dict[str, list[Entry]] = {}
    for entry in manifest.rows(region):
        by_layer.setdefault(entry.layer_name, []).append(entry)
    return by_layer


def index_json(manifests: list[Manifest], region: str | None = None) -> dict:
    """Every manifest's layers: per layer its architecture, runtimes and each region's entry."""
    recipes = []
    for manifest in manifests:
        layers = []
        for name, rows in _layers(manifest, region).items():
            layers.append({
                "layer_name": name, "architecture": rows[0].architecture,
                "runtimes": sorted({r for e in rows for r in e.runtimes}),
                "regions": {e.region: {k: v for k, v in e.to_json().items() if k not in ("layer_name", "architecture",
                                                                                           "region")}
                            for e in rows}})
        recipes.append({"recipe": manifest.recipe, "manifest": manifest.path.name, "layers": layers})
    return {"format": INDEX_FORMAT, "recipes": recipes,
            "regions": sorted({e.region for m in manifests for e in m.rows(region)})}


def render_json(manifests: list[Manifest], region: str | None = None) -> str:
    return json.dumps(index_json(manifests, region), indent=2, sort_keys=False)


# -- the page ----------------------------------------------------------------------------
_CSS = """
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --head: #f6f8fa;
        --accent: #0969da; --none: #8c959f; --bg: #ffffff; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --head: #151b23; --accent: #4493f8;
          --none: #656c76; --bg: #0d1117; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 80rem; padding: 1.5rem; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2.5rem 0 .5rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.5rem 0 .25rem; }
p, .summary { color: var(--muted); margin: .25rem 0 .75rem; }
nav ul { padding-left: 1.2rem; margin: .25rem 0; }
a { color: var(--accent); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
thead th { background: var(--head); }
tbody th { background: var(--head); font-weight: 600; white-space: nowrap; }
code { font: .85em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
       overflow-wrap: anywhere; }
.version { font-weight: 700; }
.none { color: var(--none); }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _anchor(recipe: str) -> str:
    # Recipe names are [a-z0-9._-]; the id is escaped all the same.
    return "recipe-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in recipe)


def _value_cell(field: str, value: object) -> str:
    if isinstance(value, (tuple, list)):
        if not value:
            return '<span class="none">none recorded</span>'
        return ", ".join(_e(v) if field == "runtimes" else f"<code>{_e(v)}</code>" for v in value)
    if value in ("", None):
        return '<span class="none">not recorded</span>'
    if isinstance(value, int) and not isinstance(value, bool) and field.endswith("_bytes"):
        from ..measure import human

        return f"{_e(human(value))} <span class=\"none\">({value:,} bytes)</span>"
    if isinstance(value, str) and field != "published_at":
        return f"<code>{_e(value)}</code>"
    return _e(value)


def _recipe_section(manifest: Manifest, region: str | None) -> str:
    layers = _layers(manifest, region)
    out = [f'<section id="{_e(_anchor(manifest.recipe))}">', f"<h2>{_e(manifest.recipe)}</h2>"]
    if not layers:
        where = f" in {region}" if region else ""
        out.append(f'<p>Nothing published{_e(where)} ({_e(manifest.path.name)} has no entries).</p></section>')
        return "\n".join(out)
    regions = sorted({e.region for rows in layers.values() for e in rows})
    names = sorted(layers)
    out.append(f'<p class="summary">{len(names)} layer(s) in {len(regions)} region(s), from '
               f'<code>{_e(manifest.path.name)}</code>.</p>')
    out.append('<div class="scroll"><table class="grid">')
    out.append("<thead><tr><th scope=\"col\">region</th>" + "".join(
        f'<th scope="col">{_e(layers[n][0].architecture)}<br><code>{_e(n)}</code></th>' for n in names)
        + "</tr></thead><tbody>")
    for reg in regions:
        cells = []
        for n in names:
            entry = next((e for e in layers[n] if e.region == reg), None)
            cells.append('<td class="none">not published</td>' if entry is None else
                         f'<td><span class="version">version {_e(entry.version)}</span><br>'
                         f'<code>{_e(entry.arn)}</code></td>')
        out.append(f'<tr><th scope="row">{_e(reg)}</th>{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    fields = _detail_fields()
    for n in names:
        rows = layers[n]
        runtimes = sorted({r for e in rows for r in e.runtimes})
        out.append(f"<h3><code>{_e(n)}</code> ({_e(rows[0].architecture)})</h3>")
        out.append("<p>runtimes: " + (", ".join(_e(r) for r in runtimes) or "none recorded") + "</p>")
        out.append('<div class="scroll"><table class="details"><thead><tr><th scope="col">region</th>'
                   + "".join(f'<th scope="col">{_e(_LABELS.get(f, f.replace("_", " ")))}</th>' for f in fields)
                   + "</tr></thead><tbody>")
        for entry in rows:
            out.append(f'<tr><th scope="row">{_e(entry.region)}</th>'
                       + "".join(f"<td>{_value_cell(f, getattr(entry, f))}</td>" for f in fields) + "</tr>")
        out.append("</tbody></table></div>")
    out.append("</section>")
    return "\n".join(out)


def index_html(manifests: list[Manifest], region: str | None = None) -> str:
    """The page: a summary, a list of recipes, then each recipe's grid and details."""
    entries = [e for m in manifests for e in m.rows(region)]
    regions = sorted({e.region for e in entries})
    layer_count = len({(m.recipe, e.layer_name) for m in manifests for e in m.rows(region)})
    title = "Published Lambda layers" + (f" in {region}" if region else "")
    nav = "".join(f'<li><a href="#{_e(_anchor(m.recipe))}">{_e(m.recipe)}</a></li>' for m in manifests)
    body = "\n".join(_recipe_section(m, region) for m in manifests)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="lambda-layer-builder: layers arns --all --format html">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_e(title)}</h1>
<p class="summary">{len(manifests)} recipe(s), {layer_count} layer(s), {len(regions)} region(s):
{_e(", ".join(regions)) or "none"}. A layer is regional: use the ARN of the function's own region.</p>
<nav><ul>{nav}</ul></nav>
</header>
<main>
{body}
</main>
<footer>Written by <code>layers arns --all --format html</code> from {len(manifests)} manifest(s); every value is as
the manifest records it.</footer>
</body>
</html>
"""


# -- writing -----------------------------------------------------------------------------
_OUTPUT_HINT = "give --output a path to a regular file, e.g. site/index.html"


def check_output(path: Path) -> None:
    """``--output`` names a regular file or nothing yet, under a folder (never a directory, device or FIFO)."""
    check_output_file(path, _OUTPUT_HINT)


def write_output(path: Path, text: str) -> None:
    """Write ``text`` whole, by a rename (``files.write_output_file``)."""
    write_output_file(path, text, _OUTPUT_HINT)
