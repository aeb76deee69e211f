"""Plotting only: instance overlays and loss curves (no model code, no leaf knowledge).

``draw_instances`` returns an RGB array (OpenCV drawing, fast enough for batch prediction);
``display_instances`` shows the same on a matplotlib axis, as Matterport's did;
``plot_history`` draws training curves from a Keras History dict or a CSV log.
"""
from __future__ import annotations

import colorsys
import functools
from pathlib import Path

import numpy as np

from mrcnn.fileio import atomic_path

__all__ = ["random_colors", "draw_instances", "draw_label", "display_instances", "save_image", "plot_history"]


def random_colors(count, seed=0, bright=True):
    """``count`` distinct RGB colours (uint8 [count, 3]): evenly spaced hues, shuffled by ``seed``."""
    value = 1.0 if bright else 0.7
    hues = np.arange(count) / max(count, 1)
    colors = np.array([colorsys.hsv_to_rgb(h, 1.0, value) for h in hues]).reshape(-1, 3)
    np.random.default_rng(seed).shuffle(colors)
    return np.round(colors * 255).astype(np.uint8)


def _mask_box(mask):
    """(row slice, column slice) of a bool mask's bounding box, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def draw_instances(image, masks, labels=None, colors=None, boxes=None, alpha=0.45, outline=True):
    """An overlay of instance masks on an image.

    image: [H, W, 3] uint8 RGB (a gray [H, W] image is expanded).
    masks: bool [H, W, N].
    labels: N strings drawn at each instance's centre (e.g. leaf ids; "" draws none), or None.
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
    # Each instance is drawn within its own box (the same pixels as over the whole image, at a
    # fraction of the cost when instances are small, as leaves are).
    crops = [_mask_box(masks[..., i]) for i in range(count)]
    for i, crop in enumerate(crops):
        if crop is not None:
            region, m = out[crop], masks[..., i][crop]
            region[m] = (1 - alpha) * region[m] + alpha * colors[i]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for i, crop in enumerate(crops):
        color = tuple(int(c) for c in colors[i])
        if outline and crop is not None:
            _draw_outline(out, masks[..., i][crop], crop, color)
        if boxes is not None:
            y1, x1, y2, x2 = (int(v) for v in boxes[i])
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 1)
        if labels is not None and crop is not None and str(labels[i]):
            _draw_centred_text(out, masks[..., i][crop], crop, str(labels[i]))
    return out


def _draw_outline(out, mask, crop, color):
    """The outer contour of ``mask`` (bool, the part of an instance's mask inside ``crop``, a
    (row slice, column slice) of ``out``) drawn on ``out`` in ``color``, 1 px."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE,
                                   offset=(crop[1].start, crop[0].start))
    cv2.drawContours(out, contours, -1, color, 1)


def _draw_centred_text(out, mask, crop, text):
    """``text`` in white on black on ``out`` at the pixel of ``mask`` (as for :func:`_draw_outline`)
    nearest its centroid, so that the text sits on the instance; its size follows ``out``'s."""
    import cv2

    ys, xs = np.nonzero(mask)
    ys, xs = ys + crop[0].start, xs + crop[1].start
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    scale = max(0.3, min(out.shape[:2]) / 900)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    origin = (int(xs[k] - tw / 2), int(ys[k] + th / 2))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


@functools.lru_cache(maxsize=8)
def _blend_table(alpha):
    """uint8 [256, 256]: the fill of :func:`draw_instances` for pixel value v (rows) under colour
    value c (columns), computed as it does (float32 (1 - alpha) * v + float64 alpha * c, rounded)."""
    pixel = np.repeat(np.arange(256, dtype=np.float32), 256)
    color = np.tile(np.arange(256, dtype=np.uint8), 256)
    table = np.empty(pixel.shape, np.float32)
    table[:] = (1 - alpha) * pixel + alpha * color
    return np.clip(np.rint(table), 0, 255).astype(np.uint8).reshape(256, 256)


def draw_label(image, label, labels=None, colors=None, alpha=0.45, outline=True):
    """:func:`draw_instances` for instances that do not overlap, given as a label image: the same
    overlay, pixel for pixel, as ``draw_instances(image, label[..., None] == ids, ...)`` with
    ids 1..N, without the [H, W, N] stack: the fill is one pass over the image, and each
    instance's outline and text are drawn from its own box.

    label: int [H, W], 0 = background, instance k at id k (1..N); N = ``label.max()`` unless
    ``colors`` or ``labels`` say more. labels, colors: per instance, as for draw_instances.
    """
    from scipy import ndimage

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    label = np.asarray(label)
    count = max(int(label.max(initial=0)), len(colors) if colors is not None else 0,
                len(labels) if labels is not None else 0)
    colors = random_colors(count) if colors is None else np.asarray(colors, dtype=np.uint8)
    crops = ndimage.find_objects(label, max_label=count) if count else []
    if image.dtype == np.uint8:  # the fill looked up in a table, within the box of all instances
        out = image[..., :3].copy()
        found = [crop for crop in crops if crop is not None]
        if found:
            box = tuple(slice(min(c[axis].start for c in found), max(c[axis].stop for c in found)) for axis in (0, 1))
            region, ids = out[box], label[box]
            inside = ids > 0
            region[inside] = _blend_table(float(alpha))[region[inside], colors[ids[inside] - 1]]
    else:
        out = image[..., :3].astype(np.float32)
        inside = label > 0
        # draw_instances' arithmetic per pixel: float32 (1 - alpha) * pixel + float64 alpha * colour
        out[inside] = (1 - alpha) * out[inside] + alpha * colors[label[inside] - 1]
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for i, crop in enumerate(crops):
        if crop is None:
            continue
        mask = label[crop] == i + 1
        if outline:
            _draw_outline(out, mask, crop, tuple(int(c) for c in colors[i]))
        if labels is not None and str(labels[i]):
            _draw_centred_text(out, mask, crop, str(labels[i]))
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
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR),
                           _fast_png(cv2)):
            raise OSError(f"could not write {path}")
    return Path(path)


def _fast_png(cv2):
    """imwrite's parameters for a photograph's PNG, for speed: Huffman coding only, after the "up"
    filter where OpenCV has it. On 500 px overlays: 6.2 ms instead of 7.6 ms, files 2% larger."""
    params = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    return params


def plot_history(history, path=None, title="Training losses", boundaries=(), notes=None):
    """Loss curves: one panel per loss (training and ``val_`` together), plus the learning rate.

    history: {"loss": [...], "val_loss": [...], ...} (Keras History.history or a CSV log read
        into columns); an "epoch" column, if present, is the x axis.
    boundaries: epochs where a stage began (drawn as vertical lines), or (epoch, label) pairs,
        the label (e.g. "heads -> all") written beside the line.
    notes: {key: text} written in that key's panel (e.g. why ``l2_loss`` jumps at a line).
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
            epoch, text = b if isinstance(b, (tuple, list)) else (b, None)
            ax.axvline(epoch, color="gray", linestyle="--", linewidth=0.8)
            if text:
                ax.annotate(text, (epoch, 1), xycoords=("data", "axes fraction"), xytext=(2, -2),
                            textcoords="offset points", fontsize=7, color="dimgray", va="top")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        if (notes or {}).get(key):  # below the axis, where it hides no curve
            import textwrap

            ax.set_xlabel("epoch\n" + textwrap.fill(notes[key], 62), fontsize=7, color="dimgray")
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


__all__ += ["plot_pr_curves", "plot_image_grid"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path, dpi=100):
    """Write a figure as PNG atomically and close it; returns the path."""
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


def plot_pr_curves(curves, path=None, title="Precision-recall"):
    """Precision-recall curves on one axis.

    curves: {legend label: (recalls [P], precisions [P])}, points in ranking order.
    path: write a PNG there atomically and close the figure; otherwise return the figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, (recalls, precisions) in curves.items():
        recalls, precisions = np.asarray(recalls, float), np.asarray(precisions, float)
        if recalls.size == 0:
            ax.plot([], [], label=f"{label}: no detections")
            continue
        # Start at recall 0 with the first point's precision: a curve of one point stays visible.
        ax.step(np.concatenate([[0.0], recalls]), np.concatenate([precisions[:1], precisions]), where="post",
                label=label, marker="." if len(recalls) < 30 else None)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig if path is None else _save_figure(fig, path)


def plot_image_grid(rows, path=None, row_titles=None, column_titles=None, title=None, cell_inches=3.0):
    """Images in a grid: one list of RGB arrays per row (e.g. prediction beside ground truth).

    row_titles: one string per row, shown above the row's first image; column_titles: one per
    column, shown above the first row. path: write a PNG atomically; otherwise return the figure.
    """
    plt = _pyplot()
    n_rows = max(1, len(rows))
    n_cols = max([len(r) for r in rows] + [1])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_inches * n_cols, cell_inches * n_rows + 0.4),
                             squeeze=False)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            axes[r, c].imshow(image)
            heading = []
            if r == 0 and column_titles:
                heading.append(column_titles[c])
            if c == 0 and row_titles:
                heading.append(row_titles[r])
            elif r == 0 and column_titles and row_titles:
                # the row title's lines: a long one runs on above this image, under its heading
                heading.extend([" "] * (str(row_titles[r]).count("\n") + 1))
            if heading:
                axes[r, c].set_title("\n".join(heading), fontsize=8, loc="left")
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    # Room at the top for the title's lines (tight_layout alone lets the first titles run into it).
    lines = title.count("\n") + 1 if title else 0
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 * lines / fig.get_figheight()))
    return fig if path is None else _save_figure(fig, path)


# ------------------------------------------------------------------ inspection figures
# Figures for the inspection notebooks. They are plain matplotlib Figures, not pyplot ones:
# creating them changes no global state (no backend switch, nothing left open), a notebook
# shows one as image/png when it is a cell's value, and ``fig.savefig(path)`` writes it.

__all__ += ["figure_grid", "show_images", "draw_boxes", "plot_anchors", "plot_anchor_targets", "plot_level_scores",
            "plot_activations", "plot_histograms", "plot_loss_comparison"]

# Colours of the anchor-target figures: positive, negative, refined (RGB).
POSITIVE_COLOR = (40, 220, 60)
NEGATIVE_COLOR = (230, 40, 40)
REFINED_COLOR = (40, 140, 255)


def figure_grid(count, cols=4, cell_inches=3.0, title=None):
    """A Figure with ``count`` axes in rows of ``cols``; returns (figure, list of the axes)."""
    from matplotlib.figure import Figure

    count = max(1, int(count))
    cols = max(1, min(int(cols), count))
    rows = -(-count // cols)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig, list(axes[:count])


def show_images(images, titles=None, cols=4, cell_inches=3.0, title=None, cmap="viridis", colorbar=True):
    """Images side by side, in rows of ``cols``.

    images: RGB uint8 [H, W, 3] or 2-D arrays (drawn with ``cmap``, with a colour bar when
        ``colorbar``).
    titles: one string per image, or None.
    Returns: the Figure.
    """
    images = [np.asarray(image) for image in images]
    fig, axes = figure_grid(len(images), cols, cell_inches, title)
    for i, (ax, image) in enumerate(zip(axes, images)):
        if image.ndim == 2:
            shown = ax.imshow(image, cmap=cmap, interpolation="nearest")
            if colorbar:
                fig.colorbar(shown, ax=ax, shrink=0.7)
        else:
            ax.imshow(image, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        ax.set_axis_off()
    return fig


def _rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.array(image[..., :3], dtype=np.uint8, order="C")  # a copy: drawing must not change the input


def _box_colors(colors, count):
    if colors is None:
        return random_colors(count)
    colors = np.asarray(colors, dtype=np.uint8)
    return np.broadcast_to(colors, (count, 3)) if colors.ndim == 1 else colors


def draw_boxes(image, boxes, colors=None, refined_boxes=None, labels=None, thickness=1, scale=1):
    """Boxes drawn on a copy of an image: anchors, proposals, detections and their refinements.

    image: [H, W, 3] uint8 RGB (a gray [H, W] image is expanded).
    boxes: [N, (y1, x1, y2, x2)] in pixels of ``image``, y2/x2 exclusive; floats are rounded
        and the parts outside the image are cut off.
    colors: one RGB colour for every box, or uint8 [N, 3]; default :func:`random_colors`.
    refined_boxes: None, or [N, 4] where each box moved to: the boxes are then drawn at half
        intensity, the refined boxes in full colour and a line joins their centres.
    labels: N strings written at the top-left corner of each (refined) box, or None.
    scale: integer factor to enlarge the image by first (nearest neighbour), so that boxes of
        a few pixels stay legible; the result is [H * scale, W * scale, 3].

    Returns: uint8 RGB image.
    """
    import cv2

    scale = int(scale)
    out = _rgb(image)
    if scale > 1:
        out = np.ascontiguousarray(np.repeat(np.repeat(out, scale, axis=0), scale, axis=1))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    colors = _box_colors(colors, len(boxes))

    def corners(box):
        y1, x1, y2, x2 = np.rint(np.asarray(box) * scale).astype(int)
        return (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1)

    final = boxes
    if refined_boxes is not None:
        final = np.asarray(refined_boxes, dtype=np.float64).reshape(-1, 4)
        if final.shape != boxes.shape:
            raise ValueError(f"refined_boxes {final.shape} must match boxes {boxes.shape}")
        for box, color in zip(boxes, colors):
            cv2.rectangle(out, *corners(box), tuple(int(c) // 2 for c in color), thickness)
    for i, (box, color) in enumerate(zip(final, colors)):
        color = tuple(int(c) for c in color)
        top_left, bottom_right = corners(box)
        cv2.rectangle(out, top_left, bottom_right, color, thickness)
        if refined_boxes is not None:
            start = np.rint((boxes[i, :2] + boxes[i, 2:]) / 2 * scale).astype(int)
            end = np.rint((box[:2] + box[2:]) / 2 * scale).astype(int)
            cv2.line(out, (int(start[1]), int(start[0])), (int(end[1]), int(end[0])), color, 1)
        if labels is not None:
            origin = (top_left[0] + 1, max(top_left[1] - 2, 8))
            cv2.putText(out, str(labels[i]), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.3, color, 1, cv2.LINE_AA)
    return out


def _level_slices(level_counts):
    ends = np.cumsum([int(c) for c in level_counts])
    return [slice(int(end - count), int(end)) for end, count in zip(ends, level_counts)]


def plot_anchors(image, anchors, level_counts, level_names=None, zoom=10, cell_inches=3.5, title=None):
    """The anchors of each pyramid level on an image, one panel per level.

    Each panel shows the centres of the level's anchors (dots) and, outlined, all anchor shapes
    at the position nearest the image centre. The titles give the level's anchor count, its
    positions and the shapes per position.

    image: [H, W, 3] RGB, the model's input size. anchors: [A, (y1, x1, y2, x2)] pixels, level by
    level (mrcnn.anchors order). level_counts: anchors per level, summing to A.
    zoom: show a square of ``zoom`` anchor sides around the centre (at most the whole image),
        so that small anchors stay visible; None shows the whole image on every panel.
    Returns: the Figure.
    """
    from matplotlib.patches import Rectangle

    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    if sum(int(c) for c in level_counts) != len(anchors):
        raise ValueError(f"level_counts sum to {sum(level_counts)} but there are {len(anchors)} anchors")
    names = list(level_names) if level_names is not None else [f"level {i}" for i in range(len(level_counts))]
    image = _rgb(image)
    height, width = image.shape[:2]
    fig, axes = figure_grid(len(level_counts), min(len(level_counts), 5), cell_inches, title)
    for ax, name, part in zip(axes, names, _level_slices(level_counts)):
        level = anchors[part]
        ax.imshow(image)
        y0, x0, y1, x1 = -0.5, -0.5, height - 0.5, width - 0.5
        if len(level):
            centres = (level[:, :2] + level[:, 2:]) / 2
            unique = np.unique(np.round(centres, 3), axis=0)
            shapes = len(level) // max(len(unique), 1)
            side = np.sqrt(np.mean((level[:, 2] - level[:, 0]) * (level[:, 3] - level[:, 1])))
            nearest = np.argmin(np.sum((centres - [height / 2, width / 2]) ** 2, axis=1))
            cy, cx = centres[nearest]
            if zoom:
                half = zoom * side / 2
                y0, x0 = max(y0, cy - half), max(x0, cx - half)
                y1, x1 = min(y1, cy + half), min(x1, cx + half)
            seen = unique[(unique[:, 0] >= y0) & (unique[:, 0] <= y1) & (unique[:, 1] >= x0) & (unique[:, 1] <= x1)]
            ys, xs = np.unique(seen[:, 0]), np.unique(seen[:, 1])
            step = max(1, int(np.ceil(max(len(ys), len(xs), 1) / 40)))
            shown = np.isin(seen[:, 0], ys[::step]) & np.isin(seen[:, 1], xs[::step])
            ax.scatter(seen[shown, 1], seen[shown, 0], s=3, c="white", linewidths=0)
            at_centre = np.flatnonzero(np.all(np.isclose(centres, centres[nearest]), axis=1))
            for k, (b_y1, b_x1, b_y2, b_x2) in enumerate(level[at_centre]):
                ax.add_patch(Rectangle((b_x1 - 0.5, b_y1 - 0.5), b_x2 - b_x1, b_y2 - b_y1, fill=False,
                                       linewidth=1.5, edgecolor=f"C{k % 10}"))
            view = "" if (y0, x0, y1, x1) == (-0.5, -0.5, height - 0.5, width - 0.5) else \
                f", view {y1 - y0:.0f}x{x1 - x0:.0f}"
            ax.set_title(f"{name}: {len(level):,} anchors\n{len(unique):,} positions x {shapes}, "
                         f"side {side:.0f} px{view}", fontsize=9)
        else:
            ax.set_title(f"{name}: no anchors", fontsize=9)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_axis_off()
    return fig


def plot_anchor_targets(image, anchors, match, refined=None, scale=1, cell_inches=4.0, title=None):
    """Anchors labelled for RPN training: positives (with their refinement) and negatives.

    image: [H, W, 3] RGB. anchors: [A, 4] pixels. match: [A] 1 positive, -1 negative, 0 neutral.
    refined: None, or [P, 4]: the positive anchors (in anchor order) moved by their target
        deltas, i.e. the ground-truth boxes they regress to.
    scale: enlarge the image by this integer factor (see :func:`draw_boxes`).
    Returns: the Figure (positives | negatives).
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    match = np.asarray(match).reshape(-1)
    positives, negatives = anchors[match == 1], anchors[match == -1]
    neutral = int(np.count_nonzero(match == 0))
    left = draw_boxes(image, positives, POSITIVE_COLOR, scale=scale)
    if refined is not None:
        # ``left`` is already enlarged: scale the refined boxes instead of the image.
        left = draw_boxes(left, np.asarray(refined, dtype=np.float64).reshape(-1, 4) * int(scale), REFINED_COLOR)
    right = draw_boxes(image, negatives, NEGATIVE_COLOR, scale=scale)
    refined_text = " (green), refined to their targets (blue)" if refined is not None else ""
    return show_images([left, right], [f"{len(positives)} positive anchors{refined_text}",
                                       f"{len(negatives)} negative anchors ({neutral:,} neutral not drawn)"],
                       cols=2, cell_inches=cell_inches, title=title)


def plot_level_scores(scores, level_shapes, anchors_per_position, level_names=None, top_k=None, cell_inches=3.0,
                      title=None):
    """Per-anchor scores as one map per pyramid level, plus their histogram.

    scores: [A] one score per anchor (e.g. the RPN foreground probability), level by level,
        then position (row-major), then shape (mrcnn.anchors order).
    level_shapes: [levels, (rows, cols)] anchor positions per level.
    anchors_per_position: shapes at each position (e.g. 3 ratios).
    top_k: None, or a count: the histogram marks the score of the top_k-th anchor.
    Each map shows, per position, the highest score of its anchors.
    Returns: the Figure.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    counts = [int(r) * int(c) * int(anchors_per_position) for r, c in level_shapes]
    if sum(counts) != len(scores):
        raise ValueError(f"level_shapes x anchors_per_position give {sum(counts)} anchors but there are "
                         f"{len(scores)} scores")
    names = list(level_names) if level_names is not None else [f"level {i}" for i in range(len(counts))]
    fig, axes = figure_grid(len(counts) + 1, len(counts) + 1, cell_inches, title)
    vmax = scores.max() if scores.size else 1.0
    for ax, name, (rows, cols), part in zip(axes, names, level_shapes, _level_slices(counts)):
        level_map = scores[part].reshape(int(rows), int(cols), int(anchors_per_position)).max(axis=-1)
        shown = ax.imshow(level_map, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name} ({rows}x{cols}): max {level_map.max():.3f}", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[:-1], shrink=0.7)
    hist = axes[-1]
    hist.hist(scores, bins=50, color="gray", log=True)
    if top_k is not None and 0 < top_k <= len(scores):
        cut = np.sort(scores)[-int(top_k)]
        hist.axvline(cut, color="C3", linestyle="--", label=f"top {int(top_k):,}: >= {cut:.3g}")
        hist.legend(fontsize=7)
    hist.set_title(f"all {len(scores):,} scores", fontsize=9)
    hist.set_xlabel("score")
    return fig


def plot_activations(activations, channels=6, cell_inches=1.8, title=None):
    """Feature maps of some layers: per layer, the mean over channels and the most active channels.

    activations: {name: [H, W, C]} (one image; e.g. MaskRCNN.run_graph outputs without the batch axis).
    channels: how many channels to show per layer, those of highest mean activation.
    Returns: the Figure, one row per layer.
    """
    names = list(activations)
    cols = int(channels) + 1
    fig, axes = figure_grid(len(names) * cols, cols, cell_inches, title)
    for row, name in enumerate(names):
        value = np.asarray(activations[name], dtype=np.float32)
        if value.ndim == 4 and value.shape[0] == 1:
            value = value[0]
        if value.ndim != 3:
            raise ValueError(f"activation {name!r} has shape {value.shape}; expected [H, W, C]")
        top = np.argsort(-value.mean(axis=(0, 1)), kind="stable")[: cols - 1]
        panels = [("mean of %d channels" % value.shape[-1], value.mean(axis=-1))]
        panels += [(f"channel {c}", value[..., c]) for c in top]
        for col in range(cols):
            ax = axes[row * cols + col]
            ax.set_axis_off()
            if col < len(panels):
                label, image = panels[col]
                ax.imshow(image, cmap="viridis", interpolation="nearest")
                heading = f"{name} {value.shape[0]}x{value.shape[1]}x{value.shape[2]}\n" if col == 0 else ""
                ax.set_title(heading + label, fontsize=7, loc="left")
    return fig


def plot_histograms(arrays, cols=4, bins=60, cell_inches=2.8, title=None):
    """One histogram per array, titled with its name, shape, mean and standard deviation.

    arrays: {name: array of any shape} (e.g. the weights of each layer).
    Returns: the Figure.
    """
    names = list(arrays)
    fig, axes = figure_grid(len(names), cols, cell_inches, title)
    for ax, name in zip(axes, names):
        values = np.asarray(arrays[name], dtype=np.float64)
        finite = values[np.isfinite(values)]
        ax.hist(finite.ravel(), bins=bins, color="C0")
        shape = "x".join(str(s) for s in values.shape) or "scalar"
        stats = f"mean {finite.mean():.3g}, std {finite.std():.3g}" if finite.size else "no finite values"
        ax.set_title(f"{name}\n{shape}: {stats}", fontsize=7, loc="left")
        ax.tick_params(labelsize=6)
    return fig


_NOT_CURVES = ("epoch", "lr", "learning_rate", "time")


def plot_loss_comparison(histories, keys=None, boundaries=None, spans=None, log_scale=False, cols=4,
                         cell_inches=3.2, title=None):
    """Training curves of one or several runs overlaid: one panel per loss, plus the learning rate.

    histories: {run label: {column: [value per epoch]}} with an "epoch" column (else 1, 2, ...);
        a ``val_<key>`` column is drawn dashed beside ``<key>``; NaN values are gaps.
    keys: the panels' columns; default "loss" first, then every other column that is not a
        ``val_`` column, the epoch, the time or the learning rate.
    boundaries: {run label: [epochs]} where a stage ended (dotted vertical lines in the run's colour).
    spans: {run label: [(first epoch, last epoch)]} shaded on every panel (e.g. plateaus).
    log_scale: logarithmic loss axes. The learning rate ("learning_rate" or "lr") gets its own
        panel, always logarithmic.
    Returns: the Figure.
    """
    histories = dict(histories)
    if keys is None:
        seen = []
        for history in histories.values():
            seen += [k for k in history if not k.startswith("val_") and k not in _NOT_CURVES and k not in seen]
        keys = sorted(seen, key=lambda k: k != "loss")
    rate_keys = [k for k in ("learning_rate", "lr") if any(k in h for h in histories.values())]
    panels = list(keys) + rate_keys[:1]
    fig, axes = figure_grid(len(panels), cols, cell_inches, title)
    plotted = {key: [] for key in panels}
    for i, (label, history) in enumerate(histories.items()):
        color = f"C{i % 10}"
        for ax, key in zip(axes, panels):
            for column, style in ((key, "-"), (f"val_{key}", "--")):
                if column not in history:
                    continue
                values = np.asarray(history[column], dtype=np.float64)
                plotted[key].append(values)
                epochs = np.asarray(history.get("epoch", np.arange(1, len(values) + 1)), dtype=np.float64)
                is_rate = key in rate_keys
                name = f"{label} {'validation' if style == '--' else 'training'}" if not is_rate else label
                ax.plot(epochs[: len(values)], values, style, color=color, marker="o", markersize=2.5, label=name)
            for epoch in (boundaries or {}).get(label, ()):
                ax.axvline(epoch, color=color, linestyle=":", linewidth=1.2)
            for first, last in (spans or {}).get(label, ()):
                ax.axvspan(first, last, color=color, alpha=0.12, linewidth=0)
    for ax, key in zip(axes, panels):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        values = np.concatenate(plotted[key] or [[]])
        values = values[np.isfinite(values)]
        # A logarithmic axis needs positive values (a loss can be 0 when nothing was scored).
        if (key in rate_keys or log_scale) and values.size and values.min() > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if axes:
        axes[0].legend(fontsize=6)
    return fig
