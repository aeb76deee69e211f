"""The ``leafseg`` command: one entry point, one sub-command per job. Each sub-command is a module
of this package (its options and ``main(argv)``); the work is done by the library package in
brackets.

    leafseg synth    --out DIR --count N         procedural rosettes, trays, dishes (leafseg.synth)
    leafseg prepare  --input DIR --output DIR    label images, COCO, LabelMe -> layout (leafseg.data)
    leafseg demo                                 the built-in end-to-end job (leafseg.demo)
    leafseg train    --dataset DIR --weights W   train in stages, resume (leafseg.training)
    leafseg recipe   leaf-small                  rebuild a shipped model from nothing (leafseg.training)
    leafseg adapt    PHOTOS --out DIR            self-training on unlabelled photographs (leafseg.training)
    leafseg bench                                training-step and inference time (leafseg.benchmark)
    leafseg evaluate --weights W --dataset DIR   SBD, FBD, DiC, AP50, COCO AP (leafseg.measure)
    leafseg predict  --weights W --out DIR IMG   overlays, labels, leaf tables (leafseg.inference)
    leafseg track    --out DIR FOLDER            time-lapses: leaves linked day to day, growth (leafseg.inference)
    leafseg export   --weights W --out DIR       TensorFlow SavedModel (leafseg.inference)
    leafseg report   OUT_DIR                     report.html of a predict or track folder (leafseg.inference)

A command module is imported only when used, so ``leafseg --help`` stays fast, and
``scripts/*.py`` call the very same ``main``. Every command hides TensorFlow's start-up and C++ log
lines; ``--verbose`` shows them (:func:`leafseg.cli.options.quiet_tensorflow`).
"""
from __future__ import annotations

import importlib
import os
import sys

from leafseg.cli.options import VERBOSE_ENV

COMMANDS = {
    "synth": ("leafseg.cli.synth", "generate synthetic rosettes, trays and dishes with exact leaf labels"),
    "prepare": ("leafseg.cli.prepare", "colour masks, COCO or LabelMe -> per-leaf masks in the training layout"),
    "demo": ("leafseg.cli.demo", "run the built-in end-to-end job on generated rosettes"),
    "train": ("leafseg.cli.train", "train a model in stages: optimisers, schedules, resume, logs, several GPUs"),
    "recipe": ("leafseg.cli.recipe", "rebuild a pretrained model of leafseg.models (leaf-small) from nothing"),
    "adapt": ("leafseg.cli.adapt", "self-training on your unlabelled photographs: pseudo-labels, students, rounds"),
    "bench": ("leafseg.cli.bench", "time a training step and inference of a config, and peak memory"),
    "evaluate": ("leafseg.cli.evaluate", "score a model on labelled images: SBD, FBD, DiC, mask AP50, COCO AP"),
    "predict": ("leafseg.cli.predict", "segment and measure the leaves of images: overlays, labels, CSV tables"),
    "track": ("leafseg.cli.track", "time-lapses: segment each day's photograph, link the leaves, growth tables and plots"),
    "export": ("leafseg.cli.export", "write a model as a TensorFlow SavedModel and check it reloads"),
    "report": ("leafseg.cli.report", "report.html of a predict or track folder: outliers, growth, table, overlays"),
}


def usage() -> str:
    lines = ["usage: leafseg [--verbose] COMMAND [options]", "", "commands:"]
    lines += [f"  {name:10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "leafseg COMMAND --help shows the options of a command. --verbose keeps TensorFlow's start-up",
              "and C++ log lines, which every command hides by default (most commands also take --verbose)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-v", "--verbose"):
        os.environ[VERBOSE_ENV] = "1"
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"leafseg: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
