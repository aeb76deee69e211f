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
