"""The ``leafseg report`` command: (re)build ``report.html`` in a ``predict`` or ``track`` output
folder; the work is done by :mod:`leafseg.inference.report`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leafseg.cli.options import add_verbose_argument, setup_command_logging


def build_parser(parser=None):
    parser = parser or argparse.ArgumentParser(
        prog="leafseg report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write report.html in the output folder of leafseg predict or leafseg track: one "
                    "self-contained page (it opens offline) with the run's settings and counts, the flagged "
                    "outliers, the growth curves, the sortable per-plant table and overlay thumbnails that "
                    "open the overlays at full size.",
        epilog="A track folder holds growth.csv, a predict folder plants.csv. leafseg predict writes the report "
               "at its end by itself (unless --no-report). Details: python -c 'import leafseg.inference.report; "
               "help(leafseg.inference.report)'.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the output folder of leafseg predict or leafseg track")
    parser.add_argument("--title", help="the page's title (default: the command and the folder's name)")
    add_verbose_argument(parser, uses_tensorflow=False)
    return parser


def run(args) -> int:
    setup_command_logging(args.verbose, tensorflow=False)
    from leafseg.inference.report import report_from_predict_output, report_from_track_output

    out_dir = Path(args.out_dir)
    if not out_dir.is_dir():
        print(f"report: error: {out_dir}: no such folder", file=sys.stderr)
        return 2
    build = report_from_track_output if (out_dir / "growth.csv").is_file() else report_from_predict_output
    try:
        path = build(out_dir, title=args.title)
    except (OSError, ValueError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv=None) -> int:
    """``leafseg report OUT_DIR``: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
