"""``report.html``: one self-contained page that shows what a ``predict`` or ``track`` run found.

    from leafseg.inference.report import write_report, report_from_predict_output
    report_from_predict_output("predictions/")            # predict's own run does this at its end
    write_report("out/", title="Tracking", images=[...], table_rows=[...], plots=[...],
                 outliers=[...])                           # any other run (track) maps onto this
    leafseg report predictions/                            # (re)build it from an output folder

The page is a single HTML file that a browser opens offline, from wherever the output folder is
copied to: inline CSS and a little plain JavaScript, no external address. It holds

- the run's settings (weights, date, units, ...) and summary counts;
- the flagged outliers (the rules below), each naming its image or plant;
- the growth curves (PNG plots, embedded);
- a thumbnail of each overlay (a small JPEG embedded as a ``data:`` URI) that links to the
  full-size overlay by a path relative to the report, so it opens wherever the folder travels;
- the per-plant table: a click on a column header sorts it (numbers as numbers, text in
  natural order, empty cells last), a second click reverses it; the header carries
  ``aria-sort``. Rows of flagged images are marked.

All text is HTML-escaped. The file is written atomically (:func:`mrcnn.fileio.write_text_atomic`).

Outlier rules (:func:`flag_outliers`; each flag is ``{"image", "plant", "frame", "what", "detail"}``):

- **a count that jumps**, in a series (one plant's frames in time order, counts ``c``):
  frame ``t`` is flagged when ``|c_t - median(c_{t-1}, c_t, c_{t+1})| >= 3``, its count far off
  its neighbours' (``count_jitter`` of :mod:`leafseg.measure.series`; "count jumps"), when the
  count rises by 3 or more from the frame before ("count rises"), or when it falls by 2 or more
  ("count falls"; a leaf hidden by another can make it fall by one) - unless the frame before
  was itself flagged as a jump: its fall back is not a second outlier.
  A frame gets one flag, the first rule that holds.
  For single images (no series): a count far from the batch: ``|c - median| >= 3`` and more than
  3 MADs (median absolute deviation, at least 1) from the batch median, in a batch of 5 images or
  more ("count far from the batch").
- **a plant found in one frame and not the next**: leaves in frame ``t - 1`` and none (a count
  of 0, or None: no row) in frame ``t`` ("plant lost"; it comes before the count rules).
- **a near-empty image**: no leaf, or leaves covering less than 0.5 % of the image ("near-empty
  image").
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mrcnn.fileio import write_text_atomic

__all__ = ["REPORT_NAME", "THUMBNAIL_SIZE", "JUMP", "FALL", "MADS", "MIN_BATCH", "MIN_AREA_FRACTION",
           "series_outliers", "batch_outliers", "empty_outliers", "flag_outliers", "thumbnail_uri",
           "write_report", "report_from_predict_output", "report_from_track_output", "build_report"]

REPORT_NAME = "report.html"
THUMBNAIL_SIZE = 160          # px, the longer side of an embedded thumbnail
MAX_IMAGES = 600              # thumbnails on one page at most (flagged ones always shown)
JUMP = 3                      # a count this far off its neighbours' median jumps; a rise of this much too
FALL = 2                      # a fall of this much from one frame to the next
MADS = 3.0                    # a single image's count more than this many MADs off the batch median
MIN_BATCH = 5                 # images a batch needs before its median says anything
MIN_AREA_FRACTION = 0.005     # leaves below this share of the image: a near-empty image


# ---------------------------------------------------------------------------------------------
# Outliers
# ---------------------------------------------------------------------------------------------

def _flag(what, detail, image=None, plant=None, frame=None):
    return {"image": image, "plant": plant, "frame": frame, "what": what, "detail": detail}


def _leaves(count):
    return f"{count} leaf" if count == 1 else f"{count} leaves"


def series_outliers(series, jump=JUMP, fall=FALL) -> list[dict]:
    """Flags of the series rules of the module docstring.

    series: {plant: [(frame, count), ...]} in time order; ``frame`` names the frame (the image's
        name, a date); count 0 or None means the plant was not found in that frame (give a frame
        where the plant has no row at all as None: a frame left out is not seen).
    Returns flags with ``plant`` and ``frame`` (and ``image`` = the frame), in series order.
    """
    flags = []
    for plant, frames in series.items():
        frames = list(frames)
        counts = [None if c is None or (isinstance(c, float) and math.isnan(c)) else int(c) for _, c in frames]
        jumped = set()
        for t, (frame, count) in enumerate(zip((f for f, _ in frames), counts)):
            before = counts[t - 1] if t > 0 else None
            if t > 0 and before and not count:
                flags.append(_flag("plant lost", f"{_leaves(before)} in {frames[t - 1][0]}, "
                                   + ("none" if count == 0 else "not found") + f" in {frame}",
                                   image=frame, plant=plant, frame=frame))
                continue
            if count is None:
                continue
            after = counts[t + 1] if t + 1 < len(counts) else None
            if before is not None and after is not None:
                middle = float(np.median([before, count, after]))
                if abs(count - middle) >= jump:
                    jumped.add(t)
                    flags.append(_flag("count jumps", f"{_leaves(count)}; {before} before, {after} after",
                                       image=frame, plant=plant, frame=frame))
                    continue
            if before is not None and count - before >= jump:
                jumped.add(t)
                flags.append(_flag("count rises", f"from {before} to {count}", image=frame, plant=plant, frame=frame))
            elif before is not None and before - count >= fall and t - 1 not in jumped:
                flags.append(_flag("count falls", f"from {before} to {count}", image=frame, plant=plant, frame=frame))
    return flags


def batch_outliers(counts, mads=MADS, jump=JUMP, min_images=MIN_BATCH) -> list[dict]:
    """Single images whose leaf count lies far from the batch's (the module docstring's rule).

    counts: {image: leaf count}. Returns flags with ``image``, in the order of ``counts``.
    """
    if len(counts) < min_images:
        return []
    values = np.asarray(list(counts.values()), np.float64)
    median = float(np.median(values))
    mad = max(float(np.median(np.abs(values - median))), 1.0)
    return [_flag("count far from the batch", f"{_leaves(int(count))}; the batch median is {median:g} "
                  f"(MAD {mad:g})", image=name)
            for name, count in counts.items() if abs(count - median) >= jump and abs(count - median) > mads * mad]


def empty_outliers(images, min_fraction=MIN_AREA_FRACTION) -> list[dict]:
    """Near-empty images: ``images`` [{"name", "leaves", "area_fraction" (leaf pixels / image
    pixels, optional)}] -> flags with ``image``."""
    flags = []
    for image in images:
        leaves, fraction = image.get("leaves"), image.get("area_fraction")
        if leaves == 0:
            flags.append(_flag("near-empty image", "no leaf found", image=image["name"]))
        elif fraction is not None and fraction < min_fraction:
            flags.append(_flag("near-empty image", f"leaves cover {100 * fraction:.2f} % of the image "
                               f"(under {100 * min_fraction:g} %)", image=image["name"]))
    return flags


def flag_outliers(images=(), series=None, *, jump=JUMP, fall=FALL, mads=MADS, min_fraction=MIN_AREA_FRACTION):
    """Every flag of the module docstring's rules: near-empty images, then the series rules when
    ``series`` ({plant: [(frame, count), ...]}) is given, else the batch rule on ``images``'
    ``leaves``."""
    flags = empty_outliers(images, min_fraction)
    if series:
        flags += series_outliers(series, jump, fall)
    else:
        flags += batch_outliers({image["name"]: image["leaves"] for image in images if image.get("leaves") is not None},
                                mads, jump)
    return flags


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

def thumbnail_uri(path, size=THUMBNAIL_SIZE):
    """A ``data:image/jpeg`` URI of the image at ``path``, its longer side ``size`` px; returns
    (uri, width, height)."""
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=82, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), image.width, image.height


_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
         ".gif": "image/gif", ".webp": "image/webp"}


def _plot_uri(plot):
    """A plot (a path, or {"path" | "png": bytes, "caption"}) -> (data URI, caption)."""
    if isinstance(plot, dict):
        caption = plot.get("caption", "")
        if "png" in plot:
            return "data:image/png;base64," + base64.b64encode(plot["png"]).decode("ascii"), caption
        plot = plot["path"]
    else:
        caption = ""
    path = Path(plot)
    mime = _MIME.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii"), caption or path.stem.replace("_", " ")


def _href(path, out_dir):
    """A link from the report in ``out_dir`` to ``path``: relative, with URL escapes."""
    path = Path(path)
    if not path.is_absolute():
        path = out_dir / path
    relative = Path(os.path.relpath(path, out_dir)).as_posix()
    return urllib.parse.quote(relative)


def _text(value):
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _e(value):
    return html.escape(_text(value), quote=True)


_CSS = """
:root { --fg: #1d2a1f; --muted: #5b6b5e; --line: #d6dfd4; --accent: #2f7d3b; --flag: #c0392b; --bg: #fbfcf9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { padding: 18px 28px 12px; background: #eef4ea; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 6px; font-size: 22px; }
h2 { font-size: 17px; margin: 26px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
main { padding: 4px 28px 40px; max-width: 1400px; }
.muted { color: var(--muted); }
.counts { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0 0; padding: 0; list-style: none; }
.counts li { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
.counts b { font-size: 18px; margin-right: 4px; }
.counts li.flagged b { color: var(--flag); }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 0; font-size: 13px; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #eef4ea; position: sticky; top: 0; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button::after { content: " \\2195"; color: var(--muted); font-size: 11px; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; color: var(--accent); }
th[aria-sort="descending"] button::after { content: " \\25BC"; color: var(--accent); }
th button:focus-visible { outline: 2px solid var(--accent); }
tr.flagged td { background: #fdecea; }
.table-wrap { max-height: 70vh; overflow: auto; border: 1px solid var(--line); display: inline-block; max-width: 100%; }
.outliers td:first-child { color: var(--flag); font-weight: 600; white-space: nowrap; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots figure { margin: 0; background: #fff; border: 1px solid var(--line); padding: 6px; }
.plots img { max-width: 560px; width: 100%; height: auto; display: block; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(176px, 1fr)); gap: 10px; }
.gallery figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 4px; padding: 6px;
                  text-align: center; }
.gallery figure.flagged { border: 2px solid var(--flag); }
.gallery img { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: var(--muted); word-break: break-all; }
figcaption .flag { color: var(--flag); font-weight: 600; }
.missing { display: inline-block; width: 160px; height: 100px; line-height: 100px; background: #eee; color: #888; }
footer { padding: 12px 28px; color: var(--muted); font-size: 12px; }
"""

_JS = """
(function () {
  "use strict";
  var NUMBER = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i;
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function key(cell) {
    var text = (cell.getAttribute("data-sort") || cell.textContent).trim();
    if (text === "" || text.toLowerCase() === "nan") return {empty: true};
    if (NUMBER.test(text)) return {number: parseFloat(text)};
    return {text: text};
  }
  function compare(a, b) {
    if ("number" in a && "number" in b) return a.number - b.number;
    if ("number" in a) return -1;
    if ("number" in b) return 1;
    return collator.compare(a.text, b.text);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    Array.prototype.forEach.call(body.rows, function (row, index) { row.setAttribute("data-index", index); });
    Array.prototype.forEach.call(headers, function (th, column) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.map.call(body.rows, function (row) {
          return {row: row, key: key(row.cells[column]), index: +row.getAttribute("data-index")};
        });
        rows.sort(function (a, b) {
          if (a.key.empty || b.key.empty) {
            if (a.key.empty && b.key.empty) return a.index - b.index;
            return a.key.empty ? 1 : -1;
          }
          return (ascending ? 1 : -1) * compare(a.key, b.key) || a.index - b.index;
        });
        rows.forEach(function (item) { body.appendChild(item.row); });
      });
    });
  });
})();
"""


def _is_number(text):
    try:
        float(text)
        return text.strip().lower() not in ("nan", "inf", "-inf", "")
    except (TypeError, ValueError):
        return False


def _table(rows, columns, flagged_images=(), css_class="sortable", id_=None):
    head = "".join(f'<th scope="col" aria-sort="none"><button type="button">{_e(column)}</button></th>'
                   for column in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text = _text(row.get(column))
            cells.append(f'<td class="num">{html.escape(text)}</td>' if _is_number(text)
                         else f"<td>{html.escape(text)}</td>")
        flagged = ' class="flagged"' if _text(row.get("image")) in flagged_images else ""
        body.append(f"<tr{flagged}>{''.join(cells)}</tr>")
    ident = f' id="{_e(id_)}"' if id_ else ""
    return (f'<div class="table-wrap"><table class="{css_class}"{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def build_report(out_dir, *, title, images=(), table_rows=(), table_columns=None, plots=(), outliers=(),
                 settings=None, summary=None, table_title="Plants", note=None, max_images=MAX_IMAGES) -> str:
    """The page's HTML text (see :func:`write_report` for the arguments)."""
    out_dir = Path(out_dir)
    images, table_rows, outliers = list(images), list(table_rows), list(outliers)
    if table_columns is None:
        table_columns = list(dict.fromkeys(key for row in table_rows for key in row))
    flagged = {}
    for flag in outliers:
        if flag.get("image") is not None:
            flagged.setdefault(str(flag["image"]), []).append(flag["what"])
    shown = images
    if len(images) > max_images:
        room = max(0, max_images - sum(1 for image in images if str(image["name"]) in flagged))
        kept = []
        for image in images:
            if str(image["name"]) in flagged:
                kept.append(image)
            elif room > 0:
                kept.append(image)
                room -= 1
        shown = kept
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<header>\n<h1>{_e(title)}</h1>\n"]
    counts = dict(summary or {})
    counts.setdefault("flagged", len(outliers))
    parts.append('<ul class="counts">' + "".join(
        f'<li{" class=flagged" if name == "flagged" and value else ""}><b>{_e(value)}</b>{_e(name)}</li>'
        for name, value in counts.items()) + "</ul>\n")
    if settings:
        parts.append('<dl class="settings">' + "".join(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>"
                                                       for key, value in settings.items()) + "</dl>\n")
    parts.append("</header>\n<main>\n")
    if note:
        parts.append(f'<p class="muted">{_e(note)}</p>\n')

    parts.append(f'<section id="outliers"><h2>Flagged ({len(outliers)})</h2>\n')
    if outliers:
        rows = [{"what": f["what"], "image": f.get("image"), "plant": f.get("plant"), "detail": f.get("detail")}
                for f in outliers]
        parts.append(_table(rows, ["what", "image", "plant", "detail"], css_class="sortable outliers",
                            id_="outlier-table"))
    else:
        parts.append('<p class="muted">Nothing flagged: no count jumps, no plant lost, no near-empty image.</p>')
    parts.append("\n</section>\n")

    if plots:
        parts.append('<section id="growth"><h2>Growth curves</h2>\n<div class="plots">')
        for plot in plots:
            uri, caption = _plot_uri(plot)
            parts.append(f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')
        parts.append("</div>\n</section>\n")

    if table_rows:
        parts.append(f'<section id="table"><h2>{_e(table_title)} ({len(table_rows)} rows)</h2>\n'
                     '<p class="muted">Click a column header to sort; click again to reverse.</p>\n')
        parts.append(_table(table_rows, table_columns, flagged, id_="plant-table"))
        parts.append("\n</section>\n")

    if images:
        left_out = len(images) - len(shown)
        paths = {}
        for image in shown:
            overlay = image.get("overlay")
            if overlay is not None:
                path = Path(overlay) if Path(overlay).is_absolute() else out_dir / overlay
                if path.is_file():
                    paths[str(image["name"])] = path
        # Decoding large overlays is the slow part: a few threads (PIL lets go of the GIL).
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            thumbnails = dict(zip(paths, pool.map(thumbnail_uri, paths.values())))
        parts.append(f'<section id="overlays"><h2>Overlays ({len(images)})</h2>\n'
                     '<p class="muted">Click a thumbnail to open the overlay at full size.'
                     + (f" {left_out} images are not shown here (flagged ones always are); their overlays are "
                        "in the output folder." if left_out else "") + '</p>\n<div class="gallery">')
        for image in shown:
            name = str(image["name"])
            caption = [f"{_e(name)}"]
            if image.get("leaves") is not None:
                caption.append(_e(_leaves(image["leaves"])))
            if image.get("caption"):
                caption.append(_e(image["caption"]))
            for what in flagged.get(name, []):
                caption.append(f'<span class="flag">{_e(what)}</span>')
            if name in thumbnails:
                uri, width, height = thumbnails[name]
                picture = (f'<a href="{_e(_href(paths[name], out_dir))}"><img src="{uri}" width="{width}" height="{height}" '
                           f'alt="{_e(name)}"></a>')
            else:
                picture = '<span class="missing">no overlay</span>'
            css = ' class="flagged"' if name in flagged else ""
            parts.append(f"<figure{css}>{picture}<figcaption>{'<br>'.join(caption)}</figcaption></figure>")
        parts.append("</div>\n</section>\n")

    parts.append(f"</main>\n<footer>Written by leafseg on {_e(generated)}. One self-contained file: it opens "
                 "offline; the thumbnails link to the overlays beside it.</footer>\n"
                 f"<script>{_JS}</script>\n</body>\n</html>\n")
    return "".join(parts)


def write_report(out_dir, *, title, images=(), table_rows=(), table_columns=None, plots=(), outliers=(),
                 settings=None, summary=None, table_title="Plants", note=None, max_images=MAX_IMAGES,
                 name=REPORT_NAME) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    title: the page's title.
    images: [{"name", "overlay": path (relative to ``out_dir`` or absolute; missing or None: no
        thumbnail), "leaves": count or None, "caption": more text (optional)}], in display order.
        Each becomes a thumbnail linking to its overlay.
    table_rows: [{column: value}] the per-plant table (predict: plants.csv; track: growth.csv);
        table_columns: their order (default: the keys of the rows, in first-seen order). A row
        whose "image" is flagged is marked.
    plots: PNG (or JPEG, SVG) paths, or {"path" | "png": bytes, "caption"}: the growth curves.
    outliers: flags [{"image", "plant", "frame", "what", "detail"}] (:func:`flag_outliers`).
    settings: {name: value} shown under the title (weights, date, units, ...).
    summary: {name: count} shown as the page's counts ("images", "leaves", ...; "flagged" is
        added).
    note: a line of text above the sections. max_images: thumbnails at most (flagged ones first
    kept).
    """
    out_dir = Path(out_dir)
    text = build_report(out_dir, title=title, images=images, table_rows=table_rows, table_columns=table_columns,
                        plots=plots, outliers=outliers, settings=settings, summary=summary, table_title=table_title,
                        note=note, max_images=max_images)
    return write_text_atomic(out_dir / name, text)


# ---------------------------------------------------------------------------------------------
# From output folders
# ---------------------------------------------------------------------------------------------

def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _image_pixels(*paths):
    """Width x height of the first of ``paths`` that opens (its header only), or None."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                return image.width * image.height
        except (OSError, ValueError):
            continue
    return None


def _growth_png(series_values, ylabel, title):
    """A line per plant, values against dates: PNG bytes."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure   # (a Figure of its own: no pyplot, no GUI backend)

    figure = Figure(figsize=(5.6, 3.4), dpi=100)
    axes = figure.add_subplot()
    names = [str(plant) for plant in series_values]
    common = os.path.commonprefix(names) if len(names) > 1 else ""
    common = common[:max(common.rfind(sep) for sep in "-_ ") + 1] if common else ""   # whole words only
    for plant, points in series_values.items():
        points = [(when, value) for when, value in points if value is not None]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1.2,
                      label=str(plant)[len(common):].strip("-_ ") or str(plant))
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=11)
    axes.grid(alpha=0.3)
    if 1 < len(series_values) <= 12:
        axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _settings_of_predict(out_dir):
    from leafseg.inference.results import SETTINGS_FILE, STATE_DIR

    path = out_dir / STATE_DIR / SETTINGS_FILE
    settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    shown = {}
    for key in ("weights", "precision", "runtime", "mm_per_pixel", "plants", "grid", "tta", "coco_json"):
        if settings.get(key) is not None:
            shown[key] = settings[key] if not isinstance(settings[key], list) else "x".join(map(str, settings[key]))
    if "mm_per_pixel" not in shown:
        shown["units"] = "pixels"
    return shown, settings.get("label_suffix", "_label.png"), settings.get("mm_per_pixel")


def _when(path):
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_from_predict_output(out_dir, *, title=None, max_images=MAX_IMAGES) -> Path:
    """Build ``report.html`` from a ``leafseg predict`` output folder and return its path.

    Reads plants.csv (the table; leaf counts and rosette areas per image, which over the image's
    size, read from its label's header, give the share of it leaves cover), overlays/ (the
    thumbnails) and ``.predict/settings.json`` (the settings shown, the units). When every image
    name carries a date (``leafseg.measure.series``), the images form series (one per plant key
    and plant): growth curves are drawn and the series rules apply; otherwise the batch rule
    does. Raises FileNotFoundError without plants.csv.
    """
    from leafseg.measure.series import date_in_name, group_series

    out_dir = Path(out_dir)
    plants_csv = out_dir / "plants.csv"
    if not plants_csv.is_file():
        raise FileNotFoundError(f"{plants_csv} not found: {out_dir} is not the output folder of a finished "
                                "leafseg predict run")
    columns, rows = _read_csv(plants_csv)
    settings, label_suffix, mm_per_pixel = _settings_of_predict(out_dir)
    settings = {"predicted": _when(plants_csv), **settings}
    area_column = next((c for c in columns if c.startswith("rosette_area")), None)

    names = list(dict.fromkeys(row["image"] for row in rows))
    counts, areas = {name: 0 for name in names}, {name: 0.0 for name in names}
    # Leaf pixels per image: the plants' rosette areas (in px, or mm² over the pixel's area).
    pixel_area = 1.0 if area_column and area_column.endswith("_px") else (mm_per_pixel or 0) ** 2 or None
    for row in rows:
        name, leaves = row["image"], int(_number(row.get("leaf_count")) or 0)
        counts[name] += leaves
        area = _number(row.get(area_column)) if area_column and pixel_area else None
        if area is None and leaves == 0 and pixel_area:
            area = 0.0   # (a plant without leaves may have no area written)
        areas[name] = None if area is None or areas[name] is None else areas[name] + area / pixel_area
    images = []
    for name in names:
        overlay = f"overlays/{name}_overlay.png"
        pixels = _image_pixels(out_dir / "labels" / f"{name}{label_suffix}", out_dir / overlay)
        fraction = areas[name] / pixels if areas[name] is not None and pixels else None
        images.append({"name": name, "overlay": overlay, "leaves": counts[name], "area_fraction": fraction})

    series, plots = None, []
    if len(names) >= 2 and all(date_in_name(name) for name in names):
        groups = group_series(names)
        if any(len(frames) >= 2 for frames in groups.values()):
            by_image = {}
            for row in rows:
                by_image.setdefault(row["image"], {})[row.get("plant", "1")] = row
            plants = list(dict.fromkeys(row.get("plant", "1") for row in rows))
            series, count_lines, area_lines = {}, {}, {}
            for key, frames in groups.items():
                for plant in plants:
                    label = key if len(plants) == 1 else f"{key} {plant}"
                    found = [(when, name, by_image.get(name, {}).get(plant)) for when, name in frames]
                    series[label] = [(name, _number(row["leaf_count"]) if row else None) for _, name, row in found]
                    count_lines[label] = [(when, _number(row["leaf_count"]) if row else None)
                                          for when, _, row in found]
                    if area_column:
                        area_lines[label] = [(when, _number(row[area_column]) if row else None)
                                             for when, _, row in found]
            plots.append({"png": _growth_png(count_lines, "leaves", "Leaf count"), "caption": "leaf count per plant"})
            if area_column:
                unit = area_column.rsplit("_", 1)[-1].replace("mm2", "mm²")
                plots.append({"png": _growth_png(area_lines, f"rosette area ({unit})", "Rosette area"),
                              "caption": "rosette area per plant"})
    outliers = flag_outliers(images, series)
    summary = {"images": len(names), "plants": len(series) if series else len(rows), "leaves": sum(counts.values())}
    return write_report(out_dir, title=title or f"leafseg predict: {out_dir.resolve().name}", images=images,
                        table_rows=rows, table_columns=columns, plots=plots, outliers=outliers, settings=settings,
                        summary=summary, table_title="Plants (plants.csv)", max_images=max_images)


def _column(columns, *candidates):
    for candidate in candidates:
        for column in columns:
            if column == candidate or column.startswith(candidate):
                return column
    return None


def report_from_track_output(out_dir, *, title=None, max_images=MAX_IMAGES) -> Path:
    """Build ``report.html`` from a ``leafseg track`` output folder: growth.csv (the table and
    the series: a row per plant and frame with its leaf count), the PNG plots beside it or in
    ``plots/``, and the overlays found under the folder (``**/overlays/*_overlay.png``).
    ``leafseg track`` itself may call :func:`write_report` with what it holds instead."""
    out_dir = Path(out_dir)
    growth = out_dir / "growth.csv"
    if not growth.is_file():
        raise FileNotFoundError(f"{growth} not found: {out_dir} is not the output folder of a leafseg track run")
    columns, rows = _read_csv(growth)
    plant_col = _column(columns, "plant") or columns[0]
    frame_col = _column(columns, "frame", "image", "date")
    count_col = _column(columns, "leaf_count", "leaves", "count")
    series = {}
    for row in rows:
        series.setdefault(row[plant_col], []).append((row.get(frame_col, ""), _number(row.get(count_col))))
    outliers = series_outliers(series)
    plots = sorted(p for p in [*out_dir.glob("*.png"), *out_dir.glob("plots/*.png")])
    overlays = sorted(out_dir.glob("**/overlays/*_overlay.png"))
    images = [{"name": p.name[:-len("_overlay.png")], "overlay": p.relative_to(out_dir).as_posix()} for p in overlays]
    settings = {"tracked": _when(growth)}
    summary = {"plants": len(series), "frames": len(rows)}
    if (out_dir / "tracks.csv").is_file():
        _, tracks = _read_csv(out_dir / "tracks.csv")
        leaf_col = _column(list(tracks[0]) if tracks else [], "leaf_id", "leaf", "track")
        if leaf_col:
            summary["leaves tracked"] = len({(t.get(plant_col), t[leaf_col]) for t in tracks})
    return write_report(out_dir, title=title or f"leafseg track: {out_dir.resolve().name}", images=images,
                        table_rows=rows, table_columns=columns, plots=plots, outliers=outliers, settings=settings,
                        summary=summary, table_title="Growth (growth.csv)", max_images=max_images)
