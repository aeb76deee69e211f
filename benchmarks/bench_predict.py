#!/usr/bin/env python
"""End-to-end ``leafseg predict`` against the model alone, on a folder of 500 px JPEGs.

    python benchmarks/bench_predict.py                      # leaf-small, 120 synthetic rosettes
    python benchmarks/bench_predict.py --images 200 --weights runs/x/model.weights.h5 --batch-size 4
    python benchmarks/bench_predict.py --runtime openvino         # the same with OpenVINO running the network

It draws ``--images`` rosettes (leafseg.synth.rosettes, classic style) and saves them as JPEG
(quality 90) in a temporary folder, loads the model and runs it once to trace it. Then:

- model only: ``MaskRCNN.detect`` on every image, already decoded, one after another (what
  ``benchmarks/bench_model.py`` times for one image);
- the stages apart: decoding a JPEG, and writing one image's outputs (overlay, label,
  measurements, record), per image;
- end to end: ``leafseg.inference.predict.predict_images`` on the folder into an empty output folder:
  decoding, the model, measuring and writing, pipelined (threads read ahead and write behind).

Model only and end to end run in turns (``--repeats``), each end-to-end run into a new folder;
the ratio is the median of each turn's ratio, so that a change in the machine's load between
two measurements falls on both.

Target (issue 16): end to end at least 0.9x the model-only rate on 2 cores. Not a test: it
prints figures and a ``json:`` line. Timings depend on the machine and on what else runs on it.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2


def make_jpegs(folder, count, size, seed):
    from leafseg.synth.rosettes import write_dataset

    pngs = Path(folder) / "png"
    write_dataset(pngs, count, seed=seed, size=size, style="classic", workers=min(2, os.cpu_count() or 1),
                  progress=False)
    jpegs = Path(folder) / "photos"
    jpegs.mkdir()
    for path in sorted(pngs.glob("*_rgb.png")):
        cv2.imwrite(str(jpegs / (path.stem + ".jpg")), cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return jpegs


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120, help="JPEGs to predict (default: 120)")
    parser.add_argument("--size", type=int, default=500, help="their side in pixels (default: 500)")
    parser.add_argument("--weights", default="leaf-small", help="as for leafseg predict (default: leaf-small)")
    parser.add_argument("--config", help="as for leafseg predict (default: the weights' own)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per model call (default: 1)")
    parser.add_argument("--runtime", default="tensorflow", choices=("auto", "tensorflow", "openvino"),
                        help="what runs the network, as for leafseg predict (default: tensorflow)")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="as for leafseg predict (default: float32)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="turns of model only, then end to end; figures are medians (default: 3)")
    parser.add_argument("--writer", default="auto", choices=("auto", "thread", "process"),
                        help="where predict writes the outputs, as leafseg.inference.predict.predict_images' "
                             "writer (default: auto)")
    parser.add_argument("--seed", type=int, default=16)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from leafseg.cli.options import quiet_tensorflow

    quiet_tensorflow(False)
    from leafseg.models.loading import load_inference_model
    from leafseg.inference.predict import OutputOptions, finish_image, predict_images, read_image
    from leafseg.inference.results import ResultStore
    from leafseg.models.runtime import runtime_description

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        folder = make_jpegs(tmp, args.images, args.size, args.seed)
        files = sorted(folder.iterdir())
        model, _, weights = load_inference_model(args.weights, args.config, model_dir=tmp, runtime=args.runtime,
                                                 precision=args.precision)
        images = [read_image(path) for path in files]
        model.detect(images[:args.batch_size])  # traces the graph: not timed

        start = time.perf_counter()
        for path in files:
            read_image(path)
        decode_s = time.perf_counter() - start
        results = model_only(model, images, args.batch_size)[1]
        store = ResultStore(Path(tmp) / "stages", {"bench": 1})
        options = OutputOptions(str(Path(tmp) / "stages"))
        start = time.perf_counter()
        for path, image, result in zip(files, images, results):
            store.save(finish_image(image, result, path, path.stem, options))
        write_s = time.perf_counter() - start

        # Model only and end to end in turns, so that a change in the machine's load falls on both.
        model_times, end_to_end_times = [], []
        for repeat in range(args.repeats):
            model_times.append(model_only(model, images, args.batch_size)[0])
            start = time.perf_counter()
            report = predict_images(model, [folder], Path(tmp) / f"out{repeat}", progress=False,
                                    batch_size=args.batch_size, writer=args.writer)
            end_to_end_times.append(time.perf_counter() - start)
            assert len(report.predicted) == len(files), report.summary()

    n = len(files)
    model_s, end_to_end_s = statistics.median(model_times), statistics.median(end_to_end_times)
    ratios = sorted(m / e for m, e in zip(model_times, end_to_end_times))
    figures = {
        "images": n, "size": args.size, "weights": str(weights), "batch_size": args.batch_size,
        "runtime": runtime_description(model), "writer": args.writer, "repeats": args.repeats,
        "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
        "model_only_images_per_s": round(n / model_s, 3), "decode_ms_per_image": round(1000 * decode_s / n, 1),
        "model_ms_per_image": round(1000 * model_s / n, 1), "write_ms_per_image": round(1000 * write_s / n, 1),
        "sequential_estimate_images_per_s": round(n / (model_s + decode_s + write_s), 3),
        "end_to_end_images_per_s": round(n / end_to_end_s, 3),
        "end_to_end_over_model_only": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }
    print(f"{n} JPEGs of {args.size} px, {weights.name}, {figures['runtime']}, batch {args.batch_size}, "
          f"writer {args.writer}, {os.cpu_count()} CPUs (load average {figures['load_average']})")
    print(f"  per image: decode {figures['decode_ms_per_image']} ms, model {figures['model_ms_per_image']} ms, "
          f"write {figures['write_ms_per_image']} ms")
    print(f"  model only          {figures['model_only_images_per_s']:.2f} images/s (median of {args.repeats})")
    print(f"  one after another   {figures['sequential_estimate_images_per_s']:.2f} images/s (the sum of the stages)")
    print(f"  predict, end to end {figures['end_to_end_images_per_s']:.2f} images/s (median of {args.repeats})")
    print(f"  end to end / model only, each turn's pair: median {figures['end_to_end_over_model_only']:.2f}x "
          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}; target 0.9x)")
    print("json: " + json.dumps(figures))
    return 0


def model_only(model, images, batch_size):
    """(seconds, results) of ``model.detect`` on ``images``, already decoded, ``batch_size`` at a time."""
    start = time.perf_counter()
    results = []
    for i in range(0, len(images), batch_size):
        results += model.detect(images[i:i + batch_size])
    return time.perf_counter() - start, results


if __name__ == "__main__":
    sys.exit(main())
