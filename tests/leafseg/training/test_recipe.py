"""leafseg recipe: the commands it runs (the recipes themselves train models: benchmarks' work)."""
import json
from pathlib import Path

import pytest

from leafseg.training import recipe
from leafseg.cli import recipe as recipe_command

from leafseg.training import train

from leafseg.models import zoo


def parse(argv):
    args = train.build_parser().parse_args(argv)
    train.check_options(args)
    return args


def test_the_first_stage_trains_leaf_small_from_random_weights_with_the_domain_augmentation():
    args = parse(recipe.train_argv("data", "logs", recipe.LEAF_SMALL_STAGES[0], seed=3, start="none"))
    assert (args.config, args.weights, args.stage, args.epochs, args.augment) == ("leaf_small", "none", "all", 36,
                                                                                  "domain")
    assert (args.schedule, args.lr, args.warmup_steps, args.seed, args.dataset, args.logs) == (
        "cosine", 0.001, 200, 3, "data", "logs")


def test_the_second_stage_restarts_from_the_last_checkpoint_and_a_rerun_resumes():
    args = parse(recipe.train_argv("d", "l", recipe.LEAF_SMALL_STAGES[1], seed=0, start="last"))
    assert (args.weights, args.epochs, args.lr, args.warmup_steps) == ("last", 48, 0.0003, 0)
    args = parse(recipe.train_argv("d", "l", recipe.LEAF_SMALL_STAGES[1], seed=0, start="resume"))
    assert args.resume and args.weights is None and args.epochs == 48


def test_a_short_run_is_one_stage_warming_up_over_a_tenth():
    assert recipe.one_stage(2, steps_per_epoch=5) == ((2, 0.001, 1),)
    assert recipe.one_stage(10) == ((10, 0.001, 200),)
    args = parse(recipe.train_argv("d", "l", recipe.one_stage(2, 5)[0], seed=0, start="none", steps_per_epoch=5))
    assert (args.warmup_steps, args.steps_per_epoch) == (1, 5)


def test_where_a_run_stands_decides_the_stage(tmp_path):
    logs = tmp_path / "logs"
    assert recipe._where(logs) == (None, 0, None)
    run = logs / "leaf_small20261204T1412"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("NAME: leaf_small\n")
    (run / "run.json").write_text(json.dumps({"stages": [{"end_epoch": 36}]}))
    for epoch in (35, 36):
        (run / f"mask_rcnn_leaf_small_{epoch:04d}.weights.h5").write_bytes(b"")
    assert recipe._where(logs) == (run, 36, 36)


def test_command_line(capsys):
    assert recipe_command.main(["leaf-small", "--family", "dark"]) == 2
    assert "--family is for leave-one-style-out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe_command.main(["leaf-large"])
    assert "invalid choice: 'leaf-large'" in capsys.readouterr().err


def test_choose_detection_settings_stores_the_best_of_its_grid(tmp_path, tmp_path_factory):
    import shutil

    from leafseg.config import LeafConfig
    from mrcnn.weights import read_metadata
    from tests.tiny_trained import trained_run
    from tests.toy_data import shapes_dataset

    path = tmp_path / "w.weights.h5"
    shutil.copyfile(trained_run(tmp_path_factory)["weights"], path)
    tuning = {"a": (shapes_dataset(3, seed=1), None), "b": (shapes_dataset(3, seed=4), [0, 2])}
    best, sweeps = recipe.choose_detection_settings(path, tuning, thresholds=(0.6, 0.3), nms_thresholds=(0.3, 0.9),
                                                    mask_overlaps=(None, 0.2))
    assert set(sweeps) == {recipe.settings_name(n, o) for n in (0.3, 0.9) for o in (None, 0.2)}
    assert all(set(by_set) == {"a", "b"} and set(by_set["a"]) == {0.3, 0.6} for by_set in sweeps.values())
    assert sweeps[recipe.settings_name(0.3, None)]["b"][0.3]["n_images"] == 2

    def objective(nms, overlap, t):
        return sum(means[t]["sbd_mean"] - recipe.DIC_PENALTY * means[t]["abs_dic_mean"]
                   for means in sweeps[recipe.settings_name(nms, overlap)].values())

    scores = {(n, o, t): objective(n, o, t) for n in (0.3, 0.9) for o in (None, 0.2) for t in (0.3, 0.6)}
    chosen = (best["DETECTION_NMS_THRESHOLD"], best["DETECTION_MASK_OVERLAP_THRESHOLD"], best["DETECTION_MIN_CONFIDENCE"])
    assert scores[chosen] == pytest.approx(max(scores.values()))
    stored = LeafConfig.from_yaml_text(read_metadata(path).config_yaml, source="stored")
    assert (stored.DETECTION_NMS_THRESHOLD, stored.DETECTION_MASK_OVERLAP_THRESHOLD,
            stored.DETECTION_MIN_CONFIDENCE) == chosen


def test_set_detection_settings_rewrites_only_those_values_of_the_stored_config(tmp_path, tmp_path_factory):
    import shutil

    import numpy as np

    from leafseg.config import LeafConfig
    from mrcnn.weights import read_metadata
    from tests.tiny_trained import trained_run

    path = tmp_path / "w.weights.h5"
    shutil.copyfile(trained_run(tmp_path_factory)["weights"], path)
    before = read_metadata(path)
    recipe.set_detection_settings(path, DETECTION_MIN_CONFIDENCE=0.8)
    after = read_metadata(path)
    old = LeafConfig.from_yaml_text(before.config_yaml, source="before").to_dict()
    new = LeafConfig.from_yaml_text(after.config_yaml, source="after").to_dict()
    assert new.pop("DETECTION_MIN_CONFIDENCE") == 0.8 and old.pop("DETECTION_MIN_CONFIDENCE") != 0.8
    assert new == old and list(after.class_names) == list(before.class_names)
    assert not list(tmp_path.glob(".*tmp"))
    import h5py

    with h5py.File(path) as f, h5py.File(trained_run(tmp_path_factory)["weights"]) as g:
        arrays = []
        f.visititems(lambda name, obj: arrays.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert arrays and all(np.array_equal(f[name][()], g[name][()]) for name in arrays)


@pytest.mark.parametrize("name", list(recipe.SMALL_DATA_PLANS))
def test_each_small_data_plan_is_a_valid_train_command_per_stage(name):
    weights, stages = recipe.SMALL_DATA_PLANS[name]
    assert sum(stage[1] for stage in stages) == pytest.approx(1.0)  # the stages share the whole budget
    for index, stage in enumerate(stages):
        start = weights if index == 0 else "last"
        args = parse(recipe.small_data_argv("d", "l", stage, seed=4, start=start,
                                            config="leaf_small" if start == "none" else None))
        # (leafseg train resolves the name leaf-small to the installed file)
        assert args.weights == (str(zoo.path("leaf-small")) if start == "leaf-small" else start)
        assert (args.stage, args.lr, args.warmup_steps) == (stage[0], stage[2], stage[3])
        assert (args.augment, args.keep_checkpoints, args.seed) == ("strong", 0, 4)
        assert args.schedule in (None, "constant")  # a constant rate (None: train's default, constant)
        assert args.steps_per_epoch == recipe.SMALL_DATA_STEPS
        # leaf-small brings its own config (the one stored in the file); random weights need the preset
        assert args.config == ("leaf_small" if start == "none" else None)


def test_small_data_scores_the_newest_checkpoint_written_by_each_minute_mark():
    assert recipe.minute_marks(8) == [1, 2, 4, 8]
    assert recipe.minute_marks(10) == [1, 2, 4, 8, 10]
    assert recipe.minute_marks(0.5) == [0.5]
    elapsed = {1: 20.0, 2: 50.0, 3: 61.0, 4: 130.0}
    assert recipe.checkpoint_at(elapsed, 1) == 2          # epoch 3 ended after 61 s
    assert recipe.checkpoint_at(elapsed, 2) == 3
    assert recipe.checkpoint_at(elapsed, 2, last=True) == 4  # the budget's step overshoots it a little
    assert recipe.checkpoint_at({1: 70.0}, 1) is None


def test_small_data_options_are_checked(capsys):
    assert recipe_command.main(["leaf-small", "--minutes", "3"]) == 2
    assert "--minutes is for small-data" in capsys.readouterr().err
    assert recipe_command.main(["small-data", "--epochs", "3"]) == 2
    assert "trains for --minutes, not --epochs" in capsys.readouterr().err


def test_the_last_stages_are_warm_restarts_to_epochs_72_104_and_128():
    assert [stage[0] for stage in recipe.LEAF_SMALL_STAGES] == [36, 48, 72, 104, 128]
    args = parse(recipe.train_argv("d", "l", recipe.LEAF_SMALL_STAGES[4], seed=0, start="last"))
    assert (args.weights, args.epochs, args.lr, args.warmup_steps, args.schedule) == ("last", 128, 0.0001, 0, "cosine")
    args = parse(recipe.train_argv("d", "l", recipe.LEAF_SMALL_STAGES[2], seed=0, start="last"))
    assert (args.weights, args.epochs, args.lr, args.warmup_steps, args.schedule) == ("last", 72, 0.0002, 0, "cosine")
    args = parse(recipe.train_argv("d", "l", recipe.LEAF_SMALL_STAGES[3], seed=0, start="last"))
    assert (args.weights, args.epochs, args.lr, args.warmup_steps, args.schedule) == ("last", 104, 0.00015, 0, "cosine")


def test_the_fine_tuning_starts_from_the_base_model_then_resumes_its_own_run(tmp_path, monkeypatch):
    """leaf-small's last run fine-tunes the base model on cluttered rosettes: its first stage
    starts from the base file (not random weights), its last checkpoint is taken, and a rerun
    finds its own run folder."""
    calls = []

    def fake_train(argv):
        calls.append(argv)
        args = parse(argv)
        run = tmp_path / "logs" / "leaf_small20261205T0100"
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text("NAME: leaf_small\n")
        (run / "run.json").write_text(json.dumps({"stages": [{"end_epoch": args.epochs}]}))
        checkpoint = run / f"mask_rcnn_leaf_small_{args.epochs:04d}.weights.h5"
        checkpoint.write_bytes(b"fine-tuned")
        earlier = run / "mask_rcnn_leaf_small_0001.weights.h5"
        earlier.write_bytes(b"lowest validation loss")
        (run / "checkpoints.json").write_text(json.dumps({"best": {"epoch": 1, "path": str(earlier)}}))
        return type("Result", (), {"run_dir": str(run)})()

    monkeypatch.setattr(train, "run", fake_train)
    base = tmp_path / "base.weights.h5"
    base.write_bytes(b"base")
    stage = recipe.LEAF_SMALL_CLUTTER_STAGE
    target, source, _ = recipe.train_model("cluttered", tmp_path / "logs", tmp_path / "out.weights.h5", (stage,),
                                           seed=7, initial=base, pick="last")
    args = parse(calls[0])
    assert (args.weights, args.epochs, args.lr, args.schedule, args.dataset, args.seed) == (
        str(base), 24, 0.0001, "cosine", "cluttered", 7)
    assert target.read_bytes() == b"fine-tuned" and source.endswith("_0024.weights.h5")
    again, _, _ = recipe.train_model("cluttered", tmp_path / "logs", tmp_path / "best.weights.h5", (stage,), seed=7,
                                     initial=base)
    assert len(calls) == 1, "a finished fine-tuning is not run again"
    assert again.read_bytes() == b"lowest validation loss", "pick='best' (the default) takes the index's best"
    held_out_offsets = {row[2] for row in recipe.HELD_OUT}
    assert recipe.CLUTTER_SEED_OFFSET not in held_out_offsets
    assert recipe.REALISM_SEED_OFFSET not in held_out_offsets, "the realism fine-tuning's rosettes are not held out"
    assert len(held_out_offsets) == len(recipe.HELD_OUT), "each held-out set has its own seed"


def test_v2_fine_tunes_the_first_leaf_small_on_realism_rosettes(tmp_path, monkeypatch):
    """--start-from skips steps 1 to 3: the first leaf-small is copied to leaf_small_v1 and the
    realism fine-tuning starts from it, with its own data, seed and stage; the steps after it
    (detection settings, held-out scores) see the realism set."""
    made, trained = [], []

    def fake_make_data(folder, images, seed, **kwargs):
        made.append((Path(folder).name, seed, kwargs.get("clutter"), kwargs.get("realism")))
        return Path(folder) / "prepared"

    def fake_train_model(prepared, logs, target, stages, seed, steps_per_epoch=None, initial="none", pick="best"):
        trained.append((Path(prepared).parent.name, Path(target).name, stages, seed, Path(initial).name, pick))
        Path(target).write_bytes(b"v2")
        raise SystemExit("stop after training")  # the steps after it are tested elsewhere

    monkeypatch.setattr(recipe, "make_data", fake_make_data)
    monkeypatch.setattr(recipe, "train_model", fake_train_model)
    first = tmp_path / "first.weights.h5"
    first.write_bytes(b"v1")
    with pytest.raises(SystemExit, match="stop after training"):
        recipe.leaf_small(out=tmp_path / "out", seed=2026, start_from=str(first))
    assert (tmp_path / "out" / "leaf_small_v1.weights.h5").read_bytes() == b"v1"
    assert made == [("realism", 2026 + recipe.REALISM_SEED_OFFSET, recipe.LEAF_SMALL_CLUTTER, recipe.LEAF_SMALL_REALISM)]
    assert trained == [("realism", "leaf_small.weights.h5", (recipe.LEAF_SMALL_REALISM_STAGE,),
                        2026 + recipe.REALISM_SEED_OFFSET, "leaf_small_v1.weights.h5", "last")]
    assert recipe.LEAF_SMALL_REALISM["petioles"] == "real"


def test_with_photos_the_drawn_model_is_adapted_on_all_but_the_held_out_plants(tmp_path, monkeypatch):
    """recipe leaf-small --photos: leafseg adapt runs from the drawn fine-tuning's model, its
    held-out plants left out, on fixed steps rather than a time budget, and its result becomes
    leaf_small.weights.h5."""
    from leafseg.training import adapt

    seen = []

    def fake_adapt(options, callbacks=None, detect=None):
        seen.append(options)
        Path(options.out).mkdir(parents=True)
        (Path(options.out) / "adapted.weights.h5").write_bytes(b"adapted")

    monkeypatch.setattr(adapt, "adapt", fake_adapt)
    drawn = tmp_path / "leaf_small_drawn.weights.h5"
    drawn.write_bytes(b"drawn")
    target, source = recipe.adapt_on_photos(drawn, tmp_path / "photos", tmp_path / "adapt", seed=2056, workers=1)
    options = seen[0]
    assert (options.weights, options.photos, options.seed) == (str(drawn), [str(tmp_path / "photos")], 2056)
    assert options.hold_out_plants and options.rounds == 2 and options.steps == 600
    assert options.minutes >= 600, "steps, not the machine's speed, decide what is trained"
    assert target == tmp_path / "leaf_small.weights.h5" and target.read_bytes() == b"adapted"
    assert source == str(tmp_path / "adapt" / "adapted.weights.h5")
