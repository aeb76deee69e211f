"""The ``leafseg synth`` command: its options and ``main(argv)``; the work is done by
:mod:`leafseg.synth.rosettes` (single rosettes) and :mod:`leafseg.synth.trays` (whole scenes)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from leafseg.cli.options import add_verbose_argument, counted, fraction, setup_command_logging
from leafseg.synth.realism import PETIOLES
from leafseg.synth.rosettes import STYLES, contact_sheet, dataset_paths, write_dataset
from leafseg.synth.timelapse import time_lapse_paths, write_time_lapses
from leafseg.synth.trays import SCENES, parse_grid, scene_paths, write_scenes


def grid_type(text: str) -> tuple[int, int]:
    """``--grid ROWSxCOLS``: (rows, columns), both positive."""
    try:
        return parse_grid(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Options of the synthetic-data command; pass a subparser to reuse them in a larger CLI."""
    parser = parser or argparse.ArgumentParser(
        prog="leafseg synth",
        description="Write procedural Arabidopsis rosettes as plantNNNNN_rgb.png + plantNNNNN_label.png "
                    "(the CSIRO synthetic dataset's format), or whole scenes, trays of pots and dishes of "
                    "seedlings, as sceneNNNNN_rgb.png + _label.png + _plants.png (leaf and plant labels), "
                    "or with --time-lapse DAYS the same rosettes grown day by day, one folder per plant. "
                    "Reruns skip finished images.")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--count", type=int, required=True, help="number of images (with --time-lapse: of plants)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--scene", choices=("rosette",) + SCENES, default="rosette",
                        help="rosette: one plant a photograph (default); tray: rows x columns of pots, one rosette "
                             "photograph a cell tiled edge to edge; dish: a petri dish of seedlings seen from above")
    parser.add_argument("--time-lapse", type=int, metavar="DAYS",
                        help="rosettes: grow each plant over DAYS daily photographs, leaves appearing in phyllotactic "
                             "order and growing, the pot moving and turning a little: "
                             "plantPPP/plantPPP_YYYY_MM_DD_rgb.png + _label.png, the label's values leaf ids that "
                             "hold over the days (leafseg.synth.timelapse); default style classic")
    parser.add_argument("--grid", type=grid_type, metavar="ROWSxCOLS",
                        help="tray: rows x columns of pots (default 3x4)")
    parser.add_argument("--size", type=int,
                        help="rosette: image side in pixels (default 500); tray: cell width, the height 1.06 times "
                             "it (default 500: 530 x 500 cells); dish: the longer image side, 4:3 (default 2048)")
    parser.add_argument("--style", choices=STYLES,
                        help="rosettes and trays: random: domain randomisation over scenes, leaves, camera and light "
                             "(default); classic: the narrow original look (a centred, well-lit "
                             "light-green rosette in a round pot)")
    parser.add_argument("--only", action="append", default=[], metavar="FAMILY",
                        help="random style: draw only images of this style family (trays, narrow, purple, dark; "
                             "see leafseg.synth.scenes.FAMILIES); repeatable")
    parser.add_argument("--without", action="append", default=[], metavar="FAMILY",
                        help="random style: draw no image of this style family; repeatable")
    parser.add_argument("--clutter", type=float, default=0.0, metavar="SHARE",
                        help="random style: the share of images (0..1) with unlabelled distractors, moss on the "
                             "soil and leaves of neighbouring plants at the frame's edge (default 0)")
    realism = parser.add_argument_group(
        "realism", "random-style rosettes only, all off by default (then every image is the same as without them); "
                   "what real photographs show that the random style leaves out (docs/LEAF_DATA.md, 'Realism')")
    realism.add_argument("--moss", type=fraction, default=0.0, metavar="SHARE",
                         help="the share of images (0..1) with granular moss, a thin algal film or liverwort thalli "
                              "on the soil, never labelled (default 0)")
    realism.add_argument("--petioles", choices=PETIOLES, default="thin",
                         help="thin: petioles 8-16%% of the blade's width, as ever (default); real: 15-35%%, as "
                              "Arabidopsis petioles are, and long ones more common. A leaf's label includes its "
                              "petiole either way")
    realism.add_argument("--seedlings", type=fraction, default=0.0, metavar="SHARE",
                         help="the share of images (0..1) that are a tight crop of a seedling of 4-8 leaves on long "
                              "thin petioles filling the frame, the image itself only 48-128 px (drawn larger, then "
                              "reduced; images then differ in size) (default 0)")
    realism.add_argument("--agar", type=fraction, default=0.0, metavar="SHARE",
                         help="the share of images (0..1) of a seedling on agar or germination paper in a petri dish, "
                              "its hypocotyl and roots drawn but not labelled; half of them small crops as "
                              "--seedlings (default 0; --seedlings + --agar at most 1)")
    realism.add_argument("--young-leaves", type=fraction, default=0.0, metavar="SHARE",
                         help="the share of rosettes (0..1) given 1-4 young leaves of a few pixels at the centre, "
                              "labelled (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--start", type=int, default=0, help="index of the first image (default 0)")
    parser.add_argument("--contact-sheet", metavar="PATH",
                        help="also write a PNG grid of the first 12 images (photograph and leaf label)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no messages")
    add_verbose_argument(parser, uses_tensorflow=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the synthetic-data command on parsed arguments; returns the exit status."""
    setup_command_logging(args.verbose, tensorflow=False)
    families = {**{name: True for name in args.only}, **{name: False for name in args.without}}
    if set(args.only) & set(args.without):
        print(f"synth: error: --only and --without name the same family: {', '.join(set(args.only) & set(args.without))}",
              file=sys.stderr)
        return 2
    rosettes = args.scene == "rosette"
    misplaced = _misplaced_options(args)
    if misplaced:
        print(f"synth: error: {misplaced}", file=sys.stderr)
        return 2
    try:
        if args.time_lapse is not None:
            written = write_time_lapses(args.out, args.time_lapse, args.count, seed=args.seed,
                                        size=500 if args.size is None else args.size, style=args.style or "classic",
                                        workers=args.workers, start=args.start, progress=not args.quiet)
        elif rosettes:
            written = write_dataset(args.out, args.count, seed=args.seed, size=500 if args.size is None else args.size,
                                    workers=args.workers, start=args.start, progress=not args.quiet,
                                    style=args.style or "random", families=families or None, clutter=args.clutter,
                                    realism=_realism(args))
        else:
            written = write_scenes(args.out, args.count, seed=args.seed, scene=args.scene, grid=args.grid,
                                   style=args.style, workers=args.workers, start=args.start, progress=not args.quiet,
                                   size=args.size, families=families or None)
    except ValueError as err:
        print(f"synth: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {counted(len(written), 'file')} to {args.out}")
    if args.contact_sheet and args.count > 0:
        if args.time_lapse is not None:  # the first plant's first 12 days
            shown = [rgb for rgb, _ in time_lapse_paths(args.out, args.start, args.time_lapse)[:12]]
        else:
            paths = dataset_paths if rosettes else scene_paths
            shown = [paths(args.out, i)[0] for i in range(args.start, args.start + min(args.count, 12))]
        contact_sheet(shown, args.contact_sheet, keep_aspect=not rosettes)
        if not args.quiet:
            print(f"contact sheet: {args.contact_sheet}")
    return 0


def _realism(args: argparse.Namespace) -> dict:
    """The realism options given (``leafseg.synth.realism``): only those that differ from off."""
    given = {"moss": args.moss, "petioles": args.petioles, "seedlings": args.seedlings, "agar": args.agar,
             "young": args.young_leaves}
    return {name: value for name, value in given.items() if value not in (0.0, "thin")}


def _misplaced_options(args: argparse.Namespace) -> str | None:
    """What is wrong when an option is given to a kind of image it does not apply to; None if nothing."""
    if args.grid is not None and args.scene != "tray":
        return f"--grid is for --scene tray, not --scene {args.scene}"
    realism = _realism(args)
    if args.time_lapse is not None:
        if args.time_lapse < 1:
            return f"--time-lapse needs at least 1 day, got {args.time_lapse}"
        if args.scene != "rosette":
            return f"--time-lapse is for --scene rosette, not --scene {args.scene}"
        given = [name for name, value in (("--only", args.only), ("--without", args.without),
                                          ("--clutter", args.clutter)) if value]
        given += [f"--{name.replace('young', 'young-leaves')}" for name in realism]
        if given:
            return f"{', '.join(given)} cannot be combined with --time-lapse (a time-lapse draws --style only)"
    if realism and args.scene != "rosette":
        named = ", ".join(f"--{name.replace('young', 'young-leaves')}" for name in realism)
        return f"{named} is for --scene rosette, not --scene {args.scene}"
    if args.scene != "rosette" and args.clutter != 0.0:
        return (f"--clutter {args.clutter:g} is for --scene rosette (neighbours' leaves at the frame's edge), "
                f"not --scene {args.scene}")
    if args.scene == "dish":
        given = [name for name, value in (("--style", args.style), ("--only", args.only), ("--without", args.without))
                 if value]
        if given:
            return f"{', '.join(given)} is for --scene rosette or tray, not --scene dish"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``make_synthetic`` entry point: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    return run(build_parser().parse_args(argv))
