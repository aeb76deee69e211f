"""Seconds per training step by photograph size, with and without the image cache (issue 26, 8).

docs/SMALL_DATA.md's recipe (leaf-small, the heads stage, batches of 2 at 384 px, ``strong``
augmentation) on the same rosettes prepared as 512 px and as 2048 px photographs (drawn at
512 px by ``leafseg synth``, then enlarged: bicubic for the photograph, nearest for its label,
so both sizes hold the same leaves):

    python benchmarks/bench_large_photos.py                     # 512 and 2048 px, both stages
    python benchmarks/bench_large_photos.py --sizes 512 1024 2048 --steps 20 --json out.json

For each size and stage, ``leafseg train`` runs two epochs of ``--steps`` steps, first from the
photographs (``--no-image-cache``, as before) and then, for photographs larger than the
model's 384 px, from the copies shrunk once (:mod:`leafseg.data.cache`; the time to make them
is reported apart). A step's time is the second epoch's wall time over its steps: the first
epoch includes tracing the training step. Training uses every core of the machine; on a shared
machine the figures move with the other load, so compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402


def write_photographs(root, size, count, seed=0):
    """``count`` rosettes of ``leafseg synth`` (512 px) as ``size`` px photographs + labels in ``root``."""
    from leafseg.synth.rosettes import write_dataset

    drawn = Path(root) / "drawn"
    write_dataset(drawn, count, seed=seed, size=512, progress=False)
    out = Path(root) / f"raw{size}"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(drawn.glob("*_rgb.png")):
        label = path.with_name(path.name.replace("_rgb.png", "_label.png"))
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / path.name), cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC))
        labels = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / label.name), cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST))
    return out


def time_training(dataset, logs, steps, cache, stage="heads"):
    """(seconds per step of the second epoch, seconds from the command's start to the first step)."""
    import keras

    from leafseg.training import train as T

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.began = [], None

        def on_train_begin(self, logs=None):
            self.began = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self._start)

    clock = Clock()
    started = time.perf_counter()
    T.run(["--weights", "leaf-small", "--dataset", str(dataset), "--logs", str(logs), "--stage", stage,
           "--epochs", "2", "--steps-per-epoch", str(steps), "--validation-steps", "0", "--augment", "strong",
           "--lr", "0.001", "--verbose", "0", "--keep-checkpoints", "1"] + ([] if cache else ["--no-image-cache"]),
          callbacks=[clock])
    return clock.epochs[-1] / steps, clock.began - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048], help="photograph sides in px")
    parser.add_argument("--images", type=int, default=8, help="photographs per size (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch (default 10)")
    parser.add_argument("--stages", nargs="+", default=["heads", "all"], choices=["heads", "all"],
                        help="the layers trained: the recipe's two stages (default both)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    from leafseg.cli.options import quiet_tensorflow

    quiet_tensorflow()
    from leafseg.config import config_for_weights
    from leafseg.data.cache import CACHE_DIR, resized_for_training
    from leafseg.data.prepare import prepare_dataset
    from leafseg.models import zoo
    from leafseg.training.train import load_datasets

    config = config_for_weights(str(zoo.path("leaf-small")))[0]
    rows = []
    print(f"{os.cpu_count()} CPU cores; leaf-small at {config.IMAGE_MAX_DIM} px, batches of {config.BATCH_SIZE}, "
          f"{args.images} photographs, epochs of {args.steps} steps", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            raw = write_photographs(tmp, size, args.images)
            data = tmp / f"data{size}"
            prepare_dataset(raw, data, val_ids=["plant00000"], progress=False)  # (one held out: train needs val/)
            cases = [False] + ([True] if size > config.IMAGE_MAX_DIM else [])
            for stage in args.stages:
                for cache in cases:
                    logs = tmp / f"logs{size}{stage}{'c' if cache else ''}"
                    build = None
                    if cache:  # the one-off cost, timed apart (the run then reuses the copies)
                        began = time.perf_counter()
                        train, _ = load_datasets(data, config)
                        resized_for_training(train, config, logs / CACHE_DIR)
                        build = time.perf_counter() - began
                    step, setup = time_training(data, logs, args.steps, cache, stage)
                    rows.append({"size": size, "stage": stage, "cache": cache, "seconds_per_step": round(step, 3),
                                 "setup_seconds": round(setup, 1),
                                 "cache_build_seconds": None if build is None else round(build, 1),
                                 "images": args.images, "steps": args.steps, "cores": os.cpu_count()})
                    print(f"{size:>5} px  {stage:5}  {'cache   ' if cache else 'no cache'}  {step:6.2f} s/step"
                          + (f"  (copies made once in {build:.1f} s)" if build is not None else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
