"""Test-time augmentation (TTA): a model applied to flipped and rotated copies of each image, its
results mapped back to the image and fused.

A leaf has no preferred orientation in a photograph taken from above, so a model should find the
same leaves in a mirrored or rotated copy. Where it does not, the disagreement tells which
detections are unsure; a detection found in most copies is kept, with the mask its copies agree
on, and one found in a single copy goes.

    views = detect_views(model, images, views=4)   # per image: one Matterport result per view,
                                                   # all in the image's own pixels
    matches = match_views(views[0])                # per detection of the plain view: agreement
    fused = merge_views(views[0])                  # one Matterport result from all the views
    model = TTAModel(model, views=4)               # detect() returns the fused results
    model = PlantsFirst(TTAModel(model))           # each plant's crop through the views

The views (:data:`VIEWS`) are the 8 symmetries of the square, in the order that ``views=N``
takes the first N of: identity, horizontal flip, vertical flip, 180 degree rotation, then the
four that swap the axes (transpose, 90 and 270 degree rotations, anti-transpose). A view that
swaps the axes of a non-square image gives the model a W x H image; its results are mapped
back like the others. Each view costs one detection: ``views=4`` takes 4 times as long.

Each view's detection is the model's own, cut at its ``DETECTION_MIN_CONFIDENCE`` and mask
overlap. Fusing (:func:`merge_views`):

1. Clusters: the plain view's detections seed one cluster each; the detections of each further
   view are matched one to one to the clusters (same class, mask IoU with the cluster's seed
   at least ``iou``, best IoU first); an unmatched one seeds a new cluster.
2. A cluster found in at least ``min_votes`` views (default: more than half of them) is a
   detection; its mask holds the pixels covered by at least half of its masks, its box is the
   mask's box, its score the mean of its scores over *all* views, 0 for a view that missed it.
   So a detection found in every view keeps its mean score, and one found in 3 of 4 views
   scores 3/4 of its mean: the score ranks by agreement as well as by confidence.
3. The model's ``DETECTION_MASK_OVERLAP_THRESHOLD`` suppression (``mrcnn.utils.
   suppress_covered_masks``) runs on the fused masks, as it runs on a single view's, and
   :class:`TTAModel` keeps at most ``DETECTION_MAX_INSTANCES`` of them, the best scores.

The fused score is not cut again at ``DETECTION_MIN_CONFIDENCE``: every detection of a cluster
passed that cut already in its own view, and the votes are TTA's own cut. Cutting the mean
again would drop a leaf found with score 0.9 in 3 of 4 views (fused 0.675) under leaf-small's
0.8, a second penalty for one missing view. ``merge_views(min_score=...)`` cuts where wanted.

With one view, ``merge_views`` returns that view's result unchanged, so ``TTAModel(model,
views=1)`` detects exactly as ``model``.
"""
from __future__ import annotations

import numpy as np

from mrcnn.pipeline import raw_image
from mrcnn.utils import suppress_covered_masks

__all__ = ["VIEWS", "VIEW_COUNTS", "view_names", "apply_view", "invert_view", "invert_view_boxes", "mask_boxes",
           "detect_views", "match_views", "merge_views", "TTAModel"]

# The 8 symmetries of the square; ``views=N`` uses the first N.
VIEWS = ("identity", "hflip", "vflip", "rot180", "transpose", "rot90", "rot270", "antitranspose")
VIEW_COUNTS = (1, 2, 4, 8)
# Each view as (swap the axes, then flip rows, then flip columns); np.rot90's direction
# (counter-clockwise) for rot90.
_STEPS = {"identity": (False, False, False), "hflip": (False, False, True), "vflip": (False, True, False),
          "rot180": (False, True, True), "transpose": (True, False, False), "rot90": (True, True, False),
          "rot270": (True, False, True), "antitranspose": (True, True, True)}


def view_names(views) -> tuple:
    """The names of the first ``views`` views (1, 2, 4 or 8); ValueError naming another value."""
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or int(views) not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views!r}")
    return VIEWS[:int(views)]


def apply_view(array, view):
    """``array`` [H, W, ...] (an image, or masks [H, W, N]) seen in ``view``: [H, W, ...], or
    [W, H, ...] for a view that swaps the axes. A view of the array, not a copy."""
    swap, flip_rows, flip_cols = _STEPS[view]
    array = np.asarray(array)
    if swap:
        array = np.swapaxes(array, 0, 1)
    if flip_rows:
        array = array[::-1]
    if flip_cols:
        array = array[:, ::-1]
    return array


def invert_view(array, view):
    """The inverse of :func:`apply_view`: ``array`` in ``view``'s frame back in the original one."""
    swap, flip_rows, flip_cols = _STEPS[view]
    array = np.asarray(array)
    if flip_cols:
        array = array[:, ::-1]
    if flip_rows:
        array = array[::-1]
    if swap:
        array = np.swapaxes(array, 0, 1)
    return array


def invert_view_boxes(boxes, view, view_shape):
    """Boxes [N, (y1, x1, y2, x2)] (pixels, y2 / x2 exclusive) in ``view``'s frame of
    ``view_shape`` (height, width) -> the same pixels' boxes in the original frame, int32."""
    swap, flip_rows, flip_cols = _STEPS[view]
    y1, x1, y2, x2 = np.asarray(boxes, np.int64).reshape(-1, 4).T
    height, width = view_shape[:2]
    if flip_cols:
        x1, x2 = width - x2, width - x1
    if flip_rows:
        y1, y2 = height - y2, height - y1
    if swap:
        y1, x1, y2, x2 = x1, y1, x2, y2
    return np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)


def mask_boxes(masks):
    """The box of each mask: masks bool [H, W, N] -> int32 [N, (y1, x1, y2, x2)], y2 / x2
    exclusive; an empty mask's box is all zeros."""
    masks = np.asarray(masks, bool)
    height, width, n = masks.shape
    rows, cols = masks.any(axis=1), masks.any(axis=0)  # [H, N], [W, N]
    boxes = np.stack([rows.argmax(axis=0), cols.argmax(axis=0),
                      height - rows[::-1].argmax(axis=0), width - cols[::-1].argmax(axis=0)], axis=1)
    boxes[~rows.any(axis=0)] = 0
    return boxes.astype(np.int32).reshape(n, 4)


def _batch_size(model):
    config = getattr(model, "config", None)
    return int(getattr(config, "BATCH_SIZE", 0) or 0) or None


def _same_shape_batches(model):
    """Whether a model call must get images of one shape: its molding keeps their shapes
    (every resize mode but "square", which pads all to one square)."""
    config = getattr(model, "config", None)
    return getattr(config, "IMAGE_RESIZE_MODE", "square") != "square"


def _run_batched(model, images, verbose=0):
    """``model.detect`` over ``images`` in calls of the model's ``BATCH_SIZE`` images (the last
    call padded by repeating its last image, the extra results dropped); a stand-in without a
    batch size gets them in one call. Where the model's resize mode keeps shapes, a call holds
    images of one shape. Returns the results in input order."""
    batch = _batch_size(model)
    if _same_shape_batches(model):
        groups = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape[:2], []).append(i)
        groups = list(groups.values())
    else:
        groups = [list(range(len(images)))]
    results = [None] * len(images)
    for group in groups:
        size = batch or len(group)
        for start in range(0, len(group), size):
            chunk = group[start:start + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            found = model.detect([images[i] for i in padded], verbose=verbose)
            for i, result in zip(chunk, found):
                results[i] = result
    return results


def _map_back(result, view, view_shape):
    """One view's Matterport result in the original image's frame (module docstring)."""
    if view == "identity":
        return result
    masks = np.ascontiguousarray(invert_view(np.asarray(result["masks"], bool), view))
    rois = mask_boxes(masks)
    empty = ~masks.any(axis=(0, 1))
    if empty.any():
        rois[empty] = invert_view_boxes(np.asarray(result["rois"])[empty], view, view_shape)
    mapped = dict(result)
    mapped.update(rois=rois, masks=masks, class_ids=np.asarray(result["class_ids"], np.int32),
                  scores=np.asarray(result["scores"], np.float32))
    return mapped


def detect_views(model, images, views=4, verbose=0) -> list:
    """Detect ``images`` in each of the first ``views`` views (:data:`VIEWS`).

    model: an inference-mode MaskRCNN, or anything with ``detect(images, verbose=0)`` and
        optionally ``config`` (``BATCH_SIZE``, ``IMAGE_RESIZE_MODE``).
    images: [H, W, 3] uint8 arrays, any sizes (or :class:`mrcnn.pipeline.MoldedImage`: their
        images, views being made of them). views: 1, 2, 4 or 8.
    Returns: per image, a list with one Matterport result per view, the first the identity
    (the model's own result, untouched); the others mapped back to the image's frame: masks
    bool [H, W, n] inverted, rois int32 [n, 4] the masks' boxes (an empty mask's box inverted),
    class_ids int32 [n], scores float32 [n]. All views of all images go through the model in
    calls of ``BATCH_SIZE`` images.
    """
    names = view_names(views)
    images = [raw_image(image) for image in images]
    jobs = [(i, view) for i in range(len(images)) for view in names]
    shown = [np.ascontiguousarray(apply_view(images[i], view)) for i, view in jobs]
    found = _run_batched(model, shown, verbose)
    results = [[] for _ in images]
    for (i, view), image, result in zip(jobs, shown, found):
        results[i].append(_map_back(result, view, image.shape[:2]))
    return results


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------

class _Detections:
    """Detections to match: class ids [n], scores [n], mask boxes [n, 4], mask areas [n] and
    each mask [H, W] (views into the results' arrays: a pick of several views' detections is not
    copied into one array)."""

    def __init__(self, masks, class_ids, scores, boxes, areas):
        self.masks, self.class_ids, self.scores, self.boxes, self.areas = masks, class_ids, scores, boxes, areas

    @classmethod
    def of(cls, result):
        masks = np.asarray(result["masks"], bool)
        if masks.ndim != 3:
            raise ValueError(f"a result's masks must be [H, W, N], got shape {masks.shape}")
        return cls([masks[..., k] for k in range(masks.shape[-1])], np.asarray(result["class_ids"], np.int32),
                   np.asarray(result["scores"], np.float32), mask_boxes(masks),
                   np.count_nonzero(masks, axis=(0, 1)).astype(np.int64))

    @classmethod
    def pick(cls, views, picks):
        """The detections ``picks`` [(view, index)] of ``views`` [_Detections]."""
        return cls([views[v].masks[j] for v, j in picks],
                   np.array([views[v].class_ids[j] for v, j in picks], np.int32),
                   np.array([views[v].scores[j] for v, j in picks], np.float32),
                   np.array([views[v].boxes[j] for v, j in picks], np.int32).reshape(-1, 4),
                   np.array([views[v].areas[j] for v, j in picks], np.int64))

    def __len__(self):
        return len(self.class_ids)


def _pairwise_iou(a, b):
    """Mask IoU [len(a), len(b)] of two :class:`_Detections` (0 across classes). Only pairs of
    one class whose boxes overlap are compared, each on its boxes' intersection."""
    ious = np.zeros((len(a), len(b)), np.float64)
    if not len(a) or not len(b):
        return ious
    top = np.maximum(a.boxes[:, None, :2], b.boxes[None, :, :2])     # [na, nb, 2]
    bottom = np.minimum(a.boxes[:, None, 2:], b.boxes[None, :, 2:])  # [na, nb, 2]
    overlap = (top < bottom).all(axis=2) & (a.class_ids[:, None] == b.class_ids[None, :])
    for i, j in zip(*np.nonzero(overlap)):
        (y1, x1), (y2, x2) = top[i, j], bottom[i, j]
        inter = np.count_nonzero(a.masks[i][y1:y2, x1:x2] & b.masks[j][y1:y2, x1:x2])
        if inter:
            ious[i, j] = inter / (a.areas[i] + b.areas[j] - inter)
    return ious


def _greedy_match(ious, threshold):
    """One-to-one matches of rows to columns with IoU >= ``threshold`` (and above 0: disjoint
    masks never match), best IoU first (ties in row, then column order): {row: column}."""
    rows, cols = np.nonzero((ious >= threshold) & (ious > 0))
    order = np.lexsort((cols, rows, -ious[rows, cols]))
    matched, taken = {}, set()
    for i, j in zip(rows[order], cols[order]):
        if int(i) not in matched and int(j) not in taken:
            matched[int(i)] = int(j)
            taken.add(int(j))
    return matched


def match_views(view_results, iou=0.5) -> list:
    """How each detection of the plain view fares in the other views.

    view_results: one image's list of results per view (:func:`detect_views`), the identity
        first, all in the image's frame.
    iou: the mask IoU a detection of another view (of the same class) needs to be the same one;
        each view's detections are matched one to one, best IoU first.
    Returns: per detection k of the identity view, {"index": k, "agreement": the fraction of the
    other views holding it (1.0 with no other view), "votes": the views holding it, the identity
    included, "mean_score": its mean score over all views (0 where missed), "mask_vote": float32
    [H, W], the fraction of the views whose matched mask covers each pixel}.
    """
    if not view_results:
        raise ValueError("view_results is empty: expected one result per view, the identity first")
    plain = _Detections.of(view_results[0])
    count, n = len(view_results), len(plain)
    votes = np.ones(n, np.int64)
    score_sums = plain.scores.astype(np.float64)
    mask_votes = np.asarray(view_results[0]["masks"], bool).astype(np.float32)  # [H, W, n]
    for result in view_results[1:]:
        other = _Detections.of(result)
        for k, j in _greedy_match(_pairwise_iou(plain, other), iou).items():
            votes[k] += 1
            score_sums[k] += other.scores[j]
            mask_votes[..., k] += other.masks[j]
    mask_votes /= count
    return [{"index": k, "agreement": float((votes[k] - 1) / (count - 1)) if count > 1 else 1.0,
             "votes": int(votes[k]), "mean_score": float(score_sums[k] / count),
             "mask_vote": np.ascontiguousarray(mask_votes[..., k])} for k in range(n)]


def merge_views(view_results, iou=0.5, min_votes=None, mask_overlap=None, min_score=None,
                max_instances=None) -> dict:
    """One image's results per view fused into one Matterport result (module docstring).

    view_results: as for :func:`match_views`. iou: the mask IoU that puts a detection into a
        cluster (same class, against the cluster's first detection). min_votes: the views a
        cluster must be found in (default: more than half). mask_overlap: None, or the model's
        ``DETECTION_MASK_OVERLAP_THRESHOLD``, applied to the fused masks. min_score: None (no
        cut; the module docstring says why), or drop fused scores under it. max_instances:
        None, or keep at most this many (the model's ``DETECTION_MAX_INSTANCES``: majority
        clusters of several views may outnumber one view's detections), the best scores.
    Returns: {"rois" int32 [n, 4], "class_ids" int32 [n], "scores" float32 [n], "masks" bool
    [H, W, n], "votes" int32 [n]}, in descending score. One view: that view's result as it is.
    """
    if not view_results:
        raise ValueError("view_results is empty: expected one result per view, the identity first")
    count = len(view_results)
    if count == 1:
        return view_results[0]
    min_votes = count // 2 + 1 if min_votes is None else int(min_votes)
    views = [_Detections.of(result) for result in view_results]
    height, width = np.shape(view_results[0]["masks"])[:2]
    # A cluster: its members {view: index}, the first its seed.
    clusters = [{0: k} for k in range(len(views[0]))]
    for v in range(1, count):
        seeds = _Detections.pick(views, [next(iter(members.items())) for members in clusters])
        matched = _greedy_match(_pairwise_iou(views[v], seeds), iou)
        for j in range(len(views[v])):
            if j in matched:
                clusters[matched[j]][v] = j
            else:
                clusters.append({v: j})

    kept = [members for members in clusters if len(members) >= min_votes]
    n = len(kept)
    masks = np.zeros((height, width, n), bool)
    class_ids = np.zeros(n, np.int32)
    scores = np.zeros(n, np.float32)
    votes = np.zeros(n, np.int32)
    seed_boxes = np.zeros((n, 4), np.int32)
    for c, members in enumerate(kept):
        seed_view, seed_index = next(iter(members.items()))
        boxes = np.array([views[v].boxes[j] for v, j in members.items()])
        y1, x1 = boxes[:, :2].min(axis=0)
        y2, x2 = boxes[:, 2:].max(axis=0)
        cover = np.zeros((y2 - y1, x2 - x1), np.int32)
        for v, j in members.items():
            cover += views[v].masks[j][y1:y2, x1:x2]
        masks[y1:y2, x1:x2, c] = 2 * cover >= len(members)
        class_ids[c] = views[seed_view].class_ids[seed_index]
        scores[c] = sum(float(views[v].scores[j]) for v, j in members.items()) / count
        votes[c] = len(members)
        seed_boxes[c] = np.asarray(view_results[seed_view]["rois"][seed_index])
    keep = np.argsort(-scores, kind="stable")
    if min_score is not None:
        keep = keep[scores[keep] >= min_score]
    if mask_overlap is not None and len(keep):
        keep = keep[suppress_covered_masks(masks[..., keep], class_ids[keep], scores[keep], mask_overlap)]
    if max_instances is not None:
        keep = keep[:int(max_instances)]
    masks = masks[..., keep]
    rois = mask_boxes(masks)
    empty = ~masks.any(axis=(0, 1))
    rois[empty] = seed_boxes[keep][empty]
    return {"rois": rois, "class_ids": class_ids[keep], "scores": scores[keep], "masks": masks,
            "votes": votes[keep]}


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------

class TTAModel:
    """A model whose ``detect(images)`` runs each image through ``views`` views and returns the
    fused results (:func:`merge_views`, with the model config's mask overlap suppression and
    detection limit); like
    :class:`leafseg.inference.plants.PlantsFirst` it has ``config`` (the model's) and
    ``detect(images, verbose=0)``, so it goes where a model goes: ``PlantsFirst(TTAModel(model))``
    runs each plant's crop (and the tiles that find the plants) through the views.

    model: an inference-mode MaskRCNN or a stand-in with ``detect`` (and ``config``). views: 1,
    2, 4 or 8. iou, min_votes: as for :func:`merge_views`.
    """

    def __init__(self, model, views=4, iou=0.5, min_votes=None):
        view_names(views)
        self.model, self.views, self.iou, self.min_votes = model, int(views), iou, min_votes
        self.config = getattr(model, "config", None)

    def detect_views(self, images, verbose=0):
        """Per image, one result per view in the image's frame (:func:`detect_views`)."""
        return detect_views(self.model, images, self.views, verbose)

    def detect(self, images, verbose=0):
        """Per image, the views' fused Matterport result (:func:`merge_views`; with ``votes``)."""
        overlap = getattr(self.config, "DETECTION_MASK_OVERLAP_THRESHOLD", None)
        most = getattr(self.config, "DETECTION_MAX_INSTANCES", None)
        return [merge_views(views, self.iou, self.min_votes, mask_overlap=overlap, max_instances=most)
                for views in self.detect_views(images, verbose)]
