"""The ``leafseg bench`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.benchmark`."""
from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Sequence

from leafseg import benchmark as _library
from leafseg.benchmark import (DEFAULT_CONFIG, _rss_mib, _tf_memory_info, benchmark_inference, benchmark_training,
                               measured_config, peer_input, read_peer)
from leafseg.cli.options import add_verbose_argument, parse_overrides, quiet_tensorflow

LIBRARY_DOC = _library.__doc__  # the command's help is the library's description


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leafseg bench", description=LIBRARY_DOC.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="'leaf_r101' (leafseg.config.LeafConfig, the default) or a YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config attribute (YAML value), e.g. --set BACKBONE=resnet50; repeatable")
    parser.add_argument("--batch", type=int, default=1, help="images per training step (default 1)")
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    parser.add_argument("--leaves", type=int, default=12, help="ground-truth rectangles (default 12)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed calls to average (default 5)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False,
                        help="compile the training step with XLA (jit_compile; default off)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra-op threads (default: TensorFlow's choice, one per core)")
    parser.add_argument("--inter-threads", type=int, default=None,
                        help="TensorFlow inter-op threads (default: TensorFlow's choice)")
    parser.add_argument("--skip", choices=("training", "inference"), action="append", default=[],
                        help="leave out a phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image and of TensorFlow (default 0)")
    parser.add_argument("--peer-json", metavar="PATH",
                        help="the peer's result (its JSON, or the line benchmarks/peer_torchvision.py "
                             "prints): print ratios")
    parser.add_argument("--target", type=float, default=0.8, help="ratio to the peer to meet (default 0.8)")
    add_verbose_argument(parser)
    return parser


def run(args) -> dict:
    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    keras.utils.set_random_seed(args.seed)
    config = measured_config(args.config, parse_overrides(args.overrides), batch=args.batch, size=args.size)
    batch, image = peer_input(config, args.leaves, args.seed)
    label = f"{config.BACKBONE if isinstance(config.BACKBONE, str) else 'custom'}-FPN {args.size}px"
    result = {
        "config": args.config, "backbone": str(config.BACKBONE), "size": args.size, "batch": config.BATCH_SIZE,
        "leaves": args.leaves, "warmup": args.warmup, "steps": args.steps, "jit": bool(args.jit),
        "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    if "training" not in args.skip:
        try:
            train = benchmark_training(config, batch, args.warmup, args.steps, jit_compile=args.jit)
        except tf.errors.InvalidArgumentError as err:
            if not args.jit:
                raise
            # An op without an XLA kernel (the NMS and crop_and_resize have plain-op versions).
            first = str(err).strip().splitlines()[0]
            raise SystemExit(f"--jit: XLA cannot compile this training step ({first[:200]}); run without --jit")
        result["train"] = train
        result["train_step_s"] = train["mean_s"]
        print(f"leafseg {label} batch {config.BATCH_SIZE}: train_step_s={train['mean_s']:.3f} "
              f"(min {train['min_s']:.3f}, max {train['max_s']:.3f}, first {args.warmup} took "
              f"{train['warmup_s']:.1f} s) peak_rss_mib={train['peak_rss_mib']:.0f}", flush=True)
    if "inference" not in args.skip:
        infer = benchmark_inference(config, image, args.warmup, args.steps)
        result["infer"] = infer
        result["infer_s"] = infer["mean_s"]
        print(f"leafseg {label} detect 1 image: infer_s={infer['mean_s']:.3f} (min {infer['min_s']:.3f}, "
              f"max {infer['max_s']:.3f}, {infer['detections']} detections) peak_rss_mib={infer['peak_rss_mib']:.0f}",
              flush=True)
        if infer["detections"]:
            # The peer's random weights detect nothing, so it runs no mask head: the same case here.
            bare = benchmark_inference(config.replace(DETECTION_MIN_CONFIDENCE=1.0), image, args.warmup, args.steps)
            result["infer_no_detections"] = bare
            result["infer_no_detections_s"] = bare["mean_s"]
            print(f"leafseg {label} detect 1 image, no detection (the peer's case): infer_s={bare['mean_s']:.3f} "
                  f"(min {bare['min_s']:.3f}, max {bare['max_s']:.3f}, {bare['detections']} detections)", flush=True)
    result["peak_rss_mib"] = _rss_mib()
    result["tf_memory_mib"] = _tf_memory_info()
    result["load_avg_end"] = os.getloadavg()[0]
    print(f"peak_rss_mib={result['peak_rss_mib']:.0f} load_avg_1min start {result['load_avg_start']:.2f} "
          f"end {result['load_avg_end']:.2f}")
    if args.peer_json:
        peer = read_peer(args.peer_json)
        result["peer"] = peer
        for key, peer_key, name in (("train_step_s", "train_step_s", "train step"), ("infer_s", "infer_s", "inference"),
                                    ("infer_no_detections_s", "infer_s", "inference, no detection")):
            if key in result:
                ratio = result[key] / peer[peer_key]
                result[f"{key}_ratio"] = ratio
                verdict = "meets" if ratio <= args.target else "misses"
                print(f"{name}: leafseg {result[key]:.3f} s / peer {peer[peer_key]:.3f} s = {ratio:.2f}x "
                      f"({verdict} the {args.target}x target)")
    print("json: " + json.dumps(result))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``leafseg bench`` and ``benchmarks/bench_model.py`` entry point: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    run(args)
    return 0
