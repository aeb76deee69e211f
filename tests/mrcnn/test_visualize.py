import numpy as np

from mrcnn import visualize


def test_draw_instances_tints_only_mask_pixels():
    image = np.full((20, 30, 3), 100, np.uint8)
    masks = np.zeros((20, 30, 2), bool)
    masks[2:8, 3:9, 0] = True
    masks[10:18, 15:25, 1] = True
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    out = visualize.draw_instances(image, masks, colors=colors, alpha=0.5, outline=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[4, 5], [round(0.5 * 100 + 0.5 * 255), 50, 50])
    np.testing.assert_array_equal(out[12, 20], [50, 50, round(0.5 * 100 + 0.5 * 255)])
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    outlined = visualize.draw_instances(image, masks, colors=colors, alpha=0.0, labels=["1", "2"])
    assert (outlined[2, 3:9] == [255, 0, 0]).all(axis=-1).any()  # the top edge of mask 0 is outlined
    assert visualize.draw_instances(image, np.zeros((20, 30, 0), bool)).shape == (20, 30, 3)


def test_random_colors_are_distinct():
    colors = visualize.random_colors(12)
    assert colors.shape == (12, 3)
    assert len({tuple(c) for c in colors}) == 12


def test_plot_history_and_save_image_write_pngs(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.5, 2.0], "rpn_class_loss": [1.0, 0.5, 0.4]}
    path = visualize.plot_history(history, tmp_path / "losses.png", boundaries=[2])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = visualize.save_image(np.zeros((4, 5, 3), np.uint8), tmp_path / "sub" / "x.png")
    assert saved.is_file()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["losses.png", "x.png"]


def _draw_over_whole_image(image, masks, labels, colors, alpha=0.45):
    """draw_instances as it was written first: every instance over the whole image."""
    import cv2

    out = image.astype(np.float32).copy()
    for i in range(masks.shape[-1]):
        out[masks[..., i]] = (1 - alpha) * out[masks[..., i]] + alpha * colors[i]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    for i in range(masks.shape[-1]):
        color = tuple(int(c) for c in colors[i])
        contours, _ = cv2.findContours(masks[..., i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, color, 1)
        if masks[..., i].any():
            ys, xs = np.nonzero(masks[..., i])
            k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            scale = max(0.3, min(image.shape[:2]) / 900)
            (tw, th), _ = cv2.getTextSize(str(labels[i]), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            origin = (int(xs[k] - tw / 2), int(ys[k] + th / 2))
            cv2.putText(out, str(labels[i]), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, str(labels[i]), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


def test_drawing_each_instance_within_its_box_gives_the_pixels_of_drawing_it_over_the_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 130, 3), np.uint8)
    masks = np.zeros((90, 130, 7), bool)
    for k in range(4):  # rectangles and discs, overlapping ones too
        y, x = rng.integers(0, 70, 2)
        masks[y:y + rng.integers(2, 30), x:x + rng.integers(2, 60), k] = True
    yy, xx = np.mgrid[:90, :130]
    masks[..., 4] = (yy - 45) ** 2 + (xx - 0) ** 2 < 300         # cut by the left edge
    masks[..., 5] = ((yy - 20) ** 2 + (xx - 100) ** 2 < 150) & ((yy + xx) % 7 > 0)  # holes, pieces
    # masks[..., 6] stays empty: nothing drawn, no label
    colors = visualize.random_colors(7)
    labels = [str(k + 1) for k in range(7)]
    expected = _draw_over_whole_image(image, masks, labels, colors)
    assert np.array_equal(visualize.draw_instances(image, masks, labels=labels, colors=colors), expected)


def test_image_grid_headings_line_up_with_a_row_title_of_several_lines():
    """The first row's other images get as many lines under their column title as the row title
    has, so a two-line row title (evaluate's "cropped to ...") does not run into "ground truth"."""
    image = np.zeros((8, 8, 3), np.uint8)
    fig = visualize.plot_image_grid([[image, image]], row_titles=["a.png: SBD 0.5\ncropped to x 1-4"],
                                    column_titles=("prediction", "ground truth"))
    first, second = (ax.get_title(loc="left") for ax in fig.axes[:2])
    assert first.count("\n") == second.count("\n") == 2
    assert second.startswith("ground truth\n")


def test_draw_label_gives_draw_instances_overlay_of_the_same_disjoint_instances():
    """draw_label(image, label) is draw_instances(image, label == each id) pixel for pixel: fill,
    outlines and centred ids, other opacities, a gray image and a float one, an id with no pixel
    left (None box) and ids left blank."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    label = np.zeros((90, 120), np.uint8)
    for k, (y, x, r) in enumerate([(20, 30, 12), (50, 60, 18), (70, 100, 9), (25, 95, 14)], start=1):
        yy, xx = np.ogrid[:90, :120]
        label[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = k  # later circles cover earlier ones
    label[label == 3] = 0  # id 3 has no pixel
    masks = label[..., None] == np.arange(1, 5)
    colors = visualize.random_colors(4, seed=2)
    for kwargs in ({"labels": ["1", "2", "3", "4"]}, {"labels": ["1", "", "3", "4"], "outline": False}, {}):
        expected = visualize.draw_instances(image, masks, colors=colors, **kwargs)
        np.testing.assert_array_equal(visualize.draw_label(image, label, colors=colors, **kwargs), expected)
    for alpha in (0.3, 0.8):  # the fill's table is made per alpha
        np.testing.assert_array_equal(visualize.draw_label(image, label, colors=colors, alpha=alpha),
                                      visualize.draw_instances(image, masks, colors=colors, alpha=alpha))
    gray = image[..., 0]
    np.testing.assert_array_equal(visualize.draw_label(gray, label, colors=colors),
                                  visualize.draw_instances(gray, masks, colors=colors))
    floats = image.astype(np.float64) + 0.4  # not uint8: computed, not looked up
    np.testing.assert_array_equal(visualize.draw_label(floats, label, colors=colors),
                                  visualize.draw_instances(floats, masks, colors=colors))
    assert visualize.draw_label(image, np.zeros_like(label)).dtype == np.uint8
