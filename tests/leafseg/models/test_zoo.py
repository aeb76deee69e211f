"""leafseg.models.zoo: pretrained models by name, wherever weights are taken.

The name-resolution tests stand the tiny trained model (tests/tiny_trained.py, which stores its
own config) in for ``leaf-small`` through ``$LEAFSEG_ZOO_DIR``; the last tests check the file
that ships in the package.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from leafseg.models import loading

from leafseg.cli import predict as predict_command

from leafseg.training import train

from leafseg.models import zoo
from leafseg.config import LeafSmallConfig
from mrcnn import weights as W
from tests.tiny_trained import trained_run
from tests.toy_data import ToyConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

MAX_SHIPPED_MB = 25


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture
def tiny_zoo(run, tmp_path, monkeypatch):
    """A zoo folder whose leaf-small is the tiny trained model."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copyfile(run["weights"], folder / zoo.MODELS["leaf-small"].file)
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def empty_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_DIR_ENV, str(tmp_path))
    return tmp_path


def photos(folder, count=2):
    from leafseg.synth.rosettes import generate_rosette, write_png

    folder.mkdir()
    for k in range(count):
        write_png(folder / f"plant{k}_rgb.png", generate_rosette(k, size=64).image)
    return folder


def test_a_missing_model_file_is_named_with_the_way_to_get_it_back(empty_zoo):
    with pytest.raises(zoo.ModelNotFoundError) as caught:
        zoo.path("leaf-small")
    message = str(caught.value)
    assert str(empty_zoo / "leaf_small.weights.h5") in message
    assert "leafseg recipe leaf-small" in message and zoo.ZOO_DIR_ENV in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ValueError, match="unknown model 'leaf-large': leafseg ships leaf-small"):
        zoo.path("leaf-large")
    assert zoo.is_name("leaf-small") and not zoo.is_name("leaf_small.weights.h5") and not zoo.is_name(None)


def test_load_weights_takes_the_name_through_the_entry_point(tiny_zoo, run):
    from mrcnn.model import MaskRCNN

    assert set(W.named_weights()) >= {"leaf-small"}
    by_name = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1, TRAIN_BN=False), tiny_zoo)
    report = by_name.load_weights("leaf-small")
    assert report.loaded and not report.missing_in_file and report.path.endswith("leaf_small.weights.h5")
    by_path = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1, TRAIN_BN=False), tiny_zoo)
    by_path.load_weights(run["weights"])
    for a, b in zip(by_name.keras_model.weights, by_path.keras_model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A path that exists wins over a name; an unknown name stays a path (and is reported as missing).
    assert W.resolve_named(run["weights"]) == run["weights"]
    assert W.resolve_named("no-such-model") == "no-such-model"


def test_load_weights_by_name_says_when_the_file_is_missing(empty_zoo):
    from mrcnn.model import MaskRCNN

    model = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1), empty_zoo)
    with pytest.raises(zoo.ModelNotFoundError, match="leaf_small.weights.h5 does not exist"):
        model.load_weights("leaf-small")


def test_predict_without_weights_uses_leaf_small(tiny_zoo, tmp_path, monkeypatch, capsys):
    images = photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    assert predict_command.main([str(images)]) == 0  # no --weights, no --out
    err = capsys.readouterr().err
    assert f"weights {tiny_zoo / 'leaf_small.weights.h5'}, config the config stored in" in err
    out = tmp_path / "predictions"
    assert (out / "plants.csv").is_file() and (out / "leaves.csv").is_file()
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["plant0_label.png", "plant1_label.png"]


def test_predict_set_changes_the_default_models_config_and_is_part_of_the_runs_settings(tiny_zoo, tmp_path, capsys):
    import json

    from leafseg.inference.results import SETTINGS_FILE, STATE_DIR

    images = photos(tmp_path / "photos")
    out = tmp_path / "out"
    size = ["--set", "IMAGE_MAX_DIM=128", "--set", "IMAGE_MIN_DIM=128"]
    assert predict_command.main([str(images), "--out", str(out), *size, "--set", "DETECTION_MAX_INSTANCES=5"]) == 0
    err = capsys.readouterr().err
    assert "config the config stored in" in err
    assert " --set IMAGE_MAX_DIM=128 --set IMAGE_MIN_DIM=128 --set DETECTION_MAX_INSTANCES=5, min score" in err
    used = yaml.safe_load(json.loads((out / STATE_DIR / SETTINGS_FILE).read_text())["config"])
    assert (used["IMAGE_MAX_DIM"], used["IMAGE_MIN_DIM"], used["DETECTION_MAX_INSTANCES"]) == (128, 128, 5)
    assert used["BACKBONE_WIDTH"] == ToyConfig.BACKBONE_WIDTH  # the rest: the config stored in the weights
    # Other overrides into the same folder: refused, naming what changed, as for any other setting.
    assert predict_command.main([str(images), "--out", str(out), *size, "--set", "DETECTION_MAX_INSTANCES=7"]) == 2
    err = capsys.readouterr().err
    assert "holds predictions made with other settings (config: DETECTION_MAX_INSTANCES 5 then, 7 now)" in err


@pytest.mark.parametrize("pair, message", [
    ("IMAGE_MAX_DIMS=128", "predict: error: unknown config key 'IMAGE_MAX_DIMS' in arguments; did you mean "
                           "IMAGE_MAX_DIM"),
    ("IMAGE_MAX_DIM=100", "predict: error: IMAGE_MAX_DIM = 100 is invalid: expected divisible by 64"),
    ("IMAGE_MAX_DIM", "predict: error: --set 'IMAGE_MAX_DIM': expected KEY=VALUE"),
])
def test_predict_bad_set_is_named_before_any_image(tiny_zoo, tmp_path, capsys, pair, message):
    images = photos(tmp_path / "photos", count=1)
    out = tmp_path / "out"
    assert predict_command.main([str(images), "--out", str(out), "--set", pair]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.png"))


def test_predict_evaluate_export_without_the_file_fail_clearly(empty_zoo, tmp_path, capsys):
    from leafseg.cli import evaluate, export

    from leafseg.synth.rosettes import write_dataset

    images = photos(tmp_path / "photos", count=1)
    write_dataset(tmp_path / "pairs", 1, size=64, progress=False)
    assert predict_command.main([str(images), "--out", str(tmp_path / "p")]) == 2
    assert evaluate.main(["--dataset", str(tmp_path / "pairs"), "--out", str(tmp_path / "e")]) == 2
    assert export.main(["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("the leaf-small weights are not installed") == 3
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_train_weights_leaf_small_starts_from_the_file_and_its_config(tiny_zoo):
    args = train.build_parser().parse_args(["--dataset", "d", "--weights", "leaf-small", "--stage", "heads",
                                            "--epochs", "2"])
    train.check_options(args)
    assert Path(args.weights) == tiny_zoo / "leaf_small.weights.h5"
    assert train.config_source(args) == ("weights", args.weights)
    config = train.build_config(args, 1)
    assert config.NAME == ToyConfig.NAME and config.IMAGE_MAX_DIM == ToyConfig.IMAGE_MAX_DIM


def test_train_weights_leaf_small_without_the_file_is_a_setup_error(empty_zoo):
    args = train.build_parser().parse_args(["--dataset", "d", "--weights", "leaf-small", "--stage", "heads",
                                            "--epochs", "2"])
    with pytest.raises(train.SetupError, match="the leaf-small weights are not installed"):
        train.check_options(args)


# ------------------------------------------------------------------------------ the shipped file

def test_the_shipped_leaf_small_is_installed_small_and_self_describing(monkeypatch):
    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)
    path = zoo.path("leaf-small")
    assert path.parent == Path(zoo.__file__).resolve().parent
    assert path.stat().st_size <= MAX_SHIPPED_MB * 1e6
    metadata = W.read_metadata(path)
    assert list(metadata.class_names) == ["BG", "leaf"]
    stored = LeafSmallConfig.from_yaml_text(metadata.config_yaml, source=str(path))
    # The architecture and the detection settings its recipe chose are the preset's.
    for name in ("BACKBONE", "BACKBONE_WIDTH", "IMAGE_MAX_DIM", "TOP_DOWN_PYRAMID_SIZE", "RPN_ANCHOR_SCALES",
                 "MASK_HEAD_CHANNELS", "FPN_CLASSIF_FC_LAYERS_SIZE", "NUM_CLASSES", "DETECTION_MIN_CONFIDENCE",
                 "DETECTION_NMS_THRESHOLD", "DETECTION_MASK_OVERLAP_THRESHOLD"):
        assert getattr(stored, name) == getattr(LeafSmallConfig(), name), name
    assert Path(zoo.MODELS["leaf-small"].card).name in {p.name for p in (Path(__file__).parents[3] / "docs").iterdir()}


def test_the_shipped_leaf_small_finds_leaves_of_a_rosette_by_name(monkeypatch):
    from leafseg.measure.metrics import label_from_detections, symmetric_best_dice
    from leafseg.synth.rosettes import generate_rosette

    monkeypatch.delenv(zoo.ZOO_DIR_ENV, raising=False)
    model, source, weights = loading.load_inference_model("leaf-small")
    assert weights == zoo.path("leaf-small") and source.startswith("the config stored in")
    rosette = generate_rosette(7, size=500, min_leaves=8)  # the classic style: a plain, well-lit rosette
    result = model.detect([rosette.image])[0]
    assert result["masks"].shape[-1] >= 1
    predicted = label_from_detections(result["masks"], result["scores"])
    assert symmetric_best_dice(predicted, rosette.instance_ids) > 0.6
