"""Leaf tracking: one plant's leaves linked from photograph to photograph, so that a leaf keeps its
id over a time-lapse, and the figures that score it.

    tracker = LeafTracker(max_gap=3)
    for masks, scores in frames:                 # bool [H, W, N] per frame, in time order
        ids = tracker.update(masks, scores)      # [N] track ids (1, 2, ...), one per mask
    labels = track_leaves(frames_masks)          # the same, all at once: [H, W] track-id labels
    labels = drop_short_tracks(labels, 2)        # optional: tracks seen once (but not at the end) out
    figures = tracking_scores(labels, truth)     # track SBD, frame SBD, id switches per 100

What a rosette gives to link a leaf with (computed per frame from the masks alone):

* The plant's centre ``C``: the point nearest to all leaves, i.e. the minimum of the sum over
  leaves of the distance to the leaf (distance transforms). A rosette's leaves all reach in to
  it; the centroid of all leaf pixels is dragged off by a big leaf on one side (tens of pixels
  on drawn rosettes, enough to break the links), and a leaf's own axis misses it when the blade
  is curled or seen foreshortened. Its radius ``rho``: ``sqrt(2)`` times the root-mean-square
  distance of the leaf pixels from ``C`` (the radius of a uniform disc with that spread).
  Positions are taken relative to ``C`` in units of ``rho``: a plant that moves, or grows,
  keeps its leaves where they were.
* Each leaf's position ``p`` (its centroid relative to ``C``, over ``rho``), in polar terms:
  angle ``phi`` and normalised radius ``r``; its visible area ``a``; its mask ``m``.
* The plant's turn between two frames (``estimate_turn``): the rotation within ``max_turn``
  degrees (default 15) that carries the previous frame's leaves nearest to this frame's
  (a weighted chamfer distance, searched every half degree, refined by a parabola), then
  refined once more as the weighted circular mean of the angle changes of the leaves the first
  assignment linked, and the assignment made again. Turns add up over the series, so a leaf
  last seen some frames ago is compared in the right orientation.

The cost of giving detection ``j`` of frame ``t`` to track ``i`` last seen in frame ``s`` (``g =
t - s`` frames ago, ``g <= max_gap + 1``), with ``delta`` the plant's turn from ``s`` to ``t`` and
``k = rho_t / rho_s`` its growth:

    along    = min(r_i, r_j) * |phi_j - (phi_i + delta)| / angle_scale       (0.1 plant radii)
    outward  = (r_j - r_i) / (outward_scale if r_j > r_i else inward_scale)  (0.4, 0.3)
    change   = log(a_j / (k^2 a_i))
    size     = max(0, change - log(grow)) + max(0, -change - log(shrink))   (grow 4, shrink 3)
    overlap  = |m_j & T(m_i)| / min(|m_j|, |T(m_i)|)
    cost = w_pos * hypot(along, outward) + w_size * size + w_overlap * (1 - overlap)
           + gap_cost * (g - 1)

with weights 1, 0.5, 1 and ``gap_cost`` 0.1 by default, and ``T`` the map of frame ``s`` onto
frame ``t``: ``x -> C_t + k R(delta) (x - C_s)`` (a leaf grows with its plant, outwards from the
centre). Why these terms: an angle error counts for less near the centre, where young leaves
crowd and their angles are noisy; a leaf's centroid moves outwards as it grows and when younger
leaves cover its base, so moving outwards is cheaper than inwards; young leaves grow several
times in area a day and old ones lose most of their visible area under new ones, so only a
size change beyond that costs; the overlap is taken over the smaller mask for the same reasons
(a young leaf inside its grown self, a covered leaf's remnant inside its former self).

The assignment minimising the total cost is found by ``scipy.optimize.linear_sum_assignment``; a
pair whose cost exceeds ``gate`` (default 2.4) is refused, its detection starts a new track (the
next free id) and its track stays lost. A lost track can take a detection again for ``max_gap``
frames (default 3: a leaf hidden for up to three photographs gets its own id back); after that
it ends and its id is never reused. A same-cost tie goes to the older track (lower id).

The defaults were chosen on drawn time-lapses (``leafseg.synth.timelapse``) with true masks, on
seeds other than the tests' and the benchmark's: there correct links cost 0.3 (median) to 1.5
(99th percentile), wrong ones 2.2 (1st percentile) and more; a gap of 3 linked more leaves back
than 2, and longer gaps no more. With leaf-small's leaves (the benchmark's plants, so not an
independent check) a gap of 3 also raised the track SBD, by 0.02 over 2: a model misses a small
leaf for a few days.

Scores: ``update(masks, scores)`` flattens overlapping masks with the higher score on top
(``label_from_detections``) before comparing; an empty mask gets id 0. Ids are ``int64``.

The figures (``tracking_scores``), on label images whose values are track ids (prediction) and
leaf ids stable over time (truth), one pair per frame:

    track SBD    Symmetric Best Dice (``leafseg.measure.metrics``) between whole tracks: each
                 track is the set of its pixels over every frame (the frames stacked into one
                 volume), so a track that changes leaf half-way matches neither leaf well.
    frame SBD    the mean over frames of each frame's SBD: segmentation alone, ids ignored.
    id switches  For each truth leaf, walk the frames it is present in, in time order. In each,
                 it is matched to the predicted track that overlaps it with IoU > 0.5 (at most
                 one can), or unmatched. A switch is a frame where the leaf is matched to a track
                 other than the one it was last matched to (frames where it is unmatched are
                 skipped, so a leaf lost for a frame and found again under a new id is one
                 switch). Two leaves whose ids swap count two switches.
    transitions  per truth leaf, the pairs of successive frames it is present in (consecutive
                 frames, or across frames where the truth itself does not show it); summed.
    switches per 100 transitions = 100 * switches / transitions (0 when there are none).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from leafseg.measure.metrics import check_label, label_from_detections, overlap_table, symmetric_best_dice

__all__ = ["LeafTracker", "PlantFrame", "plant_frame", "estimate_turn", "track_leaves", "track_label",
           "drop_short_tracks", "track_sbd", "frame_sbd", "id_switches", "tracking_scores"]


# ---------------------------------------------------------------------------------------------
# What a frame gives
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class PlantFrame:
    """One frame's leaves, as the tracker sees them.

    Attributes:
        label: [H, W] int32, detection ``j`` at ``j + 1`` where it is on top, 0 elsewhere.
        centre: (x, y) of the plant's centre in pixels; None when the frame has no leaf.
        radius: the plant's radius ``rho`` in pixels (at least 1).
        positions: [N, 2] leaf centroids relative to the centre, over the radius (x, y).
        areas: [N] visible pixels of each detection (0: hidden by others or empty).
    """

    label: np.ndarray
    centre: tuple[float, float] | None
    radius: float
    positions: np.ndarray
    areas: np.ndarray


def plant_frame(masks, scores=None) -> PlantFrame:
    """The ``PlantFrame`` of bool [H, W, N] masks (scores [N]: the higher on top where masks
    overlap; default the earlier mask on top)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N] (one mask per leaf), got shape {masks.shape}")
    n = masks.shape[2]
    if scores is None:
        scores = np.arange(n, 0, -1, dtype=np.float64)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"scores must have one value per mask: {n} masks, {len(scores)} scores")
    if n:
        label = label_from_detections(masks if masks.dtype == bool else masks > 0.5, scores).astype(np.int32)
    else:
        label = np.zeros(masks.shape[:2], np.int32)
    areas = np.bincount(label.ravel(), minlength=n + 1)[1:].astype(np.float64)
    ys, xs = np.nonzero(label)
    if len(ys) == 0:
        return PlantFrame(label, None, 1.0, np.zeros((n, 2)), areas)
    ids = label[ys, xs]
    cx, cy = _rosette_centre(label, n)
    dx, dy = xs - cx, ys - cy
    dist = np.sqrt(dx * dx + dy * dy)
    radius = max(1.0, math.sqrt(2.0 * float(np.mean(dist * dist))))
    sum_x = np.bincount(ids, weights=dx, minlength=n + 1)[1:]
    sum_y = np.bincount(ids, weights=dy, minlength=n + 1)[1:]
    safe = np.maximum(areas, 1.0)
    positions = np.stack([sum_x / safe, sum_y / safe], axis=1) / radius
    return PlantFrame(label, (cx, cy), radius, positions, areas)


def _rosette_centre(label: np.ndarray, n: int) -> tuple[float, float]:
    """The point nearest to all leaves: the minimum, over the plant's bounding box, of the sum
    over leaves of the distance to the leaf's nearest pixel (one distance transform per leaf);
    the mean position of the pixels within half a pixel per leaf of that minimum. A rosette's leaves all reach in to its centre; the centroid of all its
    pixels is dragged off it by a big leaf on one side, and a leaf's own axis may miss it (a
    curled or foreshortened blade)."""
    ys, xs = np.nonzero(label)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = label[y0:y1, x0:x1]
    total = np.zeros(crop.shape, np.float32)
    present = 0
    for k in range(1, n + 1):
        outside = (crop != k).astype(np.uint8)
        if outside.all():
            continue
        total += cv2.distanceTransform(outside, cv2.DIST_L2, 3)
        present += 1
    near = total <= total.min() + 0.5 * present
    ny, nx = np.nonzero(near)
    return float(nx.mean() + x0), float(ny.mean() + y0)


def estimate_turn(before, after, weights=None, max_turn: float = 15.0, step: float = 0.5) -> float:
    """The plant's turn in radians between two frames, from its leaves' positions: the turn
    ``delta`` within +-``max_turn`` degrees (searched every ``step`` degrees, then refined by a
    parabola) that minimises ``sum_i w_i * min_j |p_j - R(delta) q_i|``, each leaf ``q_i`` of
    ``before`` ([M, 2], relative to the plant's centre, in plant radii) carried to its nearest leaf
    of ``after`` ([N, 2]). New leaves in ``after`` cost nothing, so they do not pull. ``weights``
    [M] default the distance from the centre (a leaf far out shows a turn best). 0 when either
    frame has no leaf. Positive turns follow the image's angle (x towards y: clockwise on screen).
    """
    before, after = np.asarray(before, np.float64).reshape(-1, 2), np.asarray(after, np.float64).reshape(-1, 2)
    if not len(before) or not len(after) or max_turn <= 0:
        return 0.0
    weights = np.linalg.norm(before, axis=1) if weights is None else np.asarray(weights, np.float64)
    angles = np.radians(np.arange(-max_turn, max_turn + step / 2, step))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    rx = c * before[:, 0] - s * before[:, 1]        # [K, M]
    ry = s * before[:, 0] + c * before[:, 1]
    dist = np.hypot(rx[..., None] - after[:, 0], ry[..., None] - after[:, 1]).min(axis=2)  # [K, M]
    total = dist @ weights
    best = int(np.argmin(total))
    turn = float(angles[best])
    if 0 < best < len(angles) - 1:
        left, mid, right = total[best - 1], total[best], total[best + 1]
        denom = left - 2.0 * mid + right
        if denom > 0:
            turn += 0.5 * (left - right) / denom * math.radians(step)
    return turn


# ---------------------------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Track:
    id: int
    frame: int            # the frame it was last seen in
    mask: np.ndarray      # uint8 [h, w], its visible pixels then, in its bounding box
    origin: tuple         # (x, y) of the box's top-left pixel
    position: np.ndarray
    area: float


def _track(track_id: int, frame_index: int, frame: PlantFrame, det: int) -> _Track:
    ys, xs = np.nonzero(frame.label == det + 1)
    y0, x0 = int(ys.min()), int(xs.min())
    mask = np.zeros((int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1), np.uint8)
    mask[ys - y0, xs - x0] = 1
    return _Track(track_id, frame_index, mask, (x0, y0), frame.positions[det].copy(), float(frame.areas[det]))


class LeafTracker:
    """Links one plant's leaves over its frames, fed one frame at a time in time order (the
    rules in the module docstring).

    Args:
        max_gap: frames a lost track waits for its leaf (0: a leaf missed once is new).
        gate: the highest cost a link may have.
        max_turn: the largest turn of the plant between two frames, degrees (0: no turn is
            estimated).
        weights: (w_pos, w_size, w_overlap) of the cost.
        pos_scale: the position difference, in plant radii, that costs w_pos.
        gap_cost: the cost added per frame a track was lost.
    """

    def __init__(self, max_gap: int = 3, gate: float = 2.4, max_turn: float = 15.0,
                 weights: Sequence[float] = (1.0, 0.5, 1.0), angle_scale: float = 0.1, outward_scale: float = 0.4,
                 inward_scale: float = 0.3, grow: float = 4.0, shrink: float = 3.0, gap_cost: float = 0.1):
        if max_gap < 0:
            raise ValueError(f"LeafTracker: max_gap must be >= 0, got {max_gap}")
        if min(gate, angle_scale, outward_scale, inward_scale) <= 0 or max_turn < 0 or min(grow, shrink) < 1:
            raise ValueError(f"LeafTracker: need gate, angle_scale, outward_scale, inward_scale > 0, max_turn >= 0, "
                             f"grow and shrink >= 1; got gate={gate}, angle_scale={angle_scale}, outward_scale="
                             f"{outward_scale}, inward_scale={inward_scale}, max_turn={max_turn}, grow={grow}, "
                             f"shrink={shrink}")
        if len(weights) != 3 or min(weights) < 0:
            raise ValueError(f"LeafTracker: weights must be three values >= 0 (position, size, overlap), got {weights}")
        self.max_gap, self.gate, self.max_turn = int(max_gap), float(gate), float(max_turn)
        self.weights = tuple(float(w) for w in weights)
        self.angle_scale, self.outward_scale, self.inward_scale = (float(angle_scale), float(outward_scale),
                                                                    float(inward_scale))
        self.log_grow, self.log_shrink = math.log(grow), math.log(shrink)
        self.gap_cost = float(gap_cost)
        self.tracks: dict[int, _Track] = {}
        self.next_id = 1
        self.frame = -1
        self.turn = 0.0                # the plant's total turn since the first frame, radians
        self._turns: dict[int, float] = {}
        self._geometry: dict[int, tuple[tuple[float, float], float]] = {}
        self._last_seen = -1           # the last frame with a leaf
        self._shape: tuple[int, int] | None = None

    def update(self, masks, scores=None) -> np.ndarray:
        """Track ids ([N] int64, 0 for a mask with no visible pixel) of the next frame's masks
        (bool [H, W, N]); scores [N] as in ``plant_frame``."""
        frame = plant_frame(masks, scores)
        if self._shape is None:
            self._shape = frame.label.shape
        elif frame.label.shape != self._shape:
            raise ValueError(f"LeafTracker: frame {self.frame + 1} is {frame.label.shape[1]}x{frame.label.shape[0]} "
                             f"pixels, the first was {self._shape[1]}x{self._shape[0]}; track one camera's series")
        self.frame += 1
        t = self.frame
        # Tracks lost for longer than max_gap end.
        self.tracks = {i: tr for i, tr in self.tracks.items() if t - tr.frame <= self.max_gap + 1}
        n = len(frame.areas)
        ids = np.zeros(n, np.int64)
        if frame.centre is None:
            return ids
        visible = np.flatnonzero(frame.areas > 0)
        track_list = sorted(self.tracks.values(), key=lambda tr: tr.id)
        recent = [tr for tr in track_list if tr.frame == self._last_seen]
        turn_before = self.turn
        if recent:
            step = estimate_turn([tr.position for tr in recent], frame.positions[visible],
                                 [tr.area * np.linalg.norm(tr.position) for tr in recent], self.max_turn)
            self.turn = turn_before + step
        self._turns[t] = self.turn
        self._geometry[t] = (frame.centre, frame.radius)

        pairs = self._assign(frame, visible, track_list)
        if recent and len(pairs) >= 2:
            # Refine the turn on the leaves just linked, then link again.
            refined = self._refined_turn(frame, pairs, visible, track_list)
            if refined is not None:
                self.turn = turn_before + refined
                self._turns[t] = self.turn
                pairs = self._assign(frame, visible, track_list)
        for r, c in pairs:
            ids[visible[c]] = track_list[r].id
        for det in visible:
            if ids[det] == 0:
                ids[det] = self.next_id
                self.next_id += 1
        for det in visible:
            self.tracks[int(ids[det])] = _track(int(ids[det]), t, frame, det)
        self._last_seen = t
        # Geometry older than any live track is no longer needed.
        oldest = min((tr.frame for tr in self.tracks.values()), default=t)
        for old in [f for f in self._geometry if f < oldest]:
            del self._geometry[old], self._turns[old]
        return ids

    def _assign(self, frame: PlantFrame, visible: np.ndarray, tracks: list) -> list[tuple[int, int]]:
        """(track row, detection column) pairs of the cheapest assignment within the gate."""
        cost = self._costs(frame, visible, tracks)
        if not cost.size:
            return []
        rows, cols = linear_sum_assignment(np.where(cost <= self.gate, cost, self.gate * 10.0 + 1.0))
        return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= self.gate]

    def _refined_turn(self, frame: PlantFrame, pairs, visible, tracks) -> float | None:
        """The turn since the last frame, as the weighted circular mean of the angle changes of
        the leaves linked to a track seen in it (weight: area times distance from the centre)."""
        sines = cosines = 0.0
        for r, c in pairs:
            track = tracks[r]
            if track.frame != self._last_seen:
                continue
            q, p = track.position, frame.positions[visible[c]]
            change = math.atan2(p[1], p[0]) - math.atan2(q[1], q[0])
            weight = track.area * min(np.linalg.norm(q), np.linalg.norm(p))
            sines += weight * math.sin(change)
            cosines += weight * math.cos(change)
        if sines == 0.0 and cosines == 0.0:
            return None
        return float(np.clip(math.atan2(sines, cosines), -math.radians(self.max_turn), math.radians(self.max_turn)))

    def _costs(self, frame: PlantFrame, visible: np.ndarray, tracks: list) -> np.ndarray:
        """[tracks, visible detections] link costs (the module docstring's formula)."""
        cost = np.zeros((len(tracks), len(visible)))
        if not len(tracks) or not len(visible):
            return cost
        w_pos, w_size, w_overlap = self.weights
        rho = frame.radius
        det_areas = frame.areas[visible]
        det_pos = frame.positions[visible]
        det_radius = np.linalg.norm(det_pos, axis=1)
        det_angle = np.arctan2(det_pos[:, 1], det_pos[:, 0])
        for r, track in enumerate(tracks):
            (sx, sy), rho_s = self._geometry[track.frame]
            turn = self.turn - self._turns[track.frame]
            growth = rho / rho_s
            radius = float(np.linalg.norm(track.position))
            angle = math.atan2(track.position[1], track.position[0]) + turn
            swing = np.abs((det_angle - angle + math.pi) % (2.0 * math.pi) - math.pi)
            along = np.minimum(det_radius, radius) * swing / self.angle_scale
            outward = det_radius - radius
            outward = outward / np.where(outward > 0, self.outward_scale, self.inward_scale)
            position = np.hypot(along, outward)
            change = np.log(det_areas / (growth * growth * track.area))
            size = np.maximum(change - self.log_grow, 0.0) + np.maximum(-change - self.log_shrink, 0.0)
            hits, carried = self._carried_hits(frame, track, (sx, sy), growth, turn)
            hits = hits[visible]
            smaller = np.minimum(det_areas, max(carried, 1))
            overlap = hits / smaller
            gap = self.frame - track.frame
            cost[r] = (w_pos * position + w_size * size + w_overlap * (1.0 - overlap) + self.gap_cost * (gap - 1)
                       + 1e-9 * r)  # ties to the older track
        return cost

    @staticmethod
    def _carried_hits(frame: PlantFrame, track: _Track, centre_then, growth: float, turn: float):
        """The track's mask carried onto this frame (``x -> C_t + k R (x - C_s)``), warped into
        the window it lands in only: ([N] its pixels on each detection, its pixel count)."""
        c, s = math.cos(turn), math.sin(turn)
        linear = np.array([[growth * c, -growth * s], [growth * s, growth * c]])
        # Box pixel (u, v) is image pixel (u + x0, v + y0) of the frame it was seen in.
        shift = np.array(frame.centre) - linear @ (np.array(centre_then) - np.array(track.origin, np.float64))
        h, w = track.mask.shape
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ linear.T + shift
        height, width = frame.label.shape
        x0, y0 = (max(0, int(math.floor(v)) - 1) for v in corners.min(axis=0))
        x1, y1 = (min(side, int(math.ceil(v)) + 1) for side, v in zip((width, height), corners.max(axis=0)))
        n = len(frame.areas)
        if x1 <= x0 or y1 <= y0:
            return np.zeros(n, np.int64), 0
        warp = np.concatenate([linear, (shift - (x0, y0))[:, None]], axis=1)
        carried = cv2.warpAffine(track.mask, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST, borderValue=0) > 0
        hits = np.bincount(frame.label[y0:y1, x0:x1][carried], minlength=n + 1)[1:]
        return hits, int(carried.sum())


def track_label(masks, ids, scores=None) -> np.ndarray:
    """[H, W] label image whose values are track ids: ``masks`` (bool [H, W, N]) flattened with the
    higher score on top (default the earlier mask), mask ``j`` painted ``ids[j]``. uint16 when an
    id exceeds 255, else uint8; ids above 65535 are a ValueError."""
    masks = np.asarray(masks)
    ids = np.asarray(ids, np.int64).reshape(-1)
    if masks.ndim != 3 or masks.shape[2] != len(ids):
        raise ValueError(f"track_label: need masks [H, W, N] and N ids, got {masks.shape} and {len(ids)} ids")
    if len(ids) and (ids.min() < 0 or ids.max() > 65535):
        raise ValueError(f"track_label: ids must lie in 0..65535, got {ids.min()}..{ids.max()}")
    frame = plant_frame(masks, scores)
    lookup = np.concatenate([[0], ids]).astype(np.uint16 if len(ids) and ids.max() > 255 else np.uint8)
    return lookup[frame.label]


def track_leaves(frames, scores=None, **options) -> list[np.ndarray]:
    """Track a whole series at once: ``frames`` bool [H, W, N_t] per frame in time order,
    ``scores`` None or [N_t] per frame, ``options`` those of ``LeafTracker``. Returns per frame
    the [H, W] label image of track ids (``track_label``)."""
    tracker = LeafTracker(**options)
    scores = [None] * len(frames) if scores is None else list(scores)
    if len(scores) != len(frames):
        raise ValueError(f"track_leaves: {len(frames)} frames but {len(scores)} score lists")
    return [track_label(masks, tracker.update(masks, s), s) for masks, s in zip(frames, scores)]


def drop_short_tracks(labels, min_frames: int = 2) -> list[np.ndarray]:
    """The track labels (one [H, W] image per frame, in time order) without the tracks seen in
    fewer than ``min_frames`` frames, except those that start in the last ``min_frames - 1``
    frames (a young leaf that has just appeared). A series is processed as a whole, after
    tracking: a detection that no other frame confirms is most often a false one (a patch of
    soil, a leaf split in two for a day). On drawn time-lapses with leaf-small's leaves
    (``benchmarks/bench_tracking.py --min-frames``) 2 frames raise the track SBD by about 0.02
    and change the frame SBD by less than 0.005. Returns new arrays; 1 returns copies."""
    if min_frames < 1:
        raise ValueError(f"drop_short_tracks: min_frames must be >= 1, got {min_frames}")
    labels = [np.asarray(label) for label in labels]
    frames_of: dict[int, list[int]] = {}
    for t, label in enumerate(labels):
        for value in np.unique(label).tolist():
            if value:
                frames_of.setdefault(value, []).append(t)
    last_start = len(labels) - (min_frames - 1)
    drop = [v for v, seen in frames_of.items() if len(seen) < min_frames and seen[0] < last_start]
    return [np.where(np.isin(label, drop), 0, label).astype(label.dtype) for label in labels]


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _pairs(pred_labels, gt_labels) -> list[tuple[np.ndarray, np.ndarray]]:
    pred_labels, gt_labels = list(pred_labels), list(gt_labels)
    if len(pred_labels) != len(gt_labels):
        raise ValueError(f"{len(pred_labels)} predicted frames but {len(gt_labels)} truth frames")
    pairs = []
    for t, (pred, gt) in enumerate(zip(pred_labels, gt_labels)):
        pred, gt = check_label(pred, f"predicted frame {t}"), check_label(gt, f"truth frame {t}")
        if pred.shape != gt.shape:
            raise ValueError(f"frame {t}: prediction {pred.shape} and truth {gt.shape} differ in shape")
        pairs.append((pred, gt))
    return pairs


def track_sbd(pred_labels, gt_labels) -> float:
    """SBD between whole tracks: the frames stacked into one image, so each id is one region
    over all frames (the module docstring). 1.0 for no frames."""
    pairs = _pairs(pred_labels, gt_labels)
    if not pairs:
        return 1.0
    wide = np.uint32 if any(p.dtype.itemsize > 2 or g.dtype.itemsize > 2 for p, g in pairs) else np.uint16
    pred = np.concatenate([p.astype(wide) for p, _ in pairs], axis=0)
    gt = np.concatenate([g.astype(wide) for _, g in pairs], axis=0)
    return symmetric_best_dice(pred, gt)


def frame_sbd(pred_labels, gt_labels) -> float:
    """The mean over frames of each frame's SBD; 1.0 for no frames."""
    pairs = _pairs(pred_labels, gt_labels)
    return float(np.mean([symmetric_best_dice(p, g) for p, g in pairs])) if pairs else 1.0


def _matches(pred: np.ndarray, gt: np.ndarray, threshold: float) -> dict:
    """{truth id: predicted id} of the pairs with IoU > threshold (>= 0.5: one at most each)."""
    table = overlap_table(pred, gt)
    pred_ids = np.unique(pred)
    gt_ids = np.unique(gt)
    pred_ids, gt_ids = pred_ids[pred_ids != 0], gt_ids[gt_ids != 0]
    inter = table[1:, 1:].astype(np.float64)
    union = table[1:, :].sum(axis=1)[:, None] + table[:, 1:].sum(axis=0)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    found = {}
    for i, j in zip(*np.nonzero(iou > threshold)):
        found[int(gt_ids[j])] = int(pred_ids[i])
    return found


def id_switches(pred_labels, gt_labels, threshold: float = 0.5) -> dict:
    """Id switches and transitions (defined in the module docstring).

    Returns {"switches", "transitions": int, "per_100": float, "matched": share of truth
    leaf-frames matched to a track, "leaf_frames": int}."""
    if threshold < 0.5:
        raise ValueError(f"id_switches: the IoU threshold must be >= 0.5 (one match per leaf), got {threshold}")
    last_seen: dict[int, int] = {}       # truth id -> last frame it was present in
    last_match: dict[int, int] = {}      # truth id -> the track it was last matched to
    switches = transitions = matched = leaf_frames = 0
    for pred, gt in _pairs(pred_labels, gt_labels):
        found = _matches(pred, gt, threshold)
        present = np.unique(gt)
        for leaf in present[present != 0].tolist():
            leaf_frames += 1
            if leaf in last_seen:
                transitions += 1
            last_seen[leaf] = 1
            track = found.get(leaf)
            if track is None:
                continue
            matched += 1
            if leaf in last_match and last_match[leaf] != track:
                switches += 1
            last_match[leaf] = track
    return {"switches": switches, "transitions": transitions,
            "per_100": 100.0 * switches / transitions if transitions else 0.0,
            "matched": matched / leaf_frames if leaf_frames else 1.0, "leaf_frames": leaf_frames}


def tracking_scores(pred_labels, gt_labels) -> dict:
    """{"track_sbd", "frame_sbd", "switches_per_100", "switches", "transitions", "matched",
    "frames"} of one plant's series (label images of track ids and of truth leaf ids)."""
    pred_labels, gt_labels = list(pred_labels), list(gt_labels)
    switches = id_switches(pred_labels, gt_labels)
    return {"track_sbd": track_sbd(pred_labels, gt_labels), "frame_sbd": frame_sbd(pred_labels, gt_labels),
            "switches_per_100": switches["per_100"], "switches": switches["switches"],
            "transitions": switches["transitions"], "matched": switches["matched"], "frames": len(pred_labels)}
