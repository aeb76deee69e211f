"""Throughput of the training input pipeline (images/s), on the CPU.

Writes synthetic 512x512 images with ~15 leaf-like instances each in the data-science-bowl-2018
layout (``root/train/<id>/images/<id>.png``, ``root/train/<id>/masks/*.png``, 255 inside) to a
temporary directory, reads them with leafseg's LeafDataset, then times the full pipeline: read from disk, resize to
512 square, default augmentation, mini-masks 56x56, RPN targets for 65,472 anchors (scales
8..128), batches of 2.

    python benchmarks/bench_input_pipeline.py                 # tf.data, AUTOTUNE parallelism
    python benchmarks/bench_input_pipeline.py --parallel 1 2  # compare parallel calls
    python benchmarks/bench_input_pipeline.py --profile       # per-stage times, one thread

The target is at least 20 images/s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI at import otherwise
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn import pipeline, utils  # noqa: E402
from mrcnn.augment import default_augmentation, make_augmenter  # noqa: E402
from mrcnn.config import Config  # noqa: E402


class BenchConfig(Config):
    """The leaf configuration of the seed post: 512x512, anchors 8..128, mini-masks 56x56."""

    NAME = "bench"
    NUM_CLASSES = 2
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    MAX_GT_INSTANCES = 100


def write_synthetic(root, count=32, size=512, instances=15, seed=0):
    """``count`` images with ``instances`` random ellipses ("leaves") each, DSB-2018 layout.

    Later leaves lie on top of earlier ones and each mask holds only the visible part, as in
    top-view leaf annotations; a leaf hidden completely gets no mask file.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        name = f"img{i:03d}"
        (root / name / "images").mkdir(parents=True)
        (root / name / "masks").mkdir()
        image = np.full((size, size, 3), (60, 45, 30), dtype=np.uint8)  # soil
        image = cv2.add(image, rng.integers(0, 25, image.shape, dtype=np.uint8))
        leaves = []
        for _ in range(instances):
            leaf = np.zeros((size, size), dtype=np.uint8)
            center = tuple(int(v) for v in rng.integers(40, size - 40, 2))
            axes = (int(rng.integers(12, 45)), int(rng.integers(6, 20)))
            cv2.ellipse(leaf, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
            green = (int(rng.integers(20, 80)), int(rng.integers(120, 220)), int(rng.integers(20, 80)))
            image[leaf > 0] = green
            leaves.append(leaf)
        covered = np.zeros((size, size), dtype=bool)
        for j in reversed(range(instances)):
            visible = (leaves[j] > 0) & ~covered
            covered |= visible
            if visible.any():
                cv2.imwrite(str(root / name / "masks" / f"{j:03d}.png"), visible.astype(np.uint8) * 255)
        cv2.imwrite(str(root / name / "images" / f"{name}.png"), image[..., ::-1])


def open_dataset(root):
    """leafseg's LeafDataset over ``root/train``."""
    from leafseg.data.dataset import LeafDataset

    dataset = LeafDataset()
    dataset.load_leaves(root, "train")
    dataset.prepare()
    return dataset


def time_pipeline(dataset, config, parallel, batches, augmentation):
    ds = pipeline.build_dataset(dataset, config, augmentation=augmentation, seed=0, num_parallel_calls=parallel)
    iterator = iter(ds)
    next(iterator)  # warm-up: graph tracing, first prefetch
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    images = batches * config.BATCH_SIZE
    return images / elapsed, 1000 * cpu / images


def profile_stages(dataset, config, augmentation, repeats=16):
    """Mean CPU milliseconds per image of each stage, in one thread."""
    augmenter = make_augmenter(augmentation)
    anchors = pipeline.pipeline_anchors(config)
    rng = np.random.default_rng(0)
    stages = {"load_image": 0.0, "load_mask": 0.0, "resize": 0.0, "augment": 0.0, "boxes": 0.0,
              "mini_masks": 0.0, "rpn_targets": 0.0, "build_sample (all)": 0.0}
    for k in range(repeats):
        image_id = k % len(dataset.image_ids)
        t0 = time.process_time()
        image = dataset.load_image(image_id)
        t1 = time.process_time()
        mask, class_ids = dataset.load_mask(image_id)
        t2 = time.process_time()
        image, window, scale, padding, crop = utils.resize_image(
            image, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE, config.IMAGE_RESIZE_MODE)
        mask = utils.resize_mask(mask, scale, padding, crop)
        t3 = time.process_time()
        image, mask = augmenter(image, mask, rng)
        t4 = time.process_time()
        boxes = utils.extract_bboxes(mask)
        keep = boxes[:, 2] > boxes[:, 0]
        mask, boxes = mask[:, :, keep], boxes[keep]
        t5 = time.process_time()
        pipeline._minimize_masks(boxes, mask, config.MINI_MASK_SHAPE)
        t6 = time.process_time()
        pipeline.build_rpn_targets(image.shape, anchors, np.ones(len(boxes), np.int32), boxes, config, rng)
        t7 = time.process_time()
        pipeline.build_sample(dataset, config, image_id, anchors, augmenter, rng)
        t8 = time.process_time()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7)):
            stages[name] += dt * 1000 / repeats
    return stages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="batches timed after one warm-up batch")
    parser.add_argument("--parallel", type=int, nargs="*", default=[-1],
                        help="num_parallel_calls values to time (-1 = AUTOTUNE)")
    parser.add_argument("--no-augmentation", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also print per-stage times (one thread)")
    args = parser.parse_args(argv)

    config = BenchConfig()
    augmentation = None if args.no_augmentation else default_augmentation()
    with tempfile.TemporaryDirectory(prefix="leafseg-bench-") as tmp:
        root = Path(tmp)
        (root / "train").mkdir()
        write_synthetic(root / "train", count=args.images)
        dataset = open_dataset(root)
        print(f"{type(dataset).__name__}: {len(dataset.image_ids)} images, "
              f"{len(pipeline.pipeline_anchors(config))} anchors, "
              f"batch {config.BATCH_SIZE}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
        if args.profile:
            for name, ms in profile_stages(dataset, config, augmentation).items():
                print(f"  {name:20s} {ms:7.1f} ms/image")
        for parallel in args.parallel:
            rate, cpu_ms = time_pipeline(dataset, config, parallel, args.batches, augmentation)
            label = "AUTOTUNE" if parallel == -1 else parallel
            # CPU time per image is what the pipeline costs whatever else runs on the machine.
            print(f"tf.data num_parallel_calls={label}: {rate:.1f} images/s, {cpu_ms:.1f} CPU-ms/image "
                  f"(load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
