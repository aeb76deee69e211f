"""``leafseg export --format openvino`` (issue 28): writes the IR folder and checks it against Keras."""
import yaml

from leafseg.cli import export as export_command
from tests.command_output import run_main
from tests.optional_packages import require


def test_export_command_writes_openvino_ir_and_its_check_passes(tmp_path, monkeypatch):
    require("openvino", "openvino")
    monkeypatch.setenv("LEAFSEG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "leaf_ov"
    done = run_main(export_command.main, ["--weights", "leaf-small", "--format", "openvino", "--out", str(out)])
    assert done.status == 0, done.stderr + done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["classifier.bin", "classifier.xml", "config.yaml", "mask.bin",
                                                     "mask.xml", "model.bin", "model.weights.h5", "model.xml"]
    assert f"wrote {out}" in done.stdout
    assert done.stdout.count("same detections") == 2, done.stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["NAME"]
    again = run_main(export_command.main, ["--format", "openvino", "--out", str(out), "--no-check"])
    assert again.status == 2 and "exists" in again.stderr


def test_export_command_without_openvino_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    done = run_main(export_command.main, ["--format", "openvino", "--out", str(tmp_path / "x"), "--no-check"])
    assert done.status == 2
    assert "pip install 'leafseg[openvino]'" in done.stderr
    assert not (tmp_path / "x").exists()


def test_export_format_is_checked_by_argparse(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        export_command.main(["--format", "onnx", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
