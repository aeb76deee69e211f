"""Where the model's time goes: a per-operation profile of a training step or of detect.

    python benchmarks/profile_model.py                      # training step, leaf ResNet101 512 px
    python benchmarks/profile_model.py --mode inference
    python benchmarks/profile_model.py --set RPN_CONV_CHANNELS=256 --top 40

Same input as ``benchmarks/bench_model.py`` (the peer's image and 12 rectangles, batch 1). Runs two
untimed steps, then records ``--steps`` steps with TensorFlow's profiler into ``--logdir``
(open it with TensorBoard's profile plugin). If ``xprof`` is installed (``pip install xprof``;
not a leafseg dependency) it also prints the self time per operation type and the slowest
operations, per step. Self times are summed over threads, so on 2 cores they add up to about
twice the wall time.
"""
import argparse
import collections
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def build_step(mode, config, seed=0):
    """A no-argument callable running one training step or one detect, as the benchmark does."""
    import tensorflow as tf

    from leafseg.benchmark import LEARNING_RATE, peer_input
    from mrcnn.model import MaskRCNN
    from mrcnn.trainable import LAYER_REGEX, set_trainable

    batch, image = peer_input(config, 12, seed)
    if mode == "training":
        model = MaskRCNN("training", config, os.devnull)
        set_trainable(model.keras_model, LAYER_REGEX["all"], train_bn=config.TRAIN_BN)
        trainer = model.compile_trainer(learning_rate=LEARNING_RATE)
        inputs = {name: tf.constant(value) for name, value in batch.items()}
        trainer.make_train_function()
        return lambda: {name: float(value) for name, value in trainer.train_function([inputs]).items()}
    model = MaskRCNN("inference", config.replace(IMAGES_PER_GPU=1, GPU_COUNT=1), os.devnull)
    return lambda: model.detect([image])


def op_table(xplane_path):
    """Rows of xprof's framework_op_stats tool for a trace, or None without xprof."""
    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        return None
    data, _ = raw_to_tool_data.xspace_to_tool_data([xplane_path], "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [column["id"] for column in table["cols"]]
    return [dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]])) for row in table["rows"]]


def report(rows, steps, top):
    by_type, count = collections.Counter(), collections.Counter()
    for row in rows:
        by_type[row["type"]] += row["total_self_time"] or 0
        count[row["type"]] += row["occurrences"] or 0
    total = sum(by_type.values()) or 1
    print(f"self time {total / 1e6 / steps:.2f} s per step, summed over threads")
    for name, micros in by_type.most_common(top):
        print(f"  {name:36s} {micros / 1e6 / steps:7.3f} s {100 * micros / total:5.1f}%  x{count[name] // steps}")
    print("slowest operations:")
    for row in sorted(rows, key=lambda r: -(r["total_self_time"] or 0))[:top]:
        print(f"  {(row['total_self_time'] or 0) / 1e6 / steps:6.3f} s  {row['type']:26s} {row['operation'][:100]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("training", "inference"), default="training")
    parser.add_argument("--config", default="leaf_r101", help="'leaf_r101' or a YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (default 2)")
    parser.add_argument("--top", type=int, default=25, help="rows of each table (default 25)")
    parser.add_argument("--logdir", default="profile_logs", help="where the trace goes (default profile_logs)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from leafseg.benchmark import measured_config
    from leafseg.cli.options import parse_overrides

    keras.utils.set_random_seed(0)
    config = measured_config(args.config, parse_overrides(args.overrides), batch=1, size=args.size)
    step = build_step(args.mode, config)
    step(), step()  # trace and warm up
    start = time.perf_counter()
    step()
    print(f"{args.mode} step: {time.perf_counter() - start:.3f} s (unprofiled)")
    tf.profiler.experimental.start(args.logdir)
    for _ in range(args.steps):
        step()
    tf.profiler.experimental.stop()
    traces = sorted(glob.glob(os.path.join(args.logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    print(f"trace: {traces[-1]} (tensorboard --logdir {args.logdir}, Profile tab)")
    rows = op_table(traces[-1])
    if rows is None:
        print("pip install xprof to print the per-operation tables here")
    else:
        report(rows, args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
