"""leafseg track: time order from names and EXIF, plants of a folder, the whole command on drawn
time-lapses with a stand-in model that returns the true leaves (ids must follow the truth), a
leaf missed for a frame getting its id back, resume after an interruption, and the errors.

The stand-in (``Oracle``) reads a photograph whose every leaf is painted in a colour of its own
(the time-lapse's palette label copied over the photograph) and returns one mask per colour."""
import csv
import shutil
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leafseg.cli import track as track_command
from leafseg.data.masks import leaf_palette, read_label
from leafseg.inference import track
from leafseg.inference.results import SettingsMismatch
from leafseg.measure.tracking import tracking_scores
from leafseg.synth.timelapse import generate_time_lapse, time_lapse_paths, write_time_lapses
from tests.command_output import run_main

DAYS = 6
SIZE = 160


class Oracle:
    """A stand-in for an inference MaskRCNN: one mask per colour other than black, a score that
    depends on the colour only. ``drop(call, colour)`` leaves a colour out of one call's image
    (calls counted from 0); ``fail_after`` raises on that call; ``calls`` counts images seen."""

    def __init__(self, size=256, fail_after=None, drop=None):
        self.config = types.SimpleNamespace(IMAGE_MAX_DIM=size, NUM_CLASSES=2, DETECTION_MIN_CONFIDENCE=0.5)
        self.calls, self.fail_after, self.drop = 0, fail_after, drop or {}

    def detect(self, images, verbose=0):
        results = []
        for image in images:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("interrupted")
            results.append(self._detect(np.asarray(image), self.drop.get(self.calls)))
            self.calls += 1
        return results

    @staticmethod
    def _detect(image, dropped):
        code = (image[..., 0].astype(np.int64) << 16) | (image[..., 1].astype(np.int64) << 8) | image[..., 2]
        colours = [c for c in np.unique(code) if c != 0 and c != dropped]
        masks = np.stack([code == c for c in colours], axis=-1) if colours else np.zeros((*code.shape, 0), bool)
        rois = np.zeros((len(colours), 4), np.int32)
        for k in range(len(colours)):
            ys, xs = np.nonzero(masks[..., k])
            rois[k] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
        scores = np.array([0.5 + (int(c) * 7919 % 4801) / 10000 for c in colours], np.float32)
        return {"rois": rois, "class_ids": np.ones(len(colours), np.int32), "scores": scores, "masks": masks}


def colour_code(leaf):
    r, g, b = (int(v) for v in leaf_palette(leaf)[leaf - 1])
    return (r << 16) | (g << 8) | b


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def touch_png(path, value=0):
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def lapses(tmp_path_factory):
    """Two drawn time-lapses whose photographs are their colour labels (what the oracle reads)."""
    root = tmp_path_factory.mktemp("lapses")
    write_time_lapses(root, days=DAYS, count=2, seed=4, size=SIZE, progress=False)
    for plant in range(2):
        for rgb, label in time_lapse_paths(root, plant, DAYS):
            shutil.copy(label, rgb)
    return root


def command(monkeypatch, model, argv):
    monkeypatch.setattr(track_command, "load_inference_model", lambda *args, **kwargs: (model, "test", "oracle"))
    monkeypatch.setattr(track_command, "setup_command_logging", lambda *args, **kwargs: None)  # (no TensorFlow)
    return run_main(track_command.main, [*map(str, argv), "--quiet"])


def outputs(out):
    """Every output file's bytes, keyed by its path in ``out`` (the state folder left out, and
    report.html, which names the folder and the time it was written)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and track.TRACK_DIR not in p.relative_to(out).parts and p.name != "report.html"}


# ---------------------------------------------------------------------------------- time order

LAYOUTS = {  # scrambled prefixes, so that only the date puts them in order
    "underscores": (["c_2016_10_03", "a_2016_10_01", "b_2016_10_02", "d_2016_09_30"], "date"),
    "dashes": (["c_2016-10-03_rgb", "a_2016-10-01_rgb", "b_2016-11-02_rgb"], "date"),
    "compact": (["x_20161003", "z_20161001", "y_20170102"], "date"),
    "hour and minute": (["c_2016_10_01_14_05", "a_2016_10_01_09_30", "b_2016_10_01_23_59"], "date"),
    "platform seconds": (["p_2016_10_02_12_00_00_00", "q_2016_10_01_12_00_00_00", "r_2016_10_01_13_00_00_00"],
                         "date"),
    "day numbers": (["c_day3", "a_day10", "b_day1"], "day"),
    "D numbers": (["pot_c_D05", "pot_a_D12", "pot_b_D1"], "day"),
    "days after sowing": (["q-DAS21", "r-DAS7", "p-DAS14"], "day"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_frames_go_in_the_order_of_the_date_in_their_names(layout, tmp_path):
    stems, how = LAYOUTS[layout]
    paths = [touch_png(tmp_path / f"{stem}.png") for stem in stems]
    frames = track.order_frames(paths)
    times = [track.date_in_name(p.stem) if how == "date" else track.day_in_name(p.stem) for p in paths]
    expected = [p.stem for _, p in sorted(zip(times, paths))]
    assert [f.path.stem for f in frames] == expected
    assert {f.order for f in frames} == {how}
    assert [f.index for f in frames] == list(range(len(paths)))
    assert frames[0].day == 0 and all(b.day > a.day for a, b in zip(frames, frames[1:]))
    assert track.order_frames(paths, "date") == frames


def test_day_numbers_and_their_traps():
    names = ("plant3_day05", "A1_D12.png", "DAS7", "x-d3", "day_4_rgb", "dadd12", "d12x", "plant", "id12", "D4-35519")
    assert [track.day_in_name(n) for n in names] == [5, 12, 7, 3, 4, None, None, None, None, 4]
    # A number every photograph shares (a pot "D4") is no day: natural order then.
    frames = track.order_frames([Path("T01-D4-p10.png"), Path("T01-D4-p2.png")])
    assert [f.path.name for f in frames] == ["T01-D4-p2.png", "T01-D4-p10.png"]
    assert frames[0].order == "name" and frames[0].day is None


def exif_jpeg(path, when, colour=0):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when
    Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(path, exif=exif)
    return path


def test_exif_order_when_names_carry_no_date(tmp_path):
    paths = [exif_jpeg(tmp_path / "a.jpg", "2020:05:03 10:00:00"), exif_jpeg(tmp_path / "b.jpg", "2020:05:01 09:00:00"),
             exif_jpeg(tmp_path / "c.jpg", "2020:05:01 21:00:00")]
    assert track.exif_time(paths[0]) == datetime(2020, 5, 3, 10)
    frames = track.order_frames(paths)
    assert [f.path.name for f in frames] == ["b.jpg", "c.jpg", "a.jpg"]
    assert [f.order for f in frames] == ["exif"] * 3 and [f.day for f in frames] == pytest.approx([0, 0.5, 2 + 1 / 24])


def test_natural_order_without_dates_or_exif(tmp_path):
    paths = [touch_png(tmp_path / f"shot{n}.png") for n in (10, 2, 1)]
    frames = track.order_frames(paths)
    assert [f.path.name for f in frames] == ["shot1.png", "shot2.png", "shot10.png"]
    assert {f.order for f in frames} == {"name"} and frames[0].day is None


def test_order_option_overrides_and_names_what_is_missing(tmp_path):
    # Dates in the names run against EXIF: each order follows its own source.
    paths = [exif_jpeg(tmp_path / "p_2020_01_01.jpg", "2020:03:02 00:00:00"),
             exif_jpeg(tmp_path / "p_2020_01_02.jpg", "2020:03:01 00:00:00")]
    assert [f.path.name for f in track.order_frames(paths, "date")] == ["p_2020_01_01.jpg", "p_2020_01_02.jpg"]
    assert [f.path.name for f in track.order_frames(paths, "exif")] == ["p_2020_01_02.jpg", "p_2020_01_01.jpg"]
    named = track.order_frames([tmp_path / "p_2020_01_02.jpg", tmp_path / "p_2020_01_01.jpg"], "name")
    assert [f.order for f in named] == ["name", "name"] and named[0].path.name == "p_2020_01_01.jpg"
    plain = touch_png(tmp_path / "p_late.png")
    with pytest.raises(ValueError, match=r"p_late\.png: no date in the name"):
        track.order_frames(paths + [plain], "date")
    with pytest.raises(ValueError, match=r"p_late\.png: no EXIF DateTimeOriginal"):
        track.order_frames(paths + [plain], "exif")
    with pytest.raises(ValueError, match="order must be one of"):
        track.order_frames(paths, "random")


# ---------------------------------------------------------------------------------- plants

def test_plants_of_a_flat_folder_a_folder_of_folders_and_group_by(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for pot in ("A1", "B2"):
        for day in (1, 2, 3):
            touch_png(flat / f"tray7-{pot}-x_2020_01_0{day}_rgb.png")
    touch_png(flat / "tray7-A1-x_2020_01_01_label.png")  # a label: not a photograph
    plants = track.find_plants([flat])
    assert {k: len(v) for k, v in plants.items()} == {"tray7-A1-x": 3, "tray7-B2-x": 3}
    grouped = track.find_plants([flat], group_by=r"tray7-(?P<plant>[A-Z]\d)")
    assert {k: len(v) for k, v in grouped.items()} == {"A1": 3, "B2": 3}
    assert {k: len(v) for k, v in track.find_plants([flat], group_by=r"[A-Z]\d").items()} == {"A1": 3, "B2": 3}
    with pytest.raises(ValueError, match=r"does not match the photograph 'tray7-A1-x_2020_01_01_rgb'"):
        track.find_plants([flat], group_by=r"pot\d")
    with pytest.raises(ValueError, match="not a regular expression"):
        track.find_plants([flat], group_by="(")
    nested = tmp_path / "nested"
    for plant in ("p10", "p2"):
        (nested / plant).mkdir(parents=True)
        for day in (1, 2):
            touch_png(nested / plant / f"img_{day}.png")
    assert list(track.find_plants([nested])) == ["p2", "p10"]
    one = tmp_path / "one_plant"
    one.mkdir()
    for day in (1, 2):
        touch_png(one / f"plant_2020_01_0{day}_rgb.png")
    assert list(track.find_plants([one])) == ["one_plant"]  # one plant: named after its folder
    counter = tmp_path / "camera"
    counter.mkdir()
    for day in (1, 2, 3):
        touch_png(counter / f"IMG_{10 - day:04d}_2020_01_0{day}.jpg")
    assert {k: len(v) for k, v in track.find_plants([counter]).items()} == {"camera": 3}  # not a plant a photograph


# ---------------------------------------------------------------------------------- the command

def test_a_drawn_time_lapse_tracked_with_the_true_leaves_keeps_the_true_ids(lapses, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run = command(monkeypatch, Oracle(), [lapses, "--out", out])
    assert run.status == 0, run.stderr
    order = read_csv(out / "order.csv")
    assert [(r["plant"], r["frame"], r["order"]) for r in order] == \
        [(f"plant00{p}", str(t), "date") for p in range(2) for t in range(DAYS)]
    assert order[1]["date"] == "2026-01-06" and order[1]["day"] == "1"
    tracks_rows, growth = read_csv(out / "tracks.csv"), read_csv(out / "growth.csv")
    for plant in range(2):
        name = f"plant{plant:03d}"
        lapse = generate_time_lapse(np.random.SeedSequence([4, 27, plant]), DAYS, SIZE)
        labels = [read_label(out / name / "labels" / f"{name}_{(datetime(2026, 1, 5 + t)).strftime('%Y_%m_%d')}"
                                                        f"_label.png") for t in range(DAYS)]
        scores = tracking_scores(labels, lapse.ids)
        assert scores["switches"] == 0 and scores["frame_sbd"] == 1.0 and scores["track_sbd"] == 1.0, scores
        assert scores["transitions"] >= 10
        rows = [r for r in growth if r["plant"] == name]
        assert [int(r["leaf_count"]) for r in rows] == [len(np.unique(ids)) - 1 for ids in lapse.ids]
        assert [int(r["rosette_area_px"]) for r in rows] == [int(np.count_nonzero(ids)) for ids in lapse.ids]
        assert rows[0]["rgr_per_day"] == "" and all(float(r["rgr_per_day"]) > 0 for r in rows[1:])
        expected = np.log(int(rows[2]["rosette_area_px"]) / int(rows[1]["rosette_area_px"]))
        assert float(rows[2]["rgr_per_day"]) == pytest.approx(expected, abs=1e-4)
        assert sum(int(r["new_leaves"]) for r in rows) == len(set().union(*(np.unique(ids) for ids in labels))) - 1
        for t, label in enumerate(labels):  # tracks.csv describes the label's pixels
            leaf_rows = [r for r in tracks_rows if r["plant"] == name and r["frame"] == str(t)]
            assert {int(r["leaf"]): int(r["area_px"]) for r in leaf_rows} == \
                {int(v): int(np.count_nonzero(label == v)) for v in np.unique(label) if v}
        assert (out / name / "leaf_area.png").stat().st_size > 1000
        assert len(list((out / name / "overlays").glob("*_overlay.png"))) == DAYS
    assert list(tracks_rows[0])[:6] == ["plant", "frame", "image", "date", "day", "leaf"]
    assert "length_px" in tracks_rows[0] and "perimeter_px" in tracks_rows[0]
    assert Image.open(out / "growth.png").size[0] > 500
    page = (out / "report.html").read_text(encoding="utf-8")  # (the page itself: tests of leafseg.inference.report)
    assert "Growth (growth.csv)" in page and 'href="plant001/overlays/plant001_2026_01_10_overlay.png"' in page
    assert "leafseg track" in page and "day 5" in page


def test_a_leaf_missed_for_a_frame_gets_its_id_back(lapses, tmp_path):
    folder = tmp_path / "plant"
    shutil.copytree(lapses / "plant001", folder)
    lapse = generate_time_lapse(np.random.SeedSequence([4, 27, 1]), DAYS, SIZE)
    missed = 3
    leaf = 1  # the oldest leaf, present throughout
    assert all(leaf in np.unique(ids) for ids in lapse.ids)
    report = track.track_images(Oracle(drop={missed: colour_code(leaf)}), [folder], tmp_path / "out", progress=False)
    assert report.plants == {"plant": DAYS}
    labels = [read_label(p) for p in sorted((tmp_path / "out" / "plant" / "labels").glob("*_label.png"))]
    ids = [set(np.unique(label[lapse.ids[t] == leaf]).tolist()) for t, label in enumerate(labels)]
    assert ids[missed] == {0}
    assert all(found == ids[0] and len(found) == 1 and 0 not in found for t, found in enumerate(ids) if t != missed)
    scores = tracking_scores(labels, lapse.ids)
    assert scores["switches"] == 0
    # Without the wait for a lost leaf (max_gap 0) it comes back under a new id: one switch.
    again = track.track_images(Oracle(drop={missed: colour_code(leaf)}), [folder], tmp_path / "out", max_gap=0,
                               progress=False)
    assert again.resumed == DAYS and again.segmented == 0
    labels = [read_label(p) for p in sorted((tmp_path / "out" / "plant" / "labels").glob("*_label.png"))]
    assert tracking_scores(labels, lapse.ids)["switches"] == 1


def test_an_interrupted_run_resumes_with_the_frames_it_has(lapses, tmp_path, monkeypatch):
    one_go = tmp_path / "one_go"
    assert command(monkeypatch, Oracle(), [lapses, "--out", one_go]).status == 0
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="interrupted"):
        command(monkeypatch, Oracle(fail_after=4), [lapses, "--out", out])
    assert len(list((out / track.TRACK_DIR).rglob("*.npz"))) == 4
    assert not (out / "tracks.csv").exists()
    rest = Oracle()
    run = command(monkeypatch, rest, [lapses, "--out", out])
    assert run.status == 0, run.stderr
    assert rest.calls == 2 * DAYS - 4
    assert outputs(out) == outputs(one_go) and len(outputs(out)) >= 2 * DAYS + 3
    again = Oracle()
    assert command(monkeypatch, again, [lapses, "--out", out]).status == 0 and again.calls == 0
    # Other segmentation settings are refused, naming them; --overwrite segments again.
    refused = command(monkeypatch, Oracle(), [lapses, "--out", out, "--plants", "one"])
    assert refused.status == 2 and "plants: 'auto' then, 'one' now" in refused.stderr
    redo = Oracle()
    assert command(monkeypatch, redo, [lapses, "--out", out, "--plants", "one", "--overwrite"]).status == 0
    assert redo.calls == 2 * DAYS
    with pytest.raises(SettingsMismatch):
        track.FrameStore(out, {"weights": "other"})


def test_group_by_splits_a_flat_folder_through_the_command(lapses, tmp_path, monkeypatch):
    flat = tmp_path / "flat"
    flat.mkdir()
    for plant in range(2):
        for rgb, _ in time_lapse_paths(lapses, plant, DAYS):
            shutil.copy(rgb, flat / rgb.name.replace(f"plant{plant:03d}_", f"tray1_pot{'AB'[plant]}_"))
    batched = Oracle()
    run = command(monkeypatch, batched, [flat, "--out", tmp_path / "out", "--group-by", r"pot(?P<plant>[AB])",
                                         "--batch-size", "5"])
    assert run.status == 0, run.stderr
    assert sorted({r["plant"] for r in read_csv(tmp_path / "out" / "growth.csv")}) == ["A", "B"]
    default = command(monkeypatch, Oracle(), [flat, "--out", tmp_path / "default", "--no-report"])
    assert default.status == 0
    assert (tmp_path / "out" / "report.html").is_file() and not (tmp_path / "default" / "report.html").exists()
    assert sorted({r["plant"] for r in read_csv(tmp_path / "default" / "growth.csv")}) == ["tray1_potA", "tray1_potB"]
    assert batched.calls == 2 * DAYS
    assert read_csv(tmp_path / "out" / "tracks.csv") == [  # (batches of 5 images: the same leaves)
        {**r, "plant": r["plant"][-1]} for r in read_csv(tmp_path / "default" / "tracks.csv")]


def test_errors_name_the_folder_or_the_file(lapses, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = command(monkeypatch, Oracle(), [empty, "--out", tmp_path / "o1"])
    assert run.status == 2 and f"{empty}: no photograph" in run.stderr
    run = command(monkeypatch, Oracle(), [tmp_path / "missing", "--out", tmp_path / "o1"])
    assert run.status == 2 and "missing: no such folder" in run.stderr
    assert command(monkeypatch, Oracle(), []).status == 2
    # One photograph tracks trivially.
    single = tmp_path / "single"
    single.mkdir()
    rgb, _ = time_lapse_paths(lapses, 0, DAYS)[-1]
    shutil.copy(rgb, single / rgb.name)
    run = command(monkeypatch, Oracle(), [single, "--out", tmp_path / "o2"])
    assert run.status == 0, run.stderr
    growth = read_csv(tmp_path / "o2" / "growth.csv")
    assert len(growth) == 1 and growth[0]["rgr_per_day"] == "" and int(growth[0]["leaf_count"]) > 3
    assert int(growth[0]["new_leaves"]) == int(growth[0]["leaf_count"])
    # An unreadable photograph is skipped, named; the others are tracked.
    broken = tmp_path / "broken"
    shutil.copytree(lapses / "plant000", broken)
    bad = broken / "plant000_2026_01_07_rgb.png"
    bad.write_bytes(bad.read_bytes()[:100])
    report = track.track_images(Oracle(), [broken], tmp_path / "o3", progress=False)
    assert report.plants == {"broken": DAYS - 1} and report.skipped[0][0] == str(bad)
    assert "truncated or corrupt" in report.skipped[0][1] and str(bad) in report.summary()
    assert [r["image"] for r in read_csv(tmp_path / "o3" / "order.csv")].count("plant000_2026_01_07") == 0
    # Nothing readable: exit status 1.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_text("not an image")
    run = command(monkeypatch, Oracle(), [junk, "--out", tmp_path / "o4"])
    assert run.status == 1 and "no photograph could be segmented" in run.stderr


def test_more_than_255_tracks_give_16_bit_labels(tmp_path):
    """A plant's labels are 16-bit PNGs, all of them, once it has more than 255 tracks."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    palette = leaf_palette(450)
    for t in range(3):  # 150 leaves, none, 150 leaves: with max_gap 0 no leaf waits for the third frame
        image = np.zeros((160, 240, 3), np.uint8)
        cells = rng.permutation(150)
        for k in range(150 if t != 1 else 0):
            y, x = divmod(int(cells[k]), 15)
            image[y * 16 + 2:y * 16 + 12, x * 16 + 2:x * 16 + 12] = palette[t * 150 + k]
        Image.fromarray(image).save(folder / f"jump_2020_01_0{t + 1}.png")
    report = track.track_images(Oracle(), [folder], tmp_path / "out", max_gap=0, overlays=False, progress=False)
    assert report.tracks == {"many": 300}
    labels = sorted((tmp_path / "out" / "many" / "labels").glob("*_label.png"))
    assert [Image.open(p).mode for p in labels] == ["I;16"] * 3
    assert [int(np.asarray(Image.open(p)).max()) for p in labels] == [150, 0, 300]


def test_script_and_cli_entry_points():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    from leafseg.cli import COMMANDS

    assert COMMANDS["track"][0] == "leafseg.cli.track"
    result = subprocess.run([sys.executable, str(root / "scripts" / "track.py"), "--help"], capture_output=True,
                            text=True, cwd=root, timeout=120)
    assert result.returncode == 0 and "--group-by" in result.stdout and "--order" in result.stdout


def test_a_tray_is_tracked_pot_by_pot(tmp_path, monkeypatch):
    """A tray of 2 x 2 pots photographed three days, split by --grid as predict splits it: each pot
    is a plant of its own (``<folder>/A1`` ...), its leaves keeping their ids."""
    folder = tmp_path / "tray"
    folder.mkdir()
    palette = leaf_palette(64)
    ys, xs = np.mgrid[:192, :192]
    truth = []
    for day in range(3):
        image, ids = np.zeros((192, 192, 3), np.uint8), np.zeros((192, 192), np.int32)
        for pot in range(4):
            cy, cx = 48 + 96 * (pot // 2), 48 + 96 * (pot % 2)
            for k in range(3 + (day == 2 and pot == 3)):
                angle = 2 * np.pi * k / 3 + 0.4 * pot + 0.05 * day + (1.0 if k == 3 else 0.0)
                reach, size = (14 + 3 * day, 6.0) if k < 3 else (0, 4.0)  # (a new leaf in the middle)
                ly, lx = cy + reach * np.sin(angle), cx + reach * np.cos(angle)
                leaf = ((ys - ly) / size) ** 2 + ((xs - lx) / size) ** 2 <= 1
                image[leaf] = palette[10 * pot + k]
                ids[leaf] = 10 * pot + k + 1
        Image.fromarray(image).save(folder / f"tray_2021_03_0{day + 1}.png")
        truth.append(ids)
    run = command(monkeypatch, Oracle(48), [folder, "--out", tmp_path / "out", "--grid", "2x2"])
    assert run.status == 0, run.stderr
    growth = read_csv(tmp_path / "out" / "growth.csv")
    assert sorted({r["plant"] for r in growth}) == ["tray/A1", "tray/A2", "tray/B1", "tray/B2"]
    assert [r["leaf_count"] for r in growth if r["plant"] == "tray/B2"] == ["3", "3", "4"]
    for pot, name in enumerate(("A1", "A2", "B1", "B2")):
        labels = [read_label(p) for p in sorted((tmp_path / "out" / "tray" / name / "labels").glob("*.png"))]
        for k in range(3):
            found = {int(v) for t, label in enumerate(labels) for v in np.unique(label[truth[t] == 10 * pot + k + 1])}
            assert len(found) == 1 and 0 not in found, (name, k, found)
        assert all(not label[(truth[t] > 0) & ((truth[t] - 1) // 10 != pot)].any() for t, label in enumerate(labels))


def test_the_order_used_is_written_out_and_order_overrides(lapses, tmp_path, monkeypatch):
    folder = tmp_path / "plant"
    shutil.copytree(lapses / "plant000", folder)
    for t, (rgb, _) in enumerate(time_lapse_paths(lapses, 0, DAYS)):  # names that run against the dates
        (folder / rgb.name).rename(folder / rgb.name.replace("plant000_", f"potA_shot{DAYS - t}_"))
    pot = ["--group-by", "pot[A-Z]"]  # (without it, each name without its date would be a plant)
    run = command(monkeypatch, Oracle(), [folder, "--out", tmp_path / "dated", *pot])
    assert run.status == 0, run.stderr
    order = read_csv(tmp_path / "dated" / "order.csv")
    assert [r["date"] for r in order] == [f"2026-01-{5 + t:02d}" for t in range(DAYS)]
    assert {r["order"] for r in order} == {"date"} and order[0]["image"] == f"potA_shot{DAYS}_2026_01_05"
    assert {r["plant"] for r in order} == {"potA"}
    run = command(monkeypatch, Oracle(), [folder, "--out", tmp_path / "named", "--order", "name", *pot])
    assert run.status == 0, run.stderr
    order = read_csv(tmp_path / "named" / "order.csv")
    assert [r["image"] for r in order] == [f"potA_shot{n}_2026_01_{5 + DAYS - n:02d}" for n in range(1, DAYS + 1)]
    assert {(r["order"], r["date"], r["day"]) for r in order} == {("name", "", "")}
    assert {r["rgr_per_day"] for r in read_csv(tmp_path / "named" / "growth.csv")} == {""}
    refused = command(monkeypatch, Oracle(), [folder, "--out", tmp_path / "exif", "--order", "exif", *pot])
    assert refused.status == 2 and "no EXIF DateTimeOriginal" in refused.stderr
    assert "potA_shot1_2026_01_10_rgb.png" in refused.stderr
    assert not (tmp_path / "exif").exists()  # refused before the model is loaded or anything written


class LeavesAndAPebble(Oracle):
    """The oracle's leaves as class 1 "leaf", plus a pebble (class 2) in the top-left corner of
    every photograph: a model of two classes."""

    def __init__(self):
        super().__init__()
        self.config.NUM_CLASSES, self.config.CLASS_NAMES = 3, ["leaf", "pebble"]

    def detect(self, images, verbose=0):
        results = super().detect(images, verbose)
        for result in results:
            pebble = np.zeros(result["masks"].shape[:2] + (1,), bool)
            pebble[2:12, 2:12] = True
            result["masks"] = np.concatenate([result["masks"], pebble], axis=-1)
            result["rois"] = np.concatenate([result["rois"], [[2, 2, 12, 12]]]).astype(np.int32)
            result["class_ids"] = np.r_[result["class_ids"], 2].astype(np.int32)
            result["scores"] = np.r_[result["scores"], 0.99].astype(np.float32)
        return results


def test_a_model_of_several_classes_tracks_its_leaves_only(lapses, tmp_path):
    """With classes leaf and pebble, the pebble (the best-scored detection of every frame) is no
    track: the labels hold the true leaves alone, ids kept as with one class."""
    folder = tmp_path / "plant"
    shutil.copytree(lapses / "plant001", folder)
    lapse = generate_time_lapse(np.random.SeedSequence([4, 27, 1]), DAYS, SIZE)
    track.track_images(LeavesAndAPebble(), [folder], tmp_path / "out", progress=False)
    labels = [read_label(p) for p in sorted((tmp_path / "out" / "plant" / "labels").glob("*_label.png"))]
    assert all(not label[2:12, 2:12].any() or (lapse.ids[t][2:12, 2:12] > 0).any() for t, label in enumerate(labels))
    scores = tracking_scores(labels, lapse.ids)
    assert scores["switches"] == 0 and scores["track_sbd"] > 0.99
    rows = read_csv(tmp_path / "out" / "tracks.csv")
    assert len(rows) == sum(len(np.unique(ids)) - 1 for ids in lapse.ids)  # one row per true leaf and frame
