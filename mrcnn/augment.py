"""Augmentation adapter: one calling convention for albumentations, imgaug and plain callables.

The input pipeline calls every augmentation as ``augmenter(image, masks, rng) -> (image, masks)``:

    image: uint8 [H, W, C].
    masks: bool [H, W, N] instance masks, transformed with the image so they stay aligned.
    rng: the sample's ``np.random.Generator``; all randomness comes from it, so a sample is
        augmented the same way on every run with the same seed, whatever the thread order.

:func:`make_augmenter` turns what users pass as ``augmentation=`` into that form:

* an albumentations transform or ``Compose`` (recommended): image and masks go through it
  together (the masks as one multi-channel ``mask=`` [H, W, N]); it is reseeded from ``rng``
  for every sample.
* an imgaug augmenter, for Matterport users' existing code, only where imgaug can be
  imported (imgaug 0.4.0 cannot under numpy 2). Detected by its class's module name, so
  imgaug is never imported unless one is passed.
* any callable ``(image, masks, rng) -> (image, masks)``.

Boxes are not augmented: the pipeline recomputes them from the augmented masks and drops
masks that became empty. Augmentations must keep the image size.

This module imports neither TensorFlow nor albumentations at import time.
"""
from __future__ import annotations

import copy
import os
import random
import threading
from typing import Callable

import numpy as np

# albumentations asks PyPI for a newer version when imported; training must not touch the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["STRENGTHS", "make_augmenter", "default_augmentation", "AlbumentationsAugmenter", "ImgaugAugmenter"]

AugmentFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]


def _module_of(obj) -> str:
    return type(obj).__module__ or ""


def make_augmenter(augmentation) -> AugmentFn | None:
    """Wrap ``augmentation`` as ``(image, masks, rng) -> (image, masks)``; None stays None.

    Raises TypeError for anything that is neither an albumentations transform, an imgaug
    augmenter nor a callable, and ImportError (with the fix) for an imgaug augmenter where
    imgaug cannot be imported.
    """
    if augmentation is None:
        return None
    if isinstance(augmentation, (AlbumentationsAugmenter, ImgaugAugmenter)):
        return augmentation
    module = _module_of(augmentation)
    if module.startswith("albumentations"):
        return AlbumentationsAugmenter(augmentation)
    if module.startswith("imgaug"):
        return ImgaugAugmenter(augmentation)
    if callable(augmentation):
        return augmentation
    raise TypeError(
        f"augmentation must be an albumentations transform, an imgaug augmenter or a callable "
        f"(image, masks, rng) -> (image, masks); got {type(augmentation).__name__} from {module!r}"
    )


class AlbumentationsAugmenter:
    """Applies an albumentations transform to an image and its instance masks together.

    Albumentations transforms keep their random state and call arguments on the instance,
    so each thread works on its own deep copy; each sample reseeds that copy from its rng.
    The copy gets one numpy and one Python generator shared by all its child transforms
    (``set_random_state``): ``Compose(seed=...)`` / ``set_random_seed`` would give every
    child the *same* seed, so e.g. a horizontal and a vertical flip with p=0.5 would always
    fire together.

    Masks travel as one label image (0 = background, i + 1 = instance i) when the instances do
    not overlap and every transform moves masks geometrically with nearest-neighbour sampling
    and zero fill (see :func:`_label_safe`): one uint8 plane instead of N channels, which
    albumentations would otherwise warp four at a time and stack again. Otherwise they travel
    as one multi-channel mask [H, W, N]. Both give the same masks.
    """

    def __init__(self, transform):
        self.transform = transform
        self.use_labels = _label_safe(transform)
        self._local = threading.local()

    def _thread_transform(self):
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = copy.deepcopy(self.transform)
            self._local.transform = transform
        return transform

    def __call__(self, image, masks, rng):
        transform = self._thread_transform()
        seed = int(rng.integers(2**63))
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        masks = np.asarray(masks)
        if masks.shape[-1] == 0:
            out = transform(image=image)
            image = out["image"]
            return image, np.zeros(image.shape[:2] + (0,), dtype=bool)
        count = masks.shape[-1]
        labels = _label_image(masks) if self.use_labels else None
        if labels is not None:
            out = transform(image=image, mask=labels)
            out_labels = np.asarray(out["mask"]).reshape(out["image"].shape[:2])
            return out["image"], out_labels[:, :, np.newaxis] == np.arange(1, count + 1, dtype=np.uint8)
        # One multi-channel uint8 mask [H, W, N] (a free view of the bool masks): cheaper than
        # masks=[N, H, W], which costs a copy and a call per instance.
        out = transform(image=image, mask=np.ascontiguousarray(masks, dtype=bool).view(np.uint8))
        out_masks = np.asarray(out["mask"]).reshape(out["image"].shape[:2] + (count,))
        return out["image"], out_masks > 0

    def __repr__(self):
        return f"AlbumentationsAugmenter({self.transform!r})"


# Transforms of the geometric and crop modules that look at mask values, not just move them.
_LABEL_UNSAFE = {"CropNonEmptyMaskIfExists", "RandomSizedBBoxSafeCrop", "BBoxSafeRandomCrop",
                 "RandomCropNearBBox", "AtLeastOneBBoxRandomCrop"}


def _label_safe(transform) -> bool:
    """Whether ``transform`` moves a label image exactly as it would move each instance's mask.

    True for image-only transforms and for geometric / crop transforms that sample masks with
    nearest-neighbour interpolation and fill them with 0; everything else (dropouts, mixing,
    anything unknown) is treated as unsafe.
    """
    import albumentations as A
    import cv2

    if isinstance(transform, A.BaseCompose):
        return all(_label_safe(child) for child in transform.transforms)
    if isinstance(transform, A.ImageOnlyTransform):
        return True
    module = _module_of(transform)
    if not module.startswith(("albumentations.augmentations.geometric", "albumentations.augmentations.crops")):
        return False
    if type(transform).__name__ in _LABEL_UNSAFE:
        return False
    if getattr(transform, "mask_interpolation", cv2.INTER_NEAREST) != cv2.INTER_NEAREST:
        return False
    fill_mask = getattr(transform, "fill_mask", 0)
    return fill_mask is None or not np.any(np.asarray(fill_mask) != 0)


def _label_image(masks):
    """bool [H, W, N] -> uint8 [H, W] with instance i as i + 1, or None if instances overlap."""
    count = masks.shape[-1]
    if count > 255:
        return None
    labels = np.zeros(masks.shape[:2], dtype=np.uint8)
    for i in range(count):
        labels[masks[:, :, i]] = i + 1
    # Every masked pixel kept its own label only if no pixel belongs to two instances.
    if np.count_nonzero(labels) != np.count_nonzero(masks):
        return None
    return labels


class ImgaugAugmenter:
    """Applies an imgaug augmenter to an image and its masks (as segmentation maps).

    Segmentation maps receive only the geometric part of the augmentation, as Matterport's
    ``MASK_AUGMENTERS`` hook intended. Building one imports imgaug and fails with an
    ImportError that explains the fix if it cannot be imported.
    """

    def __init__(self, augmenter):
        try:
            from imgaug.augmentables.segmaps import SegmentationMapsOnImage
        except Exception as err:  # imgaug 0.4.0 under numpy 2 fails with AttributeError (np.sctypes)
            raise ImportError(
                f"an imgaug augmenter ({type(augmenter).__name__}) was given as augmentation, but imgaug "
                f"cannot be imported here ({type(err).__name__}: {err}). imgaug 0.4.0 does not work with "
                "numpy 2; use an albumentations transform (e.g. mrcnn.augment.default_augmentation()) or a "
                "callable (image, masks, rng) -> (image, masks) instead"
            ) from err
        self.augmenter = augmenter
        self._segmaps = SegmentationMapsOnImage
        self._lock = threading.Lock()

    def __call__(self, image, masks, rng):
        seed = int(rng.integers(2**31))
        # deepcopy/seed_ mutate augmenter state, so prepare the per-sample copy under a lock.
        with self._lock:
            det = self.augmenter.deepcopy()
            det.seed_(seed)
            det = det.to_deterministic()
        masks = np.asarray(masks)
        if masks.shape[-1] == 0:
            return det(image=image), masks
        segmaps = self._segmaps(masks.astype(np.int32), shape=image.shape)
        image, segmaps = det(image=image, segmentation_maps=segmaps)
        return image, segmaps.get_arr() > 0


STRENGTHS = ("default", "strong", "domain")


def default_augmentation(strength: str = "default", square: bool = True):
    """An albumentations ``Compose`` for plants photographed from above.

    Top-view plants have no canonical orientation, so all flips and 90° rotations are used,
    plus small affine changes (scale, rotation, shift) and lighting/colour jitter. Geometric
    transforms move the masks with the image (nearest-neighbour for masks), and nothing changes
    the image size.

    strength: "default" (mild: +-10 % scale, +-15° rotation, light colour jitter), "strong"
        (+-25 % scale, +-45° rotation, stronger colour jitter, occasional blur and noise) or
        "domain", for a model meant to work on images unlike its training data (domain
        generalisation): any rotation, scale 0.5-1.6x (objects of every size at a fixed input
        size: multi-scale training without changing the tensor shapes), and what cameras and
        light change between datasets: colour, gamma, white balance (Planckian jitter),
        occasional greyscale, blur (Gaussian, defocus, motion), sensor noise, downscaling and
        JPEG compression.
    square: True for square inputs (Matterport's "square" and "crop" modes): the 8 symmetries of
        the square. For non-square inputs pass False: 90° rotations would swap height and width,
        so only horizontal and vertical flips are used.
    """
    import albumentations as A
    import cv2

    if strength == "default":
        scale, rotate, shift = (0.9, 1.1), (-15, 15), (-0.05, 0.05)
        affine_p, brightness, hue, saturation = 0.5, 0.2, 5, 10
    elif strength == "strong":
        scale, rotate, shift = (0.75, 1.25), (-45, 45), (-0.1, 0.1)
        affine_p, brightness, hue, saturation = 0.7, 0.3, 10, 20
    elif strength == "domain":
        scale, rotate, shift = (0.5, 1.6), (-180, 180), (-0.15, 0.15)
        affine_p, brightness, hue, saturation = 0.8, 0.35, 12, 35
    else:
        raise ValueError(f"default_augmentation: strength must be one of {', '.join(STRENGTHS)}; got {strength!r}")

    if square:
        symmetries = [A.SquareSymmetry(p=1.0)]
    else:
        symmetries = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    transforms = symmetries + [
        A.Affine(
            scale=scale,
            rotate=rotate,
            translate_percent={"x": shift, "y": shift},
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=affine_p,
        ),
        A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=brightness, p=0.5),
        A.HueSaturationValue(hue_shift_limit=hue, sat_shift_limit=saturation, val_shift_limit=0, p=0.5),
    ]
    if strength == "strong":
        transforms += [
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.1),
        ]
    elif strength == "domain":
        transforms += [
            A.RandomGamma(gamma_limit=(60, 160), p=0.4),
            A.PlanckianJitter(p=0.3),
            A.ToGray(p=0.03),
            A.OneOf([
                A.GaussianBlur(blur_limit=(3, 7)),
                A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3)),
                A.MotionBlur(blur_limit=(3, 7)),
            ], p=0.3),
            A.Downscale(scale_range=(0.4, 0.9), p=0.15),
            A.OneOf([
                A.GaussNoise(std_range=(0.01, 0.06)),
                A.ISONoise(color_shift=(0.01, 0.04), intensity=(0.1, 0.4)),
            ], p=0.3),
            A.ImageCompression(quality_range=(30, 95), p=0.3),
        ]
    return A.Compose(transforms)
