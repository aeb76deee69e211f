"""leafseg.data.masks: reading label images and splitting them into one mask per leaf."""
import cv2
import numpy as np
import pytest
from PIL import Image

from leafseg.data.masks import (LabelError, masks_to_color, masks_to_label, read_label, save_indexed_png,
                                split_color_mask, split_instances, split_label)


def _gray(rgb):
    """OpenCV's uint8 gray value of one RGB colour (the conversion the seed post used)."""
    return int(cv2.cvtColor(np.array([[rgb]], np.uint8), cv2.COLOR_RGB2GRAY)[0, 0])


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def _write_palette_png(path, ids, palette):
    image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.astype(np.uint8).tobytes())
    image.putpalette(np.asarray(palette, np.uint8).tobytes())
    image.save(path)
    return path


def test_colours_with_equal_gray_stay_separate_leaves():
    red = (255, 0, 0)
    # A pure green with the same OpenCV gray level as pure red (0.587 g ~ 0.299 * 255).
    green = next((0, g, 0) for g in range(256) if _gray((0, g, 0)) == _gray(red))
    assert _gray(green) == _gray(red)  # the seed post's split would merge these two leaves
    label = np.zeros((6, 8, 3), np.uint8)
    label[1:3, 1:4] = red
    label[3:5, 4:7] = green
    assert len(np.unique(cv2.cvtColor(label, cv2.COLOR_RGB2GRAY))) == 2  # background + ONE gray

    masks, colors = split_color_mask(label)

    assert masks.shape == (6, 8, 2) and masks.dtype == bool
    # Ascending (R, G, B): green (0, g, 0) before red (255, 0, 0).
    np.testing.assert_array_equal(colors, [green, red])
    np.testing.assert_array_equal(masks[..., 0], (label == green).all(-1))
    np.testing.assert_array_equal(masks[..., 1], (label == red).all(-1))


def test_occluded_leaf_in_two_pieces_is_one_instance():
    label = np.zeros((5, 9, 3), np.uint8)
    label[1:4, 0:9] = (10, 200, 30)    # old leaf ...
    label[0:5, 4:6] = (200, 10, 30)    # ... cut in two by a younger leaf lying over it
    result = split_instances(label)
    assert result.count == 2
    np.testing.assert_array_equal(result.areas, [3 * 9 - 3 * 2, 5 * 2])
    np.testing.assert_array_equal(result.keys, [(10, 200, 30), (200, 10, 30)])


def test_noise_below_min_area_is_dropped_and_reported():
    label = np.zeros((10, 10, 3), np.uint8)
    label[0:5, 0:5] = (0, 255, 0)
    label[5:10, 5:10] = (0, 0, 255)
    label[9, 0:3] = (1, 254, 0)   # three anti-aliasing pixels
    label[0, 9] = (7, 7, 7)       # one stray pixel
    masks, colors, dropped = split_color_mask(label, min_area=4, return_dropped=True)
    np.testing.assert_array_equal(colors, [(0, 0, 255), (0, 255, 0)])
    assert sorted(dropped) == [((1, 254, 0), 3), ((7, 7, 7), 1)]
    assert masks.sum() == 25 + 25
    assert not masks[9, 0:3].any() and not masks[0, 9].any()

    result = split_instances(label, min_area=1)
    assert result.count == 4 and result.dropped == []


def test_background_colour_and_index_map():
    label = np.full((4, 4, 3), 255, np.uint8)  # white background
    label[1:3, 1:3] = (0, 0, 0)
    result = split_instances(label, background=(255, 255, 255), min_area=1)
    np.testing.assert_array_equal(result.keys, [(0, 0, 0)])
    expected = np.zeros((4, 4), np.uint8)
    expected[1:3, 1:3] = 1
    np.testing.assert_array_equal(result.index, expected)
    np.testing.assert_array_equal(result.mask(0), expected == 1)


def test_empty_label_gives_no_masks():
    masks, colors = split_color_mask(np.zeros((3, 4, 3), np.uint8))
    assert masks.shape == (3, 4, 0) and colors.shape == (0, 3)


def test_palette_png_returns_the_index_not_the_colours(tmp_path):
    ids = np.zeros((6, 6), np.uint8)
    ids[0:2, :] = 3
    ids[3:6, 0:2] = 7
    ids[3:6, 4:6] = 12
    palette = np.zeros((256, 3), np.uint8)
    palette[3] = (10, 20, 30)
    palette[7] = (200, 0, 0)
    palette[12] = (200, 0, 0)  # two leaves drawn in the same display colour
    path = _write_palette_png(tmp_path / "plant001_label.png", ids, palette)
    assert Image.open(path).mode == "P"

    label = read_label(path)

    assert label.ndim == 2
    np.testing.assert_array_equal(label, ids)
    masks, leaf_ids = split_label(label)
    np.testing.assert_array_equal(leaf_ids, [3, 7, 12])  # non-consecutive ids kept
    np.testing.assert_array_equal(masks[..., 2], ids == 12)


def test_rgb_png_is_read_in_rgb_order(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 1] = (250, 10, 0)
    label = read_label(_write_rgb(tmp_path / "l.png", rgb))
    np.testing.assert_array_equal(label, rgb)


def test_rgba_transparent_pixels_are_background(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, 0:3] = (255, 0, 0, 255)
    rgba[:, 3:6] = (0, 0, 255, 0)  # a colour, but fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "l.png")
    label = read_label(tmp_path / "l.png")
    assert label.shape == (4, 6, 3)
    masks, colors = split_color_mask(label, min_area=1)
    np.testing.assert_array_equal(colors, [(255, 0, 0)])
    assert masks[..., 0].sum() == 4 * 3


def test_16_bit_and_8_bit_single_channel_labels(tmp_path):
    ids16 = np.zeros((5, 5), np.uint16)
    ids16[0:2] = 1000
    ids16[3:5] = 40000
    assert cv2.imwrite(str(tmp_path / "l16.png"), ids16)
    label = read_label(tmp_path / "l16.png")
    assert label.dtype == np.uint16
    masks, leaf_ids = split_label(label)
    np.testing.assert_array_equal(leaf_ids, [1000, 40000])
    assert masks.shape == (5, 5, 2)

    ids8 = np.zeros((5, 5), np.uint8)
    ids8[2, :] = 9
    assert cv2.imwrite(str(tmp_path / "l8.png"), ids8)
    label = read_label(tmp_path / "l8.png")
    assert label.dtype == np.uint8 and label.ndim == 2
    np.testing.assert_array_equal(split_label(label)[1], [9])


def test_16_bit_rgb_label_keeps_all_bits(tmp_path):
    rgb = np.zeros((3, 3, 3), np.uint16)
    rgb[0] = (256, 0, 0)  # same top byte as (257, 0, 0): only the low byte tells them apart
    rgb[1] = (257, 0, 0)
    assert cv2.imwrite(str(tmp_path / "l.png"), np.ascontiguousarray(rgb[..., ::-1]))
    label = read_label(tmp_path / "l.png")
    assert label.dtype == np.uint16
    masks, colors = split_color_mask(label, min_area=1)
    np.testing.assert_array_equal(colors, [(256, 0, 0), (257, 0, 0)])


@pytest.mark.parametrize("make", ["missing", "truncated", "text", "directory"])
def test_unreadable_label_raises_label_error_naming_the_file(tmp_path, make):
    path = tmp_path / "plant001_label.png"
    if make == "truncated":
        data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8))[1].tobytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "text":
        path.write_text("not an image\n")
    elif make == "directory":
        path.mkdir()
    with pytest.raises(LabelError) as info:
        read_label(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path and str(path) in str(info.value)
    assert info.value.reason


def test_split_functions_check_the_label_layout():
    with pytest.raises(ValueError, match="split_label"):
        split_color_mask(np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="split_color_mask"):
        split_label(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        split_instances(np.zeros((3, 3), np.float32))


def test_masks_to_label_later_masks_win():
    masks = np.zeros((3, 4, 2), bool)
    masks[0:2, 0:2, 0] = True
    masks[1:3, 1:3, 1] = True
    expected = np.array([[1, 1, 0, 0],
                         [1, 2, 2, 0],
                         [0, 2, 2, 0]], np.uint8)
    label = masks_to_label(masks)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, expected)
    assert masks_to_label(np.zeros((2, 2, 300), bool)).dtype == np.uint16


def test_masks_to_label_order_and_boxes_give_the_reordered_painting():
    """order paints in that order (ids stay k + 1), as painting masks[..., order] and renumbering;
    boxes give the same label where the masks lie in them, and are ignored where one does not."""
    rng = np.random.default_rng(3)
    masks = np.zeros((40, 50, 6), bool)
    boxes = []
    for k in range(6):
        y1, x1 = rng.integers(0, 30), rng.integers(0, 40)
        y2, x2 = y1 + rng.integers(3, 11), x1 + rng.integers(3, 11)
        masks[y1:y2, x1:x2, k] = rng.random((y2 - y1, x2 - x1)) < 0.7
        boxes.append([y1, x1, y2, x2])
    boxes = np.array(boxes)
    for order in (np.arange(6), rng.permutation(6), rng.permutation(6)):
        painted = masks_to_label(masks[..., order])
        expected = np.concatenate([[0], order + 1]).astype(np.uint8)[painted]
        np.testing.assert_array_equal(masks_to_label(masks, order=order), expected)
        np.testing.assert_array_equal(masks_to_label(masks, order=order, boxes=boxes), expected)
        np.testing.assert_array_equal(masks_to_label(masks, order=order, boxes=boxes + [0, 0, 50, 50]), expected)
    stray = masks.copy()
    stray[39, 49, 2] = True  # outside mask 2's box: the boxes cannot be used
    np.testing.assert_array_equal(masks_to_label(stray, boxes=boxes), masks_to_label(stray))
    assert masks_to_label(stray, boxes=boxes)[39, 49] == 3
    with pytest.raises(ValueError, match="permutation"):
        masks_to_label(masks, order=[0, 1, 2, 3, 4, 4])
    with pytest.raises(ValueError, match=r"boxes must be \[6, 4\]"):
        masks_to_label(masks, boxes=boxes[:5])


def test_label_and_colour_round_trips():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, (20, 30))  # ids 1..5, disjoint masks
    masks = np.stack([ids == k for k in range(1, 6)], axis=-1)

    np.testing.assert_array_equal(split_label(masks_to_label(masks), min_area=1)[0], masks)

    color = masks_to_color(masks)
    assert color.dtype == np.uint8 and color.shape == (20, 30, 3)
    np.testing.assert_array_equal(color[ids == 0], 0)
    back, colors = split_color_mask(color, min_area=1)
    assert back.shape == masks.shape
    # Instances come back in colour order; match each to the mask with its colour.
    palette = color[[np.argwhere(masks[..., k])[0][0] for k in range(5)],
                    [np.argwhere(masks[..., k])[0][1] for k in range(5)]]
    assert len({tuple(c) for c in palette}) == 5
    for k in range(5):
        j = int(np.flatnonzero((colors == palette[k]).all(axis=1))[0])
        np.testing.assert_array_equal(back[..., j], masks[..., k])

    chosen = np.array([[9, 9, 9], [1, 2, 3], [4, 5, 6], [7, 8, 9], [200, 100, 0]], np.uint8)
    np.testing.assert_array_equal(masks_to_color(masks, chosen)[ids == 2], np.broadcast_to(chosen[1], ((ids == 2).sum(), 3)))
    with pytest.raises(ValueError, match=r"\[5, 3\]"):
        masks_to_color(masks, chosen[:4])


def test_save_indexed_png_round_trip(tmp_path):
    ids = np.zeros((7, 9), np.uint8)
    ids[1:3, 1:8] = 4
    ids[4:6, 2:5] = 250
    path = save_indexed_png(ids, tmp_path / "out.png")
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[:768], np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(palette[0], 0)
    assert len({tuple(c) for c in palette[1:]}) == 255  # distinct display colours
    np.testing.assert_array_equal(read_label(path), ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left
    with pytest.raises(ValueError, match="0..255"):
        save_indexed_png(np.full((2, 2), 256, np.uint16), tmp_path / "big.png")
