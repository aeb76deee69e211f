"""Several classes end to end: a two-class set (leaf, pebble), leaf-small fine-tuned on it, per-class figures.

    python benchmarks/bench_two_classes.py                 # data, training, evaluate: 10-15 min on 2 CPU cores
    python benchmarks/bench_two_classes.py --out /tmp/two  # keep everything there (default: a temporary folder)

The set: synthetic rosettes (``leafseg.synth.rosettes.generate_rosette``, random style, 320 px)
with 2-4 pebbles drawn on the soil around each plant, under its leaves (a pebble's mask is its
visible part). Leaves are class 1 "leaf", pebbles class 2 "pebble". It is written in the prepared
layout that ``leafseg prepare --classes leaf,pebble`` writes: ``classes.json`` and, per sample,
``sample.json`` with one class name per mask.

Then the commands a user runs, as they are:

    leafseg train --weights leaf-small --dataset DATA --stage heads --epochs H ...
    leafseg train --weights last --dataset DATA --stage all --epochs H+A --lr 0.0002 ...
    leafseg evaluate --weights LOGS --dataset DATA --subset val --out EVAL

and, for reference, ``leafseg evaluate --weights leaf-small`` on the same photographs with their
leaves alone (no pebbles in the truth, no classes.json): what the one-class model gives.

leaf-small has one class, so its class-specific heads are left out (train does so for weights
that store another NUM_CLASSES); the rest of it is the starting point. evaluate prints the
per-class table (one row per class) after the usual summary. The figures of a run are in
docs/CLASSES.md.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLASSES = ["leaf", "pebble"]
SIZE = 320


def _pebbles(rng, image, instance_ids, count):
    """Draw ``count`` pebbles on the soil of ``image`` (in place), under the leaves of
    ``instance_ids``; returns their visible masks (those of at least 40 pixels)."""
    height, width = instance_ids.shape
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    soil = instance_ids == 0
    taken = np.zeros_like(soil)
    masks = []
    for _ in range(count * 4):  # tries
        if len(masks) == count:
            break
        ry, rx = rng.uniform(7, 20), rng.uniform(7, 20)
        cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        radius = u ** 2 + v ** 2
        stone = (radius <= 1) & ~taken
        visible = stone & soil
        if visible.sum() < 40 or visible.sum() < 0.6 * stone.sum():
            continue
        grey = rng.uniform(120, 215)
        tint = np.array([rng.uniform(0.95, 1.1), 1.0, rng.uniform(0.8, 1.0)])
        # Lit from the top left: brighter there, darker towards the rim.
        light = 1.0 + 0.25 * (-u - v) / np.sqrt(2) - 0.2 * radius
        noise = rng.normal(0, 8, size=(height, width))
        colour = np.clip((grey * light + noise)[..., None] * tint, 0, 255)
        image[visible] = colour[visible].astype(np.uint8)
        # A soft shadow on the soil below right of the stone.
        shadow = np.roll(np.roll(stone, 3, axis=0), 3, axis=1) & ~stone & soil & ~taken
        image[shadow] = (image[shadow] * 0.6).astype(np.uint8)
        taken |= stone
        masks.append(visible)
    return masks


def make_sample(seed, index):
    """(image, masks [H, W, N], classes [N]) of one photograph."""
    from leafseg.synth.rosettes import generate_rosette, rosette_rng

    rng = rosette_rng(seed, index)
    rosette = generate_rosette(rng, SIZE, style="random", max_leaves=16, diameter=(0.35, 0.6))
    image = rosette.image.copy()
    leaves = [rosette.masks[..., k] for k in range(rosette.num_leaves)]
    pebbles = _pebbles(rng, image, rosette.instance_ids, int(rng.integers(2, 5)))
    masks = np.stack(leaves + pebbles, axis=-1)
    return image, masks, ["leaf"] * len(leaves) + ["pebble"] * len(pebbles)


def write_set(out, train, val, seed=26):
    """The prepared layout with classes.json (see the module docstring); returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps(CLASSES))
    index = 0
    for subset, count in (("train", train), ("val", val)):
        for _ in range(count):
            name = f"two{index:04d}"
            image, masks, classes = make_sample(seed, index)
            folder = out / subset / name
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(exist_ok=True)
            cv2.imwrite(str(folder / "images" / f"{name}.png"), image[..., ::-1])
            for k in range(masks.shape[-1]):
                cv2.imwrite(str(folder / "masks" / f"{name}_{k}.png"), masks[..., k].astype(np.uint8) * 255)
            (folder / "sample.json").write_text(json.dumps({"source": "bench_two_classes", "classes": classes}))
            index += 1
    return out


def leaves_only(data, out):
    """A copy of ``data``'s val subset with the leaves alone and no classes.json: one class, what
    leaf-small can be evaluated on."""
    import shutil

    for sample in sorted((Path(data) / "val").iterdir()):
        classes = json.loads((sample / "sample.json").read_text())["classes"]
        target = Path(out) / "val" / sample.name
        (target / "masks").mkdir(parents=True, exist_ok=True)
        shutil.copytree(sample / "images", target / "images", dirs_exist_ok=True)
        for k, name in enumerate(classes):
            if name == "leaf":
                shutil.copy(sample / "masks" / f"{sample.name}_{k}.png", target / "masks")
    return Path(out)


def leafseg(*args):
    """Run a leafseg command as a user would; returns its stdout."""
    command = [sys.executable, "-m", "leafseg", *map(str, args)]
    print("$ leafseg " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    print(done.stdout, flush=True)
    if done.returncode:
        raise SystemExit(f"leafseg {args[0]} failed with exit status {done.returncode}")
    return done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for the data, the run and the evaluation (default: a temporary one)")
    parser.add_argument("--train", type=int, default=80, help="training photographs (default 80)")
    parser.add_argument("--val", type=int, default=24, help="validation photographs, evaluated (default 24)")
    parser.add_argument("--heads-epochs", type=int, default=4, help="epochs of the heads stage (default 4)")
    parser.add_argument("--all-epochs", type=int, default=10, help="epochs of all layers after it (default 10)")
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch (default 50)")
    parser.add_argument("--all-lr", type=float, default=0.0002, help="learning rate of the all-layers stage "
                                                                    "(default 0.0002; the heads: 0.001)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only evaluate the run that an earlier call left in --out")
    args = parser.parse_args(argv)
    if args.evaluate_only and not args.out:
        parser.error("--evaluate-only needs --out, the folder of an earlier call")
    with tempfile.TemporaryDirectory() as temporary:
        out = Path(args.out or temporary)
        data = out / "data"
        if not args.evaluate_only:
            start = time.perf_counter()
            write_set(data, args.train, args.val)
            print(f"data: {args.train} + {args.val} photographs of {SIZE} px, classes {CLASSES}, in {data} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            common = ["--dataset", data, "--logs", out / "logs", "--steps-per-epoch", args.steps,
                      "--validation-steps", "5", "--verbose", "2", "--augment", "default"]
            start = time.perf_counter()
            leafseg("train", "--weights", "leaf-small", "--stage", "heads", "--epochs", args.heads_epochs, *common)
            leafseg("train", "--weights", "last", "--stage", "all", "--epochs", args.heads_epochs + args.all_epochs,
                    "--lr", args.all_lr, *common)
            print(f"training: {time.perf_counter() - start:.0f} s", flush=True)
        leafseg("evaluate", "--weights", out / "logs", "--dataset", data, "--subset", "val", "--out", out / "eval",
                "--quiet", "--gallery", "0")
        # The reference: leaf-small, which knows leaves only, on the same photographs' leaves.
        leafseg("evaluate", "--weights", "leaf-small", "--dataset", leaves_only(data, out / "leaves_only"),
                "--subset", "val", "--out", out / "eval_leaf_small", "--quiet", "--gallery", "0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
