"""Tests of the random style's realism options (leafseg.synth.realism): off, nothing changes;
on, each draws what it should. Small images (96 to 200 px) and few of them."""
import hashlib

import cv2
import numpy as np
import pytest

from leafseg.cli import synth as synth_command
from leafseg.data.masks import leaf_palette
from leafseg.synth import realism
from leafseg.synth.leaves import Leaf, paint_leaves
from leafseg.synth.realism import Realism, check_realism, downscale_ids
from leafseg.synth.rosettes import generate_rosette, rosette_rng, write_dataset
from leafseg.synth.scenes import HYPOCOTYL, ROOT, sample_leaves, seedling_photo
from leafseg.synth.trays import generate_dish


def _digest(r, *extra):
    h = hashlib.sha256(r.image.tobytes() + r.label.tobytes())
    for array in extra:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _random(i, size=160, seed=3, **options):
    return generate_rosette(rosette_rng(seed, i), size, style="random", **options)


def _check_label(r, min_pixels):
    """The label invariants of every rosette: black and the palette's first N colours, each
    present, as the ids say, each leaf at least ``min_pixels``."""
    assert r.image.shape[:2] == r.label.shape[:2] == r.instance_ids.shape
    np.testing.assert_array_equal(r.colors, leaf_palette(r.num_leaves))
    lut = np.concatenate([[[0, 0, 0]], r.colors]).astype(np.uint8)
    np.testing.assert_array_equal(r.label, lut[r.instance_ids])
    areas = np.bincount(r.instance_ids.ravel(), minlength=r.num_leaves + 1)[1:]
    assert r.num_leaves >= 1 and areas.min() >= min_pixels, areas


# ---------------------------------------------------------------------------------------------
# Off: every image as before
# ---------------------------------------------------------------------------------------------

# Digests of sha256(image + label) computed before the realism options existed (the code of
# commit 49aa631), at rosette_rng(3, i) and 160 px; the dish's also over its plants.
PINNED = {
    ("random", 0): "22be7c716ccc5febcd4cccbec01fa7b3c18497c73e6a52bc356ced39569751f5",
    ("random", 1): "e4a44755eddaa201c68486858f61fe18dd1bad92b2a00445b653bf377ec5eea1",
    ("clutter", 2): "c03604cead27d18485ca70a7d2afbf90c30507dba3d22d7a079defd56a4cb728",
}


@pytest.mark.parametrize("off", [None, {}, Realism(), {"moss": 0.0, "petioles": "thin", "seedlings": 0, "agar": 0.0,
                                                       "young": 0.0}])
def test_realism_off_draws_the_images_of_before(off):
    assert _digest(_random(0, realism=off)) == PINNED["random", 0]
    assert _digest(_random(1, realism=off)) == PINNED["random", 1]
    assert _digest(_random(2, clutter=0.5, realism=off)) == PINNED["clutter", 2]


def test_the_families_and_the_dishes_draw_the_images_of_before():
    # The dishes draw their roots with the helpers that moved to leafseg.synth.realism.
    dish = generate_dish(0, size=400)
    assert _digest(dish, dish.plants) == "6afc634343278e6a2d8b78720c44ce1392a9f71105f8e2544a5bd8f69686cca7"
    family = generate_rosette(rosette_rng(3, 0), 128, style="random", families={"dark": True, "narrow": False})
    assert _digest(family) == "6a9ee3e7d2c82c5fa5bce6d0113973f3df7861f7f90b4bd677a7642c360da2fb"


def test_each_option_is_deterministic_and_changes_the_image():
    for options in ({"moss": 1.0}, {"petioles": "real"}, {"seedlings": 1.0}, {"agar": 1.0}, {"young": 1.0}):
        a, b = _random(4, realism=options), _random(4, realism=options)
        assert _digest(a) == _digest(b), options
        assert _digest(a) != _digest(_random(4)), options


# ---------------------------------------------------------------------------------------------
# Choosing the images
# ---------------------------------------------------------------------------------------------

def test_decisions_come_from_their_own_draws_at_the_shares_asked():
    rngs = [rosette_rng(11, i) for i in range(400)]
    state = rngs[0].bit_generator.state
    alone = [realism.decide(rng, Realism(moss=0.3)) for rng in rngs]
    assert rngs[0].bit_generator.state == state  # the image's own generator is not advanced
    mixed = [realism.decide(rng, Realism(moss=0.3, young=0.5, seedlings=0.2, agar=0.1)) for rng in rngs]
    # Turning other options on leaves each image's moss decision as it was.
    assert [d[1] for d in alone] == [d[1] for d in mixed]
    kinds = [d[0] for d in mixed]
    assert abs(np.mean([d[1] for d in mixed]) - 0.3) < 0.07
    assert abs(np.mean([d[2] for d in mixed]) - 0.5) < 0.08
    assert abs(kinds.count("seedling") / 400 - 0.2) < 0.06 and abs(kinds.count("agar") / 400 - 0.1) < 0.05
    assert {d[0] for d in alone} == {"rosette"}


# ---------------------------------------------------------------------------------------------
# Moss, algae and liverwort
# ---------------------------------------------------------------------------------------------

def test_moss_is_painted_on_the_soil_and_never_labelled():
    """A mossy image is the plain one with moss on its soil: the same label, and pixels changed
    off the plant only (leaf edges change a little through the camera's blur)."""
    shares = []
    for i in range(6):
        plain, mossy = _random(i, 200, seed=8), _random(i, 200, seed=8, realism={"moss": 1.0})
        np.testing.assert_array_equal(mossy.label, plain.label)
        np.testing.assert_array_equal(mossy.instance_ids, plain.instance_ids)
        diff = np.abs(mossy.image.astype(int) - plain.image.astype(int)).max(axis=2)
        leaf = plain.instance_ids > 0
        inner = cv2.erode(leaf.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        # The plant's leaves are as they were, but for JPEG blocks and blur reaching in.
        assert (diff[inner] > 24).mean() < 0.02, i
        shares.append((diff[~leaf] > 8).mean())
    # Moss, algae or liverwort on the soil of nearly every image (some lie under the leaves).
    assert sum(share > 0.01 for share in shares) >= 4 and np.mean(shares) > 0.05, shares


def _soil_planes(size=160, rgb=(0.35, 0.22, 0.12)):
    return np.ones((3, size, size), np.float32) * np.float32(rgb)[:, None, None]


def test_each_bryophyte_kind_covers_only_the_soil_and_is_green():
    soil = np.zeros((160, 160), np.float32)
    soil[20:140, 20:140] = 1.0
    for kind, paint in enumerate((realism._moss, realism._algae, realism._liverwort)):
        painted = 0
        for seed in range(4):
            planes = _soil_planes()
            cover = paint(np.random.default_rng(seed), planes, soil, 1.0)
            changed = np.abs(planes - _soil_planes()).max(axis=0) > 1e-4
            assert not changed[soil == 0].any(), kind  # nothing off the soil
            np.testing.assert_array_equal(cover[soil == 0], 0.0)
            drawn = cover > 0.5
            if drawn.sum() > 50:
                painted += 1
                # Greener than the brown soil it grows on (green - red: 0.22 - 0.35 there).
                assert np.median(planes[1][drawn] - planes[0][drawn]) > 0.22 - 0.35 + 0.05, kind
        assert painted >= 2, kind


def test_moss_is_a_fine_granular_texture_not_a_smooth_patch():
    """Real moss is a carpet of tiny granules: within it the colour changes from pixel to pixel
    (1-3 px granules), where a drawn leaf or an algal film is smooth at that scale."""
    def fine_texture(planes, where):
        green = planes[1]
        return float(np.std((green - cv2.GaussianBlur(green, (0, 0), 2.0))[where]))

    moss_texture, film_texture = [], []
    for seed in range(6):
        planes = _soil_planes(200)
        cover = realism._moss(np.random.default_rng(seed), planes, None, 1.0)
        if (cover > 0.6).sum() > 400:
            moss_texture.append(fine_texture(planes, cover > 0.6))
        planes = _soil_planes(200)
        cover = realism._algae(np.random.default_rng(seed), planes, None, 1.0)
        if (cover > 0.3).sum() > 400:
            film_texture.append(fine_texture(planes, cover > 0.3))
    assert len(moss_texture) >= 3 and len(film_texture) >= 3
    assert np.median(moss_texture) > 0.03
    assert np.median(moss_texture) > 3 * np.median(film_texture)


# ---------------------------------------------------------------------------------------------
# Petioles
# ---------------------------------------------------------------------------------------------

def test_real_petiole_halfwidth_hand_computed():
    leaf = Leaf(x=0.0, y=0.0, angle=0.0, length=100.0, width=40.0, petiole=0.4, stalk=0.3, stalk_base=0.6)
    # Base: 0.3 * 0.6 of the blade's half-width 20; where the blade starts: 0.3 of it.
    np.testing.assert_allclose(leaf.halfwidth([0.0, 0.2, 0.4]), [20 * 0.3 * 0.6, 20 * (0.18 + 0.12 * 0.5), 20 * 0.3])
    thin = Leaf(x=0.0, y=0.0, angle=0.0, length=100.0, width=40.0, petiole=0.4)
    np.testing.assert_allclose(thin.halfwidth([0.0, 0.4]), [20 * 0.08, 20 * 0.16])


def test_real_petioles_rasterise_wider():
    def stalk_width(leaf):  # pixels across the petiole at x = 22, t = 0.12, 0.3 of the petiole
        return int((paint_leaves([leaf.outline()], (64, 128))[:, 22] > 0).sum())

    kwargs = dict(x=10.0, y=32.0, angle=0.0, length=100.0, width=40.0, petiole=0.4)
    thin, real = stalk_width(Leaf(**kwargs)), stalk_width(Leaf(**kwargs, stalk=0.3, stalk_base=0.6))
    assert abs(thin - 2 * 20 * (0.08 + 0.08 * 0.3)) <= 1.0, thin  # 4.16 px
    assert abs(real - 2 * 20 * (0.18 + 0.12 * 0.3)) <= 1.0, real  # 8.64 px


def test_sample_leaves_with_real_petioles_makes_the_same_draws():
    plain_rng, real_rng = np.random.default_rng(2), np.random.default_rng(2)
    thin = sample_leaves(plain_rng, 12, 100.0, 100.0, 80.0)
    real = sample_leaves(real_rng, 12, 100.0, 100.0, 80.0, stalks=np.random.default_rng(9))
    # The image's generator is where it would be: all that follows is drawn the same.
    assert plain_rng.bit_generator.state == real_rng.bit_generator.state
    assert all(leaf.stalk == 0.16 and leaf.stalk_base == 0.5 for leaf in thin)
    assert all(0.15 <= leaf.stalk <= 0.35 and 0.55 <= leaf.stalk_base <= 0.95 for leaf in real)
    assert [leaf.angle for leaf in thin] == [leaf.angle for leaf in real]
    assert np.mean([leaf.petiole for leaf in real]) > np.mean([leaf.petiole for leaf in thin])


def test_rosettes_and_their_neighbours_get_real_petioles(monkeypatch):
    from leafseg.synth import scenes

    painted = []
    real_outlines = scenes.leaf_outlines
    monkeypatch.setattr(scenes, "leaf_outlines", lambda leaves, *rest: painted.append(list(leaves)) or
                        real_outlines(leaves, *rest))
    for i in range(4):
        r = _random(i, 200, seed=12, clutter=1.0, realism={"petioles": "real"})
        _check_label(r, 10)
    stalks = [leaf.stalk for leaves in painted for leaf in leaves]
    assert len(painted) >= 5 and min(stalks) >= 0.15 and max(stalks) <= 0.35  # neighbours' leaves too
    painted.clear()
    _random(0, 200, seed=12, clutter=1.0)
    assert {leaf.stalk for leaves in painted for leaf in leaves} == {0.16}


# ---------------------------------------------------------------------------------------------
# Seedling crops
# ---------------------------------------------------------------------------------------------

def test_downscale_ids_by_majority_hand_computed():
    ids = np.array([[1, 1, 2, 0],
                    [1, 0, 0, 0],
                    [1, 1, 0, 0],
                    [2, 2, 3, 3]], np.uint8)
    # Blocks: three 1s and a 0; one 2 and three 0s; two 1s over two 2s (a tie: the lower id);
    # two 0s over two 3s (a tie: background).
    np.testing.assert_array_equal(downscale_ids(ids, 2, 2), [[1, 0], [1, 0]])


def test_seedling_crops_are_small_images_of_a_few_labelled_leaves():
    sizes, counts = set(), []
    for i in range(10):
        r = _random(i, 200, seed=5, realism={"seedlings": 1.0})
        h, w = r.image.shape[:2]
        assert 48 <= min(h, w) <= 128 and (h, w) == (min(h, w), min(h, w)), (h, w)
        # Every leaf a label keeps has a few pixels at least: max(6, 10 * (h / 200)**2) = 6.
        _check_label(r, 6)
        assert r.num_leaves <= 8
        sizes.add(h)
        counts.append(r.num_leaves)
    assert len(sizes) >= 5 and max(counts) >= 5, (sizes, counts)
    # The plant fills the crop.
    assert np.mean([(_random(i, 200, seed=5, realism={"seedlings": 1.0}).instance_ids > 0).mean()
                    for i in range(4)]) > 0.08
    wide = generate_rosette(rosette_rng(5, 0), (120, 200), style="random", realism={"seedlings": 1.0})
    h, w = wide.image.shape[:2]
    assert 48 <= h <= 120 and abs(w / h - 200 / 120) < 0.05  # the aspect of the size asked


# ---------------------------------------------------------------------------------------------
# Agar and paper
# ---------------------------------------------------------------------------------------------

def test_agar_seedlings_have_unlabelled_pale_roots():
    with_roots = 0
    for i in range(8):
        image, ids, parts = seedling_photo(np.random.default_rng([21, i]), 200, 200, 10, on="agar")
        assert image.shape[:2] == ids.shape == parts.shape and ids.max() >= 1
        roots = parts == ROOT
        assert not ids[roots].any() and not ids[parts == HYPOCOTYL].any()  # drawn, never labelled
        if roots.sum() >= 20:
            with_roots += 1
            # Roots are pale: brighter than the leaves of their seedling.
            grey = image.mean(axis=2)
            assert np.median(grey[roots]) > np.median(grey[ids > 0]), i
    assert with_roots >= 5


def test_agar_images_through_generate_rosette_keep_the_label_invariants():
    shapes = set()
    for i in range(8):
        r = _random(i, 160, seed=6, realism={"agar": 1.0})
        _check_label(r, 6)
        assert r.num_leaves <= 6
        shapes.add(r.image.shape[:2])
    assert (160, 160) in shapes and any(min(s) < 160 for s in shapes)  # full size and small crops


# ---------------------------------------------------------------------------------------------
# Young leaves
# ---------------------------------------------------------------------------------------------

def _tiny_central_leaves(r, min_pixels):
    """Leaves of at most 6 x min_pixels whose centroid lies within a fifth of the plant's reach
    of its centre."""
    ids = r.instance_ids
    ys, xs = np.nonzero(ids)
    cy, cx = np.median(ys), np.median(xs)
    reach = np.sqrt(np.square(ys - cy) + np.square(xs - cx)).max()
    count = 0
    for k in range(1, r.num_leaves + 1):
        ky, kx = np.nonzero(ids == k)
        if len(ky) <= 6 * min_pixels and np.hypot(ky.mean() - cy, kx.mean() - cx) < 0.2 * reach:
            count += 1
    return count


def test_young_leaves_add_tiny_labelled_leaves_at_the_centre():
    plain = young = 0
    for i in range(10):
        a, b = _random(i, 200, seed=7), _random(i, 200, seed=7, realism={"young": 1.0})
        _check_label(b, 10)
        plain += _tiny_central_leaves(a, 10)
        young += _tiny_central_leaves(b, 10)
    assert young >= plain + 8, (plain, young)


def test_young_leaves_are_small_and_continue_the_spiral():
    leaves = [Leaf(x=100.0, y=100.0, angle=1.0, length=60.0, width=30.0)]
    young = realism.young_leaves(np.random.default_rng(0), leaves, (100.0, 100.0), 70.0, 25, room=10)
    assert 1 <= len(young) <= 4
    lengths = [leaf.length for leaf in young]
    assert lengths == sorted(lengths, reverse=True)  # the youngest, smallest, painted last
    # Area about 1.2 to 6 times 25 px: length sqrt(area / (0.45 * 0.75)), at most 0.2 x 70.
    assert all(np.sqrt(1.2 * 25 / 0.3375) - 1e-9 <= length <= 14.0 for length in lengths), lengths
    assert realism.young_leaves(np.random.default_rng(0), leaves, (100.0, 100.0), 70.0, 25, room=0) == []


# ---------------------------------------------------------------------------------------------
# Errors, files and the command line
# ---------------------------------------------------------------------------------------------

def test_realism_errors_name_the_option_and_the_value(tmp_path):
    with pytest.raises(ValueError, match="unknown realism option 'mos': one of moss, petioles"):
        check_realism({"mos": 0.5})
    with pytest.raises(ValueError, match=r"realism option moss is a share of images in \[0, 1\]; got 1.5"):
        generate_rosette(0, 64, style="random", realism={"moss": 1.5})
    with pytest.raises(ValueError, match="realism option young is a share .* got 'many'"):
        check_realism({"young": "many"})
    with pytest.raises(ValueError, match="petioles: one of thin, real, got 'wide'"):
        check_realism({"petioles": "wide"})
    with pytest.raises(ValueError, match=r"sum must be at most 1, got 0.7 \+ 0.5"):
        check_realism({"seedlings": 0.7, "agar": 0.5})
    with pytest.raises(ValueError, match="style families .dark. are drawn by rosette images only"):
        generate_rosette(0, 64, style="random", families={"dark": True}, realism={"agar": 0.2})
    with pytest.raises(ValueError, match="realism options are drawn by the random style only, not 'classic'"):
        generate_rosette(0, 64, realism={"moss": 0.5})
    with pytest.raises(ValueError, match="random style only"):
        write_dataset(tmp_path, 1, size=64, realism={"petioles": "real"}, progress=False)
    # Families combine with the options that draw rosettes.
    assert generate_rosette(0, 64, style="random", families={"dark": True}, realism={"moss": 1.0}).num_leaves >= 1


def test_write_dataset_writes_the_realism_images_of_mixed_sizes(tmp_path):
    options = {"seedlings": 0.5, "moss": 0.5, "petioles": "real"}
    write_dataset(tmp_path, 4, seed=3, size=160, style="random", realism=options, progress=False)
    shapes = set()
    for i in range(4):
        r = generate_rosette(rosette_rng(3, i), 160, style="random", realism=options)
        image = cv2.cvtColor(cv2.imread(str(tmp_path / f"plant{i:05d}_rgb.png")), cv2.COLOR_BGR2RGB)
        label = cv2.cvtColor(cv2.imread(str(tmp_path / f"plant{i:05d}_label.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, r.image)
        np.testing.assert_array_equal(label, r.label)
        shapes.add(image.shape)
    assert len(shapes) >= 2


def test_command_line_options(tmp_path, capsys):
    out = tmp_path / "out"
    assert synth_command.main(["--out", str(out), "--count", "3", "--size", "96", "--seed", "4", "--moss", "0.5",
                               "--petioles", "real", "--seedlings", "0.3", "--agar", "0.2", "--young-leaves", "0.5",
                               "--quiet"]) == 0
    options = {"moss": 0.5, "petioles": "real", "seedlings": 0.3, "agar": 0.2, "young": 0.5}
    for i in range(3):
        expected = generate_rosette(rosette_rng(4, i), 96, style="random", realism=options)
        image = cv2.cvtColor(cv2.imread(str(out / f"plant{i:05d}_rgb.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, expected.image)
    # All off is the plain random style.
    assert synth_command.main(["--out", str(tmp_path / "off"), "--count", "1", "--size", "96", "--seed", "4",
                               "--moss", "0", "--petioles", "thin", "--quiet"]) == 0
    image = cv2.cvtColor(cv2.imread(str(tmp_path / "off" / "plant00000_rgb.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image, generate_rosette(rosette_rng(4, 0), 96, style="random").image)
    capsys.readouterr()

    for argv, message in ((["--moss", "1.5"], "argument --moss: must be in [0, 1], got 1.5"),
                          (["--young-leaves", "lots"], "argument --young-leaves: invalid fraction value: 'lots'"),
                          (["--petioles", "wide"], "argument --petioles: invalid choice: 'wide'")):
        with pytest.raises(SystemExit) as exit_:
            synth_command.main(["--out", str(tmp_path / "bad"), "--count", "1"] + argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    for argv, message in ((["--seedlings", "0.7", "--agar", "0.5"], "got 0.7 + 0.5"),
                          (["--moss", "0.5", "--style", "classic"], "random style only, not 'classic'"),
                          (["--agar", "0.5", "--scene", "dish"], "--agar is for --scene rosette, not --scene dish"),
                          (["--young-leaves", "0.5", "--scene", "tray"], "--young-leaves is for --scene rosette")):
        assert synth_command.main(["--out", str(tmp_path / "bad"), "--count", "1", "--size", "64"] + argv) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "bad").exists()
