"""leafseg adapt: pseudo-label selection on constructed views, ignore regions through the
dataset, the run folder's rules, and an adapt run of the tiny model (tests/tiny_trained.py) on
toy photographs, killed with SIGKILL while its first student trains and run again."""
import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from leafseg.cli import adapt as adapt_command
from leafseg.data.dataset import LeafDataset
from leafseg.inference.tta import match_views
from leafseg.models import loading
from leafseg.models.runs import ADAPTED_WEIGHTS
from leafseg.training import adapt as A

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

REPO = Path(__file__).resolve().parents[3]
SIDE = 20


def box(y1, x1, y2, x2, side=SIDE):
    mask = np.zeros((side, side), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def result(masks, scores):
    """A Matterport result of masks [(H, W)] and their scores."""
    masks = np.stack(masks, axis=-1) if masks else np.zeros((SIDE, SIDE, 0), bool)
    return {"rois": np.zeros((masks.shape[-1], 4), np.int32), "class_ids": np.ones(masks.shape[-1], np.int32),
            "scores": np.asarray(scores, np.float32), "masks": masks}


# The identity view's leaves: A sure, B low-scored, C found by the identity alone, D under the
# low cut-off, E too small.
A_LEAF, B_LEAF, C_LEAF, D_LEAF, E_LEAF = box(0, 0, 6, 6), box(0, 10, 6, 16), box(10, 0, 16, 6), box(10, 10, 14, 14), \
    box(18, 18, 20, 19)


def five_leaves():
    identity = result([A_LEAF, B_LEAF, C_LEAF, D_LEAF, E_LEAF], [0.95, 0.7, 0.95, 0.4, 0.95])
    # The three other views: A with one more row in each (so the majority has it), B, D and E.
    others = [result([box(0, 0, 7, 6), B_LEAF, D_LEAF, E_LEAF], [0.97, 0.7, 0.4, 0.95]) for _ in range(3)]
    return [identity] + others


def test_sure_leaves_are_kept_unsure_ones_ignored_and_the_rest_dropped():
    selection = A.select_pseudo_labels(five_leaves(), keep_score=0.9, min_agreement=0.75, low_score=0.5,
                                       min_kept_share=0.5, min_area=5)
    fates = [(leaf["fate"], leaf["reasons"]) for leaf in selection.leaves]
    assert fates == [("kept", []), ("ignored", ["score"]), ("ignored", ["disagreement"]), ("dropped", ["low score"]),
                     ("dropped", ["small"])]
    # A's score is the mean over the 4 views that found it; C's agreement 0 of the 3 other views.
    assert selection.leaves[0]["score"] == pytest.approx((0.95 + 3 * 0.97) / 4, abs=1e-4)
    assert (selection.leaves[0]["agreement"], selection.leaves[2]["agreement"]) == (1.0, 0.0)
    assert selection.counts() == {"kept": 1, "ignored": 2, "dropped": 2, "ignored_score": 1,
                                  "ignored_disagreement": 1, "dropped_low_score": 1, "dropped_small": 1}
    # The kept mask is the majority: row 6 of A is in 3 of the 4 views.
    np.testing.assert_array_equal(selection.kept[..., 0], box(0, 0, 7, 6))
    np.testing.assert_array_equal(selection.ignored[..., 0], B_LEAF)
    np.testing.assert_array_equal(selection.ignored[..., 1], C_LEAF)
    # Kept 7 * 6 pixels of 7 * 6 + 6 * 6 + 6 * 6 found: under half, so the photograph goes.
    assert selection.kept_share == pytest.approx(42 / (42 + 36 + 36), abs=1e-4)
    assert not selection.keep_image and selection.reason.startswith("mostly unsure: kept leaves cover 37%")
    kept = A.select_pseudo_labels(five_leaves(), min_kept_share=0.3, min_area=5)
    assert kept.keep_image and kept.reason is None


def test_an_ignored_region_holds_every_pixel_any_view_gave_the_leaf():
    views = [result([B_LEAF], [0.7])] + [result([box(0, 10, 6, 17)], [0.7])] + [result([B_LEAF], [0.7])] * 2
    selection = A.select_pseudo_labels(views, min_area=5)
    np.testing.assert_array_equal(selection.ignored[..., 0], box(0, 10, 6, 17))
    assert selection.reason == "no sure leaf" and selection.kept.shape == (SIDE, SIDE, 0)


def test_agreement_is_judged_apart_from_the_score():
    """match_views' mean score counts a missing view as 0; the selection's does not."""
    views = [result([A_LEAF], [0.95]), result([A_LEAF], [0.95]), result([], []), result([], [])]
    selection = A.select_pseudo_labels(views, min_area=5)
    assert match_views(views)[0]["mean_score"] == pytest.approx(0.95 / 2)
    assert selection.leaves[0]["score"] == pytest.approx(0.95) and selection.leaves[0]["reasons"] == ["disagreement"]
    assert selection.leaves[0]["agreement"] == pytest.approx(1 / 3, abs=1e-4)
    loose = A.select_pseudo_labels(views, min_agreement=0.3, min_area=5)
    assert loose.keep_image and loose.leaves[0]["fate"] == "kept"


def test_an_image_without_detections_is_dropped():
    selection = A.select_pseudo_labels([result([], [])] * 4)
    assert not selection.keep_image and selection.reason == "no leaf found (scores >= 0.5)"
    assert selection.leaves == [] and selection.kept_share == 0.0


def test_ignore_regions_round_trip_through_the_dataset_as_crowds(tmp_path):
    from mrcnn.config import Config
    from mrcnn.pipeline import load_image_gt

    selection = A.select_pseudo_labels(five_leaves(), min_kept_share=0.3, min_area=5)
    image = np.random.default_rng(0).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    folder = A.write_pseudo_label(tmp_path / "labels", "photo-1", image, selection, {"photo": "p.png"})
    assert sorted(p.name for p in folder.iterdir()) == ["ignore", "images", "label.json", "masks"]
    assert not list((tmp_path / "labels").glob(".tmp-*"))
    dataset = LeafDataset()
    dataset.load_leaves(tmp_path, "labels")
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    np.testing.assert_array_equal(class_ids, [1, -1, -1])
    np.testing.assert_array_equal(masks, np.concatenate([selection.kept, selection.ignored], axis=-1))
    np.testing.assert_array_equal(dataset.load_image(0), image)
    record = json.loads((folder / "label.json").read_text())
    assert record["counts"]["ignored"] == 2 and record["photo"] == "p.png" and record["kept_image"]

    class Tiny(Config):
        NAME, NUM_CLASSES, IMAGE_MIN_DIM, IMAGE_MAX_DIM, USE_MINI_MASK = "tiny", 2, 64, 64, False

    # The input pipeline keeps them as crowd boxes (negative class ids).
    ids = load_image_gt(dataset, Tiny(), 0)[2]
    np.testing.assert_array_equal(ids, [1, -1, -1])
    # A dropped photograph leaves its record only, which the dataset skips.
    A.write_pseudo_label(tmp_path / "labels", "photo-2", image, A.select_pseudo_labels(five_leaves()), {})
    assert sorted(p.name for p in (tmp_path / "labels" / "photo-2").iterdir()) == ["label.json"]
    again = LeafDataset()
    assert again.load_leaves(tmp_path, "labels") == 1


def test_an_adapt_folder_resolves_to_its_weights(tmp_path):
    (tmp_path / ADAPTED_WEIGHTS).write_bytes(b"")
    assert loading.resolve_weights(tmp_path) == tmp_path / ADAPTED_WEIGHTS


def test_rounds_take_other_photographs_and_the_steps_make_whole_epochs():
    photos = [f"p{i}.png" for i in range(10)]
    first, second = A.choose_photos(photos, 1, 4, seed=3), A.choose_photos(photos, 2, 4, seed=3)
    assert len(set(first)) == 4 and not set(first) & set(second)
    assert A.choose_photos(photos, 1, 4, seed=3) == first and A.choose_photos(photos, 1, 4, seed=4) != first
    assert sorted(A.choose_photos(photos, 2, 20, seed=0)) == sorted(photos)
    assert A.epoch_plan(1000) == (20, 50) and A.epoch_plan(120, 50) == (3, 40) and A.epoch_plan(3, 2) == (2, 2)


def test_a_folder_of_another_run_is_refused_naming_the_arguments(tmp_path):
    options = A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5")
    state = A.RunState(tmp_path, options)
    state.save()
    A.RunState(tmp_path, A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5", minutes=5))
    with pytest.raises(A.AdaptError, match=r"other arguments: --rounds 2 \(now 3\); --seed 0 \(now 1\)\. .*only "
                                           r"--minutes may change"):
        A.RunState(tmp_path, A.AdaptOptions(photos=["a.png"], out=str(tmp_path), weights="w.h5", rounds=3, seed=1))


@pytest.mark.parametrize("argv, message", [
    (["--keep-score", "0.4", "--low-score", "0.6"], "--low-score 0.6 is above --keep-score 0.4"),
    (["--synthetic-dir", "nowhere"], "--synthetic-dir nowhere: not a prepared folder"),
    (["--weights", "missing.weights.h5"], "--weights missing.weights.h5: weights file not found"),
])
def test_bad_options_are_named(argv, message, tmp_path, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    assert adapt_command.main([str(photo), "--out", str(tmp_path / "out")] + argv) == 2
    assert message in capsys.readouterr().err


# The run below: 6 toy photographs (bright shapes; the tiny model finds them), 3 a round, 2
# rounds of 4 steps in epochs of 2, beside drawn rosettes of the toy model's size.
PHOTOS, PER_ROUND, ROUNDS, STEPS, CHECKPOINT_STEPS = 6, 3, 2, 4, 2
# Seconds a subprocess may take before the test calls it hung or lost.
PROCESS_TIMEOUT = 420


def run_argv(run, out=None):
    out = run.out if out is None else out
    return [str(run.photos), "--weights", str(run.weights), "--out", str(out), "--rounds", str(ROUNDS),
            "--photos-per-round", str(PER_ROUND), "--steps", str(STEPS), "--checkpoint-steps", str(CHECKPOINT_STEPS),
            "--synthetic-dir", str(run.synthetic), "--keep-score", "0.8", "--low-score", "0.3", "--minutes", "30"]


def label_times(out, number):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / f"round{number}" / "labels").glob("*/label.json")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny model, the toy photographs and the drawn rosettes of the runs."""
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset
    from tests.tiny_trained import trained_run
    from tests.toy_data import shapes_dataset

    weights = trained_run(tmp_path_factory)["weights"]
    root = tmp_path_factory.mktemp("adapt")
    photos = root / "photos"
    photos.mkdir()
    toy = shapes_dataset(PHOTOS, seed=5)
    for image_id in toy.image_ids:
        cv2.imwrite(str(photos / f"photo{image_id}.png"), toy.load_image(image_id)[..., ::-1])
    write_dataset(root / "rosettes", 5, seed=1, size=64, style="random", progress=False)
    prepare_dataset(root / "rosettes", root / "synthetic", seed=1)
    return types.SimpleNamespace(root=root, photos=photos, weights=weights, synthetic=root / "synthetic",
                                 out=root / "out")


@pytest.fixture(scope="module")
def adapted(inputs):
    """An adapt run killed (SIGKILL) while its first student trains, then the same command again."""
    run, root = types.SimpleNamespace(**vars(inputs)), inputs.root

    marker = root / "held.marker"
    log = open(root / "killed.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "tests.train_subprocess", "adapt", str(marker), "2",
                                *run_argv(run)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.close()
            pytest.fail(f"adapt ended or took too long before its training held:\n"
                        f"{(root / 'killed.log').read_text()[-3000:]}")
        time.sleep(0.1)
    run.killed_state = json.loads((run.out / A.STATE_FILE).read_text())
    run.labels_before = label_times(run.out, 1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    run.killed_status = process.returncode
    run.status = adapt_command.main(run_argv(run))
    run.state = json.loads((run.out / A.STATE_FILE).read_text())
    run.report = json.loads((run.out / A.REPORT_JSON).read_text())
    return run


def test_the_run_was_killed_inside_its_first_training(adapted):
    assert adapted.killed_status == -signal.SIGKILL
    state = adapted.killed_state
    assert state["phase"] == "training round 1"
    assert state["rounds"]["1"]["trained"]["epochs_done"] == 1
    assert state["rounds"]["1"]["labelled"]["photos_labelled"] == PER_ROUND
    assert len(adapted.labels_before) == PER_ROUND


def test_the_rerun_resumes_without_labelling_again(adapted):
    assert adapted.status == 0
    assert label_times(adapted.out, 1) == adapted.labels_before
    first, second = adapted.report["rounds"]
    assert first["labelled_this_call"] == 0 and second["labelled_this_call"] == PER_ROUND
    assert adapted.state["calls"] == 2 and adapted.state["phase"] == "done"
    # Round 1's training went on from its epoch-1 checkpoint: one run folder, resumed once.
    runs = list((adapted.out / "round1" / "logs").iterdir())
    record = json.loads((runs[0] / "run.json").read_text())
    assert len(runs) == 1 and [c["argv"][-1] for c in record["commands"]] == ["domain", "--resume"]
    assert record["stages"][0]["resumed"][0]["epoch"] == 1


def test_the_report_counts_each_round(adapted):
    report = adapted.report
    assert report["outcome"] == "2 rounds done" and len(report["rounds"]) == ROUNDS
    for number, entry in enumerate(report["rounds"], start=1):
        assert entry["photos_labelled"] == PER_ROUND
        assert entry["images_kept"] + entry["images_dropped"] == PER_ROUND and entry["images_kept"] >= 1
        assert entry["training"]["status"] == "completed" and entry["training"]["epochs_done"] == 2
        assert entry["training"]["steps"] == STEPS and entry["training"]["loss_last"] > 0
        assert Path(entry["picture"]) == adapted.out / f"pseudo_labels_round{number}.png"
        assert Path(entry["picture"]).stat().st_size > 1000
    # The second round's teacher is the first round's student.
    assert report["rounds"][1]["teacher"] == str(adapted.out / "round1" / A.STUDENT_FILE)
    assert A.round_table(report["rounds"]) in (adapted.out / A.REPORT_MD).read_text()


def test_the_result_is_a_self_describing_model_that_predict_takes(adapted, tmp_path):
    from leafseg.cli import predict
    from leafseg.config import config_for_weights

    weights = adapted.out / ADAPTED_WEIGHTS
    assert loading.resolve_weights(adapted.out) == weights
    stored, source = config_for_weights(weights)
    original, _ = config_for_weights(adapted.weights)
    assert source.startswith("the config stored in")
    assert stored.to_dict() == original.to_dict()
    assert predict.main(["--weights", str(adapted.out), "--out", str(tmp_path / "predictions"),
                         str(adapted.photos / "photo0.png")]) == 0
    assert list((tmp_path / "predictions").glob("**/*.png"))


def test_a_rerun_of_a_finished_run_does_nothing_more(adapted):
    before = (adapted.out / ADAPTED_WEIGHTS).stat().st_mtime_ns
    times = label_times(adapted.out, 2)
    assert adapt_command.main(run_argv(adapted)) == 0
    assert label_times(adapted.out, 2) == times
    report = json.loads((adapted.out / A.REPORT_JSON).read_text())
    assert [r["labelled_this_call"] for r in report["rounds"]] == [0, 0] and report["calls"] == 3
    assert (adapted.out / ADAPTED_WEIGHTS).stat().st_mtime_ns >= before


def test_the_picture_shows_the_plant_with_a_margin():
    masks = np.zeros((100, 200, 2), bool)
    masks[20:40, 50:60, 0] = masks[30:60, 55:90, 1] = True
    # Rows 20..59 (40), columns 50..89 (40): 15% is 6 pixels each side.
    assert A.plant_box(masks) == (20 - 6, 50 - 6, 60 + 6, 90 + 6)
    assert A.plant_box(np.zeros((10, 20, 0), bool)) == (0, 0, 10, 20)
    edge = np.zeros((10, 10, 1), bool)
    edge[0:10, 0:5] = True
    assert A.plant_box(edge) == (0, 0, 10, 6)


class MovableClock(A.Clock):
    """The run's clock, whose rounds all end at ``MovableClock.end`` (spent seconds) once a test sets it."""
    end = None

    def round_end(self, number, rounds):
        return super().round_end(number, rounds) if MovableClock.end is None else MovableClock.end


@pytest.fixture
def movable_clock(monkeypatch):
    monkeypatch.setattr(A, "Clock", MovableClock)
    yield MovableClock
    MovableClock.end = None


def test_out_of_time_before_a_round_ends_with_the_teacher(inputs, movable_clock, tmp_path):
    movable_clock.end = 0.0
    out = tmp_path / "out"
    assert adapt_command.main(run_argv(inputs, out)) == 0
    report = json.loads((out / A.REPORT_JSON).read_text())
    assert report["outcome"] == "out of time before round 1" and report["rounds"] == []
    assert (out / ADAPTED_WEIGHTS).read_bytes() == Path(inputs.weights).read_bytes()


def test_the_budget_stops_training_with_its_checkpoint_and_more_minutes_continue_it(inputs, movable_clock, tmp_path):
    """The round's end passes after step 2 of 8 (epochs of 2 steps): training stops after step 3,
    that epoch's checkpoint is the student; a rerun with more --minutes trains the rest."""
    import keras

    class EndNow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 and movable_clock.end is None:
                movable_clock.end = 0.0

    out = tmp_path / "out"
    argv = run_argv(inputs, out)
    argv[argv.index("--rounds") + 1], argv[argv.index("--steps") + 1] = "1", "8"
    assert adapt_command.main(argv, callbacks=[EndNow()]) == 0
    report = json.loads((out / A.REPORT_JSON).read_text())
    training = report["rounds"][0]["training"]
    assert report["outcome"] == "stopped at the time budget"
    assert (training["status"], training["epochs_done"], training["steps"]) == ("stopped at the time budget", 2, 3)
    assert (out / ADAPTED_WEIGHTS).read_bytes() != Path(inputs.weights).read_bytes()
    movable_clock.end = None
    argv[argv.index("--minutes") + 1] = "31"
    assert adapt_command.main(argv) == 0
    report = json.loads((out / A.REPORT_JSON).read_text())
    training = report["rounds"][0]["training"]
    assert report["outcome"] == "1 round done" and report["minutes_budget"] == 31
    assert (training["status"], training["epochs_done"], training["steps"]) == ("completed", 4, 8)
    assert report["rounds"][0]["labelled_this_call"] == 0


def test_held_out_plants_are_left_out_as_the_series_benchmark_holds_them_out(tmp_path):
    from leafseg.measure.series import held_out_plants

    names = [f"tray1_plant{p:02d}_2024_05_{d:02d}.png" for p in range(12) for d in (1, 2)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    held = held_out_plants({f"tray1_plant{p:02d}" for p in range(12)})
    assert 0 < len(held) < 12
    photos, count = A.find_photos([tmp_path], tmp_path / "out", hold_out_plants=True)
    assert count == 2 * len(held) and len(photos) == len(names) - count
    assert not {p.name.rsplit("_2024", 1)[0] for p in photos} & held
    assert A.find_photos([tmp_path], tmp_path / "out")[1] == 0


def test_a_folder_is_searched_with_its_subfolders(tmp_path, caplog):
    """Photographs kept by accession (deep_pheno/col-0/..., deep_pheno/ler-1/...) are all found
    from the top folder, without a warning that the top folder itself holds none."""
    for accession in ("col-0", "ler-1"):
        for day in (1, 2):
            folder = tmp_path / "photos" / accession
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"plant_{accession}_2016_10_0{day}.png"), np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level("WARNING"):
        found, held = A.find_photos([tmp_path / "photos"], tmp_path / "out")
    assert sorted(path.name for path in found) == ["plant_col-0_2016_10_01.png", "plant_col-0_2016_10_02.png",
                                                   "plant_ler-1_2016_10_01.png", "plant_ler-1_2016_10_02.png"]
    assert held == 0 and not caplog.records
