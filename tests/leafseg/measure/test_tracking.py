"""leafseg.measure.tracking: leaves linked over a time-lapse, and the figures that score it."""
import math

import cv2
import numpy as np
import pytest

from leafseg.measure import tracking
from leafseg.measure.tracking import (LeafTracker, estimate_turn, frame_sbd, id_switches, track_label, track_leaves,
                                      track_sbd, tracking_scores)
from leafseg.synth.timelapse import generate_time_lapse


def _frames(lapse):
    return [lapse.masks(t)[0] for t in range(lapse.days)]


@pytest.fixture(scope="module")
def lapse():
    return generate_time_lapse(np.random.SeedSequence([0, 27, 0]), days=10, size=192)


# ---------------------------------------------------------------------------------------------
# The tracker on drawn time-lapses, true masks in
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("plant, style", [(0, "classic"), (1, "random"), (2, "classic"), (3, "random")])
def test_true_masks_keep_every_id(plant, style):
    # The first four plants of the benchmark's seed 0 at a test's size: the leaves appear, grow,
    # cover each other, and the pot moves and turns; every leaf keeps one track.
    lapse = generate_time_lapse(np.random.SeedSequence([0, 27, plant]), days=10, size=192, style=style)
    scores = tracking_scores(track_leaves(_frames(lapse)), lapse.ids)
    assert scores["switches"] == 0 and scores["transitions"] > 40
    assert scores["track_sbd"] == pytest.approx(1.0)
    assert scores["frame_sbd"] == pytest.approx(1.0)


def _truth_of(labels, lapse):
    """{track id: truth id} read off the track labels (one truth leaf per track asserted)."""
    pairs = set()
    for label, ids in zip(labels, lapse.ids):
        pairs |= {(int(a), int(b)) for a, b in zip(label.ravel(), ids.ravel()) if a}
    tracks = {}
    for track, leaf in pairs:
        assert tracks.setdefault(track, leaf) == leaf, f"track {track} holds leaves {tracks[track]} and {leaf}"
    return tracks


@pytest.mark.parametrize("gap", [1, 2])
def test_a_leaf_missed_for_a_frame_or_two_gets_its_id_back(lapse, gap):
    frames = _frames(lapse)
    leaf, start = 2, 4
    for t in range(start, start + gap):
        ids = lapse.masks(t)[1]
        frames[t] = frames[t][..., ids != leaf]
    labels = track_leaves(frames, max_gap=2)
    tracks = _truth_of(labels, lapse)
    assert sorted(tracks.values()) == sorted(set(tracks.values())), "a leaf split into several tracks"
    mine = [track for track, truth in tracks.items() if truth == leaf]
    assert len(mine) == 1
    assert np.count_nonzero(labels[start + gap] == mine[0]) > 0
    # Not kept alive long enough, it comes back under a new id.
    labels = track_leaves(frames, max_gap=gap - 1)
    assert len([t for t, truth in _truth_of(labels, lapse).items() if truth == leaf]) == 2


def _moved(masks, dx, dy, degrees, centre):
    warp = cv2.getRotationMatrix2D(centre, -degrees, 1.0)  # OpenCV's angle is counter-clockwise
    warp[:, 2] += (dx, dy)
    h, w = masks.shape[:2]
    return np.stack([cv2.warpAffine(masks[..., j].astype(np.uint8), warp, (w, h), flags=cv2.INTER_NEAREST) > 0
                     for j in range(masks.shape[2])], axis=2)


def test_ids_hold_when_the_plant_moves_10_px_and_turns_8_degrees(lapse):
    masks, _ = lapse.masks(8)
    centre = tuple(float(v) for v in lapse.centres[8])
    moved = _moved(masks, 10, -6, 8.0, centre)
    keep = moved.reshape(-1, moved.shape[2]).any(axis=0)
    tracker = LeafTracker()
    first = tracker.update(masks[..., keep])
    second = tracker.update(moved[..., keep])
    assert len(first) >= 8
    np.testing.assert_array_equal(second, first)
    assert math.degrees(tracker.turn) == pytest.approx(8.0, abs=1.5)


def test_a_leaf_that_appears_gets_a_new_id(lapse):
    masks, _ = lapse.masks(6)
    tracker = LeafTracker()
    first = tracker.update(masks[..., 1:])
    second = tracker.update(masks)  # leaf 1 shows up now
    assert second[0] == first.max() + 1
    np.testing.assert_array_equal(second[1:], first)
    # A mask with no visible pixel gets no id.
    empty = np.zeros(masks.shape[:2] + (1,), bool)
    third = tracker.update(np.concatenate([masks, empty], axis=2))
    assert third[-1] == 0 and np.array_equal(third[:-1], second)


def test_an_empty_frame_keeps_the_tracks_for_the_gap(lapse):
    masks, _ = lapse.masks(5)
    tracker = LeafTracker(max_gap=1)
    first = tracker.update(masks)
    assert tracker.update(np.zeros(masks.shape[:2] + (0,), bool)).shape == (0,)
    np.testing.assert_array_equal(tracker.update(masks), first)


def test_estimate_turn_finds_a_rotation_and_ignores_a_new_leaf():
    rng = np.random.default_rng(1)
    before = rng.uniform(-1, 1, (7, 2))
    angle = math.radians(6.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    after = np.concatenate([before @ rotation.T, [[0.05, 0.02]]])
    assert math.degrees(estimate_turn(before, after)) == pytest.approx(6.0, abs=0.2)
    assert estimate_turn(np.zeros((0, 2)), after) == 0.0


def test_the_plant_centre_is_where_the_leaves_meet():
    # Three leaves from (40, 40): a long one to the right drags the centroid of all pixels by
    # about 10 px; the point nearest to all leaves stays at the centre.
    masks = np.zeros((80, 120, 3), bool)
    masks[38:43, 41:110, 0] = True
    masks[10:39, 38:43, 1] = True
    masks[42:70, 38:43, 2] = True
    frame = tracking.plant_frame(masks)
    assert frame.centre == pytest.approx((40.0, 40.0), abs=2.0)
    xs = np.nonzero(masks.any(axis=2))[1]
    assert xs.mean() > 50


def test_tracker_errors_name_the_problem():
    tracker = LeafTracker()
    tracker.update(np.ones((10, 10, 1), bool))
    with pytest.raises(ValueError, match="the first was 10x10"):
        tracker.update(np.ones((12, 10, 1), bool))
    with pytest.raises(ValueError, match="2 masks, 1 scores"):
        tracker.update(np.ones((10, 10, 2), bool), scores=[0.9])
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        tracker.update(np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="max_gap"):
        LeafTracker(max_gap=-1)


def test_track_label_paints_ids_with_the_higher_score_on_top():
    masks = np.zeros((4, 4, 2), bool)
    masks[:2, :, 0] = True
    masks[1:, :, 1] = True
    label = track_label(masks, [7, 300], scores=[0.5, 0.9])
    assert label.dtype == np.uint16
    assert (label[0] == 7).all() and (label[1:] == 300).all()


# ---------------------------------------------------------------------------------------------
# The figures, on hand-made series
# ---------------------------------------------------------------------------------------------

def _two_leaves(left_id, right_id):
    """4x4 label: the left half ``left_id``, the right half ``right_id``."""
    label = np.zeros((4, 4), np.uint8)
    label[:, :2], label[:, 2:] = left_id, right_id
    return label


def test_a_swap_of_two_ids_is_two_switches():
    truth = [_two_leaves(1, 2)] * 3
    pred = [_two_leaves(5, 6), _two_leaves(6, 5), _two_leaves(6, 5)]
    result = id_switches(pred, truth)
    assert result["switches"] == 2 and result["transitions"] == 2 * 2
    assert result["per_100"] == pytest.approx(100 * 2 / 4)
    # Each track holds one leaf in frame 1 and the other in frames 2 and 3 (8 px each a frame):
    # Dice of track 5 with leaf 2 is 2 * 16 / (24 + 24).
    assert track_sbd(pred, truth) == pytest.approx(2 * 16 / (24 + 24))
    assert frame_sbd(pred, truth) == 1.0


def test_a_leaf_lost_for_a_frame_and_found_under_a_new_id_is_one_switch():
    truth = [_two_leaves(1, 2)] * 3
    pred = [_two_leaves(5, 6), _two_leaves(5, 0), _two_leaves(5, 7)]
    result = id_switches(pred, truth)
    assert result["switches"] == 1 and result["transitions"] == 4
    assert result["matched"] == pytest.approx(5 / 6)
    # Found again under its own id: no switch.
    pred[2] = _two_leaves(5, 6)
    assert id_switches(pred, truth)["switches"] == 0


def test_transitions_skip_frames_the_truth_does_not_show_a_leaf_in():
    truth = [_two_leaves(1, 2), _two_leaves(1, 0), _two_leaves(1, 2)]
    pred = [_two_leaves(5, 6), _two_leaves(5, 0), _two_leaves(5, 6)]
    result = id_switches(pred, truth)
    # Leaf 1: frames 1-2, 2-3; leaf 2: frames 1-3.
    assert result["transitions"] == 3 and result["switches"] == 0


def test_a_match_needs_an_iou_above_a_half():
    truth = [_two_leaves(1, 2)] * 2
    half = np.zeros((4, 4), np.uint8)
    half[:2, :2] = 5   # 4 of leaf 1's 8 pixels: IoU 0.5, no match (and nothing on leaf 2)
    result = id_switches([_two_leaves(5, 6), half], truth)
    assert result["matched"] == pytest.approx((2 + 0) / 4) and result["switches"] == 0
    half[:3, :2] = 5   # 6 of 8: IoU 0.75, matched
    assert id_switches([_two_leaves(5, 6), half], truth)["matched"] == pytest.approx((2 + 1) / 4)


def test_perfect_tracking_scores_one_and_frames_are_checked():
    truth = [_two_leaves(1, 2), _two_leaves(1, 3)]
    pred = [_two_leaves(9, 4), _two_leaves(9, 8)]
    scores = tracking_scores(pred, truth)
    assert scores["track_sbd"] == 1.0 and scores["switches"] == 0 and scores["transitions"] == 1
    with pytest.raises(ValueError, match="2 predicted frames but 1 truth"):
        track_sbd(pred, truth[:1])
    with pytest.raises(ValueError, match="frame 1"):
        frame_sbd([pred[0], np.zeros((3, 3), np.uint8)], truth)


def test_drop_short_tracks_keeps_young_leaves_at_the_end():
    # Track 7 shows once in frame 1 (dropped); track 9 appears in the last frame (kept).
    labels = [_two_leaves(5, 6), _two_leaves(5, 7), _two_leaves(5, 6), _two_leaves(9, 6)]
    kept = tracking.drop_short_tracks(labels, 2)
    assert [sorted(set(np.unique(k).tolist()) - {0}) for k in kept] == [[5, 6], [5], [5, 6], [6, 9]]
    assert all(k.dtype == np.uint8 for k in kept)
    # Three frames: track 9 started within the last two frames, still kept.
    assert 9 in tracking.drop_short_tracks(labels, 3)[3]
    with pytest.raises(ValueError, match="min_frames"):
        tracking.drop_short_tracks(labels, 0)
