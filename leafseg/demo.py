"""The built-in end-to-end job: generate rosettes, prepare them, train, evaluate, predict.

    make demo                         # what the README runs first
    leafseg demo --minutes 12         # longer training, better leaves
    python scripts/demo.py --minutes 1 --images 24     # a quick look

Everything runs on the CPU from data generated on the spot; nothing is downloaded. Outputs go
to ``--out`` (default ``demo_output/``): the generated and prepared data, the run folder with
checkpoints and TensorBoard logs, ``losses.png``, ``evaluation/`` (metrics of the held-out
images: metrics.json, per_image.csv, pr_curve.png, and gallery.png with the worst images beside
their ground truth) and ``predictions/`` on newly generated rosettes (overlays, CVPPP label
images, leaves.csv and plants.csv).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from leafseg.cli.options import counted
from leafseg.training.recipe import print_step


__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


def run_demo(out="demo_output", images=100, size=256, minutes=8.0, seed=0, workers=2, config="quickstart_cpu",
             eval_images=20, predict=4):
    """Run the whole job; returns the evaluation summary (dict of metric means and stds)."""
    from leafseg.config import load_config
    from leafseg.data.dataset import LeafDataset
    from leafseg.measure.evaluate import evaluate_dataset
    from leafseg.measure.metrics import format_summary
    from leafseg.inference.predict import predict_images
    from leafseg.data.prepare import prepare_dataset
    from leafseg.synth.rosettes import write_dataset

    out = Path(out)
    started = time.monotonic()
    total = 5

    print_step(1, total, f"Generating {images} synthetic rosettes ({size} px) in {out / 'rosettes'}")
    write_dataset(out / "rosettes", images, seed=seed, size=size, workers=workers)

    print_step(2, total, f"Preparing per-leaf masks (80/20 split) in {out / 'prepared'}")
    result = prepare_dataset(out / "rosettes", out / "prepared", seed=seed, workers=workers)
    print(result.summary())
    train, val = LeafDataset(), LeafDataset()
    train.load_leaves(out / "prepared", "train")
    val.load_leaves(out / "prepared", "val")
    train.prepare()
    val.prepare()

    import keras

    from mrcnn import visualize
    from mrcnn.callbacks import TimeBudget
    from leafseg.training.train import DEFAULT_KEEP_CHECKPOINTS
    from mrcnn.model import MaskRCNN
    from mrcnn.optimizers import make_optimizer

    cfg = load_config(config)
    keras.utils.set_random_seed(seed)
    print_step(3, total, f"Training {cfg.NAME} ({cfg.BACKBONE} x{cfg.BACKBONE_WIDTH}, {cfg.IMAGE_MAX_DIM} px) from scratch "
          f"on {counted(len(train.image_ids), 'image')} for up to {minutes:g} minutes")
    model = MaskRCNN("training", cfg, out / "logs")
    epochs = max(1, math.ceil(minutes * 60 / (cfg.STEPS_PER_EPOCH * 0.2)))
    # The preset's optimiser (quickstart_cpu: Adam, which from scratch gets a small model going far
    # faster than SGD; see tests/test_model.py), and the checkpoints `leafseg train` keeps.
    optimizer = make_optimizer(cfg.OPTIMIZER, cfg.LEARNING_RATE, cfg)
    history = model.train(train, val, learning_rate=cfg.LEARNING_RATE, epochs=epochs, layers="all",
                          custom_callbacks=[TimeBudget(minutes * 60)], seed=seed, optimizer=optimizer,
                          keep_checkpoints=DEFAULT_KEEP_CHECKPOINTS)
    weights_path = model.save_weights(out / "model.weights.h5")
    visualize.plot_history(history.history, out / "losses.png", title=f"{cfg.NAME}: training losses")

    print_step(4, total, f"Evaluating on {min(eval_images, len(val.image_ids))} held-out images in {out / 'evaluation'}")
    inference = MaskRCNN("inference", cfg.replace(IMAGES_PER_GPU=1, GPU_COUNT=1), out / "logs")
    inference.load_weights(weights_path)
    ids = list(val.image_ids[:eval_images])
    _, summary, outputs = evaluate_dataset(inference, val, out / "evaluation", ids, gallery=min(6, len(ids)))
    print(format_summary(summary))

    predict_dir = out / "predictions"
    print_step(5, total, f"Predicting leaves on {predict} new rosettes: overlays, label images and CSVs in {predict_dir}")
    if predict > 0:
        write_dataset(out / "new_rosettes", predict, seed=seed + 1, size=size, workers=workers, progress=False)
        new_images = sorted((out / "new_rosettes").glob("*_rgb.png"))
        report = predict_images(inference, new_images, predict_dir, progress=True)
        print(report.summary())

    elapsed = (time.monotonic() - started) / 60
    print(f"\nDone in {elapsed:.1f} minutes. SBD {summary['sbd_mean']:.3f}, |DiC| {summary['abs_dic_mean']:.2f}, "
          f"mask AP50 {summary['ap50_mean']:.3f} on {summary['n_images']} held-out images.")
    print(f"  losses:      {out / 'losses.png'}\n  evaluation:  {out / 'evaluation'} (metrics.json, per_image.csv, "
          f"pr_curve.png, gallery.png)\n  predictions: {predict_dir} (overlays/, labels/, leaves.csv, plants.csv)\n"
          f"  weights:     {weights_path}\n  logs:        {model.log_dir} (tensorboard --logdir there)")
    return summary
