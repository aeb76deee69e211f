"""Growth series without labels: how smoothly a model's leaf counts and areas follow one plant
from day to day.

Photographs of the same plants day after day (a phenotyping platform's time-lapse) carry a check
that needs no leaf labels: a rosette grows smoothly. Its leaf count rises by zero, one or two a
day and seldom falls; its area changes by a few percent a day. A model that counts a patch of
moss on one day and not the next, or splits a leaf on Tuesday and not on Wednesday, makes the
series jagged. Scored on photographs the model never trained on, the roughness of the series is
a proxy for its errors on that kind of photograph: a lower roughness with a plausible growth
curve is better. It is a proxy only: a model that misses the same leaf every day is smooth.

    names = [p.stem for p in paths]
    series = group_series(names)                 # {plant key: [(time, name), ...]} in time order
    rows = [{"plant": key, "time": t, "leaves": n, "area": a}, ...]
    figures = series_roughness(rows)             # mean over plants of the figures below

Per plant, over its photographs in time order (counts ``c``, areas ``a``):

    count_jitter   mean |c_t - median(c_{t-1}, c_t, c_{t+1})| over the inner days: how far a day's
                   count lies off its neighbours' (leaves).
    count_falls    the share of day-to-day steps where the count falls by 2 or more (a leaf
                   hidden by another can make it fall by one).
    area_jitter    median |log a_t - (log a_{t-1} + log a_{t+1}) / 2| over the inner days: how far
                   a day's area lies off the geometric mean of its neighbours' (0.1 = 10 %).

Dates come from the file names (:func:`date_in_name`: ``2016_10_01``, ``2016-10-01``,
``20161001``, with an optional hour and minute after them); the plant is the name with its date
and time removed (:func:`plant_key`), or a regular expression's ``plant`` group.
"""
from __future__ import annotations

import re
import zlib
from datetime import datetime

import numpy as np

__all__ = ["DATE_PATTERN", "date_in_name", "plant_key", "group_series", "held_out_plants",
           "plant_roughness", "series_roughness", "SERIES_FIGURES"]

# A date (year 19xx/20xx, month, day) with an optional hour and minute, not inside a longer number.
DATE_PATTERN = re.compile(
    r"(?<!\d)((?:19|20)\d{2})([-_.]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])"
    r"(?:[-_T ]([01]\d|2[0-3])(?:[-_:.]?([0-5]\d))?)?(?!\d)")
# What may follow the date and time in a name and still be part of the time stamp (seconds,
# fractions: ``_00_00``).
_TIME_TAIL = re.compile(r"^(?:[-_:.]\d{1,6})*")

SERIES_FIGURES = ("count_jitter", "count_falls", "area_jitter")


def date_in_name(name: str) -> datetime | None:
    """The last date (and hour, minute) written in ``name``, or None."""
    matches = list(DATE_PATTERN.finditer(str(name)))
    if not matches:
        return None
    year, _, month, day, hour, minute = matches[-1].groups()
    return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0))


def plant_key(name: str, pattern: str | None = None) -> str:
    """The plant a photograph shows: ``pattern``'s group ``plant`` (or its first group, or the whole
    match) when given, else the name with its last date and time stamp removed."""
    name = str(name)
    if pattern is not None:
        found = re.search(pattern, name)
        if found is None:
            raise ValueError(f"plant pattern {pattern!r} does not match the photograph {name!r}")
        if "plant" in found.re.groupindex:
            return found.group("plant")
        return found.group(1) if found.re.groups else found.group(0)
    matches = list(DATE_PATTERN.finditer(name))
    if not matches:
        return name
    last = matches[-1]
    tail = _TIME_TAIL.match(name[last.end():]).end()
    left, right = name[:last.start()].rstrip("-_. "), name[last.end() + tail:].lstrip("-_ ")
    if left and right and not right.startswith("."):
        return f"{left}_{right}"
    return (left + right) or name


def group_series(names, pattern: str | None = None) -> dict:
    """``names`` (file names or stems) -> {plant key: [(datetime, name), ...] in time order}.
    A name without a date is a ValueError that names it: a series needs its days."""
    series: dict = {}
    for name in names:
        when = date_in_name(name)
        if when is None:
            raise ValueError(f"no date in the photograph's name {name!r} (expected e.g. 2016_10_01)")
        series.setdefault(plant_key(name, pattern), []).append((when, name))
    return {key: sorted(items) for key, items in sorted(series.items())}


def held_out_plants(keys, share: float = 0.25) -> set:
    """A fixed share of the plants, chosen by a hash of their key (the same on every machine and
    run, whatever the other plants): the plants a model adapted on the others is judged on."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the held-out share of plants must lie in (0, 1), got {share!r}")
    return {key for key in keys if zlib.crc32(str(key).encode()) % 1000 < share * 1000}


def plant_roughness(counts, areas) -> dict:
    """The figures of the module docstring for one plant; ``counts`` and ``areas`` in time order.
    A figure that needs more days than the plant has is NaN."""
    counts = np.asarray(counts, np.float64)
    areas = np.asarray(areas, np.float64)
    figures = {"days": len(counts)}
    if len(counts) >= 3:
        median3 = np.median(np.stack([counts[:-2], counts[1:-1], counts[2:]]), axis=0)
        figures["count_jitter"] = float(np.mean(np.abs(counts[1:-1] - median3)))
    else:
        figures["count_jitter"] = float("nan")
    figures["count_falls"] = float(np.mean(np.diff(counts) <= -2)) if len(counts) >= 2 else float("nan")
    inner = (areas[:-2] > 0) & (areas[1:-1] > 0) & (areas[2:] > 0) if len(areas) >= 3 else np.zeros(0, bool)
    if inner.any():
        logs = np.log(np.maximum(areas, 1e-9))
        off = np.abs(logs[1:-1] - 0.5 * (logs[:-2] + logs[2:]))[inner]
        figures["area_jitter"] = float(np.median(off))
    else:
        figures["area_jitter"] = float("nan")
    return figures


def series_roughness(rows) -> dict:
    """rows: dicts with ``plant``, ``time`` (anything that sorts), ``leaves`` and ``area``, one per
    photograph. Returns {"plants": n, "photographs": m, figure: mean over plants (NaN ignored),
    "per_plant": {plant: figures}}."""
    by_plant: dict = {}
    for row in rows:
        by_plant.setdefault(row["plant"], []).append(row)
    per_plant = {}
    for plant, items in sorted(by_plant.items()):
        items = sorted(items, key=lambda row: row["time"])
        per_plant[plant] = plant_roughness([row["leaves"] for row in items], [row["area"] for row in items])
    summary = {"plants": len(per_plant), "photographs": sum(len(v) for v in by_plant.values())}
    for figure in SERIES_FIGURES:
        values = np.array([p[figure] for p in per_plant.values()], np.float64)
        values = values[np.isfinite(values)]
        summary[figure] = float(values.mean()) if len(values) else float("nan")
    summary["per_plant"] = per_plant
    return summary
