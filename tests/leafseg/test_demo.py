"""The README's main job, end to end at a toy size: every stage runs and leaves its outputs."""
import csv
import json

from leafseg.cli.demo import main


def test_demo_runs_end_to_end_and_reports_where_its_outputs_are(tmp_path, capsys, monkeypatch):
    from mrcnn.model import MaskRCNN

    calls = []
    real_train = MaskRCNN.train

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(MaskRCNN, "train", spy)
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--images", "12", "--size", "128", "--minutes", "0.05",
                 "--eval-images", "2", "--predict", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    for stage in range(1, 6):
        assert f"[{stage}/5]" in printed
    assert "Done in" in printed and "SBD" in printed

    held_out = len([p for p in (out / "prepared" / "val").iterdir() if p.is_dir()])
    assert held_out >= 1
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["summary"]["n_images"] == min(2, held_out) == len(metrics["per_image"])
    assert 0.0 <= metrics["summary"]["sbd_mean"] <= 1.0
    for name in ("pr_curve.png", "gallery.png", "per_image.csv"):
        assert (out / "evaluation" / name).stat().st_size > 0
    assert (out / "losses.png").stat().st_size > 0 and (out / "model.weights.h5").is_file()

    with open(out / "predictions" / "plants.csv", newline="") as handle:
        plants = list(csv.DictReader(handle))
    assert len(plants) == 2
    assert len(list((out / "predictions" / "overlays").glob("*.png"))) == 2
    assert len(list((out / "predictions" / "labels").glob("*.png"))) == 2

    # The preset's optimiser (Adam for quickstart_cpu, as the demo always used) and the checkpoints
    # `leafseg train` keeps by default, not all of them.
    from leafseg.config import QuickstartConfig
    from leafseg.training.train import DEFAULT_KEEP_CHECKPOINTS
    from mrcnn.weights import read_metadata

    assert len(calls) == 1 and calls[0]["keep_checkpoints"] == DEFAULT_KEEP_CHECKPOINTS
    assert type(calls[0]["optimizer"]).__name__ == "Adam"
    # The weights describe themselves, and the run folder has its config.yaml, as the CLI's do.
    assert f"weights:     {out / 'model.weights.h5'}" in printed
    metadata = read_metadata(out / "model.weights.h5")
    assert QuickstartConfig.from_yaml_text(metadata.config_yaml) == QuickstartConfig()
    assert metadata.class_names == ["BG", "leaf"]
    (run_dir,) = (out / "logs").iterdir()
    assert QuickstartConfig.from_yaml(run_dir / "config.yaml") == QuickstartConfig()


def _toy_weights_alone(tmp_path):
    """A tiny model's weights saved by MaskRCNN.save_weights, in a folder without config.yaml,
    and a folder of two toy images."""
    import cv2

    from mrcnn.model import MaskRCNN
    from tests.toy_data import ToyConfig, shapes_dataset

    weights = MaskRCNN("training", ToyConfig(), tmp_path / "logs").save_weights(tmp_path / "w" / "model.weights.h5")
    images = tmp_path / "photos"
    images.mkdir()
    dataset = shapes_dataset(2)
    for image_id in dataset.image_ids:
        cv2.imwrite(str(images / f"plant{image_id}.png"), dataset.load_image(image_id)[..., ::-1])
    return weights, images


def test_predict_with_weights_alone_uses_their_own_config(tmp_path, capsys):
    """What a new user types after `make demo`: predict --weights model.weights.h5, no --config."""
    from leafseg.cli.predict import main as predict

    weights, images = _toy_weights_alone(tmp_path)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["model.weights.h5"]
    assert predict(["--weights", str(weights), "--out", str(tmp_path / "out"), str(images)]) == 0
    assert f"config the config stored in {weights}" in capsys.readouterr().err
    assert len(list((tmp_path / "out" / "labels").glob("*.png"))) == 2


def test_predict_with_another_config_says_so_in_a_few_lines(tmp_path, capsys):
    from leafseg.cli.predict import main as predict

    weights, images = _toy_weights_alone(tmp_path)
    assert predict(["--weights", str(weights), "--config", "quickstart_cpu", "--out", str(tmp_path / "out"),
                    str(images)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"predict: error: {weights}: these weights were trained with another configuration "
                               f"than quickstart_cpu (")
    assert "pass --config" in lines[0]
    assert len(lines) <= 3 and len(err) < 1000, err
    assert "skip_mismatch" not in err and "exclude=" not in err
