"""Numpy reference maths with Matterport's `mrcnn.utils` names, arguments and results.

Boxes are (y1, x1, y2, x2) in pixels with y2 and x2 exclusive: a box covering rows
2..4 has y1 = 2, y2 = 5, so its height is y2 - y1. Box deltas are
(dy, dx, log(dh), log(dw)): the centre shift in units of the box's size and the log
of the size ratio. Masks are [height, width, instances] arrays, one channel per
instance.

This module imports neither TensorFlow nor Keras, so that data tools and tests
start quickly; the graph-side versions of this maths live in `mrcnn.boxes`.
"""
import numpy as np
import skimage.transform
import skimage.util

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors
# Matterport's names for the normalised-box conversions, defined in mrcnn.boxcoords.
from mrcnn.boxcoords import denorm_boxes, norm_boxes
from mrcnn.config import RESIZE_MODES
# Matterport kept the Dataset class in utils; scripts still call utils.Dataset.
from mrcnn.dataset import Dataset

__all__ = [
    "Dataset",
    "extract_bboxes", "compute_iou", "compute_overlaps", "compute_overlaps_masks",
    "non_max_suppression", "suppress_covered_masks", "apply_box_deltas", "box_refinement",
    "resize", "resize_image", "resize_mask", "minimize_mask", "expand_mask", "unmold_mask",
    "generate_anchors", "generate_pyramid_anchors",
    "norm_boxes", "denorm_boxes", "trim_zeros",
    "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
]



############################################################
#  Bounding boxes
############################################################

def extract_bboxes(mask):
    """Bounding boxes of instance masks.

    mask: [height, width, num_instances], bool (or 0/1).

    Returns: int32 [num_instances, (y1, x1, y2, x2)], y2/x2 exclusive, so a mask that
    touches the bottom or right edge has y2 == height or x2 == width. Empty masks
    (which resizing or cropping can produce) get the box (0, 0, 0, 0).
    """
    mask = np.asarray(mask)
    height, width, count = mask.shape
    if mask.size == 0:
        return np.zeros([count, 4], dtype=np.int32)
    cols = np.any(mask, axis=0)  # [W, N]
    # np.any over the middle axis of a [H, W, N] array is slow (strided); folding the width in
    # halves with logical OR gives the same rows several times faster.
    folded = mask.astype(bool, copy=False)
    while folded.shape[1] > 1:
        half = folded.shape[1] // 2
        merged = folded[:, :half] | folded[:, half:2 * half]
        if folded.shape[1] % 2:
            merged[:, 0] |= folded[:, -1]
        folded = merged
    rows = folded[:, 0]  # [H, N]
    # argmax finds the first True; on the reversed axis it finds the last one.
    y1 = np.argmax(rows, axis=0)
    y2 = height - np.argmax(rows[::-1], axis=0)
    x1 = np.argmax(cols, axis=0)
    x2 = width - np.argmax(cols[::-1], axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)  # [N, 4]
    boxes[~np.any(rows, axis=0)] = 0
    return boxes


def _areas(boxes):
    """[N, (y1, x1, y2, x2)] -> [N] areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _safe_divide(numerator, denominator):
    """numerator / denominator, 0 where the denominator is 0 (IoU of empty shapes)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape))
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box with each of a set of boxes.

    box: [(y1, x1, y2, x2)].
    boxes: [N, (y1, x1, y2, x2)].
    box_area: area of `box`; boxes_area: [N] areas of `boxes`. They are passed in so
        that a caller comparing many boxes computes each area once.

    Returns: float64 [N]. Pairs whose union is empty (zero-area boxes) get 0.
    """
    boxes = np.asarray(boxes)
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    union = box_area + np.asarray(boxes_area) - intersection
    return _safe_divide(intersection, union)


def compute_overlaps(boxes1, boxes2):
    """IoU of every pair of boxes.

    boxes1: [N, (y1, x1, y2, x2)]; boxes2: [M, (y1, x1, y2, x2)].

    Returns: float64 [N, M]; 0 for pairs whose union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    b1 = boxes1[:, np.newaxis, :]  # [N, 1, 4]
    b2 = boxes2[np.newaxis, :, :]  # [1, M, 4]
    height = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    width = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    intersection = height * width  # [N, M]
    union = _areas(boxes1)[:, np.newaxis] + _areas(boxes2)[np.newaxis, :] - intersection
    return _safe_divide(intersection, union)


def compute_overlaps_masks(masks1, masks2):
    """IoU of every pair of masks.

    masks1: [height, width, N]; masks2: [height, width, M]; bool, or float
        thresholded at 0.5.

    Returns: float64 [N, M] (zeros of that shape when N or M is 0); 0 for two empty
    masks.
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    n, m = masks1.shape[-1], masks2.shape[-1]
    if n == 0 or m == 0:
        return np.zeros((n, m))
    masks1 = (masks1 > 0.5).reshape(-1, n).astype(np.float32)  # [H*W, N]
    masks2 = (masks2 > 0.5).reshape(-1, m).astype(np.float32)  # [H*W, M]
    area1 = masks1.sum(axis=0, dtype=np.float64)
    area2 = masks2.sum(axis=0, dtype=np.float64)
    # float32 sums of 0/1 are exact below 2**24 pixels per mask.
    intersections = (masks1.T @ masks2).astype(np.float64)  # [N, M]
    union = area1[:, np.newaxis] + area2[np.newaxis, :] - intersections
    return _safe_divide(intersections, union)


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    boxes: [N, (y1, x1, y2, x2)].
    scores: [N] box scores.
    threshold: a box is dropped when its IoU with a kept, higher-scoring box is
        greater than this.

    Returns: int32 [K] indices of the kept boxes, highest score first (empty when N
    is 0). Equal scores keep their input order.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores)
    areas = _areas(boxes)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


def suppress_covered_masks(masks, class_ids, scores, threshold):
    """Greedy suppression of duplicate masks, the mask counterpart of :func:`non_max_suppression`.

    In descending score order (equal scores in input order), a detection is dropped when more
    than ``threshold`` of its mask's pixels lie under the union of the masks of the detections
    of its class kept before it. A neighbour whose box overlaps a kept box but whose mask lies
    mostly beside it stays; a second mask of the same object goes.

    masks: bool [H, W, N]; class_ids: [N]; scores: [N]; threshold: a number in [0, 1).
    Returns: bool [N], True for the detections kept, in input order. An empty mask is kept.
    """
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[-1]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    flat = np.moveaxis(masks, -1, 0).reshape(n, -1)
    areas = np.count_nonzero(flat, axis=1).astype(np.float64)
    unions = {}
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        union = unions.get(int(class_ids[i]))
        covered = 0 if union is None else np.count_nonzero(flat[i] & union)
        if covered <= float(threshold) * areas[i]:
            keep[i] = True
            unions[int(class_ids[i])] = flat[i].copy() if union is None else union | flat[i]
    return keep


def suppress_covered_crops(crops, boxes, class_ids, scores, threshold, image_shape):
    """:func:`suppress_covered_masks` for masks given as their crops: ``crops[i]`` bool
    [y2 - y1, x2 - x1], the mask of detection i inside its box ``boxes[i]`` = (y1, x1, y2, x2)
    (pixels of an image of ``image_shape``; None for an empty box), all False outside it. The same
    result, with each detection's work confined to its box instead of the whole image.
    Returns: bool [N], True for the detections kept, in input order.
    """
    n = len(crops)
    keep = np.zeros(n, dtype=bool)
    unions = {}
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        y1, x1, y2, x2 = (int(v) for v in boxes[i][:4])
        crop = np.zeros((0, 0), bool) if crops[i] is None else np.asarray(crops[i], dtype=bool)
        if not crop.size:  # an empty mask is kept, as by suppress_covered_masks
            keep[i] = True
            continue
        union = unions.get(int(class_ids[i]))
        covered = 0 if union is None else np.count_nonzero(crop & union[y1:y2, x1:x2])
        if covered <= float(threshold) * np.count_nonzero(crop):
            keep[i] = True
            if union is None:
                union = unions[int(class_ids[i])] = np.zeros(tuple(image_shape[:2]), dtype=bool)
            union[y1:y2, x1:x2] |= crop
    return keep


def apply_box_deltas(boxes, deltas):
    """Move and resize boxes by deltas; the inverse of :func:`box_refinement`.

    boxes: [N, (y1, x1, y2, x2)].
    deltas: [N, (dy, dx, log(dh), log(dw))], already multiplied by the STD_DEV the
        network's outputs are divided by.

    Returns: float32 [N, (y1, x1, y2, x2)].
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas that move and resize each box onto its ground-truth box.

    box: [N, (y1, x1, y2, x2)]; gt_box: [N, (y1, x1, y2, x2)]; both of positive
        area (raises ValueError otherwise: the log of a zero size has no meaning).

    Returns: float32 [N, (dy, dx, log(dh), log(dw))], not divided by any STD_DEV.
    """
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    for name, h, w in (("box", height, width), ("gt_box", gt_height, gt_width)):
        bad = np.flatnonzero((h <= 0) | (w <= 0))
        if bad.size:
            raise ValueError(f"box_refinement: {name} rows {bad.tolist()} have zero or "
                             f"negative height or width; expected boxes of positive area")
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1)


############################################################
#  Images and masks
############################################################

def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """`skimage.transform.resize` with Matterport's defaults (no anti-aliasing).

    Bool images are resized as float32 0/1, because scikit-image no longer
    interpolates bool images; threshold the result to get a mask back.

    Bilinear resizing with a constant border and no anti-aliasing (the defaults: what molding an
    image and pasting a mask do) is computed here in numpy (:func:`_resize_bilinear`), with
    scikit-image's result bit for bit and several times faster (scipy's zoom took 28 ms to mold a
    500 px photograph and 1-2 ms to paste each 28 x 28 mask); anything else goes to scikit-image.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    if (order == 1 and mode == "constant" and not anti_aliasing and image.ndim in (2, 3)
            and image.dtype != np.float16 and len(output_shape) in (2, image.ndim)
            and tuple(output_shape[2:]) == image.shape[2:len(output_shape)] and image.size
            and all(int(side) > 0 for side in output_shape[:2])):
        return _resize_bilinear(image, int(output_shape[0]), int(output_shape[1]), cval, clip, preserve_range)
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def _linear_taps(size_in, size_out):
    """Bilinear taps along one axis as scipy.ndimage's grid-mode zoom computes them: for each
    output pixel, the index of its first neighbour in the input padded by one pixel on each side,
    and the two weights (float64 [size_out] each)."""
    position = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    low = np.floor(position)
    w0 = 1.0 - (position - low)
    return low.astype(np.intp) + 1, w0, 1.0 - w0


_RESIZE_BLOCK_BYTES = 1 << 18  # rows of float64 output resized at a time (256 KiB: in a core's L2)


def _resize_bilinear(image, height, width, cval=0, clip=True, preserve_range=False):
    """``skimage.transform.resize(image, (height, width), order=1, mode="constant", cval=cval,
    clip=clip, preserve_range=preserve_range, anti_aliasing=False)`` for [h, w] or [h, w, C].

    The same arithmetic as scipy.ndimage's order-1 zoom (float64, the four neighbours' terms
    summed in its order, samples beyond the edges reading ``cval``), the same float conversion
    before and clipping after; mrcnn.transform's graph resize is written the same way. The
    neighbours are gathered in the image's own dtype and only they are made float64 (the same
    values: an integer or float32 is exact in float64), so no float64 copy of the whole image
    is made.
    """
    if image.dtype.char in "df":
        dtype = image.dtype
    elif preserve_range:
        dtype = np.dtype(np.float64)  # skimage's float type for integer images
    else:
        image = skimage.util.img_as_float(image)
        dtype = image.dtype
    if image.dtype.kind in "iu" and not (float(cval).is_integer()
                                         and np.iinfo(image.dtype).min <= cval <= np.iinfo(image.dtype).max):
        image = image.astype(np.float64)  # (a border value the integer type cannot hold)
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="constant", constant_values=cval)
    rows, wy0, wy1 = _linear_taps(image.shape[0], height)
    cols, wx0, wx1 = _linear_taps(image.shape[1], width)
    channels = (1,) * (image.ndim - 2)
    wy0, wy1 = wy0.reshape((-1, 1) + channels), wy1.reshape((-1, 1) + channels)
    wx0, wx1 = wx0.reshape((1, -1) + channels), wx1.reshape((1, -1) + channels)
    left, right = padded[:, cols], padded[:, cols + 1]  # (the columns gathered once, in the image's dtype)
    # out = (top-left * wy0) * wx0 + (top-right * wy0) * wx1 + ..., in float64, a block of rows
    # at a time so that the two float64 buffers stay in the cache
    out = np.empty((height, width) + image.shape[2:], np.float64)
    step = max(1, _RESIZE_BLOCK_BYTES // max(1, out[0].nbytes))
    value = np.empty((min(step, height),) + out.shape[1:], np.float64)
    for start in range(0, height, step):
        block, buffer = slice(start, min(start + step, height)), value[:min(step, height - start)]
        top, y0, y1 = rows[block], wy0[block], wy1[block]
        result = out[block]
        np.copyto(result, left[top])
        result *= y0
        result *= wx0
        for neighbours, source_rows, wy, wx in ((right, top, y0, wx1), (left, top + 1, y1, wx0),
                                                (right, top + 1, y1, wx1)):
            np.copyto(buffer, neighbours[source_rows])
            buffer *= wy
            buffer *= wx
            result += buffer
    out = out.astype(dtype, copy=False)
    if clip:  # skimage's _clip_warp_output
        low = np.min(image)
        low, high = (np.nanmin(image), np.nanmax(image)) if np.isnan(low) else (low, np.max(image))
        low, high = dtype.type(low), dtype.type(high)
        if not low <= cval <= high and np.min(out) <= cval <= np.max(out):
            low, high = min(low, dtype.type(cval)), max(high, dtype.type(cval))
        np.clip(out, low, high, out=out)
    return out


def _scaled_size(height, width, scale):
    """The (height, width) an image of that size has after scaling by `scale`.

    resize_image and resize_mask share this so that masks always match images.
    """
    return round(height * scale), round(width * scale)


def _pad_to_multiple(size, multiple):
    """(before, after) padding that centres `size` in the smallest multiple of `multiple`."""
    total = -size % multiple
    return total // 2, total - total // 2


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", *, rng=None):
    """Resize an image keeping its aspect ratio, then pad or crop it (Matterport's modes).

    image: [height, width, channels] (or [height, width]), any dtype.
    min_dim: scale up (never down) so that the shorter side is at least this.
    max_dim: in "square" mode, scale down so that the longer side is at most this,
        and pad to [max_dim, max_dim].
    min_scale: scale by at least this factor, whatever min_dim says.
    mode:
        "none": return the image unchanged.
        "square": scale (min_dim, min_scale, then max_dim), pad with zeros to
            [max_dim, max_dim], the image centred.
        "pad64": scale up by min_dim / min_scale (max_dim ignored), then pad with zeros
            to multiples of 64 (2**6: the FPN halves the image 6 times). min_dim, if
            given, must be a multiple of 64.
        "crop": scale up by min_dim / min_scale, then take a random
            [min_dim, min_dim] crop (training only; max_dim ignored).
    rng: numpy Generator for the "crop" position; pass a seeded one to make crops
        reproducible. Defaults to a fresh, unseeded `np.random.default_rng()`.

    Returns: (image, window, scale, padding, crop)
        image: the resized image, same dtype as the input (integer images are
            rounded, not truncated).
        window: (y1, x1, y2, x2) of the image inside the padded result, y2/x2 exclusive.
        scale: the factor the image was scaled by (1 if it was not).
        padding: [(top, bottom), (left, right), (0, 0)] zeros added around it.
        crop: (y, x, height, width) of the crop in the scaled image, or None unless
            mode is "crop".
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_image: mode {mode!r} is not one of {RESIZE_MODES}")
    image = np.asarray(image)
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError("resize_image: mode 'square' needs max_dim (the side of the square)")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: mode 'crop' needs min_dim (the side of the crop)")
    if mode == "pad64" and min_dim and min_dim % 64:
        raise ValueError(f"resize_image: mode 'pad64' needs min_dim to be a multiple of 64, "
                         f"got {min_dim}")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)

    if scale != 1:
        image = resize(image, _scaled_size(h, w, scale), order=1, preserve_range=True)
        if np.issubdtype(image_dtype, np.integer):
            info = np.iinfo(image_dtype)
            image = np.clip(np.rint(image, out=image), info.min, info.max, out=image)  # (float: in place)
        image = image.astype(image_dtype)

    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        padding = [_pad_to_multiple(h, 64), _pad_to_multiple(w, 64), (0, 0)]
    else:  # crop
        rng = np.random.default_rng() if rng is None else rng
        y = int(rng.integers(0, h - min_dim + 1))
        x = int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop

    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], padding[0][0] + h, padding[1][0] + w)
    return image, window, scale, padding, crop


def _nearest_indices(size_in, size_out):
    """Source index of each output pixel for a nearest-neighbour resize.

    Pixel centres are matched, (i + 0.5) * size_in / size_out, as in skimage's resize,
    so a resized mask lines up with the bilinearly resized image.
    """
    return np.minimum(((np.arange(size_out) + 0.5) * size_in / size_out).astype(np.int64),
                      size_in - 1)


def resize_mask(mask, scale, padding, crop=None):
    """Resize instance masks the way :func:`resize_image` resized their image.

    mask: [height, width, instances] bool (or 0/1).
    scale, padding, crop: as returned by resize_image.

    Returns: bool [new_height, new_width, instances]. Nearest-neighbour sampling keeps
    masks crisp and needs no float copy of the masks.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if scale != 1:
        h, w = mask.shape[:2]
        new_h, new_w = _scaled_size(h, w, scale)
        mask = mask[_nearest_indices(h, new_h)][:, _nearest_indices(w, new_w)]
    if crop is not None:
        y, x, h, w = crop
        return mask[y:y + h, x:x + w]
    return np.pad(mask, padding[:mask.ndim], mode="constant", constant_values=False)


def _resize_binary(mask, shape):
    """Bilinear resize of a 2-D 0/1 mask to `shape`, thresholded at 0.5."""
    return resize(mask.astype(np.float32), shape, order=1) >= 0.5


def minimize_mask(bbox, mask, mini_shape):
    """Crop each mask to its box and resize it to a small fixed shape (saves memory).

    bbox: [instances, (y1, x1, y2, x2)], e.g. from :func:`extract_bboxes`.
    mask: [height, width, instances] bool (or 0/1).
    mini_shape: (height, width) of the mini masks, e.g. MINI_MASK_SHAPE = (56, 56).

    Returns: bool [mini_height, mini_width, instances]; all False for a zero-area box.
    :func:`expand_mask` reverses it. Bilinear resizing with OpenCV, thresholded at 0.5: about
    50 times faster than scikit-image, and different from it only next to the crop's border
    (OpenCV repeats the edge pixel where scikit-image blends in zeros).
    """
    import cv2

    mini_h, mini_w = (int(v) for v in mini_shape)
    mini_mask = np.zeros((mini_h, mini_w, mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = np.asarray(bbox[i][:4]).astype(int)
        crop = mask[y1:y2, x1:x2, i]
        if crop.size:
            resized = cv2.resize(crop.astype(np.float32), (mini_w, mini_h), interpolation=cv2.INTER_LINEAR)
            mini_mask[:, :, i] = resized >= 0.5
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Resize mini masks back to their boxes in a full-size mask; reverses minimize_mask.

    bbox: [instances, (y1, x1, y2, x2)] the boxes the mini masks were cut from.
    mini_mask: [mini_height, mini_width, instances] bool.
    image_shape: (height, width[, channels]) of the full mask.

    Returns: bool [height, width, instances]; empty for a zero-area box.
    """
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = np.asarray(bbox[i][:4]).astype(int)
        if y2 > y1 and x2 > x1:
            mask[y1:y2, x1:x2, i] = _resize_binary(mini_mask[:, :, i], (y2 - y1, x2 - x1))
    return mask


def unmold_mask_crop(mask, bbox):
    """The part of :func:`unmold_mask`'s result inside ``bbox``: bool [y2 - y1, x2 - x1], True
    where ``mask`` (float [mask_height, mask_width] probabilities) resized to the box is >= 0.5
    (None for a zero-area box)."""
    y1, x1, y2, x2 = np.asarray(bbox[:4]).astype(int)
    if y2 <= y1 or x2 <= x1:
        return None
    return resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1), order=1) >= 0.5


def unmold_mask(mask, bbox, image_shape):
    """Paste a small predicted mask into a full-size binary mask.

    mask: float [mask_height, mask_width] probabilities in 0..1, e.g. 28x28.
    bbox: (y1, x1, y2, x2) in pixels of the full image, the box the mask fills.
    image_shape: (height, width[, channels]) of the full image.

    Returns: bool [height, width], True where the resized mask is >= 0.5; empty for a
    zero-area box.
    """
    y1, x1, y2, x2 = np.asarray(bbox[:4]).astype(int)
    full_mask = np.zeros(tuple(image_shape[:2]), dtype=bool)
    crop = unmold_mask_crop(mask, bbox)
    if crop is not None:
        full_mask[y1:y2, x1:x2] = crop
    return full_mask


############################################################
#  Evaluation
############################################################

def trim_zeros(x):
    """Drop the all-zero rows that pad fixed-size arrays.

    x: [rows, columns].

    Returns: [non-zero rows, columns].
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0):
    """Match predictions to ground truth by mask IoU, highest score first.

    gt_boxes: [G, (y1, x1, y2, x2)], may be zero-padded at the end; gt_class_ids: [G];
        gt_masks: [height, width, G].
    pred_boxes: [P, (y1, x1, y2, x2)], may be zero-padded at the end;
        pred_class_ids: [P]; pred_scores: [P]; pred_masks: [height, width, P].
    iou_threshold: a match needs a mask IoU of at least this, and the same class.
    score_threshold: despite Matterport's name, a minimum mask IoU below which a
        ground-truth instance is not considered at all (kept for compatibility).

    Each prediction, in descending score order (ties in input order), takes the
    unmatched ground truth of its class with the highest IoU, if that IoU reaches
    iou_threshold.

    Returns: (gt_match, pred_match, overlaps)
        gt_match: float [G'] index of the matched prediction (in score order) per
            ground truth, -1 if unmatched.
        pred_match: float [P'] index of the matched ground truth per prediction, in
            descending score order, -1 if unmatched.
        overlaps: float64 [P', G'] mask IoUs, predictions in descending score order.
        (G' and P' count the rows left after trimming zero padding.)
    """
    gt_boxes = trim_zeros(np.asarray(gt_boxes).reshape(-1, 4))
    gt_masks = np.asarray(gt_masks)[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(np.asarray(pred_boxes).reshape(-1, 4))
    num_pred = pred_boxes.shape[0]
    pred_scores = np.asarray(pred_scores)[:num_pred]
    order = np.argsort(-pred_scores, kind="stable")
    pred_class_ids = np.asarray(pred_class_ids)[:num_pred][order]
    pred_masks = np.asarray(pred_masks)[..., :num_pred][..., order]
    gt_class_ids = np.asarray(gt_class_ids)

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)  # [P', G']

    pred_match = -1 * np.ones([num_pred])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(num_pred):
        candidates = np.argsort(-overlaps[i], kind="stable")
        candidates = candidates[overlaps[i, candidates] >= score_threshold]
        for j in candidates:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Average precision of one image's predictions at one mask-IoU threshold.

    Arguments as in :func:`compute_matches`. AP is the area under the precision /
    recall curve, with each precision replaced by the best precision at any higher
    recall (the PASCAL VOC "all points" definition Matterport uses).

    Edge cases: no predictions -> AP 0 (when there is ground truth); no ground truth
    -> AP 0 if anything was predicted (every prediction is a false positive; recall is
    then reported as 1, vacuously) and AP 1 if nothing was predicted either (nothing
    to find, nothing wrongly found).

    Returns: (mAP, precisions, recalls, overlaps)
        mAP: float, the AP.
        precisions: float64 [P' + 2] the precision after each prediction, padded
            with 0 at both ends and made non-increasing.
        recalls: float64 [P' + 2] the recall after each prediction, padded with 0 at
            the start and 1 at the end.
        overlaps: float64 [P', G'] mask IoUs, predictions in descending score order.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)

    num_gt, num_pred = len(gt_match), len(pred_match)
    true_positives = np.cumsum(pred_match > -1)
    precisions = true_positives / (np.arange(num_pred) + 1)
    recalls = true_positives / num_gt if num_gt else np.ones(num_pred)

    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    # The precision at each recall is the best one reachable at that recall or more.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]

    if num_gt == 0 and num_pred == 0:
        return 1.0, precisions, recalls, overlaps
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Mean of :func:`compute_ap` over IoU thresholds (default 0.50, 0.55, ..., 0.95).

    Arguments as in :func:`compute_matches`; verbose prints each AP and the mean.

    Returns: float, the mean AP.
    """
    if iou_thresholds is None:
        iou_thresholds = np.linspace(0.5, 0.95, 10)
    aps = []
    for iou_threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        iou_threshold=iou_threshold)[0]
        if verbose:
            print(f"AP @{iou_threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Fraction of ground-truth boxes that some prediction overlaps with IoU >= iou.

    pred_boxes: [P, (y1, x1, y2, x2)]; gt_boxes: [G, (y1, x1, y2, x2)], in pixels.
    iou: IoU threshold.

    Each prediction counts for the ground truth it overlaps most.

    Returns: (recall, positive_ids)
        recall: float; 1.0 when there is no ground truth (nothing was missed).
        positive_ids: int [K] indices of the predictions whose best IoU >= iou.
    """
    pred_boxes = np.asarray(pred_boxes).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    if gt_boxes.shape[0] == 0:
        return 1.0, np.zeros([0], dtype=np.int64)
    if pred_boxes.shape[0] == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    overlaps = compute_overlaps(pred_boxes, gt_boxes)  # [P, G]
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.flatnonzero(iou_max >= iou)
    recall = len(set(iou_argmax[positive_ids].tolist())) / gt_boxes.shape[0]
    return recall, positive_ids
