"""leafseg.benchmark: the peer's input, config overrides and reading the peer's result (no timing)."""
import json
from pathlib import Path

import numpy as np
import pytest

from leafseg import benchmark
from leafseg.cli import bench as bench_command
from leafseg.cli.options import parse_overrides


def test_peer_masks_are_the_peers_rectangles():
    masks = benchmark.peer_masks(512, 12)
    assert masks.shape == (512, 512, 12)
    np.testing.assert_array_equal(masks.sum(axis=(0, 1)), 40 * 60)
    ys, xs = np.nonzero(masks[:, :, 11])
    # Leaf 11: x = 40 + 30 * 11 = 370 .. 409, y = 60 + 25 * 11 = 335 .. 394.
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (370, 409, 335, 394)


def test_config_overrides_batch_and_size():
    config = benchmark.measured_config("leaf_r101", parse_overrides(["BACKBONE=resnet50", "PRE_NMS_LIMIT=100"]),
                                       batch=1, size=256)
    assert (config.BACKBONE, config.PRE_NMS_LIMIT, config.BATCH_SIZE) == ("resnet50", 100, 1)
    assert tuple(config.IMAGE_SHAPE) == (256, 256, 3)
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_overrides(["BACKBONE"])


def test_peer_input_is_one_pipeline_sample_per_image():
    config = benchmark.measured_config(size=128, batch=2)
    batch, image = benchmark.peer_input(config, leaves=3)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert batch["input_image"].shape == (2, 128, 128, 3) and batch["input_image"].dtype == np.float32
    np.testing.assert_array_equal(batch["input_gt_class_ids"][:, :3], 1)
    np.testing.assert_array_equal(batch["input_gt_class_ids"][:, 3:], 0)
    np.testing.assert_array_equal(batch["input_gt_boxes"][0, 0], [60, 40, 120, 80])  # (y1, x1, y2, x2)


def test_read_peer_takes_its_line_or_json(tmp_path):
    line = tmp_path / "peer.txt"
    line.write_text("torchvision 0.29.1 resnet101-FPN 512px train_step_s=3.640 infer_s=1.060\n")
    assert benchmark.read_peer(line) == {"train_step_s": 3.64, "infer_s": 1.06, "torchvision": "0.29.1"}
    data = tmp_path / "peer.json"
    data.write_text(json.dumps({"train_step_s": 2.0, "infer_s": 0.5}))
    assert benchmark.read_peer(data)["infer_s"] == 0.5
    data.write_text("{}")
    with pytest.raises(ValueError, match="train_step_s"):
        benchmark.read_peer(data)


def test_command_times_training_and_inference_and_compares_with_the_peer(tmp_path, capsys):
    """A whole run on the quick-start preset at 128 px: every figure and ratio is printed and in the JSON."""
    peer = tmp_path / "peer.txt"
    peer.write_text("torchvision 0.29.1 resnet101-FPN 512px train_step_s=3.640 infer_s=1.060\n")
    config = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart_cpu.yaml")
    assert bench_command.main(["--config", config, "--size", "128", "--warmup", "1", "--steps", "1",
                           "--peer-json", str(peer)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.split("json: ", 1)[1])
    assert result["train_step_s"] > 0 and result["infer_s"] > 0 and result["size"] == 128
    assert f"train step: leafseg {result['train_step_s']:.3f} s / peer 3.640 s" in out
    assert f"inference: leafseg {result['infer_s']:.3f} s / peer 1.060 s" in out
    if result["infer"]["detections"]:
        # Random weights found something: the peer's case, no detection, is timed as well.
        assert result["infer_no_detections"]["detections"] == 0
        assert f"inference, no detection: leafseg {result['infer_no_detections_s']:.3f} s" in out
    else:
        assert "infer_no_detections_s" not in result


def test_runtimes_benchmark_times_each_mode_and_runtime_against_the_peer(tmp_path, capsys):
    """benchmarks/bench_runtimes.py on the quick-start preset at 128 px, with a stand-in peer that prints
    the peer's line: the training modes asked for and every runtime are timed, and each gets its ratio to the
    peer's mean. (XLA's mode is left out here, it compiles for a minute; tests/leafseg/training/test_jit.py runs it.)"""
    import importlib.util
    import stat

    peer = tmp_path / "peer-python"
    peer.write_text("#!/bin/sh\necho 'torchvision 0.29.1 resnet18-FPN 128px train_step_s=2.000 infer_s=0.500'\n")
    peer.chmod(peer.stat().st_mode | stat.S_IXUSR)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_runtimes.py"
    spec = importlib.util.spec_from_file_location("bench_runtimes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart_cpu.yaml")
    out_json = tmp_path / "figures.json"
    assert module.main(["--config", config, "--size", "128", "--warmup", "1", "--steps", "1", "--train", "graph,bf16",
                        "--runtimes", "tensorflow,openvino", "--peer-python", str(peer), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.split("json: ", 1)[1])
    assert result == json.loads(out_json.read_text())
    assert result["peer"]["train_step_s"] == 2.0 and result["peer"]["infer_s"] == 0.5
    for mode in ("graph", "bf16"):
        assert result[f"train_{mode}_ratio"] == pytest.approx(result[f"train_{mode}_s"] / 2.0)
        assert f"training step, {mode}" in out
    for runtime in ("tensorflow", "openvino"):
        for case in ("detections", "none"):
            assert result[f"infer_{runtime}_{case}_ratio"] == pytest.approx(result[f"infer_{runtime}_{case}_s"] / 0.5)
        assert result[f"infer_{runtime}_none_count"] == 0
        assert f"inference, {runtime}, 0 detections" in out
    assert result["cpu"] and isinstance(result["cpu_flags"], list)


def test_predict_benchmark_times_model_only_and_end_to_end_in_turns(capsys):
    """benchmarks/bench_predict.py on 3 small JPEGs with leaf-small, 2 turns: the figures it prints
    agree with each other (rates from the medians, the ratio the median of each turn's, in range)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_predict.py"
    spec = importlib.util.spec_from_file_location("bench_predict", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--images", "3", "--size", "160", "--repeats", "2", "--writer", "thread"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.split("json: ", 1)[1])
    assert result["images"] == 3 and result["repeats"] == 2 and result["writer"] == "thread"
    assert len(result["ratios"]) == 2 and result["ratios"] == sorted(result["ratios"])
    assert result["ratios"][0] <= result["end_to_end_over_model_only"] <= result["ratios"][-1]
    assert result["model_only_images_per_s"] > 0 and result["end_to_end_images_per_s"] > 0
    assert "end to end / model only, each turn's pair: median" in out
