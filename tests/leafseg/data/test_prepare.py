"""leafseg.data.prepare: image/label pairs -> data-science-bowl-2018 layout."""
import csv
import json
import os
import re
from collections import Counter
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from leafseg.cli.prepare import main
from leafseg.data.dataset import LeafDataset
from leafseg.data.prepare import assign_subset, prepare_dataset

REPO = Path(__file__).resolve().parents[3]
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
# Instances come out in ascending (R, G, B) order.
LEAVES = [RED, GREEN, BLUE]
LEAVES_IN_OUTPUT_ORDER = [BLUE, GREEN, RED]


def _label(height=24, width=32, colours=LEAVES):
    """One 2-pixel-high band per leaf colour."""
    label = np.zeros((height, width, 3), np.uint8)
    for k, colour in enumerate(colours):
        label[1 + 3 * k: 3 + 3 * k, 1: width - 1] = colour
    return label


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def _pair(folder, base, label=None, size=(24, 32)):
    seed = sum(base.encode())
    image = np.random.default_rng(seed).integers(0, 256, size + (3,), np.uint8)
    _write(folder / f"{base}_rgb.png", image)
    _write(folder / f"{base}_label.png", _label(*size) if label is None else label)


def _dataset(root, count, start=0):
    for i in range(start, start + count):
        _pair(root, f"plant{i:05d}")
    return root


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _mask(out, subset, sample_id, k):
    return cv2.imread(str(out / subset / sample_id / "masks" / f"{sample_id}_{k}.png"), cv2.IMREAD_UNCHANGED)


def _tree(root):
    """{relative path: (bytes, mtime_ns)} of every file under root."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sample_dirs(out):
    return {(d.parent.name, d.name) for subset in ("train", "val") for d in (out / subset).iterdir()}


def test_writes_the_dsb_layout_and_manifest(tmp_path):
    src = _dataset(tmp_path / "in", 5)
    out = tmp_path / "out"

    result = prepare_dataset(src, out)

    assert result.prepared == [f"plant{i:05d}" for i in range(5)]
    assert result.problems == [] and result.skipped == []
    rows = _manifest(out)
    assert [row["id"] for row in sorted(rows, key=lambda r: r["id"])] == result.prepared
    assert result.subset_counts == dict(Counter(row["subset"] for row in rows))
    label = _label()
    for row in rows:
        sample_id, subset = row["id"], row["subset"]
        assert subset == assign_subset(sample_id, 0, 0.2)
        assert (row["leaf_count"], row["height"], row["width"]) == ("3", "24", "32")
        assert row["source_image"] == str((src / f"{sample_id}_rgb.png").resolve())
        assert row["source_label"] == str((src / f"{sample_id}_label.png").resolve())
        sample_dir = out / subset / sample_id
        # The PNG image is copied as is.
        assert (sample_dir / "images" / f"{sample_id}.png").read_bytes() == (src / f"{sample_id}_rgb.png").read_bytes()
        assert sorted(p.name for p in (sample_dir / "masks").iterdir()) == [f"{sample_id}_{k}.png" for k in range(3)]
        for k, colour in enumerate(LEAVES_IN_OUTPUT_ORDER):
            mask = _mask(out, subset, sample_id, k)
            assert mask.dtype == np.uint8 and mask.shape == (24, 32)
            np.testing.assert_array_equal(mask, np.where((label == colour).all(-1), 255, 0))


def test_subfolders_cvppp_palette_labels_and_extra_files(tmp_path):
    src = tmp_path / "in"
    _pair(src / "train", "plant00001")
    _pair(src / "crossVal", "plant00001")  # same name in another folder
    ids = np.zeros((24, 32), np.uint8)
    ids[2:6, 2:10] = 2
    ids[10:20, 5:25] = 5
    cvppp = src / "A1"
    _write(cvppp / "plant001_rgb.png", np.full((24, 32, 3), 90, np.uint8))
    palette_png = Image.frombytes("P", (32, 24), ids.tobytes())
    palette_png.putpalette(np.random.default_rng(0).integers(0, 256, 768, np.uint8).tobytes())
    palette_png.save(cvppp / "plant001_label.png")
    _write(cvppp / "plant001_fg.png", np.zeros((24, 32, 3), np.uint8))
    _write(cvppp / "plant001_centers.png", np.zeros((24, 32, 3), np.uint8))

    result = prepare_dataset(src, tmp_path / "out")

    assert result.prepared == ["A1_plant001", "crossVal_plant00001", "train_plant00001"]
    assert result.problems == [] and result.ignored_files == 2
    row = next(r for r in _manifest(tmp_path / "out") if r["id"] == "A1_plant001")
    assert row["leaf_count"] == "2"
    np.testing.assert_array_equal(_mask(tmp_path / "out", row["subset"], "A1_plant001", 1), np.where(ids == 5, 255, 0))


def test_user_pattern_jpg_images_with_mask_suffix(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    image = np.full((24, 32, 3), (30, 120, 60), np.uint8)
    assert cv2.imwrite(str(src / "leafA.jpg"), image)
    _write(src / "leafA_mask.png", _label())
    assert cv2.imwrite(str(src / "leafB.jpg"), image)  # no mask

    result = prepare_dataset(src, tmp_path / "out", image_glob="*.jpg", label_suffix="_mask.png")

    assert result.prepared == ["leafA"]
    assert [(p.path.name, p.reason) for p in result.problems] == [("leafB.jpg", "image without label")]
    subset = assign_subset("leafA")
    images = list((tmp_path / "out" / subset / "leafA" / "images").iterdir())
    assert [p.name for p in images] == ["leafA.jpg"] and images[0].read_bytes() == (src / "leafA.jpg").read_bytes()


def test_image_files_are_kept_byte_for_byte_and_only_other_formats_re_encoded(tmp_path):
    """Issue 26, 6: a JPEG (or TIFF, BMP) comes out byte-identical, its suffix lower-cased; a
    truncated JPEG is bad; WebP is re-encoded as PNG, noted; an --overwrite with another suffix
    leaves one image in the sample folder."""
    src = tmp_path / "in"
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    for name in ("a.JPG", "b.jpeg", "c.tif", "d.bmp", "e.webp", "f.jpg"):
        _write(src / name, rgb)
        _write(src / f"{Path(name).stem}_label.png", _label())
    jpeg = (src / "f.jpg").read_bytes()
    (src / "f.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.fromarray(rgb).save(src / "g.jpg", format="MPO", save_all=True, append_images=[Image.fromarray(rgb)])
    _write(src / "g_label.png", _label())  # a phone's JPEG with a second picture: Pillow says MPO
    out = tmp_path / "out"
    result = prepare_dataset(src, out, image_glob="*.*", val_fraction=0)
    assert result.prepared == ["a", "b", "c", "d", "e", "g"]
    assert [(p.path.name, p.reason) for p in result.problems] == [("f.jpg", "unreadable image")]
    written = {d.name: list((d / "images").iterdir()) for d in (out / "train").iterdir()}
    assert {k: [p.name for p in v] for k, v in written.items()} == {
        "a": ["a.jpg"], "b": ["b.jpeg"], "c": ["c.tif"], "d": ["d.bmp"], "e": ["e.png"], "g": ["g.jpg"]}
    for name in ("a.JPG", "b.jpeg", "c.tif", "d.bmp", "g.jpg"):
        assert written[Path(name).stem][0].read_bytes() == (src / name).read_bytes(), name
    np.testing.assert_array_equal(cv2.imread(str(written["e"][0])), cv2.imread(str(src / "e.webp")))
    notes = {row["id"]: row["note"] for row in _manifest(out)}
    assert notes["a"] == "" and notes["e"] == "image re-encoded as PNG (a WEBP file)"
    meta = json.loads((out / "train" / "a" / "sample.json").read_text())
    assert (meta["image"], meta["image_bytes"]) == ("images/a.jpg", "kept")
    dataset = LeafDataset()
    dataset.load_leaves(out, "train")
    dataset.prepare()
    np.testing.assert_array_equal(dataset.load_image(0), cv2.imread(str(src / "a.JPG"))[..., ::-1])
    # The photograph re-exported as PNG: --overwrite leaves only a.png.
    (src / "a.JPG").unlink()
    _write(src / "a.png", rgb)
    prepare_dataset(src, out, image_glob="*.*", val_fraction=0, overwrite=True)
    assert [p.name for p in (out / "train" / "a" / "images").iterdir()] == ["a.png"]
    assert json.loads((out / "train" / "a" / "sample.json").read_text())["image"] == "images/a.png"


def test_labelme_image_data_keeps_its_jpeg_bytes(tmp_path):
    """Issue 26, 6: LabelMe's embedded imageData is written as its own format's bytes."""
    import base64

    jpeg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (24, 32, 3), np.uint8))[1].tobytes()
    folder = tmp_path / "labelme"
    folder.mkdir()
    (folder / "p.json").write_text(json.dumps({
        "shapes": [{"label": "leaf", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon", "group_id": None}],
        "imagePath": "gone/p.jpg", "imageData": base64.b64encode(jpeg).decode(), "imageHeight": 24, "imageWidth": 32}))
    prepare_dataset(folder, tmp_path / "out", labelme=True, val_fraction=0)
    assert (tmp_path / "out" / "train" / "p" / "images" / "p.jpg").read_bytes() == jpeg


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_phone_photograph_annotated_as_shown_gets_masks_on_its_stored_pixels(tmp_path, orientation):
    """A phone stores a portrait photo as landscape pixels plus an EXIF orientation; LabelMe (like
    CVAT and browsers) annotates it turned, and its imageHeight/imageWidth are the turned size.
    leafseg reads the stored pixels (load_image_file ignores the orientation): the masks are turned
    onto them, the JPEG's bytes kept."""
    from PIL import ImageOps

    stored = Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8))
    exif = stored.getexif()
    exif[0x0112] = orientation
    folder = tmp_path / "labelme"
    folder.mkdir()
    stored.save(folder / "IMG_1.jpg", exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(folder / "IMG_1.jpg"))
    points = [[1, 1], [12, 1], [12, 5], [1, 5]]  # a leaf in the shown photo's top-left corner
    (folder / "IMG_1.json").write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "imagePath": "IMG_1.jpg", "imageData": None,
        "imageHeight": shown.height, "imageWidth": shown.width,
        "shapes": [{"label": "leaf", "points": points, "shape_type": "polygon", "group_id": None}]}))
    drawn = Image.new("L", shown.size, 0)
    ImageDraw.Draw(drawn).polygon([tuple(p) for p in points], outline=255, fill=255)
    # The shown mask turned back as the stored pixels lie: undo the viewer's turn.
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    expected = np.asarray(drawn.transpose(undo)) > 0
    assert expected.shape == (24, 32)

    result = prepare_dataset(folder, tmp_path / "out", labelme=True, val_fraction=0)

    assert result.prepared == ["IMG_1"] and result.problems == [] and result.size_mismatches == []
    assert (_mask(tmp_path / "out", "train", "IMG_1", 0) > 0).tolist() == expected.tolist()
    assert (tmp_path / "out" / "train" / "IMG_1" / "images" / "IMG_1.jpg").read_bytes() == (folder / "IMG_1.jpg").read_bytes()
    assert f"turned from the photograph as shown (EXIF orientation {orientation})" in _manifest(tmp_path / "out")[0]["note"]
    dataset = LeafDataset()
    dataset.load_labelme(folder)
    dataset.prepare()
    masks, _ = dataset.load_mask(0)
    assert masks[..., 0].tolist() == expected.tolist() and dataset.load_image(0).shape[:2] == expected.shape


def test_size_mismatch_resize_scales_the_label_by_nearest_neighbour(tmp_path, caplog):
    src = tmp_path / "in"
    big = np.repeat(np.repeat(_label(), 2, axis=0), 2, axis=1)  # 64x48 label for a 32x24 image
    _pair(src, "plant00000", label=big)

    result = prepare_dataset(src, tmp_path / "out")

    assert result.prepared == ["plant00000"] and result.problems == []
    assert [sample_id for sample_id, _ in result.size_mismatches] == ["plant00000"]
    assert f"{src / 'plant00000_label.png'}: label resized" in caplog.text
    row = _manifest(tmp_path / "out")[0]
    assert "resized from 64x48 to 32x24" in row["note"]
    for k, colour in enumerate(LEAVES_IN_OUTPUT_ORDER):
        np.testing.assert_array_equal(_mask(tmp_path / "out", row["subset"], "plant00000", k),
                                      np.where((_label() == colour).all(-1), 255, 0))


def test_size_mismatch_crop_centre_crops_or_pads(tmp_path):
    src = tmp_path / "in"
    padded = np.pad(_label(), ((3, 3), (4, 4), (0, 0)))     # 40x30: larger, crop it
    _pair(src, "plant00000", label=padded)
    cropped = _label()[2:22, 2:30]                           # 28x20: smaller, pad it
    _pair(src, "plant00001", label=cropped)

    result = prepare_dataset(src, tmp_path / "out", size_mismatch="crop")

    assert result.prepared == ["plant00000", "plant00001"] and len(result.size_mismatches) == 2
    rows = {row["id"]: row for row in _manifest(tmp_path / "out")}
    assert "centre-cropped/padded from 40x30 to 32x24" in rows["plant00000"]["note"]
    expected_pad = np.zeros_like(_label())
    expected_pad[2:22, 2:30] = cropped
    for sample_id, expected in (("plant00000", _label()), ("plant00001", expected_pad)):
        for k, colour in enumerate(LEAVES_IN_OUTPUT_ORDER):
            np.testing.assert_array_equal(_mask(tmp_path / "out", rows[sample_id]["subset"], sample_id, k),
                                          np.where((expected == colour).all(-1), 255, 0))


def test_size_mismatch_error_reports_the_sample(tmp_path, caplog):
    src = tmp_path / "in"
    _pair(src, "plant00000", label=np.pad(_label(), ((0, 2), (0, 0), (0, 0))))
    _pair(src, "plant00001")

    result = prepare_dataset(src, tmp_path / "out", size_mismatch="error")

    assert result.prepared == ["plant00001"]
    [problem] = result.problems
    assert (problem.path, problem.reason) == (src / "plant00000_label.png", "size mismatch")
    assert "32x26" in problem.detail and "32x24" in problem.detail
    assert str(src / "plant00000_label.png") in caplog.text
    assert ("train", "plant00000") not in _sample_dirs(tmp_path / "out")
    assert ("val", "plant00000") not in _sample_dirs(tmp_path / "out")


def test_bad_inputs_are_reported_by_file_and_leave_nothing(tmp_path, caplog):
    src = tmp_path / "in"
    _pair(src, "good")
    png = cv2.imencode(".png", _label())[1].tobytes()
    _pair(src, "trunclabel")
    (src / "trunclabel_label.png").write_bytes(png[: len(png) // 2])
    _pair(src, "truncimage")
    image_png = (src / "truncimage_rgb.png").read_bytes()
    (src / "truncimage_rgb.png").write_bytes(image_png[: len(image_png) // 2])
    _pair(src, "nolabel")
    (src / "nolabel_label.png").unlink()
    _pair(src, "noimage")
    (src / "noimage_rgb.png").unlink()
    _pair(src, "empty", label=np.zeros((24, 32, 3), np.uint8))
    _pair(src, "text")
    (src / "text_label.png").write_text("leaf ids: 1 2 3\n")
    out = tmp_path / "out"

    result = prepare_dataset(src, out)

    assert result.prepared == ["good"]
    reasons = {p.path.name: p.reason for p in result.problems}
    assert reasons == {
        "trunclabel_label.png": "unreadable label",
        "truncimage_rgb.png": "unreadable image",
        "nolabel_rgb.png": "image without label",
        "noimage_label.png": "label without image",
        "empty_label.png": "empty label",
        "text_label.png": "unreadable label",
    }
    assert result.bad_by_reason["unreadable label"] == 2
    assert "bad 6" in result.summary()
    for problem in result.problems:
        assert str(problem.path) in caplog.text
    # Only the good sample was written, and no temporary folder is left behind.
    assert {name for _, name in _sample_dirs(out)} == {"good"}
    assert [row["id"] for row in _manifest(out)] == ["good"]


def test_too_many_leaves_is_bad(tmp_path):
    _pair(tmp_path / "in", "plant00000")
    result = prepare_dataset(tmp_path / "in", tmp_path / "out", max_leaves=2)
    assert result.prepared == []
    assert [(p.path.name, p.reason) for p in result.problems] == [("plant00000_label.png", "too many leaves")]
    assert not (tmp_path / "out").exists(), "nothing prepared: no empty layout left behind"


def test_small_regions_are_dropped_and_noted(tmp_path):
    label = _label()
    label[23, 0:2] = YELLOW  # 2 stray pixels
    _pair(tmp_path / "in", "plant00000", label=label)
    result = prepare_dataset(tmp_path / "in", tmp_path / "out", min_area=3)
    assert result.dropped_regions == 1
    row = _manifest(tmp_path / "out")[0]
    assert row["leaf_count"] == "3" and "1 regions under 3 px dropped" in row["note"]


def test_rerun_skips_finished_samples_and_overwrite_redoes_them(tmp_path):
    src = _dataset(tmp_path / "in", 4)
    out = tmp_path / "out"
    first = prepare_dataset(src, out)
    before = _tree(out)

    again = prepare_dataset(src, out)

    assert again.prepared == [] and again.skipped == first.prepared
    assert _tree(out) == before  # same bytes, same mtimes, manifest included

    redone = prepare_dataset(src, out, overwrite=True)
    assert redone.prepared == first.prepared and redone.skipped == []
    after = _tree(out)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


def test_leftovers_of_an_interrupted_run_are_removed(tmp_path):
    src = _dataset(tmp_path / "in", 2)
    out = tmp_path / "out"
    subset = assign_subset("plant00000")
    stale = out / subset / ".tmp-plant00000-99999" / "masks"
    stale.mkdir(parents=True)
    (stale / "plant00000_0.png").write_bytes(b"\x89PNG half")

    result = prepare_dataset(src, out)

    assert result.prepared == ["plant00000", "plant00001"]
    assert not (out / subset / ".tmp-plant00000-99999").exists()
    assert len(list((out / subset / "plant00000" / "masks").iterdir())) == 3


def test_split_is_deterministic_by_seed_and_about_80_20():
    ids = [f"plant{i:05d}" for i in range(2000)]
    subsets = [assign_subset(i, seed=0, val_fraction=0.2) for i in ids]
    assert subsets == [assign_subset(i, seed=0, val_fraction=0.2) for i in ids]
    assert 0.17 < subsets.count("val") / len(ids) < 0.23
    other_seed = [assign_subset(i, seed=1, val_fraction=0.2) for i in ids]
    assert other_seed != subsets and 0.17 < other_seed.count("val") / len(ids) < 0.23
    assert {assign_subset(i, 0, 0.0) for i in ids} == {"train"}
    assert {assign_subset(i, 0, 1.0) for i in ids} == {"val"}


def test_added_samples_do_not_move_prepared_ones(tmp_path):
    src = _dataset(tmp_path / "in", 6)
    out = tmp_path / "out"
    prepare_dataset(src, out)
    before = _sample_dirs(out)
    _dataset(src, 6, start=6)

    result = prepare_dataset(src, out)

    assert len(result.skipped) == 6 and len(result.prepared) == 6 and result.moved == []
    assert before <= _sample_dirs(out)


def test_a_new_seed_moves_samples_between_subsets(tmp_path):
    src = _dataset(tmp_path / "in", 12)
    out = tmp_path / "out"
    prepare_dataset(src, out, val_fraction=0.5, seed=0)

    result = prepare_dataset(src, out, val_fraction=0.5, seed=1)

    changed = [i for i in result.skipped + result.moved if assign_subset(i, 0, 0.5) != assign_subset(i, 1, 0.5)]
    assert sorted(result.moved) == sorted(changed) and changed
    dirs = _sample_dirs(out)
    assert dirs == {(assign_subset(f"plant{i:05d}", 1, 0.5), f"plant{i:05d}") for i in range(12)}
    assert {(row["subset"], row["id"]) for row in _manifest(out)} == dirs


def test_input_folder_is_not_modified(tmp_path):
    src = _dataset(tmp_path / "in", 3)
    (src / "notes.txt").write_text("not an image\n")
    _pair(src, "bad", label=np.zeros((24, 32, 3), np.uint8))
    before = _tree(src)
    prepare_dataset(src, tmp_path / "out")
    prepare_dataset(src, tmp_path / "out", overwrite=True)
    assert _tree(src) == before


def test_output_inside_the_input_is_not_searched(tmp_path):
    src = _dataset(tmp_path / "in", 2)
    prepare_dataset(src, src / "prepared", image_glob="*.png", label_suffix="_label.png")
    again = prepare_dataset(src, src / "prepared", image_glob="*.png", label_suffix="_label.png")
    assert again.problems == [] and len(again.skipped) == 2


def test_two_workers_give_the_same_output_as_one(tmp_path):
    src = _dataset(tmp_path / "in", 6)
    one = prepare_dataset(src, tmp_path / "one", workers=1)
    two = prepare_dataset(src, tmp_path / "two", workers=2)
    assert one.prepared == two.prepared
    assert ({k: v[0] for k, v in _tree(tmp_path / "one").items()}
            == {k: v[0] for k, v in _tree(tmp_path / "two").items()})


def test_main_exit_codes(tmp_path, capsys):
    src = _dataset(tmp_path / "in", 2)
    assert main(["--input", str(src), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--input", str(empty), "--output", str(tmp_path / "out2"), "--quiet"]) == 1
    assert "nothing could be prepared" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out3")]) == 2
    with pytest.raises(SystemExit) as info:
        main(["--input", str(src), "--output", str(tmp_path / "out4"), "--size-mismatch", "stretch"])
    assert info.value.code == 2


def test_script_exit_codes_and_messages(tmp_path):
    src = _dataset(tmp_path / "in", 2)
    script = [sys.executable, str(REPO / "scripts" / "prepare_masks.py"), "--input", str(src)]
    env = dict(os.environ, PYTHONPATH=str(REPO))

    ok = subprocess.run(script + ["--output", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "prepared 2" in ok.stdout

    (src / "plant00009_label.png").write_bytes(b"garbage")  # a label without image
    lenient = subprocess.run(script + ["--output", str(tmp_path / "out2")], capture_output=True, text=True, env=env)
    assert lenient.returncode == 0
    strict = subprocess.run(script + ["--output", str(tmp_path / "out3"), "--strict"],
                            capture_output=True, text=True, env=env)
    assert strict.returncode == 1
    assert str(src / "plant00009_label.png") in strict.stderr and "label without image" in strict.stderr


def test_input_inside_the_output_subsets_is_refused(tmp_path):
    src = _dataset(tmp_path / "out" / "train", 1)
    with pytest.raises(ValueError, match="must not be the output folder"):
        prepare_dataset(src, tmp_path / "out")
    with pytest.raises(ValueError, match="must not be the output folder"):
        prepare_dataset(src, src)


def _subsets(out):
    return {row["id"]: row["subset"] for row in _manifest(out)}


def test_empty_val_names_the_smallest_fraction_that_fills_it(tmp_path, caplog):
    src = _dataset(tmp_path / "in", 6)
    prepare_dataset(src, tmp_path / "out", val_fraction=0.1)
    assert "val" not in _subsets(tmp_path / "out").values()
    message = next(r.getMessage() for r in caplog.records if "the val subset is empty" in r.getMessage())
    suggested = re.search(r"--val-fraction ([0-9.]+) puts (\d+) in val", message)
    assert "with 6 samples and --seed 0" in message and suggested, message
    fraction, count = float(suggested.group(1)), int(suggested.group(2))
    assert count >= 1
    prepare_dataset(src, tmp_path / "out", val_fraction=fraction)
    assert Counter(_subsets(tmp_path / "out").values())["val"] == count
    prepare_dataset(src, tmp_path / "out", val_fraction=round(fraction - 0.01, 2))  # the smallest that works
    assert "val" not in _subsets(tmp_path / "out").values()


def test_val_ids_choose_the_val_samples_and_reruns_follow(tmp_path):
    src = _dataset(tmp_path / "in", 6)
    out = tmp_path / "out"
    assert main(["--input", str(src), "--output", str(out), "--val-ids", "plant00001, plant00004", "--quiet"]) == 0
    expected = {f"plant{i:05d}": "val" if i in (1, 4) else "train" for i in range(6)}
    assert _subsets(out) == expected
    assert _sample_dirs(out) == {(subset, sample_id) for sample_id, subset in expected.items()}

    ids = tmp_path / "val_ids.txt"
    ids.write_text("# chosen by hand\nplant00002\n\n")
    for option in (f"@{ids}", str(ids)):
        assert main(["--input", str(src), "--output", str(out), "--val-ids", option, "--quiet"]) == 0
        expected = {f"plant{i:05d}": "val" if i == 2 else "train" for i in range(6)}
        assert _subsets(out) == expected
        assert _sample_dirs(out) == {(subset, sample_id) for sample_id, subset in expected.items()}


def test_val_ids_that_name_no_sample_are_an_error(tmp_path, capsys):
    src = _dataset(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert main(["--input", str(src), "--output", str(out), "--val-ids", "plant00001,plantX,nope"]) == 2
    err = capsys.readouterr().err
    assert "nope, plantX" in err and "plant00000" in err  # the unknown ids, and what ids look like
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["--input", str(src), "--output", str(out), "--val-ids", f"@{tmp_path / 'missing.txt'}"])
    assert "missing.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input", str(src), "--output", str(out), "--val-ids", "plant00001", "--val-fraction", "0.5"])


def _coco_dataset(folder, count, annotated_size=(24, 32)):
    """COCO polygons of the three bands of _label on images written like _pair's."""
    height, width = annotated_size
    images, annotations = [], []
    for i in range(count):
        base = f"plant{i:05d}"
        image = np.random.default_rng(i).integers(0, 256, (24, 32, 3), np.uint8)
        _write(folder / "images" / f"{base}.png", image)
        images.append({"id": i, "file_name": f"{base}.png", "height": height, "width": width})
        for k in range(len(LEAVES)):
            y0, y1 = (1 + 3 * k) * height // 24, (3 + 3 * k) * height // 24
            annotations.append({"id": 10 * i + k, "image_id": i, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[1, y0, width - 1, y0, width - 1, y1, 1, y1]]})
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "leaf"}]}))
    return path


def test_coco_input_follows_the_same_rules(tmp_path):
    coco = _coco_dataset(tmp_path / "in", 4)
    out = tmp_path / "out"
    stale = out / "val" / ".tmp-plant00000-99999"
    stale.mkdir(parents=True)
    result = prepare_dataset(tmp_path / "in" / "images", out, coco=coco, val_ids=["plant00001"], workers=2)
    assert sorted(result.prepared) == [f"plant{i:05d}" for i in range(4)] and not stale.exists()
    assert _subsets(out) == {"plant00000": "train", "plant00001": "val", "plant00002": "train",
                             "plant00003": "train"}
    # The same masks as the colour label of the same bands (mask k: band k, top to bottom).
    for k in range(3):
        expected = np.zeros((24, 32), np.uint8)
        expected[1 + 3 * k: 3 + 3 * k, 1:31] = 255
        np.testing.assert_array_equal(_mask(out, "val", "plant00001", k), expected)
    rows = {row["id"]: row for row in _manifest(out)}
    assert rows["plant00001"]["source_label"] == str(coco.resolve()) and rows["plant00001"]["leaf_count"] == "3"
    before = _tree(out)
    again = prepare_dataset(tmp_path / "in" / "images", out, coco=coco, val_ids=["plant00001"])
    assert again.prepared == [] and len(again.skipped) == 4 and _tree(out) == before
    moved = prepare_dataset(tmp_path / "in" / "images", out, coco=coco, val_fraction=0.0)
    assert moved.moved == ["plant00001"] and set(_subsets(out).values()) == {"train"}


def test_coco_annotated_at_another_size_follow_size_mismatch(tmp_path):
    coco = _coco_dataset(tmp_path / "in", 1, annotated_size=(12, 16))
    result = prepare_dataset(tmp_path / "in" / "images", tmp_path / "out", coco=coco, val_fraction=0)
    assert result.size_mismatches == [("plant00000", "label resized from 16x12 to 32x24 (width x height), "
                                                     "nearest neighbour")]
    refused = prepare_dataset(tmp_path / "in" / "images", tmp_path / "out2", coco=coco, size_mismatch="error")
    assert [p.reason for p in refused.problems] == ["size mismatch"] and refused.problems[0].path == coco


def _cvat_export(root, count=2):
    """CVAT's "COCO 1.0" export: annotations/instances_default.json, images/default/<file>."""
    coco = _coco_dataset(root / "flat", count)
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "default").mkdir(parents=True)
    for image in sorted((root / "flat" / "images").iterdir()):
        image.rename(root / "images" / "default" / image.name)
    return coco.rename(root / "annotations" / "instances_default.json")


def test_a_cvat_export_finds_its_images_in_the_subset_folder(tmp_path):
    """Issue 26, 2: with --input images/, the images in images/default/ are found."""
    coco = _cvat_export(tmp_path / "cvat")
    result = prepare_dataset(tmp_path / "cvat" / "images", tmp_path / "out", coco=coco, val_fraction=0.0)
    assert sorted(result.prepared) == ["plant00000", "plant00001"] and result.problems == []


def test_coco_without_input_looks_beside_the_export(tmp_path, capsys):
    """Issue 26, 2: --input defaults to the export's images/ (here beside the JSON's folder)."""
    coco = _cvat_export(tmp_path / "cvat")
    assert main(["--coco", str(coco), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    assert "--input not given" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) + sorted(
        p.name for p in (tmp_path / "out" / "val").iterdir()) != []


def test_nothing_prepared_leaves_no_empty_output_folder(tmp_path):
    """Issue 26, 2: a run that prepares nothing removes the output folder it made."""
    coco = _coco_dataset(tmp_path / "in", 2)
    for image in (tmp_path / "in" / "images").iterdir():
        image.unlink()
    result = prepare_dataset(tmp_path / "in" / "images", tmp_path / "out", coco=coco)
    assert result.finished == 0 and not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    prepare_dataset(tmp_path / "in" / "images", tmp_path / "mine", coco=coco)
    assert (tmp_path / "mine").is_dir(), "a folder that was there before is left"


def _roboflow_export(root, splits=(("train", 3), ("valid", 2), ("test", 1))):
    """Roboflow's COCO export: <split>/_annotations.coco.json with the images beside it, file
    names shared across splits (as a re-exported photograph is), its dataset-named category 0."""
    for split, count in splits:
        folder = root / split
        coco = _coco_dataset(folder, count)
        for image in (folder / "images").iterdir():
            image.rename(folder / image.name)
        (folder / "images").rmdir()
        document = json.loads(coco.read_text())
        document["categories"] = [{"id": 0, "name": "leaves-x1y2", "supercategory": "none"},
                                  {"id": 1, "name": "leaf", "supercategory": "leaves-x1y2"}]
        (folder / "_annotations.coco.json").write_text(json.dumps(document))
        coco.unlink()
    (root / "README.roboflow.txt").write_text("exported from roboflow\n")
    return root


def test_a_roboflow_export_folder_keeps_its_split_and_ids_stay_unique(tmp_path, capsys):
    """Issue 26, 4: one prepare takes every split; train -> train, valid and test -> val; ids get
    their split folder's name, so plant00000 of train/, valid/ and test/ are three samples."""
    export = _roboflow_export(tmp_path / "export")
    out = tmp_path / "out"
    assert main(["--coco", str(export), "--output", str(out), "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert _subsets(out) == {"train_plant00000": "train", "train_plant00001": "train", "train_plant00002": "train",
                             "valid_plant00000": "val", "valid_plant00001": "val", "test_plant00000": "val"}
    assert f"split kept from the export: {export / 'test' / '_annotations.coco.json'} -> val" in captured.out
    assert "--input not given" in captured.err  # each file's images: beside it
    # The same from the files one by one, in any order; --val-fraction cannot move them.
    again = tmp_path / "again"
    files = [str(export / split / "_annotations.coco.json") for split in ("valid", "train", "test")]
    assert main(["--coco", files[0], "--coco", files[1], "--coco", files[2], "--output", str(again),
                 "--val-fraction", "1", "--quiet"]) == 0
    assert "--val-fraction ignored: the export's own train / val split is kept" in capsys.readouterr().err
    assert _subsets(again) == _subsets(out)
    # --val-ids cannot override the export's split.
    assert main(["--coco", str(export), "--output", str(out), "--val-ids", "train_plant00000", "--quiet"]) == 2
    assert "whose subset the export's split folders give (train_plant00000)" in capsys.readouterr().err


def test_one_split_alone_or_a_file_in_no_split_folder_is_split_by_the_seed(tmp_path):
    """Issue 26, 4: a train/ alone has no val to keep: the seeded split, ids still prefixed; a
    file outside split folders is split by the seed beside an export's split files."""
    export = _roboflow_export(tmp_path / "export", splits=(("train", 4),))
    result = prepare_dataset(None, tmp_path / "out", coco=export, val_ids=["train_plant00001"])
    assert result.export_split == {} and _subsets(tmp_path / "out") == {
        "train_plant00000": "train", "train_plant00001": "val", "train_plant00002": "train",
        "train_plant00003": "train"}
    _roboflow_export(export, splits=(("valid", 1),))
    extra = _coco_dataset(tmp_path / "extra", 2)
    mixed = prepare_dataset(None, tmp_path / "mixed", coco=[export, extra], val_ids=["plant00001"])
    assert _subsets(tmp_path / "mixed") == {
        "train_plant00000": "train", "train_plant00001": "train", "train_plant00002": "train",
        "train_plant00003": "train", "valid_plant00000": "val", "plant00000": "train", "plant00001": "val"}
    assert mixed.problems == []


def test_two_files_sharing_a_sample_id_and_missing_coco_paths(tmp_path, capsys):
    """Issue 26, 4: an id two files in no split folder share is reported, not overwritten; a
    folder without JSON files is an error naming it."""
    first, second = _coco_dataset(tmp_path / "a", 1), _coco_dataset(tmp_path / "b", 1)
    result = prepare_dataset(None, tmp_path / "out", coco=[first, second])
    assert result.prepared == ["plant00000"]
    assert [(p.path, p.reason) for p in result.problems] == [(second, "duplicate id")]
    assert f"already used by image id 0 (plant00000.png) of {first}" in result.problems[0].detail
    (tmp_path / "empty").mkdir()
    assert main(["--coco", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert f"no COCO *.json file in {tmp_path / 'empty'}" in capsys.readouterr().err


def _classes_coco(folder, count=2, categories=((2, "leaf"), (3, "stem"), (1, "root"))):
    """_coco_dataset's three bands, band k of the k-th category; Roboflow's parent category 0."""
    coco = _coco_dataset(folder, count)
    document = json.loads(coco.read_text())
    for annotation in document["annotations"]:
        annotation["category_id"] = categories[annotation["id"] % 10][0]
    document["categories"] = [{"id": 0, "name": "plants-x1y2"}] + [{"id": i, "name": n} for i, n in categories]
    coco.write_text(json.dumps(document))
    return coco


def _sample_json(out, sample_id):
    path = next(out.glob(f"*/{sample_id}/sample.json"))
    return json.loads(path.read_text())


def test_classes_keep_categories_as_classes_in_the_order_given(tmp_path, capsys):
    """Issue 26, 5: --classes stem,leaf: classes.json ["stem", "leaf"], each mask's class in
    sample.json, root ignored; the summary counts each class."""
    coco = _classes_coco(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["--coco", str(coco), "--output", str(out), "--classes", "stem,leaf", "--val-fraction", "0"]) == 0
    assert "classes (classes.json): stem 2, leaf 2 instances prepared" in capsys.readouterr().out
    assert json.loads((out / "classes.json").read_text()) == ["stem", "leaf"]
    meta = _sample_json(out, "plant00000")
    assert meta["classes"] == ["leaf", "stem"] and meta["leaf_count"] == 2
    assert meta["annotations"] == ["annotation id 0", "annotation id 1"]  # band 0 (leaf), band 1 (stem)
    expected = np.zeros((24, 32), np.uint8)
    expected[4:6, 1:31] = 255  # band 1: the stem
    np.testing.assert_array_equal(_mask(out, "train", "plant00000", 1), expected)
    # Without --classes: as before, one class, leaf, every category a leaf; no classes.json.
    plain = tmp_path / "plain"
    assert main(["--coco", str(coco), "--output", str(plain), "--quiet"]) == 0
    assert not (plain / "classes.json").exists() and "classes" not in _sample_json(plain, "plant00000")
    assert _sample_json(plain, "plant00000")["leaf_count"] == 3


def test_classes_all_coco_by_category_id_labelme_by_name(tmp_path):
    """Issue 26, 5: --classes all: COCO's annotated categories in id order (the parent category
    with no annotations is none), LabelMe's labels by name."""
    coco = _classes_coco(tmp_path / "in")
    result = prepare_dataset(tmp_path / "in" / "images", tmp_path / "out", coco=coco, classes="all")
    assert result.classes == ["root", "leaf", "stem"]
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == ["root", "leaf", "stem"]
    assert dict(result.class_instances) == {"root": 2, "leaf": 2, "stem": 2}
    folder = tmp_path / "labelme"
    folder.mkdir()
    _write(folder / "p.png", np.zeros((24, 32, 3), np.uint8))
    shapes = [{"label": label, "points": [[1, y], [9, y], [9, y + 3]], "shape_type": "polygon", "group_id": None}
              for label, y in (("stem", 1), ("leaf", 8), ("flower", 15))]
    (folder / "p.json").write_text(json.dumps({"shapes": shapes, "imagePath": "p.png", "imageData": None,
                                               "imageHeight": 24, "imageWidth": 32}))
    labelme = prepare_dataset(folder, tmp_path / "lm", labelme=True, classes="all", val_fraction=0)
    assert labelme.classes == ["flower", "leaf", "stem"]
    assert _sample_json(tmp_path / "lm", "p")["classes"] == ["stem", "leaf", "flower"]


def test_a_rerun_with_other_classes_is_an_error_naming_both(tmp_path, capsys):
    """Issue 26, 5: one output, one set of classes; --overwrite redoes it; --classes and
    --category exclude each other; --classes needs annotations."""
    coco = _classes_coco(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--coco", str(coco), "--output", str(out), "--quiet"]
    assert main(args + ["--classes", "leaf,stem"]) == 0
    assert main(args + ["--classes", "leaf,stem"]) == 0  # the same: finished samples skipped
    assert main(args + ["--classes", "leaf"]) == 2
    assert (f"{out} was prepared with --classes leaf,stem (classes.json), not --classes leaf: give the same "
            "classes, --overwrite to redo every sample, or another --output") in capsys.readouterr().err
    assert main(args) == 2
    assert "not one class, leaf (no --classes)" in capsys.readouterr().err
    assert main(args + ["--classes", "leaf", "--overwrite"]) == 0
    assert json.loads((out / "classes.json").read_text()) == ["leaf"]
    assert _sample_json(out, "plant00000")["classes"] == ["leaf"]
    assert main(args + ["--overwrite"]) == 0 and not (out / "classes.json").exists()
    assert main(args + ["--classes", "leaf"]) == 2
    assert "was prepared with one class, leaf (no --classes)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--classes", "leaf", "--category", "leaf"])
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--classes", "leaf"]) == 2
    assert "--classes needs --coco or --labelme" in capsys.readouterr().err


def test_images_nobody_annotated_are_left_out_not_bad(tmp_path, capsys):
    """An export lists every image of its task; one without any annotation is counted as not
    annotated and left out, and is no bad input (--strict still exits 0)."""
    coco = _coco_dataset(tmp_path / "in", 3)
    document = json.loads(coco.read_text())
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] != 1]
    coco.write_text(json.dumps(document))
    result = prepare_dataset(tmp_path / "in" / "images", tmp_path / "out", coco=coco, progress=False)
    assert sorted(result.prepared) == ["plant00000", "plant00002"] and result.problems == []
    assert result.unannotated == ["plant00001"]
    assert "bad 0, not annotated (left out) 1" in result.summary()
    assert main(["--coco", str(coco), "--input", str(tmp_path / "in" / "images"), "--output",
                 str(tmp_path / "strict"), "--strict", "--quiet"]) == 0
