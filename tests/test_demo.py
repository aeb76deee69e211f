"""The README's main job, end to end at a toy size: every stage runs and leaves its outputs."""
import csv
import json

from leafseg.demo import main


def test_demo_runs_end_to_end_and_reports_where_its_outputs_are(tmp_path, capsys):
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
