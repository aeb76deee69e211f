"""A small predict-like output folder, written without a model: what leafseg predict leaves
(overlays/, labels/, plants.csv, .predict/settings.json) for a few dated photographs of two plants."""
import json

import numpy as np
from PIL import Image, ImageDraw

from leafseg.data.masks import save_indexed_png
from leafseg.measure.metrics import write_csv

# (image name, leaf count): plant "tray" on five days (a count that jumps on day 3), plant "pot"
# on five days (found on day 4, gone on day 5), and "empty" (no leaf).
FRAMES = [("tray_2026_01_01", 4), ("tray_2026_01_02", 5), ("tray_2026_01_03", 11), ("tray_2026_01_04", 6),
          ("tray_2026_01_05", 7), ("pot_2026_01_01", 2), ("pot_2026_01_02", 3), ("pot_2026_01_03", 3),
          ("pot_2026_01_04", 4), ("pot_2026_01_05", 0)]
COLUMNS = ["image", "file", "plant", "leaf_count", "rosette_area_px", "compactness"]
SIZE = (320, 240)


def leaf_label(count, size=SIZE, radius=18):
    """[H, W] uint8, ``count`` discs on a ring, leaf k = k."""
    width, height = size
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    for k in range(count):
        angle = 2 * np.pi * k / max(count, 1)
        x, y = width / 2 + 70 * np.cos(angle), height / 2 + 70 * np.sin(angle)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=k + 1)
    return np.asarray(image)


def make_predict_output(out, frames=FRAMES, radius=18, mm_per_pixel=None):
    """Write the folder (areas in mm² with ``mm_per_pixel``); returns the plants.csv rows."""
    rows = []
    for name, count in frames:
        label = leaf_label(count, radius=radius)
        save_indexed_png(label, out / "labels" / f"{name}_label.png")
        rgb = np.zeros((*label.shape, 3), np.uint8)
        rgb[...] = (90, 70, 50)
        rgb[label > 0] = (60, 170, 70)
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(out / "overlays" / f"{name}_overlay.png")
        area = int(np.count_nonzero(label))
        rows.append({"image": name, "file": f"photos/{name}.png", "plant": "1", "leaf_count": count,
                     "rosette_area_px": area if mm_per_pixel is None else round(area * mm_per_pixel ** 2, 2),
                     "compactness": round(0.5 + 0.01 * count, 4)})
    columns = COLUMNS if mm_per_pixel is None else [c.replace("_px", "_mm2") for c in COLUMNS]
    if mm_per_pixel is not None:
        rows = [{c.replace("_px", "_mm2"): v for c, v in row.items()} for row in rows]
    write_csv(rows, out / "plants.csv", columns)
    (out / ".predict").mkdir(parents=True, exist_ok=True)
    (out / ".predict" / "settings.json").write_text(json.dumps(
        {"version": 1, "weights": "sha256:0123abcd", "config": "NAME: leaf\n", "precision": "float32",
         "mm_per_pixel": mm_per_pixel, "coco_json": None, "label_suffix": "_label.png", "plants": "auto", "grid": None}))
    return rows
