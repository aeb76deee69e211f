"""Leaves as both styles of the synthetic generator draw them (the classic in
:mod:`leafseg.synth.rosettes`, the random in :mod:`leafseg.synth.scenes`): a leaf's geometry (:class:`Leaf`,
its outline polygon), the rasteriser that paints leaves oldest first into an id image, the
colouring and shading of the visible leaf pixels, the shadows the leaves cast, and the noise
and grids the scenes are textured with.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from leafseg.data.masks import hsv_to_rgb

__all__ = ["GOLDEN_ANGLE_DEG", "Leaf", "leaf_outlines", "paint_leaves", "paint", "grid", "fractal_noise", "smoothstep",
           "paint_leaf_colours", "leaf_shadows"]

GOLDEN_ANGLE_DEG = 137.5
# Outline stations along a leaf, as fractions of the petiole and of the blade. The blade's
# stations crowd towards the tip (sine spacing) where its rounded end bends fastest.
_PETIOLE_STATIONS = np.linspace(0.0, 1.0, 6, endpoint=False)
_BLADE_STATIONS = np.sin(np.linspace(0.0, np.pi / 2.0, 36))


@dataclass(eq=False)
class Leaf:
    """Geometry of one leaf in image pixels (x right, y down).

    The midrib runs from the petiole base ``(x, y)`` towards ``angle`` (radians) for ``length``
    pixels, bending sideways by ``bend * length`` at the tip. The petiole takes the first
    ``petiole`` fraction of the length; the blade, ``width`` pixels at its widest, the rest.

    Attributes:
        widest: where the blade is widest, as a fraction of the blade length (0.5 elliptical,
            above 0.5 obovate).
        roundness: exponent of the blade's width profile near base and tip: 0.5 round ends,
            1 pointed ends.
        margin: [2, K, 3] rows of (amplitude, cycles along the leaf, phase) whose sine sum
            perturbs the relative half-width of the left and the right margin; None for a
            smooth margin.
        stalk: the petiole's width where it meets the blade, as a fraction of the blade's
            width (0.16: the thin petioles both styles draw by default; Arabidopsis petioles
            are about 0.15 to 0.35). The petiole is always part of its leaf's outline, and so
            of its label.
        stalk_base: the petiole's width at its base, as a fraction of its width at the blade
            (0.5 by default: it tapers towards the rosette's centre).
    """

    x: float
    y: float
    angle: float
    length: float
    width: float
    petiole: float = 0.4
    bend: float = 0.0
    widest: float = 0.6
    roundness: float = 0.55
    margin: np.ndarray | None = field(default=None, repr=False)
    stalk: float = 0.16
    stalk_base: float = 0.5

    def halfwidth(self, t: np.ndarray) -> np.ndarray:
        """Half-width in pixels at fractions ``t`` (any shape) of the length from the base."""
        return _halfwidth(np.asarray(t, dtype=np.float64), self.width, self.petiole, self.widest,
                          self.roundness, self.stalk, self.stalk_base)

    def outline(self) -> np.ndarray:
        """[P, 2] float32 polygon (x, y): up the left margin from the base, down the right."""
        return leaf_outlines([self])[0]


def _halfwidth(t, width, petiole, widest, roundness, stalk=0.16, stalk_base=0.5):
    """Half-width at fractions ``t`` of the leaf length; every argument broadcasts.

    The petiole widens linearly from ``stalk * stalk_base`` to ``stalk`` of the blade's width
    (by default from 8 % to 16 %); the blade's profile is ``sin(pi * b**gamma) ** roundness``
    with ``gamma`` putting the maximum at ``widest``.
    """
    half = 0.5 * width
    # Written so that the defaults give the very floats of half * (0.08 + 0.08 * c): 0.16 * 0.5
    # and 0.16 - 0.08 are exact, so images drawn before the stalk existed keep their bytes.
    base = stalk * stalk_base
    # At least ~0.7 px: a petiole thinner than a pixel would rasterise into pieces.
    stalk = np.maximum(half * (base + (stalk - base) * np.clip(t / petiole, 0.0, 1.0)), 0.7)
    b = np.clip((t - petiole) / (1.0 - petiole), 0.0, 1.0)
    gamma = np.log(0.5) / np.log(widest)
    blade = half * np.maximum(np.sin(np.pi * b**gamma), 0.0) ** roundness
    # The petiole ends inside the blade, so the tip still closes to a point.
    return np.maximum(np.where(b < 0.5, stalk, 0.0), blade)


def leaf_outlines(leaves: Sequence[Leaf], blade_stations: int = len(_BLADE_STATIONS)) -> np.ndarray:
    """[n, P, 2] float32 polygons (x, y) of ``leaves``, all with the same number of vertices.

    Each runs up the left margin from the petiole base to the tip and back down the right.
    ``blade_stations``: outline points along each blade side (36; more for toothed margins).
    """
    stations = (_BLADE_STATIONS if blade_stations == len(_BLADE_STATIONS)
                else np.sin(np.linspace(0.0, np.pi / 2.0, blade_stations)))
    if not leaves:
        return np.zeros((0, 2 * (len(_PETIOLE_STATIONS) + len(stations)), 2), dtype=np.float32)
    x, y, angle, length, width, petiole, bend, widest, roundness, stalk, stalk_base = np.array(
        [[lf.x, lf.y, lf.angle, lf.length, lf.width, lf.petiole, lf.bend, lf.widest, lf.roundness, lf.stalk,
          lf.stalk_base] for lf in leaves], dtype=np.float64).T[..., None]  # each [n, 1]
    t = np.concatenate([petiole * _PETIOLE_STATIONS, petiole + (1.0 - petiole) * stations], axis=1)
    half = _halfwidth(t, width, petiole, widest, roundness, stalk, stalk_base)  # [n, S]
    sides = np.stack([half, half], axis=1)  # [n, 2, S] left, right
    for i, leaf in enumerate(leaves):
        if leaf.margin is not None:
            amp, cycles, phase = (leaf.margin[..., j:j + 1] for j in range(3))  # [2, K, 1]
            sides[i] *= 1.0 + (amp * np.sin(2.0 * np.pi * cycles * t[i] + phase)).sum(axis=1)
    ca, sa = np.cos(angle), np.sin(angle)
    # Midrib: a parabola bend * L * t^2 off the straight line; tangent (along + 2 bend t across).
    ax = x + length * (t * ca - bend * t * t * sa)
    ay = y + length * (t * sa + bend * t * t * ca)
    tx, ty = ca - 2.0 * bend * t * sa, sa + 2.0 * bend * t * ca
    norm = np.sqrt(tx * tx + ty * ty)
    nx, ny = -ty / norm, tx / norm
    left = np.stack([ax + nx * sides[:, 0], ay + ny * sides[:, 0]], axis=2)
    right = np.stack([ax - nx * sides[:, 1], ay - ny * sides[:, 1]], axis=2)
    return np.concatenate([left, right[:, ::-1]], axis=1).astype(np.float32)


def paint_leaves(outlines: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise leaf polygons in painting order: later outlines cover earlier ones.

    Args:
        outlines: at most 255 polygons [P, 2] (x, y) in pixels, oldest leaf first.
        shape: (height, width) of the image.

    Returns:
        [H, W] int32: 0 where no leaf lies, else 1 + the index of the last outline covering the
        pixel. Crisp (no anti-aliasing); polygons may leave the image.
    """
    return paint(outlines, shape).astype(np.int32)


def paint(outlines: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if len(outlines) > 255:
        raise ValueError(f"paint_leaves: at most 255 leaves fit the uint8 id canvas, got {len(outlines)}")
    ids = np.zeros(shape, dtype=np.uint8)
    for k, poly in enumerate(outlines):
        # Sub-pixel vertices (4 fractional bits) keep thin petioles smooth.
        pts = np.round(np.asarray(poly, dtype=np.float64) * 16.0).astype(np.int32)
        cv2.fillPoly(ids, [pts], k + 1, lineType=cv2.LINE_8, shift=4)
    return ids


@functools.lru_cache(maxsize=8)
def grid(height: int, width: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read-only [h, w] float32 (y, x) in full-resolution pixels of the centres of the
    ``step`` x ``step`` cells of a height x width image."""
    h, w = -(-height // step), -(-width // step)
    ys = np.repeat((np.arange(h, dtype=np.float32) * step + (step - 1) / 2.0)[:, None], w, axis=1)
    xs = np.repeat((np.arange(w, dtype=np.float32) * step + (step - 1) / 2.0)[None, :], h, axis=0)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def fractal_noise(rng: np.random.Generator, height: int, width: int,
                  cells: Sequence[int] = (4, 12, 40), weights: Sequence[float] = (0.5, 0.3, 0.2)) -> np.ndarray:
    """[H, W] float32 smooth fractal noise with mean ~0.5: coarse random grids upsampled."""
    out = np.zeros((height, width), dtype=np.float32)
    longest = max(height, width)
    for c, w in zip(cells, weights):
        small = rng.random((max(2, round(c * height / longest)), max(2, round(c * width / longest))),
                           dtype=np.float32)
        out += np.float32(w) * cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def paint_leaf_colours(rng: np.random.Generator, planes: np.ndarray, ids: np.ndarray,
                        leaves: Sequence[Leaf], light: float, hsv: np.ndarray | None = None):
    """Colour the visible pixels of every leaf in ``planes`` ([3, H, W] float RGB, in place).

    Per leaf: a green that is yellower and lighter in young leaves (or the blade colours
    ``hsv``, [n, 3] hue in turns, saturation, value), a paler petiole, a lighter midrib, darker
    margins (the blade is domed) and the side facing the light brighter.

    Returns, per visible pixel, for further effects: flat index, leaf index k, position along
    the leaf t (0 base .. 1 tip), across the blade vn (-1 .. 1) and along the blade blade_t.
    """
    height, width = ids.shape
    n = len(leaves)
    if hsv is None:
        age = 1.0 - np.arange(n) / max(n - 1, 1)
        hue = np.clip(rng.uniform(85.0, 128.0) + rng.normal(0.0, 5.0, n) - 10.0 * (1.0 - age), 75.0, 140.0) / 360.0
        sat = rng.uniform(0.35, 0.75, n)
        val = rng.uniform(0.4, 0.7) * rng.uniform(0.85, 1.1, n) * (1.0 + 0.25 * (1.0 - age))
    else:
        hue, sat, val = np.asarray(hsv, dtype=np.float64).T
    # [3, n] colours of blade, petiole and midrib
    blade_rgb = hsv_to_rgb(np.stack([hue, sat, np.minimum(val, 0.9)], axis=1)).T.astype(np.float32)
    stalk_rgb = hsv_to_rgb(np.stack([hue - 0.02, 0.6 * sat, np.minimum(1.3 * val, 0.95)], axis=1)).T.astype(np.float32)
    rib_rgb = hsv_to_rgb(np.stack([hue - 0.01, 0.45 * sat, np.minimum(1.45 * val, 0.97)], axis=1)).T.astype(np.float32)
    texture = fractal_noise(rng, height, width, cells=(8, 30, 90), weights=(0.3, 0.3, 0.4))

    # Per-leaf constants, gathered below for each pixel by the pixel's leaf index.
    geo = np.float32([[lf.x, lf.y, math.cos(lf.angle), math.sin(lf.angle), 1.0 / lf.length, lf.bend * lf.length,
                       lf.petiole, 1.0 / (1.0 - lf.petiole), 1.0 / max(0.6, 0.025 * lf.width),
                       0.18 * math.sin(light - lf.angle)] for lf in leaves]).T  # [10, n]
    # Half-width at 65 stations along each leaf, looked up instead of evaluated per pixel.
    half = np.float32([np.maximum(lf.halfwidth(np.linspace(0.0, 1.0, 65)), 0.5) for lf in leaves])  # [n, 65]

    flat = np.flatnonzero(ids)
    ys, xs = np.divmod(flat, width)
    k = ids.ravel()[flat].astype(np.intp) - 1
    x0, y0, cos_a, sin_a, inv_len, bend, petiole, inv_blade, inv_rib, tilt = geo[:, k]  # [M] each
    px = xs.astype(np.float32) - x0
    py = ys.astype(np.float32) - y0
    t = np.clip((px * cos_a + py * sin_a) * inv_len, 0.0, 1.0)  # along the midrib: 0 base, 1 tip
    v = (py * cos_a - px * sin_a) - bend * t * t  # pixels off the midrib
    vn = np.clip(v / half[k, np.rint(t * 64.0).astype(np.intp)], -1.0, 1.0)  # -1..1 margin to margin
    blade_t = np.clip((t - petiole) * inv_blade, 0.0, 1.0)
    shade = (1.0 - 0.35 * vn * vn + tilt * vn + 0.1 * (blade_t - 0.5)) * (0.8 + 0.4 * texture.ravel()[flat])
    stalk = np.clip((petiole + 0.03 - t) * (1.0 / 0.06), 0.0, 1.0)
    rib = (np.exp(-np.square(v * inv_rib / (1.3 - blade_t)))
           * np.where(blade_t < 0.85, np.float32(0.7), np.float32(0.0)) * (1.0 - stalk))
    for c in range(3):
        base = blade_rgb[c, k] + (stalk_rgb[c] - blade_rgb[c])[k] * stalk
        planes[c].ravel()[flat] = base * shade + (rib_rgb[c, k] - base) * rib
    return flat, k, t, vn, blade_t


def leaf_shadows(rng: np.random.Generator, ids: np.ndarray, n: int, light: float,
                  reach: tuple[float, float] = (0.002, 0.0075)) -> np.ndarray:
    """[H, W] float32 shadow depth in 0..0.8 cast by the leaves (``ids`` uint8, painted oldest
    first, ``n`` of them) on what lies under them, light from direction ``light`` (radians);
    ``reach``: range of the shadow offset as a fraction of the shorter side."""
    height, width = ids.shape
    scale = min(height, width)
    # Younger leaves sit higher in the rosette and shade what lies under their edges. Shadows
    # are soft: cast them on 2x2 cells.
    heights = np.zeros(256, dtype=np.float32)
    heights[1:n + 1] = 0.5 + 0.5 * np.arange(1, n + 1) / n
    height_map = cv2.LUT(ids, heights)
    h2, w2 = (height + 1) // 2, (width + 1) // 2
    reach = scale * rng.uniform(*reach)  # in 2x2 cells
    shift = np.float32([[1, 0, -reach * math.cos(light)], [0, 1, -reach * math.sin(light)]])
    cast = cv2.warpAffine(cv2.resize(height_map, (w2, h2), interpolation=cv2.INTER_AREA), shift, (w2, h2),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cast = cv2.resize(cv2.GaussianBlur(cast, (0, 0), max(0.5, 0.8 * reach)), (width, height),
                      interpolation=cv2.INTER_LINEAR)
    cast -= height_map
    np.clip(cast, 0.0, 0.8, out=cast)
    return cast
