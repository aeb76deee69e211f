"""leafseg recipe: the commands it runs (the recipes themselves train models: benchmarks' work)."""
import json

import pytest

from leafseg import recipe, train


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
    assert recipe.main(["leaf-small", "--family", "dark"]) == 2
    assert "--family is for leave-one-style-out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main(["leaf-large"])
    assert "invalid choice: 'leaf-large'" in capsys.readouterr().err


def test_set_min_score_rewrites_only_the_cut_off_of_the_stored_config(tmp_path, tmp_path_factory):
    import shutil

    import numpy as np

    from leafseg.config import LeafConfig
    from mrcnn.weights import read_metadata
    from tests.tiny_trained import trained_run

    path = tmp_path / "w.weights.h5"
    shutil.copyfile(trained_run(tmp_path_factory)["weights"], path)
    before = read_metadata(path)
    recipe.set_min_score(path, 0.8)
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
