"""What the inspection notebooks call: inputs, a built-in tiny model, and one figure per step.

The three notebooks in ``notebooks/`` hold parameters, calls and prose; everything they compute
is here or in :mod:`mrcnn.visualize` (generic drawing), one module per thing inspected, every
public name re-exported here (``from leafseg import inspect as li; li.plot_samples(...)``):

    assets     the built-in rosettes and the tiny model trained on them, cached (default_assets)
    common     the loaders every notebook starts with (paths, dataset, config, model) and text tables
    data       leaf data: samples, masks, resizing, anchors, RPN targets, augmentation
    model      every stage of the model for one image, its weights, its detections' scores
    training   run folders' training logs: losses, stages, plateaus

Figures are plain matplotlib Figures: a notebook shows one when it is a cell's value,
``fig.savefig(path)`` writes it.

Without weights, data or a run folder of their own, the notebooks fall back on
:func:`default_assets`: a few procedural rosettes, prepared into the training layout, and a tiny
Mask R-CNN (:data:`TINY_CONFIG`) trained from scratch with ``leafseg train`` in two short Adam
stages (the second at a lower rate, as the seed post did at its plateau): about a minute on two
CPU cores. It is cached under ``cache_dir`` (default ``$LEAFSEG_INSPECT_CACHE``, else a folder
in the temporary directory), behind a file lock, so the notebooks of one run share it and run
side by side safely. Everything is seeded and the training runs with TensorFlow's op
determinism, so it comes out the same each time on a given machine.

    assets = default_assets()                 # rosettes, prepared data, run folder, weights
    model = load_model()                      # the tiny model, inference mode
    dataset = load_dataset(subset="val")      # its held-out rosettes
    outputs = stage_outputs(model, dataset.load_image(dataset.image_ids[0]))
    plot_proposal_steps(outputs, model.config)

Relative paths given to the loaders (``DATASET = "data/leaves"``) are found from the working
directory, which is ``notebooks/`` for a notebook opened there, and else from the repository
root (:func:`resolve_path`).
"""
from __future__ import annotations

from leafseg.inspect.assets import CACHE_ENV, TINY_CONFIG, TINY_STAGES, Assets, default_assets, default_dataset
from leafseg.inspect.common import config_from, format_table, load_dataset, load_model, resolve_path
from leafseg.inspect.data import (anchor_levels, colour_label, plot_anchor_levels, plot_augmentations,
                                  plot_leaf_masks, plot_leaf_sizes, plot_mini_masks, plot_resize, plot_rpn_targets,
                                  plot_samples, resized_image, rpn_targets)
from leafseg.inspect.model import (activation_layers, detections_of, image_scores, original_image,
                                   plot_activations, plot_classification, plot_detection_nms,
                                   plot_detections_vs_truth, plot_masks, plot_proposals, plot_refinement,
                                   plot_rpn_scores, plot_top_anchors, plot_weights, refine_proposals, stage_outputs,
                                   weight_stats)
from leafseg.inspect.training import RunLog, find_plateaus, load_runs, plot_plateaus, plot_runs, read_run, stage_table

__all__ = [
    "TINY_CONFIG", "TINY_STAGES", "CACHE_ENV", "Assets", "default_dataset", "default_assets", "resolve_path",
    "load_dataset", "config_from", "load_model", "format_table",
    # data
    "colour_label", "plot_samples", "plot_leaf_masks", "plot_leaf_sizes", "resized_image", "plot_resize",
    "plot_mini_masks",
    "anchor_levels", "plot_anchor_levels", "rpn_targets", "plot_rpn_targets", "plot_augmentations",
    # model
    "activation_layers", "stage_outputs", "original_image", "plot_rpn_scores", "plot_top_anchors",
    "plot_refinement", "plot_proposals", "refine_proposals", "plot_classification", "plot_detection_nms",
    "plot_masks", "plot_activations", "weight_stats", "plot_weights", "detections_of", "image_scores",
    "plot_detections_vs_truth",
    # training
    "RunLog", "read_run", "load_runs", "stage_table", "find_plateaus", "plot_runs", "plot_plateaus",
]
