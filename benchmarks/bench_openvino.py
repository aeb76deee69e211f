#!/usr/bin/env python
"""Detect time per image in TensorFlow and in OpenVINO (f32, bf16; static and dynamic shapes).

    python benchmarks/bench_openvino.py                       # leaf-small (its weights), 384 px
    python benchmarks/bench_openvino.py --config leaf_r101    # ResNet101 at 512 px, random weights

Times ``MaskRCNN.detect`` on ``--images`` generated rosettes, one by one, after one untimed call
(TensorFlow traces, OpenVINO compiles): TensorFlow, then the same model with an
:class:`mrcnn.openvino.OpenVINORuntime` in f32 and bf16, each with a static-shape compilation
(the default) and with the dynamic one (``max_static_shapes=0``). Also prints the conversion
time (no cache), the compile times and the load average, then one JSON line (prefix ``json:``).
"""
from __future__ import annotations

import argparse
import json
import os
import time

from leafseg.cli.options import quiet_tensorflow


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="a leafseg config for random weights (default: leaf-small's weights)")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    quiet_tensorflow()
    import numpy as np

    from leafseg.synth.rosettes import generate_rosette
    from mrcnn.export import compare_detections
    from mrcnn.openvino import OpenVINORuntime, convert_keras_model

    if args.config:
        from leafseg.config import load_config
        from mrcnn.model import MaskRCNN
        model = MaskRCNN("inference", load_config(args.config), "/tmp")
        name = f"{args.config} (random weights)"
    else:
        from leafseg.models.loading import load_inference_model
        model = load_inference_model("leaf-small")[0]
        name = "leaf-small"
    side = model.config.IMAGE_MAX_DIM
    images = [generate_rosette(seed, side).image for seed in range(args.images)]
    result = {"model": name, "side": side, "images": args.images, "load_start": os.getloadavg()[0]}

    def timed(label):
        model.detect([images[0]])
        out, started = [], time.perf_counter()
        for image in images:
            out.append(model.detect([image])[0])
        result[label] = (time.perf_counter() - started) / len(images)
        print(f"{label:24s} {result[label]:.3f} s/image  (load {os.getloadavg()[0]:.2f})", flush=True)
        return out

    reference = timed("tensorflow")
    started = time.perf_counter()
    ov_model = convert_keras_model(model)
    result["convert_s"] = time.perf_counter() - started
    print(f"conversion {result['convert_s']:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    for precision in ("f32", "bf16"):
        for static in (True, False):
            runtime = OpenVINORuntime(ov_model, precision, threads=args.threads, config=model.config,
                                      max_static_shapes=8 if static else 0)
            model.use_runtime(runtime)
            label = f"openvino {precision} {'static' if static else 'dynamic'}"
            out = timed(label)
            result[label + " compile_s"] = sum(runtime.compile_seconds.values())
            same = sum(not compare_detections(a, b) for a, b in zip(reference, out))
            result[label + " same"] = same
            print(f"  compile {result[label + ' compile_s']:.1f} s; same detections as TF on {same}/{len(images)}")
    model.use_runtime(None)
    result["load_end"] = os.getloadavg()[0]
    print("json: " + json.dumps(result))


if __name__ == "__main__":
    main()
