"""Procedural Arabidopsis rosettes: the built-in leaf data of leafseg.

A stand-in for the CSIRO Synthetic Arabidopsis Dataset (Ward, Moghadam & Hudson, BMVC 2018
workshop) so that the demo, the tests and the notebooks need no download. Files are written in
that dataset's format: ``plantNNNNN_rgb.png`` (the photograph) and ``plantNNNNN_label.png``
(an RGB colour mask: black background, one saturated colour per leaf, visible pixels only).

Two styles (``style=`` of ``generate_rosette`` and ``write_dataset``, ``--style`` of
``leafseg synth``):

* ``classic``: one narrow look, a well-lit, centred rosette of light-green obovate leaves in a
  round pot of dark soil on a simple background; built as described below. The default of the
  Python API, so that the demo, the tests, notebooks and benchmarks keep byte-identical data.
* ``random``: domain randomisation (``leafseg.synth.scenes``): backgrounds, pots, trays, bare soil
  and soils; 2..30 leaves of varied blade shapes, margins, petioles, tilt, curl and colour
  (yellow-green to blue-green, anthocyanin, senescence) with veins and highlights; exposure,
  colour temperature, vignetting, contrast, slight perspective (applied to image and label
  alike), defocus and motion blur, noise and JPEG artefacts. The command line's default: a
  model trained on the classic look alone fails on other plant photographs.

The random style's ``realism`` options (``leafseg.synth.realism``; all off by default, and then
every image is the same as without them) draw what real photographs show and it left out:
moss, algae and liverwort on the soil, petioles as wide as real ones, small crops of
seedlings, seedlings on agar or paper, young leaves of a few pixels at the centre. A leaf's
label always includes its petiole, as the CVPPP benchmarks' do.

How a classic rosette is built (see ``docs/LEAF_DATA.md``, "Procedural rosettes"):

* 4..22 leaves on a golden-angle spiral, ``angle_k = angle_0 + k * 137.5 deg`` plus a few
  degrees of jitter; leaf 0 is the oldest, the largest and reaches furthest out.
* Each leaf is one polygon: a tapered petiole (0.3..0.6 of the leaf length, labelled as part of
  its leaf) that opens into an elliptical to obovate blade (length / width 1.2..2) with a
  slightly curved midrib and a mildly wavy margin.
* Leaves are painted oldest first, so a younger leaf covers an older one and each label holds
  exactly the pixels that stay visible. Leaves left with fewer than ``min_visible_pixels`` are
  removed from the plant (image and label alike) and the ids renumbered.
* The scene: dark soil with perlite specks in a round pot with a lit rim, a random texture
  around it, cast shadows, lighting and colour-balance changes, blur and sensor noise. Blur and
  noise touch the RGB image only; the label is crisp (palette colours and black, nothing else).

Every random number comes from the generator passed in; a dataset derives the generator of
image ``i`` from ``(seed, i)``, so files are byte-identical whatever the number of workers.

    rosette = generate_rosette(0, size=256)                    # classic
    rosette.image, rosette.label, rosette.instance_ids, rosette.masks
    write_dataset("data/synthetic", count=100, seed=0, workers=2, style="random")

Speed: the image is composed as three float32 colour planes and full-size temporaries are kept
few, because numpy is slow on a trailing axis of 3 and fresh multi-megabyte arrays cost page
faults; about 20 ms (classic) and 25 ms (random) per 500x500 rosette on one core, plus about
10 ms to write the two PNGs.
"""
from __future__ import annotations

import functools
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mrcnn.fileio import write_bytes_atomic

from leafseg.synth.leaves import (GOLDEN_ANGLE_DEG, Leaf, fractal_noise, grid, leaf_outlines, leaf_shadows, paint,
                                  paint_leaf_colours, smoothstep)
from leafseg.data.masks import hsv_to_rgb, leaf_palette
from leafseg.synth.realism import check_realism
from leafseg.synth.scenes import check_clutter, check_families, random_rosette

# PNG writing costs about half as much as generating: zlib level 1 with the "sub" row filter is
# the quickest OpenCV setting that keeps files small (a noisy 500x500 photograph: ~15 ms, 0.41 MB;
# adaptive filters take twice as long for 4 % less).
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
    _PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Rosette:
    """One synthetic plant photograph and its ground truth.

    Attributes:
        image: [H, W, 3] uint8 RGB photograph.
        label: [H, W, 3] uint8 colour mask: (0, 0, 0) background, ``colors[i - 1]`` on the
            visible pixels of leaf ``i``; no other colour occurs.
        instance_ids: [H, W] int32, 0 background, 1..N leaf id. Ids follow leaf age: 1 is the
            oldest visible leaf, N the youngest.
        colors: [N, 3] uint8, the label colour of each leaf id (row ``i - 1`` for id ``i``);
            pairwise distinct, never black.
    """

    image: np.ndarray
    label: np.ndarray
    instance_ids: np.ndarray
    colors: np.ndarray

    @property
    def num_leaves(self) -> int:
        return len(self.colors)

    @property
    def masks(self) -> np.ndarray:
        """[H, W, N] bool, one visible-pixel mask per leaf, in id order (matterport layout)."""
        return self.instance_ids[..., None] == np.arange(1, self.num_leaves + 1, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

STYLES = ("classic", "random")


def generate_rosette(rng_or_seed=None, size: int | tuple[int, int] = 500, *, min_leaves: int | None = None,
                     max_leaves: int | None = None, diameter: tuple[float, float] = (0.35, 0.9),
                     min_visible_pixels: int | None = None, style: str = "classic",
                     families: dict | None = None, clutter: float = 0.0, realism=None) -> Rosette:
    """Draw one synthetic Arabidopsis rosette in a pot.

    Args:
        rng_or_seed: a ``np.random.Generator`` (consumed) or anything ``np.random.default_rng``
            accepts (int, sequence of ints, SeedSequence). Nothing else is random.
        size: image size, an int for a square image or (height, width).
        min_leaves, max_leaves: range of the number of leaves (inclusive, at most 255); default
            4..22 (classic) or 2..30 (random). Classic guarantees at least ``min_leaves``
            visible leaves; random draws that many but leaves out of frame or hidden are
            dropped, so it guarantees only one.
        diameter: classic only: range of the rosette diameter as a fraction of the shorter
            image side.
        min_visible_pixels: leaves with fewer visible pixels are left out of the plant;
            default ``max(10, H * W // 10000)`` (25 at 500x500).
        style: ``"classic"`` (the default, so that existing callers keep byte-identical data):
            a well-lit, centred rosette of light-green obovate leaves in a round pot;
            ``"random"``: domain randomisation over scenes, leaf shapes, colours, camera and
            light (``leafseg.synth.scenes``).
        families: random style only: {family: True (only that family) / False (never it)}, for
            leave-one-family-out estimates of generalisation; families and their definitions in
            ``leafseg.synth.scenes.FAMILIES`` (trays, narrow, purple, dark). None changes nothing.
        clutter: random style only: the share of images (0..1) with unlabelled distractors: moss
            or algae on the soil, leaves of neighbouring plants reaching in from the frame's
            edge, as in photographs cropped from a tray. 0 (the default) changes nothing.
        realism: random style only: what real photographs show that the random style leaves
            out, a dict (or ``leafseg.synth.realism.Realism``) of options, all off by default
            (None or {} changes nothing): ``moss`` (share of images with granular moss, algae or
            liverwort on the soil, unlabelled), ``petioles`` ("thin" as ever, or "real": 15-35 %
            of the blade width, labelled with their leaf), ``seedlings`` (share of images that
            are a tight crop of a seedling of 4-8 leaves, the image itself only 48-128 px on its
            shorter side), ``agar`` (share of images of a seedling on agar or paper, hypocotyl
            and roots unlabelled; half of them small like ``seedlings``), ``young`` (share of
            rosettes with 1-4 extra young leaves of a few pixels at the centre).
            ``leafseg.synth.realism`` describes each.

    Returns:
        A ``Rosette``; see its docstring for the arrays.
    """
    if style not in STYLES:
        raise ValueError(f"generate_rosette: style must be one of {STYLES}, got {style!r}")
    if families and style != "random":
        raise ValueError(f"generate_rosette: style families ({', '.join(families)}) are drawn by the random style "
                         f"only, not {style!r}")
    if check_clutter(clutter) and style != "random":
        raise ValueError(f"generate_rosette: clutter is drawn by the random style only, not {style!r}")
    if check_realism(realism, families) and style != "random":
        raise ValueError(f"generate_rosette: the realism options are drawn by the random style only, not {style!r}")
    rng = np.random.default_rng(rng_or_seed)
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    default_range = (4, 22) if style == "classic" else (2, 30)
    min_leaves = default_range[0] if min_leaves is None else min_leaves
    max_leaves = default_range[1] if max_leaves is None else max_leaves
    if not 1 <= min_leaves <= max_leaves <= 255:
        raise ValueError(f"generate_rosette: need 1 <= min_leaves <= max_leaves <= 255, "
                         f"got {min_leaves}, {max_leaves}")
    if min(height, width) < 32:
        raise ValueError(f"generate_rosette: size must be at least 32 pixels, got {size}")
    if min_visible_pixels is None:
        min_visible_pixels = max(10, height * width // 10000)
    if style == "random":
        image, ids = random_rosette(rng, height, width, min_leaves, max_leaves, min_visible_pixels, families,
                                    clutter, realism)
        return _rosette(image, ids)
    scale = min(height, width)

    pot_x = width / 2.0 + rng.normal(0.0, 0.04) * scale
    pot_y = height / 2.0 + rng.normal(0.0, 0.04) * scale
    soil_r = scale * rng.uniform(0.36, 0.6)
    pot = (pot_x, pot_y, soil_r, soil_r * rng.uniform(0.04, 0.09))
    light = rng.uniform(0.0, 2.0 * math.pi)

    # A plant that ends up with too few visible leaves is drawn again; that is rare, and the
    # retries come from the same generator, so the result stays deterministic.
    for _ in range(100):
        n = int(rng.integers(min_leaves, max_leaves + 1))
        radius = scale * rng.uniform(*diameter) / 2.0
        centre = (pot_x + rng.normal(0.0, 0.03) * scale, pot_y + rng.normal(0.0, 0.03) * scale)
        leaves = _sample_leaves(rng, n, *centre, radius)
        outlines = leaf_outlines(leaves)
        ids = paint(outlines, (height, width))
        keep = np.flatnonzero(np.bincount(ids.ravel(), minlength=n + 1)[1:] >= min_visible_pixels)
        if len(keep) < n:
            # Removing a leaf only uncovers the others, so one repaint settles every count.
            leaves = [leaves[k] for k in keep]
            ids = paint(outlines[keep], (height, width))
        if len(leaves) >= min_leaves:
            break
    else:
        raise RuntimeError(f"generate_rosette: no plant with >= {min_leaves} leaves of "
                           f">= {min_visible_pixels} visible pixels at size {size} in 100 tries")

    planes = _scene(rng, height, width, pot, light)
    paint_leaf_colours(rng, planes, ids, leaves, light)
    image = _shadows_and_camera(rng, planes, ids, len(leaves), light)
    return _rosette(image, ids)


def _rosette(image: np.ndarray, ids: np.ndarray) -> Rosette:
    """The ``Rosette`` of a photograph and its uint8 leaf ids 0..N (every id present)."""
    n = int(ids.max())
    colors = leaf_palette(n)
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    lut[1:n + 1, 0] = colors
    label = cv2.LUT(cv2.merge([ids, ids, ids]), lut)
    return Rosette(image=image, label=label, instance_ids=ids.astype(np.int32), colors=colors)


def _sample_leaves(rng: np.random.Generator, n: int, cx: float, cy: float, radius: float) -> list[Leaf]:
    """n leaves, oldest first, on a golden-angle spiral around (cx, cy) reaching ~radius."""
    angle0 = rng.uniform(0.0, 2.0 * math.pi)
    spin = rng.choice([-1.0, 1.0])  # the spiral turns either way in real plants
    leaves = []
    for k in range(n):
        age = 1.0 - k / max(n - 1, 1)  # 1 for the oldest leaf, 0 for the youngest
        theta = angle0 + spin * math.radians(k * GOLDEN_ANGLE_DEG + rng.uniform(-4.0, 4.0))
        length = radius * (0.25 + 0.75 * age**0.8) * rng.uniform(0.9, 1.12)
        # Young leaves are rounder and have short petioles; old ones up to 0.6 of their length.
        petiole = rng.uniform(0.3, 0.4 + 0.2 * age)
        width = (1.0 - petiole) * length / rng.uniform(1.2, 1.35 + 0.65 * age)
        offset = radius * rng.uniform(0.0, 0.04)
        # Margin waves: a few broad undulations and a faint short-wave serration per side.
        amp = rng.uniform(0.0, 0.035, size=(2, 4, 1)) * np.array([[1.0], [0.8], [0.5], [0.25]])
        cycles = rng.uniform(0.5, 1.0, size=(2, 4, 1)) * np.array([[1.0], [2.5], [6.0], [14.0]])
        phase = rng.uniform(0.0, 2.0 * math.pi, size=(2, 4, 1))
        leaves.append(Leaf(
            x=cx + offset * math.cos(theta), y=cy + offset * math.sin(theta), angle=theta,
            length=length, width=width, petiole=petiole, bend=rng.uniform(-0.08, 0.08),
            widest=rng.uniform(0.5, 0.72), roundness=rng.uniform(0.45, 0.65),
            margin=np.concatenate([amp, cycles, phase], axis=2)))
    return leaves


def _scene(rng: np.random.Generator, height: int, width: int, pot: tuple[float, float, float, float],
           light: float) -> np.ndarray:
    """[3, H, W] float32 RGB planes in [0, 1]: background texture, pot rim, soil with specks."""
    scale = min(height, width)
    pcx, pcy, soil_r, rim_w = pot
    # Everything but the specks varies slowly: compute it on 2x2 cells, then upsample.
    ys, xs = grid(height, width, 2)
    h2, w2 = ys.shape
    dx, dy = xs - pcx, ys - pcy
    r = np.sqrt(dx * dx + dy * dy)
    # cos(direction of the cell from the pot centre - direction of the light)
    facing = (dx * math.cos(light) + dy * math.sin(light)) / np.maximum(r, 1.0)

    # Background: two random colours mixed by noise, stripes or a checker board.
    c1 = hsv_to_rgb([rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.85)]).astype(np.float32)
    c2 = hsv_to_rgb([rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.85)]).astype(np.float32)
    kind = rng.integers(3)
    mix = fractal_noise(rng, h2, w2, cells=(3, 10, 50))
    if kind > 0:
        period = scale * rng.uniform(0.03, 0.2)
        a = rng.uniform(0.0, math.pi)
        wave = np.sin((xs * math.cos(a) + ys * math.sin(a)) * (2.0 * math.pi / period))
        if kind == 2:
            wave *= np.sin((ys * math.cos(a) - xs * math.sin(a)) * (2.0 * math.pi / period))
        # A soft step over about two pixels (sin rises 2 pi / period per pixel at its zeros).
        mix = 0.6 * mix + 0.4 * np.clip(0.5 + wave * np.float32(period / (4.0 * math.pi)), 0.0, 1.0)
    mix = np.clip(1.5 * mix - 0.25, 0.0, 1.0)

    # Soil: dark brown, lumpy, darker in the shadow of the pot wall.
    soil_rgb = hsv_to_rgb([rng.uniform(0.04, 0.1), rng.uniform(0.3, 0.65),
                           rng.uniform(0.12, 0.3)]).astype(np.float32)
    lumps = fractal_noise(rng, h2, w2, cells=(6, 30, 120), weights=(0.3, 0.3, 0.4))
    soil = 0.5 + lumps * (0.5 + 0.5 * smoothstep((soil_r - r) / (0.12 * soil_r)))

    # Pot rim: a lit ring, brightest on its crest and on the side facing the light.
    pot_rgb = np.float32([(0.08, 0.08, 0.09), (0.25, 0.25, 0.27), (0.62, 0.33, 0.2), (0.15, 0.25, 0.55),
                          (0.8, 0.8, 0.78), (0.3, 0.2, 0.12)][rng.integers(6)])
    q = (r - soil_r) / rim_w
    crest = np.sin(np.pi * np.clip(q, 0.0, 1.0))
    rim = 0.55 + 0.35 * crest + 0.25 * facing
    glint = 0.06 * crest**8
    # Coverage of the pot (rim and all) and of the soil, ramping over one 2x2 cell so that the
    # upsampled edges come out anti-aliased rather than stair-stepped.
    in_pot = np.clip(0.5 * (soil_r + rim_w - r) + 0.5, 0.0, 1.0)
    in_soil = np.clip(0.5 * (soil_r - r) + 0.5, 0.0, 1.0)

    # Perlite (white) and clods (dark), sharp-edged at full resolution: drawn once into a map of
    # colour-table entries (speck j uses entry 1 + j % 255), then copied into each plane.
    n_specks = int(math.pi * soil_r * soil_r * rng.uniform(0.6e-3, 3e-3) * (500.0 / scale) ** 0.5)
    rad = np.sqrt(rng.uniform(0.0, 1.0, n_specks)) * (soil_r - 3.0)
    ang = rng.uniform(0.0, 2.0 * math.pi, n_specks)
    centres = np.round(4.0 * np.stack([pcx + rad * np.cos(ang), pcy + rad * np.sin(ang)], axis=1))
    axes = np.round(4.0 * rng.uniform(0.4, 2.2, (n_specks, 2)) * (scale / 500.0)) + 1
    tilt = rng.uniform(0.0, 180.0, n_specks)
    grey = rng.uniform(0.6, 0.95, n_specks)
    colours = np.where((rng.random(n_specks) < 0.6)[:, None], grey[:, None] * np.float32([1.0, 1.0, 0.95]),
                       grey[:, None] * 0.6 * soil_rgb)
    speck_lut = np.zeros((3, 256), dtype=np.float32)
    speck_lut[:, 1:1 + min(n_specks, 255)] = colours[:255].T
    specks = np.zeros((height, width), dtype=np.uint8)
    for j, (c, ax, tl) in enumerate(zip(centres.astype(int).tolist(), axes.astype(int).tolist(), tilt.tolist())):
        cv2.ellipse(specks, c, ax, tl, 0.0, 360.0, 1 + j % 255, -1, cv2.LINE_8, 2)
    has_speck = specks > 0

    planes = np.empty((3, height, width), dtype=np.float32)
    for c in range(3):
        plane = c1[c] + (c2[c] - c1[c]) * mix
        plane += (pot_rgb[c] * rim + glint - plane) * in_pot
        plane += (soil_rgb[c] * soil - plane) * in_soil
        cv2.resize(plane, (width, height), dst=planes[c], interpolation=cv2.INTER_LINEAR)
        np.copyto(planes[c], cv2.LUT(specks, speck_lut[c]), where=has_speck)
    return planes


def _shadows_and_camera(rng: np.random.Generator, planes: np.ndarray, ids: np.ndarray, n: int,
                        light: float) -> np.ndarray:
    """Cast shadows, uneven lighting, blur, noise, colour balance and gamma -> [H, W, 3] uint8.

    ``planes`` ([3, H, W] float RGB in [0, 1]) is used up.
    """
    height, width = ids.shape
    scale = min(height, width)
    cast = leaf_shadows(rng, ids, n, light)

    # Uneven lighting, smooth: a tilted plane minus a vignette on 8x8 cells, upsampled.
    ys, xs = grid(height, width, 8)
    gx, gy = (float(g) / scale for g in rng.uniform(-0.25, 0.25, 2))
    vignette = rng.uniform(0.0, 0.5) / (scale * scale)
    cx, cy = width / 2.0, height / 2.0
    lighting = 255.0 * (1.0 + gx * (xs - cx) + gy * (ys - cy)
                        - vignette * (np.square(xs - cx) + np.square(ys - cy)))
    gain = cv2.resize(lighting, (width, height), interpolation=cv2.INTER_LINEAR)
    cast *= -rng.uniform(0.5, 0.9)
    cast += 1.0
    gain *= cast

    sigma = rng.uniform(0.3, 1.1) * scale / 500.0
    # Sensor noise: a sum of two uniform bytes is triangular, close enough to Gaussian and
    # several times cheaper to draw. In-place arithmetic: fresh full-size arrays are slow.
    pair = rng.integers(0, 256, (2, height, width), dtype=np.uint8).astype(np.float32)
    noise = pair[0]
    noise += pair[1]
    noise -= 255.0
    noise *= rng.uniform(0.012, 0.05)  # standard deviation 1.2 .. 5 grey levels
    noise += 0.5  # rounds in the conversion to uint8 below
    channels = []
    for plane in planes:
        plane *= gain
        cv2.GaussianBlur(plane, (0, 0), sigma, dst=plane)
        plane += noise
        np.clip(plane, 0.0, 255.0, out=plane)
        channels.append(plane.astype(np.uint8))
    # Exposure, white balance and gamma on the 8-bit image: one lookup table per channel.
    gamma = rng.uniform(0.8, 1.25)
    channel_gain = rng.uniform(0.85, 1.2) * rng.uniform(0.9, 1.1, 3)
    levels = np.arange(256) / 255.0
    lut = np.stack([np.clip(levels * g, 0.0, 1.0) ** gamma for g in channel_gain], axis=1)
    return cv2.LUT(cv2.merge(channels), np.round(255.0 * lut).astype(np.uint8)[:, None, :])


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def rosette_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` of the dataset ``seed`` (independent of other images)."""
    return np.random.default_rng([seed, index])


def dataset_paths(out_dir: str | os.PathLike, index: int) -> tuple[Path, Path]:
    """(``plantNNNNN_rgb.png``, ``plantNNNNN_label.png``) of image ``index`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir / f"plant{index:05d}_rgb.png", out_dir / f"plant{index:05d}_label.png"


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 array as PNG atomically: a temporary file in the same folder, then
    ``os.replace``, so a reader (or a rerun) never sees a half-written file."""
    path = Path(path)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise OSError(f"write_png: PNG encoding failed for {path} (array {rgb.shape} {rgb.dtype})")
    write_bytes_atomic(path, data.tobytes())
    return path


def _write_one(out_dir: str, seed: int, index: int, size, style: str = "classic",
               families: dict | None = None, clutter: float = 0.0, realism=None) -> list[Path]:
    """Generate image ``index`` and write whichever of its two files is missing."""
    rgb_path, label_path = dataset_paths(out_dir, index)
    rosette = generate_rosette(rosette_rng(seed, index), size, style=style, families=families, clutter=clutter,
                               realism=realism)
    return write_missing(((rgb_path, rosette.image), (label_path, rosette.label)))


def _init_worker() -> None:
    # One OpenCV thread per worker process: the pool already fills the cores.
    cv2.setNumThreads(1)


def write_dataset(out_dir: str | os.PathLike, count: int, seed: int = 0, size: int | tuple[int, int] = 500,
                  workers: int = 1, start: int = 0, progress: bool = True, style: str = "classic",
                  families: dict | None = None, clutter: float = 0.0, realism=None) -> list[Path]:
    """Write rosettes ``start .. start + count - 1`` as ``plantNNNNN_rgb.png`` + ``_label.png``.

    Idempotent: an image whose two files both exist is skipped without being generated (files
    are written atomically, so an existing file is a complete one). The bytes depend only on
    ``(seed, index, size, style, families, clutter, realism)``: the same with 1 or many workers, and on
    every rerun.

    Args:
        out_dir: folder, created if missing.
        count: number of images.
        seed: dataset seed; image ``i`` uses ``rosette_rng(seed, i)``.
        size: image size, int or (height, width).
        workers: processes; above 1 a spawn-started process pool (safe next to TensorFlow).
        start: index of the first image.
        progress: show a tqdm progress bar.
        style: ``"classic"`` (default here, so that existing callers keep today's data) or
            ``"random"`` (domain randomisation; the command line's default); see
            ``generate_rosette``.
        families: random style only: {family: bool}, see ``generate_rosette``.
        clutter: random style only: the share of images with unlabelled distractors, see
            ``generate_rosette``.
        realism: random style only: the realism options, see ``generate_rosette``. With
            ``seedlings`` or ``agar`` the images differ in size (small crops), which
            ``leafseg prepare`` and the training pipeline take as they come (every image is
            resized to the model's input).

    Returns:
        Paths written by this call, in index order (rgb before label); empty on a complete rerun.
    """
    if style not in STYLES:
        raise ValueError(f"write_dataset: style must be one of {STYLES}, got {style!r}")
    if families:
        families = check_families(families)
        if style != "random":
            raise ValueError(f"write_dataset: style families are drawn by the random style only, not {style!r}")
    if check_clutter(clutter) and style != "random":
        raise ValueError(f"write_dataset: clutter is drawn by the random style only, not {style!r}")
    realism = check_realism(realism, families)
    if realism and style != "random":
        raise ValueError(f"write_dataset: the realism options are drawn by the random style only, not {style!r}")
    if count < 0 or start < 0 or workers < 1:
        raise ValueError(f"write_dataset: need count >= 0, start >= 0, workers >= 1; "
                         f"got count={count}, start={start}, workers={workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = functools.partial(_write_one, str(out_dir), seed, size=size, style=style, families=families,
                            clutter=clutter, realism=realism if realism else None)
    return write_indexed(job, functools.partial(dataset_paths, out_dir), start, count, workers, progress,
                         f"rosettes -> {out_dir}")


def write_indexed(job: Callable[[int], list[Path]], paths_of: Callable[[int], Sequence[Path]], start: int,
                  count: int, workers: int = 1, progress: bool = True, desc: str = "") -> list[Path]:
    """The file loop of a generated dataset: ``job(i)`` for each index ``start .. start + count - 1``
    of which some file of ``paths_of(i)`` is missing, in index order.

    ``job`` writes the missing files of image ``i`` and returns their paths; with ``workers`` > 1
    it runs in a spawn-started process pool (safe next to TensorFlow), so it must pickle (a
    ``functools.partial`` of a module-level function). ``progress``: a tqdm bar named ``desc``.
    Returns the paths the jobs wrote, in index order.
    """
    todo = [i for i in range(start, start + count) if not all(p.exists() for p in paths_of(i))]
    written: list[Path] = []
    with tqdm(total=count, initial=count - len(todo), disable=not progress, unit="img", desc=desc) as bar:
        if workers == 1 or len(todo) <= 1:
            for i in todo:
                written += job(i)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_init_worker,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                for paths in pool.map(job, todo, chunksize=max(1, min(16, len(todo) // (4 * workers)))):
                    written += paths
                    bar.update()
    return written


def write_missing(files: Iterable[tuple[Path, np.ndarray]]) -> list[Path]:
    """Write each (path, RGB uint8 array) whose path does not exist yet (``write_png``); returns
    the paths written."""
    return [write_png(path, array) for path, array in files if not path.exists()]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"contact_sheet: cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def contact_sheet(items: Iterable[Rosette | str | os.PathLike], out_png: str | os.PathLike | None = None,
                  cols: int = 4, tile: int = 256, gap: int = 4, keep_aspect: bool = False) -> np.ndarray:
    """Grid of rosettes, each as photograph and label side by side, for a quick visual check.

    Args:
        items: ``Rosette`` objects, or anything else with ``image`` and ``label`` arrays (the
            scenes of ``leafseg.synth.trays``), or paths of ``*_rgb.png`` files (the label is
            the matching ``*_label.png``).
        out_png: where to write the sheet (folders created); None to only return it.
        cols: rosettes per row.
        tile: side in pixels of each photograph and label in the sheet.
        gap: white margin in pixels.
        keep_aspect: scale each image to fit the tile and centre it on white (for scenes that
            are not square); False stretches it to the square.

    Returns:
        The sheet, [rows * (tile + gap) + gap, cols * (2 * tile + 3 * gap), 3] uint8 RGB: cells
        ``gap`` from the edges and ``2 * gap`` apart, image and label ``gap`` apart.
    """
    pairs = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            pairs.append((item.image, item.label))
        else:
            path = Path(item)
            if not path.name.endswith("_rgb.png"):
                raise ValueError(f"contact_sheet: expected a *_rgb.png path (plantNNNNN_rgb.png), got {path}")
            pairs.append((_read_rgb(path), _read_rgb(path.with_name(path.name[:-len("_rgb.png")] + "_label.png"))))
    if not pairs:
        raise ValueError("contact_sheet: no rosettes given")
    rows = math.ceil(len(pairs) / cols)
    cell_w = 2 * tile + gap
    sheet = np.full((rows * (tile + gap) + gap, cols * (cell_w + 2 * gap), 3), 255, dtype=np.uint8)
    for k, (image, label) in enumerate(pairs):
        y = gap + (k // cols) * (tile + gap)
        x = gap + (k % cols) * (cell_w + 2 * gap)
        for left, picture, interpolation in ((x, image, cv2.INTER_AREA), (x + tile + gap, label, cv2.INTER_NEAREST)):
            h, w = (tile, tile)
            if keep_aspect:
                fit = tile / max(picture.shape[:2])
                h, w = max(1, round(picture.shape[0] * fit)), max(1, round(picture.shape[1] * fit))
            top, side = y + (tile - h) // 2, left + (tile - w) // 2
            sheet[top:top + h, side:side + w] = cv2.resize(picture, (w, h), interpolation=interpolation)
    if out_png is not None:
        Path(out_png).parent.mkdir(parents=True, exist_ok=True)
        write_png(out_png, sheet)
    return sheet


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
