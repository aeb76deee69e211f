"""Plotting only: instance overlays and loss curves (no model code, no leaf knowledge).

``draw_instances`` returns an RGB array (OpenCV drawing, fast enough for batch prediction);
``display_instances`` shows the same on a matplotlib axis, as Matterport's did;
``plot_history`` draws training curves from a Keras History dict or a CSV log.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from mrcnn.fileio import atomic_path

__all__ = ["random_colors", "draw_instances", "display_instances", "save_image", "plot_history"]


def random_colors(count, seed=0, bright=True):
    """``count`` distinct RGB colours (uint8 [count, 3]): evenly spaced hues, shuffled by ``seed``."""
    value = 1.0 if bright else 0.7
    hues = np.arange(count) / max(count, 1)
    colors = np.array([colorsys.hsv_to_rgb(h, 1.0, value) for h in hues]).reshape(-1, 3)
    np.random.default_rng(seed).shuffle(colors)
    return np.round(colors * 255).astype(np.uint8)


def draw_instances(image, masks, labels=None, colors=None, boxes=None, alpha=0.45, outline=True):
    """An overlay of instance masks on an image.

    image: [H, W, 3] uint8 RGB (a gray [H, W] image is expanded).
    masks: bool [H, W, N].
    labels: N strings drawn at each instance's centre (e.g. leaf ids), or None.
    colors: uint8 [N, 3] RGB, default :func:`random_colors`.
    boxes: int [N, (y1, x1, y2, x2)] to draw as rectangles, or None.
    alpha: opacity of the mask fill; outline: draw each mask's contour in its colour.

    Returns: uint8 [H, W, 3] RGB.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    out = image[..., :3].astype(np.float32).copy()
    masks = np.asarray(masks, dtype=bool)
    count = masks.shape[-1] if masks.ndim == 3 else 0
    colors = random_colors(count) if colors is None else np.asarray(colors, dtype=np.uint8)
    for i in range(count):
        out[masks[..., i]] = (1 - alpha) * out[masks[..., i]] + alpha * colors[i]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for i in range(count):
        color = tuple(int(c) for c in colors[i])
        if outline:
            contours, _ = cv2.findContours(masks[..., i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, color, 1)
        if boxes is not None:
            y1, x1, y2, x2 = (int(v) for v in boxes[i])
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 1)
        if labels is not None and masks[..., i].any():
            ys, xs = np.nonzero(masks[..., i])
            # The pixel of the mask nearest its centroid, so the label sits on the instance.
            k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            text = str(labels[i])
            scale = max(0.3, min(image.shape[:2]) / 900)
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            origin = (int(xs[k] - tw / 2), int(ys[k] + th / 2))
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="", ax=None, colors=None):
    """Matterport's display_instances: the overlay with "class score" labels on a matplotlib axis."""
    import matplotlib.pyplot as plt

    labels = [f"{class_names[c]} {s:.2f}" if scores is not None else class_names[c]
              for c, s in zip(class_ids, scores if scores is not None else [None] * len(class_ids))]
    if ax is None:
        _, ax = plt.subplots(1, figsize=(8, 8))
    ax.imshow(draw_instances(image, masks, labels=labels, colors=colors, boxes=boxes))
    ax.set_title(title)
    ax.axis("off")
    return ax


def save_image(image, path):
    """Write an RGB uint8 image as PNG atomically (a temp file in the same folder, then rename)."""
    import cv2

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    return Path(path)


def plot_history(history, path=None, title="Training losses", boundaries=()):
    """Loss curves: one panel per loss (training and ``val_`` together), plus the learning rate.

    history: {"loss": [...], "val_loss": [...], ...} (Keras History.history or a CSV log read
        into columns); an "epoch" column, if present, is the x axis.
    boundaries: epochs where a stage began (drawn as vertical lines).
    path: write a PNG there atomically and close the figure; otherwise return the figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in history if not k.startswith("val_") and k not in ("epoch", "lr", "learning_rate")]
    rate_key = next((k for k in ("learning_rate", "lr") if k in history), None)
    panels = keys + ([rate_key] if rate_key else [])
    cols = min(4, max(1, len(panels)))
    rows = int(np.ceil(len(panels) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        values = np.asarray(history[key], dtype=float)
        epochs = np.asarray(history.get("epoch", np.arange(1, len(values) + 1)), dtype=float)
        # Markers, so that a run of one or two epochs still shows its points.
        ax.plot(epochs[: len(values)], values, marker="o", markersize=3, label="train" if key != rate_key else key)
        if f"val_{key}" in history:
            val = np.asarray(history[f"val_{key}"], dtype=float)
            ax.plot(epochs[: len(val)], val, marker="o", markersize=3, label="validation")
        for b in boundaries:
            ax.axvline(b, color="gray", linestyle="--", linewidth=0.8)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        if key != rate_key:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    if path is None:
        return fig
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
