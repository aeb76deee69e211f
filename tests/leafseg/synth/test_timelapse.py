"""leafseg.synth.timelapse: drawn time-lapses whose leaf ids hold over the days."""
import math

import numpy as np
import pytest

from leafseg.cli import synth as synth_cli
from leafseg.data.masks import read_label
from leafseg.measure.series import group_series
from leafseg.synth.timelapse import generate_time_lapse, time_lapse_paths, write_time_lapses

DAYS = 12


@pytest.fixture(scope="module", params=["classic", "random"])
def lapse(request):
    return generate_time_lapse(5, days=DAYS, size=192, style=request.param)


def _centroid_angle(mask, centre):
    ys, xs = np.nonzero(mask)
    return math.atan2(ys.mean() - centre[1], xs.mean() - centre[0])


def test_a_leaf_keeps_its_direction_relative_to_the_plant(lapse):
    # Leaf k points along its phyllotactic direction (turned with the plant) in every frame it
    # is visible in, so its id is the same leaf. Only leaves grown well out of the centre: a
    # young leaf's centroid sits near the centre, where its angle means little.
    checked = 0
    for t in range(lapse.days):
        masks, ids = lapse.masks(t)
        for j, leaf in enumerate(ids):
            mask = masks[..., j]
            ys, xs = np.nonzero(mask)
            if np.hypot(xs.mean() - lapse.centres[t, 0], ys.mean() - lapse.centres[t, 1]) < 8:
                continue
            expected = lapse.directions[leaf - 1] + lapse.turns[t]
            off = (_centroid_angle(mask, lapse.centres[t]) - expected + math.pi) % (2 * math.pi) - math.pi
            assert abs(off) < math.radians(30), (t, leaf, math.degrees(off))
            checked += 1
    assert checked > 30


def test_leaves_grow_and_new_ones_appear(lapse):
    counts = [len(lapse.masks(t)[1]) for t in range(lapse.days)]
    assert counts[0] >= 1 and counts[-1] >= counts[0] + 5
    # The whole outline of each leaf never shrinks; once drawn it only grows.
    assert np.all(np.diff(lapse.outline_areas, axis=0) >= -1e-6)
    # Visible areas: the two oldest leaves grow to more than twice what they show on day 0
    # (later, younger leaves may cover them).
    for leaf in (1, 2):
        visible = [np.count_nonzero(ids == leaf) for ids in lapse.ids]
        assert max(visible) > 2 * max(visible[0], 1)
    # Leaves appear in order: a leaf id is never visible before every smaller id has appeared.
    seen = set()
    for t in range(lapse.days):
        seen |= set(lapse.masks(t)[1].tolist())
        assert seen == set(range(1, max(seen) + 1))


def test_the_plant_moves_and_turns_a_little(lapse):
    steps = np.hypot(*np.diff(lapse.centres, axis=0).T)
    assert steps.max() < 15 and steps.max() > 0
    turns = np.degrees(np.abs(np.diff(lapse.turns)))
    assert turns.max() <= 20 and np.abs(np.degrees(lapse.turns)).max() <= 10 + 1e-9


def test_deterministic_and_options_checked():
    a = generate_time_lapse(3, days=3, size=96)
    b = generate_time_lapse(3, days=3, size=96)
    c = generate_time_lapse(4, days=3, size=96)
    assert all(np.array_equal(x, y) for x, y in zip(a.images + a.ids, b.images + b.ids))
    assert not np.array_equal(a.images[-1], c.images[-1])
    still = generate_time_lapse(3, days=3, size=96, move=0, turn=0)
    assert np.all(still.centres == still.centres[0]) and np.all(still.turns == 0)
    with pytest.raises(ValueError, match="days"):
        generate_time_lapse(0, days=0)
    with pytest.raises(ValueError, match="style"):
        generate_time_lapse(0, days=2, style="oil paint")


def test_files_are_dated_per_plant_and_resumable(tmp_path):
    written = write_time_lapses(tmp_path, days=4, count=2, seed=1, size=96, progress=False)
    assert len(written) == 2 * 4 * 2
    paths = time_lapse_paths(tmp_path, 1, 4)
    assert paths[0][0] == tmp_path / "plant001" / "plant001_2026_01_05_rgb.png"
    # The names put the frames in time order, one plant per folder.
    stems = [p.stem for p in sorted(tmp_path.glob("*/*_rgb.png"), reverse=True)]
    grouped = group_series(stems)
    assert list(grouped) == ["plant000_rgb", "plant001_rgb"]
    assert [name for _, name in grouped["plant001_rgb"]] == [rgb.stem for rgb, _ in paths]
    # The label's values are the leaf ids, the same as drawn.
    lapse = generate_time_lapse(np.random.SeedSequence([1, 27, 1]), days=4, size=96)
    for t, (_, label_path) in enumerate(paths):
        np.testing.assert_array_equal(read_label(label_path), lapse.ids[t])
    # A rerun writes nothing; a missing file is written again, the same bytes.
    before = paths[2][0].read_bytes()
    assert write_time_lapses(tmp_path, days=4, count=2, seed=1, size=96, progress=False) == []
    paths[2][0].unlink()
    assert write_time_lapses(tmp_path, days=4, count=2, seed=1, size=96, progress=False) == [paths[2][0]]
    assert paths[2][0].read_bytes() == before


def test_the_command_line_writes_a_time_lapse(tmp_path, capsys):
    assert synth_cli.main(["--out", str(tmp_path), "--count", "1", "--time-lapse", "2", "--size", "96",
                           "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "plant000").iterdir()) == [
        "plant000_2026_01_05_label.png", "plant000_2026_01_05_rgb.png",
        "plant000_2026_01_06_label.png", "plant000_2026_01_06_rgb.png"]
    assert synth_cli.main(["--out", str(tmp_path), "--count", "1", "--time-lapse", "2", "--moss", "0.5"]) == 2
    assert "--moss cannot be combined with --time-lapse" in capsys.readouterr().err
    assert synth_cli.main(["--out", str(tmp_path), "--count", "1", "--time-lapse", "2", "--scene", "tray"]) == 2
    assert "--time-lapse is for --scene rosette" in capsys.readouterr().err
