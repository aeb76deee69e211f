"""The ``leafseg adapt`` command: its options and ``main(argv)``; the work is done by :mod:`leafseg.training.adapt`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from leafseg.cli.options import add_verbose_argument, fraction, positive_float, positive_int, quiet_tensorflow
from leafseg.inference.tta import VIEW_COUNTS
from leafseg.training import adapt as A
from leafseg.training.train import AUGMENTATIONS

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

_EPILOG = """\
examples:
  leafseg adapt photos/ --weights leaf-small --out adapted
  leafseg adapt photos/*.jpg --out adapted --rounds 3 --minutes 120 --photos-per-round 300
  leafseg predict --weights adapted --out predictions photos/

Run the same command again after Ctrl-C or a crash to continue (only --minutes may change).
Writes OUT/adapted.weights.h5, OUT/report.md (and .json) and OUT/pseudo_labels_round<k>.png;
docs/ADAPT.md says how to judge the result without labels. Exit status: 0 done (or stopped at
the time budget), 1 training failed, 2 bad input, 130 interrupted.
"""


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg adapt", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Self-training on unlabelled photographs: the model labels them under test-time "
                    "augmentation, keeps the leaves it is sure of (the unsure ones are ignored, neither leaf "
                    "nor background), and a student fine-tuned on them and drawn rosettes becomes the next "
                    "round's teacher.")
    add = parser.add_argument
    add("photos", nargs="+", metavar="PHOTO", help="photographs: files, folders (with their subfolders) or glob patterns")
    add("--out", required=True, metavar="DIR", help="the run folder (state, pseudo-labels, students, report)")
    add("--weights", default="leaf-small", metavar="NAME|PATH",
        help="the first teacher: a model name, a weights file or a run folder (default: leaf-small)")
    add("--rounds", type=positive_int, default=A.ROUNDS, help=f"teacher -> student rounds (default: {A.ROUNDS})")
    add("--minutes", type=positive_float, default=A.MINUTES,
        help=f"the time budget of the whole run, across calls (default: {A.MINUTES:g}); may change on a rerun")
    add("--photos-per-round", type=positive_int, default=A.PHOTOS_PER_ROUND, metavar="N",
        help=f"photographs the teacher labels per round, a seeded random choice (default: {A.PHOTOS_PER_ROUND})")
    add("--steps", type=positive_int, default=A.STEPS, help=f"training steps per round (default: {A.STEPS})")
    add("--checkpoint-steps", type=positive_int, default=A.CHECKPOINT_STEPS, metavar="N",
        help=f"a checkpoint every N training steps at most: what a killed run loses (default: {A.CHECKPOINT_STEPS})")
    add("--synthetic", type=int, default=A.SYNTHETIC, metavar="N",
        help=f"drawn rosettes to draw once and mix in 1:1 with the kept photographs; 0: none (default: {A.SYNTHETIC})")
    add("--synthetic-dir", metavar="DIR", help="a prepared folder of labelled images to mix in instead of drawing")
    add("--keep-score", type=fraction, default=A.KEEP_SCORE,
        help=f"a leaf is kept from this score (mean over the views that found it) up (default: {A.KEEP_SCORE})")
    add("--min-agreement", type=fraction, default=A.MIN_AGREEMENT,
        help="... and when this share of the other views found it (default: 0.75; with 4 views all three)")
    add("--low-score", type=fraction, default=A.LOW_SCORE,
        help=f"detections from this score up that are not kept are ignored, lower ones are background "
             f"(default: {A.LOW_SCORE})")
    add("--min-kept-share", type=fraction, default=A.MIN_KEPT_SHARE,
        help="a photograph whose kept leaves cover less of the leaf area found is dropped whole "
             f"(default: {A.MIN_KEPT_SHARE})")
    add("--views", type=int, default=A.VIEWS, choices=VIEW_COUNTS,
        help=f"test-time views: the identity, flips, then rotations (default: {A.VIEWS})")
    add("--lr", type=positive_float, default=A.LEARNING_RATE,
        help=f"the student's learning rate, Adam with a cosine decay (default: {A.LEARNING_RATE:g})")
    add("--augment", default=A.AUGMENT, choices=AUGMENTATIONS,
        help=f"the student's augmentation (default: {A.AUGMENT})")
    add("--hold-out-plants", action="store_true",
        help="leave out the photographs of a quarter of the plants (leafseg.measure.series.held_out_plants; the "
             "plant is the file name without its date), to judge the result on plants it never saw with "
             "benchmarks/bench_real_series.py")
    add("--seed", type=int, default=0,
        help="seed of the photograph choice, the drawn rosettes and training (default: 0)")
    add("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
        help="processes that draw and prepare the rosettes (default: 2)")
    add_verbose_argument(parser)
    return parser


def options_from(args):
    """The :class:`leafseg.training.adapt.AdaptOptions` of parsed arguments."""
    names = {field.name for field in A.dataclasses.fields(A.AdaptOptions)}
    return A.AdaptOptions(**{name: value for name, value in vars(args).items() if name in names})


def main(argv=None, callbacks=None):
    """The command: errors on one line of stderr and an exit status (callbacks: extra Keras
    callbacks for each student's training, for tests)."""
    from leafseg.cli.train import _end_process
    from leafseg.training.train import SetupError, _one_line, describe_error

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow(args.verbose)
    try:
        A.adapt(options_from(args), callbacks=callbacks)
        return EXIT_OK
    except (A.AdaptError, SetupError) as err:
        print(f"leafseg adapt: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"leafseg adapt: interrupted; run the same command to continue from {args.out}/state.json",
              file=sys.stderr)
        _end_process(EXIT_INTERRUPTED)
    except Exception as err:  # what stopped the run: one line for the user after the traceback
        from mrcnn.callbacks import NonFiniteLossError

        if not isinstance(err, NonFiniteLossError):
            logging.getLogger(__name__).exception("adapt failed")
        print(f"leafseg adapt: error: {describe_error(err)}; run the same command to continue", file=sys.stderr)
        _end_process(EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
