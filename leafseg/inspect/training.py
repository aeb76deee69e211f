"""Training runs from their run folders (:mod:`leafseg.models.runs`): the losses of each epoch, the
stages, where a loss stopped improving, and runs compared."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from leafseg.inspect.assets import default_assets
from leafseg.inspect.common import resolve_path
from leafseg.models.runs import LOG_FILE, read_stages
from mrcnn import visualize

__all__ = ["RunLog", "read_run", "load_runs", "stage_table", "find_plateaus", "plot_runs", "plot_plateaus"]


@dataclasses.dataclass
class RunLog:
    """A run folder's training history: ``history`` {column: float array per epoch} from
    training_log.csv (text columns such as stage and optimizer in ``text``), the stages of
    run.json (or, without it, the CSV's changes of stage / optimizer), and ``boundaries``, the
    epochs after which a new stage began."""
    label: str
    path: Path
    history: dict
    text: dict
    stages: list
    boundaries: list


def read_run(run_dir, label=None):
    """The :class:`RunLog` of a run folder (training_log.csv, run.json when present)."""
    from mrcnn.callbacks import read_csv_log

    path = Path(run_dir)
    csv_path = path / LOG_FILE
    rows = read_csv_log(csv_path)
    if not rows:
        raise FileNotFoundError(f"{csv_path} is missing or empty: not a training run folder?")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    history, text = {}, {}
    for name in columns:
        values = [row.get(name) or "" for row in rows]
        try:
            history[name] = np.array([float(v) if v != "" else np.nan for v in values])
        except ValueError:
            text[name] = values
    stages = read_stages(path)
    if stages:
        first = history["epoch"].min() - 1 if "epoch" in history else 0
        boundaries = sorted({int(s["start_epoch"]) for s in stages if int(s.get("start_epoch", 0)) > first})
    else:
        keys = list(zip(text.get("stage", [""] * len(rows)), text.get("optimizer", [""] * len(rows))))
        epochs = history.get("epoch", np.arange(1, len(rows) + 1))
        boundaries = [int(epochs[i - 1]) for i in range(1, len(rows)) if keys[i] != keys[i - 1]]
    return RunLog(label or path.name, path, history, text, stages, boundaries)


def load_runs(run_dirs=None, labels=None, cache_dir=None):
    """:class:`RunLog` of each run folder (one path or a list); None: the tiny model's run."""
    if run_dirs is None:
        run_dirs = [default_assets(cache_dir).run_dir]
    else:
        if isinstance(run_dirs, (str, os.PathLike)):
            run_dirs = [run_dirs]
        run_dirs = [resolve_path(run_dir, "run folder") for run_dir in run_dirs]
    labels = list(labels) if labels is not None else [None] * len(run_dirs)
    return [read_run(run_dir, label) for run_dir, label in zip(run_dirs, labels)]


def stage_table(runs):
    """Rows describing each stage of each run (for :func:`leafseg.inspect.common.format_table`)."""
    rows = []
    for run in runs:
        for stage in run.stages or [{}]:
            rows.append({"run": run.label, "stage": stage.get("stage", "?"), "optimizer": stage.get("optimizer", "?"),
                         "learning rate": stage.get("learning_rate", np.nan),
                         "schedule": stage.get("schedule", "?"),
                         "epochs": f"{stage.get('start_epoch', '?')} -> {stage.get('end_epoch', '?')}",
                         "status": stage.get("status", "?"), "seconds": stage.get("seconds", np.nan)})
    return rows


def find_plateaus(epochs, values, window=5, min_drop=0.02):
    """Spans of epochs where a loss stopped improving: [(first epoch, last epoch)].

    An epoch is on a plateau when the loss fell by less than ``min_drop`` (relative) over the
    ``window`` epochs before it; overlapping windows of such epochs merge into one span.
    """
    epochs = np.asarray(epochs, np.float64)
    values = np.asarray(values, np.float64)
    spans = []
    for i in range(int(window), len(values)):
        before, now = values[i - int(window)], values[i]
        if not (np.isfinite(before) and np.isfinite(now)) or before == 0:
            continue
        if (before - now) / abs(before) < min_drop:
            start, end = float(epochs[i - int(window)]), float(epochs[i])
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return spans


def plot_runs(runs, log_scale=False, plateau_window=None, min_drop=0.02, cols=4):
    """Every loss (training solid, validation dashed) and the learning rate of each run overlaid;
    dotted lines where a stage began, shaded plateaus of the total loss when
    ``plateau_window`` is given."""
    histories = {run.label: run.history for run in runs}
    spans = None
    if plateau_window:
        spans = {run.label: find_plateaus(run.history["epoch"], run.history["loss"], plateau_window, min_drop)
                 for run in runs if "loss" in run.history}
    return visualize.plot_loss_comparison(histories, boundaries={run.label: run.boundaries for run in runs},
                                          spans=spans, log_scale=log_scale, cols=cols,
                                          title="Training losses: solid training, dashed validation; "
                                                "dotted: a new stage")


def plot_plateaus(runs, window=5, min_drop=0.02, key="loss", cell_inches=4.2):
    """Plateau finder: ``key`` relative to its first epoch for every run (comparable between runs
    of different scale), and its relative fall over ``window`` epochs against ``min_drop``."""
    fig, (left, right) = visualize.figure_grid(2, 2, cell_inches, title=f"{key}: progress and plateaus "
                                                                        f"(fall < {min_drop:.0%} over {window} epochs)")
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        epochs, values = run.history["epoch"], run.history[key]
        for column, style in ((key, "-"), (f"val_{key}", "--")):
            if column in run.history:
                series = run.history[column]
                left.plot(epochs, series / series[np.isfinite(series)][0], style, color=color, marker="o",
                          markersize=2.5, label=f"{run.label}{' validation' if style == '--' else ''}")
        for first, last in find_plateaus(epochs, values, window, min_drop):
            left.axvspan(first, last, color=color, alpha=0.15, linewidth=0)
        for epoch in run.boundaries:
            left.axvline(epoch, color=color, linestyle=":")
        if len(values) > window:
            fall = (values[:-window] - values[window:]) / np.abs(values[:-window])
            right.plot(epochs[window:], fall, color=color, marker="o", markersize=2.5, label=run.label)
    left.set_title(f"{key} / its first value (shaded: plateaus)", fontsize=9)
    right.axhline(min_drop, color="C3", linestyle="--", label=f"min_drop {min_drop:.0%}")
    right.set_title(f"relative fall over the previous {window} epochs", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
