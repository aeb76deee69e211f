#!/usr/bin/env python
"""Runtimes and the torchvision ratios in one run: training (graph, XLA), inference (TensorFlow, OpenVINO).

    python benchmarks/bench_runtimes.py --peer-python ~/tv-venv/bin/python       # issue 28's figures
    python benchmarks/bench_runtimes.py --runtimes tensorflow,openvino --train none   # inference only, no peer

One process, one machine, one input (``leafseg.benchmark``'s: the input of
``benchmarks/peer_torchvision.py``, a random 512 px image and 12 rectangles, random weights):

1. the peer (torchvision's Mask R-CNN of the same sizes, run by ``--peer-python``, an interpreter
   of a virtual environment with torch and torchvision: the peer script's docstring says how to
   make one): its training step and inference;
2. leafseg's training step, for each ``--train`` mode: ``graph`` (a tf.function, TensorFlow's
   kernels), ``xla`` (``jit_compile=True``, what ``train --jit`` runs) and ``bf16`` (the graph
   under Keras' mixed_bfloat16 policy, what ``train --mixed-precision bfloat16`` runs; by default
   only on a CPU with bfloat16 units, AVX512_BF16 or AMX);
3. leafseg's ``MaskRCNN.detect`` for each ``--runtimes`` entry (``tensorflow``, ``openvino``
   in float32, ``openvino-bf16``), on one model, so every runtime runs the same weights; with the
   random weights' detections (up to 50, each a mask head pass) and with none (DETECTION_MIN_CONFIDENCE
   1.0: the peer's case, whose random weights detect nothing). The conversion to OpenVINO is
   timed apart and left out of the inference figure (``leafseg predict`` converts once per run);
4. the peer again. Ratios are to the mean of its two runs, as the machine's speed drifts.

Not a test: it prints a table and a ``json:`` line (``--json PATH`` also writes it). The figures
hold for this machine and its load only: run it with nothing else running.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PEER = Path(__file__).resolve().parent / "peer_torchvision.py"
RUNTIMES = {"tensorflow": ("tensorflow", "float32"), "openvino": ("openvino", "float32"),
            "openvino-bf16": ("openvino", "bfloat16")}
# --train modes: (jit_compile, precision)
TRAIN_MODES = {"graph": (False, "float32"), "xla": (True, "float32"), "bf16": (False, "bfloat16"),
               "xla-bf16": (True, "bfloat16")}


def cpu_flags():
    """The CPU's model name and its vector / matrix flags (what decides the kernels)."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags.update(value.split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    return model, wanted


def run_peer(python, backbone, size):
    started = time.perf_counter()
    done = subprocess.run([python, str(PEER), backbone, str(size)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the peer failed ({python} {PEER.name}):\n{done.stderr[-2000:]}")
    from leafseg.benchmark import parse_peer

    line = done.stdout.strip().splitlines()[-1]
    values = parse_peer(line, f"{PEER.name}'s output")
    values["line"], values["wall_s"] = line, time.perf_counter() - started
    print(f"peer: {line}", flush=True)
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", help="python of a virtual environment with torch and torchvision "
                                              "(default: no peer, no ratios)")
    parser.add_argument("--config", default="leaf_r101", help="leaf_r101 (default) or a YAML config")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--runtimes", default=None,
                        help="comma-separated: tensorflow, openvino, openvino-bf16, or none (default: every one "
                             "installed)")
    parser.add_argument("--train", default=None, help="training modes: graph, xla, bf16, xla-bf16, or none (default graph,xla, "
                                                     "and bf16 on a CPU with bfloat16 units)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the json line's object here")
    args = parser.parse_args(argv)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    from leafseg.cli.options import quiet_tensorflow

    quiet_tensorflow(False)
    import keras
    import tensorflow as tf

    from leafseg.benchmark import benchmark_inference, benchmark_training, measured_config, peer_input
    from leafseg.models.runtime import installed_runtimes

    installed = installed_runtimes()
    names = [] if args.runtimes == "none" else args.runtimes.split(",") if args.runtimes else [
        name for name in RUNTIMES if RUNTIMES[name][0] in installed]
    for name in names:
        if name not in RUNTIMES:
            parser.error(f"--runtimes: unknown {name!r}; choose from {', '.join(RUNTIMES)}")
    from leafseg.precision import cpu_has_bfloat16, precision_policy

    if args.train is None:
        args.train = "graph,xla,bf16" if cpu_has_bfloat16() else "graph,xla"
    modes = [] if args.train == "none" else args.train.split(",")
    for mode in modes:
        if mode not in TRAIN_MODES:
            parser.error(f"--train: unknown {mode!r}; choose from {', '.join(TRAIN_MODES)} or none")
    model_name, flags = cpu_flags()
    result = {"cpu": model_name, "cpu_flags": flags, "cpus": os.cpu_count(),
              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"), "tensorflow": tf.__version__,
              "load_avg_start": os.getloadavg()[0], "size": args.size, "config": args.config}
    print(f"{model_name}, {os.cpu_count()} cores; {' '.join(flags)}; TF_ENABLE_ONEDNN_OPTS={result['onednn']}",
          flush=True)
    keras.utils.set_random_seed(0)
    config = measured_config(args.config, batch=1, size=args.size)
    batch, image = peer_input(config, 12, 0)
    peers = [run_peer(args.peer_python, str(config.BACKBONE), args.size)] if args.peer_python else []

    for mode in modes:
        jit_compile, precision = TRAIN_MODES[mode]
        with precision_policy(precision):
            train = benchmark_training(config, batch, args.warmup, args.steps, jit_compile=jit_compile)
        result[f"train_{mode}_s"] = train["mean_s"]
        print(f"leafseg training step ({mode}): {train['mean_s']:.3f} s (min {train['min_s']:.3f}, "
              f"first {args.warmup}: {train['warmup_s']:.1f} s)", flush=True)

    from mrcnn.model import MaskRCNN

    inference = config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1)
    models = {}
    if names:
        models = {"detections": MaskRCNN("inference", inference, os.devnull),
                  "none": MaskRCNN("inference", inference.replace(DETECTION_MIN_CONFIDENCE=1.0), os.devnull)}
        models["none"].keras_model.set_weights(models["detections"].keras_model.get_weights())
    for name in names:
        runtime, precision = RUNTIMES[name]
        for case, model in models.items():
            infer = benchmark_inference(config, image, args.warmup, args.steps, runtime=runtime, precision=precision,
                                        model=model)
            result[f"infer_{name}_{case}_s"] = infer["mean_s"]
            result[f"infer_{name}_{case}_count"] = infer["detections"]
            print(f"leafseg detect, {name} ({infer['runtime']}), {infer['detections']} detections: "
                  f"{infer['mean_s']:.3f} s (min {infer['min_s']:.3f}; conversion and compiling in the untimed first calls {infer['convert_s']:.1f} s)",
                  flush=True)

    if args.peer_python:
        peers.append(run_peer(args.peer_python, str(config.BACKBONE), args.size))
        train_peer = sum(p["train_step_s"] for p in peers) / len(peers)
        infer_peer = sum(p["infer_s"] for p in peers) / len(peers)
        result["peer"] = {"runs": [p["line"] for p in peers], "train_step_s": train_peer, "infer_s": infer_peer}
        print(f"\nagainst torchvision (mean of {len(peers)} runs: training step {train_peer:.3f} s, "
              f"inference {infer_peer:.3f} s, no detection)")
        print(f"{'':44} {'leafseg s':>10} {'ratio':>7}")
        for mode in modes:
            value = result[f"train_{mode}_s"]
            result[f"train_{mode}_ratio"] = value / train_peer
            print(f"{'training step, ' + mode:44} {value:10.3f} {value / train_peer:6.2f}x")
        for name in names:
            for case in models:
                value = result[f"infer_{name}_{case}_s"]
                count = result[f"infer_{name}_{case}_count"]
                result[f"infer_{name}_{case}_ratio"] = value / infer_peer
                print(f"{f'inference, {name}, {count} detections':44} {value:10.3f} {value / infer_peer:6.2f}x")
    result["load_avg_end"] = os.getloadavg()[0]
    print(f"load average (1 min): {result['load_avg_start']:.2f} at the start, {result['load_avg_end']:.2f} at the end")
    line = json.dumps(result)
    print("json: " + line)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
