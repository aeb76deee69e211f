"""Augmentation adapter: albumentations, plain callables, imgaug detection, default presets."""
import sys
import threading

import albumentations as A
import numpy as np
import pytest

from mrcnn.augment import AlbumentationsAugmenter, _label_safe, default_augmentation, make_augmenter


def image_and_masks():
    """A 32x48 image whose red channel is 255 exactly where one of the two masks is set."""
    masks = np.zeros((32, 48, 2), dtype=bool)
    masks[2:10, 3:20, 0] = True
    masks[15:30, 25:45, 1] = True
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    image[..., 0] = 255 * masks.any(axis=-1)
    image[..., 1] = np.arange(48, dtype=np.uint8)[np.newaxis, :]
    return image, masks


def test_albumentations_flip_moves_image_and_masks_together():
    image, masks = image_and_masks()
    augment = make_augmenter(A.HorizontalFlip(p=1.0))
    out_image, out_masks = augment(image, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_masks, masks[:, ::-1])
    assert out_masks.dtype == bool


def test_albumentations_compose_is_reproducible_from_the_rng():
    image, masks = image_and_masks()
    augment = make_augmenter(default_augmentation("strong"))
    first = augment(image, masks, np.random.default_rng(7))
    second = augment(image, masks, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    outputs = {augment(image, masks, np.random.default_rng(seed))[0].tobytes() for seed in range(6)}
    assert len(outputs) > 1


def test_child_transforms_draw_independent_random_numbers():
    # Compose(seed=s) gives every child the same seed, which makes two p=0.5 flips fire together;
    # the adapter's shared generators must produce all four combinations.
    image, masks = image_and_masks()
    augment = make_augmenter(A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]))
    seen = set()
    for seed in range(40):
        out, _ = augment(image, masks, np.random.default_rng(seed))
        for h in (False, True):
            for v in (False, True):
                expected = image[::-1 if v else 1, ::-1 if h else 1]
                if np.array_equal(out, expected):
                    seen.add((h, v))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_concurrent_threads_give_the_sequential_results():
    image, masks = image_and_masks()
    augment = make_augmenter(default_augmentation())
    expected = [augment(image, masks, np.random.default_rng(seed))[1] for seed in range(8)]
    results = [None] * 8

    def work(seed):
        results[seed] = augment(image, masks, np.random.default_rng(seed))[1]

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_no_masks_is_fine():
    image, masks = image_and_masks()
    out_image, out_masks = make_augmenter(A.VerticalFlip(p=1.0))(image, masks[:, :, :0], np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image[::-1])
    assert out_masks.shape == (32, 48, 0)


@pytest.mark.parametrize("strength", ["default", "strong", "domain"])
def test_default_augmentation_keeps_size_and_alignment(strength):
    from skimage.filters import threshold_otsu

    # White leaves on black, 96 px: the photometric changes of "domain" (colour, gamma, greyscale,
    # blur, noise, JPEG) keep the leaves brighter than the background, so Otsu's threshold finds them.
    masks = np.zeros((96, 96, 2), bool)
    masks[4:20, 6:40, 0] = True
    masks[30:60, 50:90, 1] = True
    image = np.repeat(255 * masks.any(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    augment = make_augmenter(default_augmentation(strength))
    for seed in range(12):
        out_image, out_masks = augment(image, masks, np.random.default_rng(seed))
        assert out_image.shape == (96, 96, 3) and out_masks.shape == (96, 96, 2)
        gray = out_image.mean(axis=-1)
        bright = gray > threshold_otsu(gray)
        union = out_masks.any(axis=-1)
        iou = (bright & union).sum() / (bright | union).sum()
        assert iou > 0.8, (seed, iou)


def test_domain_augmentation_changes_what_cameras_change():
    """The domain preset holds colour, gamma, blur, noise and JPEG transforms, and varies leaf size
    (multi-scale training at a fixed input size) far more than the default preset."""
    from leafseg.synth.rosettes import generate_rosette

    def names(transform):
        children = getattr(transform, "transforms", [])
        return {type(transform).__name__}.union(*(names(child) for child in children))

    present = names(default_augmentation("domain"))
    for wanted in ("HueSaturationValue", "RandomGamma", "PlanckianJitter", "GaussianBlur", "MotionBlur",
                   "GaussNoise", "ImageCompression", "Affine"):
        assert wanted in present, (wanted, present)
    rosette = generate_rosette(3, size=128)
    spread = {}
    for strength in ("default", "domain"):
        augment = make_augmenter(default_augmentation(strength))
        areas = [augment(rosette.image, rosette.masks, np.random.default_rng(seed))[1].sum() for seed in range(40)]
        spread[strength] = np.std(areas)
    assert spread["domain"] > 3 * spread["default"], spread


def test_default_augmentation_non_square_keeps_the_shape():
    image, masks = image_and_masks()
    augment = make_augmenter(default_augmentation(square=False))
    for seed in range(6):
        out_image, out_masks = augment(image, masks, np.random.default_rng(seed))
        assert out_image.shape == image.shape and out_masks.shape == masks.shape
    with pytest.raises(ValueError, match="strength"):
        default_augmentation("extreme")


def test_plain_callable_is_used_as_is():
    def shift_right(image, masks, rng):
        return np.roll(image, 1, axis=1), np.roll(masks, 1, axis=1)

    assert make_augmenter(shift_right) is shift_right
    assert make_augmenter(None) is None
    wrapped = make_augmenter(A.HorizontalFlip(p=1.0))
    assert isinstance(wrapped, AlbumentationsAugmenter)
    assert make_augmenter(wrapped) is wrapped


def test_unusable_augmentation_is_a_type_error():
    with pytest.raises(TypeError, match="albumentations transform, an imgaug augmenter or a callable"):
        make_augmenter(42)


def test_imgaug_augmenter_without_imgaug_is_a_clear_error_only_when_used():
    # A stand-in whose class lives in an "imgaug" module, as real augmenters' classes do.
    FakeFliplr = type("Fliplr", (), {"__module__": "imgaug.augmenters.flip"})
    make_augmenter(A.HorizontalFlip(p=1.0))
    assert "imgaug" not in sys.modules  # nothing imports imgaug unless an imgaug augmenter is passed
    with pytest.raises(ImportError, match="numpy 2.*albumentations"):
        make_augmenter(FakeFliplr())


def leaf_masks(overlap):
    """Six ellipses on a 64x64 image; unless `overlap`, later ones hide what they cover of earlier."""
    yy, xx = np.mgrid[:64, :64]
    masks = np.zeros((64, 64, 6), dtype=bool)
    for i in range(6):
        cy, cx = 10 + 8 * i, 12 + 7 * i
        masks[:, :, i] = ((yy - cy) / 9.0) ** 2 + ((xx - cx) / 5.0) ** 2 <= 1
    if not overlap:
        for i in range(5):
            masks[:, :, i] &= ~masks[:, :, i + 1:].any(axis=-1)
    image = (np.random.default_rng(1).integers(0, 256, (64, 64, 3))).astype(np.uint8)
    return image, masks


@pytest.mark.parametrize("overlap", [False, True])
def test_label_image_path_gives_the_per_channel_result(overlap):
    image, masks = leaf_masks(overlap)
    assert overlap == bool((masks.sum(axis=-1) > 1).any())
    fast = make_augmenter(default_augmentation("strong"))
    slow = make_augmenter(default_augmentation("strong"))
    assert fast.use_labels
    slow.use_labels = False
    for seed in range(6):
        got = fast(image, masks, np.random.default_rng(seed))
        want = slow(image, masks, np.random.default_rng(seed))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_label_image_path_only_for_nearest_geometric_transforms():
    import cv2

    assert _label_safe(A.Compose([A.SquareSymmetry(), A.Affine(rotate=10), A.HueSaturationValue()]))
    assert not _label_safe(A.Affine(rotate=10, mask_interpolation=cv2.INTER_LINEAR))
    assert not _label_safe(A.Affine(rotate=10, fill_mask=1))
    assert not _label_safe(A.Compose([A.HorizontalFlip(), A.CoarseDropout()]))
    assert not _label_safe(A.OneOf([A.VerticalFlip(), A.CropNonEmptyMaskIfExists(32, 32)]))
