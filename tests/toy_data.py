"""A tiny Mask R-CNN config and a toy dataset of bright shapes, shared by the model tests.

``ToyConfig`` is the smallest model that still has every stage of the full one: a quarter-width
ResNet-18 on 64 x 64 images, 32-channel FPN and RPN, narrow heads, a few dozen proposals. Its
training step takes 30-60 s to trace on two CPU cores, then about 0.15 s per batch of two.

``ShapesDataset`` draws, for each image, one bright shape (rectangle or ellipse) in three of the
four 32 x 32 quadrants of a dark 64 x 64 image, so instances never overlap or touch. Everything
comes from ``np.random.default_rng([seed, image_id])``: the same ids give the same images.
"""
import numpy as np

from mrcnn.config import Config
from mrcnn.dataset import Dataset

IMAGE_SIDE = 64
QUADRANT = IMAGE_SIDE // 2
BACKGROUND = 20
SHAPES_PER_IMAGE = 3


class ToyConfig(Config):
    """A tiny model: every stage of Mask R-CNN at a size a CPU test can train."""

    NAME = "toy"
    NUM_CLASSES = 1 + 1  # background + shape
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet18"
    BACKBONE_WIDTH = 0.25
    IMAGE_MIN_DIM = IMAGE_SIDE
    IMAGE_MAX_DIM = IMAGE_SIDE
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MAX_INSTANCES = 8
    DETECTION_MIN_CONFIDENCE = 0.5
    STEPS_PER_EPOCH = 5
    VALIDATION_STEPS = 1
    # From random initialisation, frozen BatchNorms (moving mean 0, variance 1) pass the
    # unnormalised pixel scale (+-128) through every stage; trained ones normalise it.
    TRAIN_BN = True
    # Positives from the first step: the heads learn while the RPN still proposes noise.
    ADD_GT_AS_PROPOSALS = True


class ShapesDataset(Dataset):
    """Dark images with three bright, non-overlapping shapes each, one foreground class."""

    def load_shapes(self, count, seed=0):
        """Register ``count`` images drawn from ``seed``."""
        self.add_class("shapes", 1, "shape")
        for i in range(count):
            self.add_image("shapes", image_id=i, path=None, seed=seed)

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        return f"shapes seed {info['seed']} image {info['id']}"

    def _instances(self, image_id):
        """[(quadrant_y, quadrant_x, kind, y1, x1, h, w, colour)] of the image's shapes."""
        info = self.image_info[image_id]
        rng = np.random.default_rng([info["seed"], info["id"]])
        quadrants = rng.permutation(4)[:SHAPES_PER_IMAGE]
        shapes = []
        for q in quadrants:
            h, w = rng.integers(12, 26, size=2)
            y1 = (q // 2) * QUADRANT + rng.integers(2, QUADRANT - h - 1)
            x1 = (q % 2) * QUADRANT + rng.integers(2, QUADRANT - w - 1)
            kind = ("rectangle", "ellipse")[rng.integers(2)]
            colour = rng.integers(160, 256, size=3)
            shapes.append((kind, int(y1), int(x1), int(h), int(w), colour))
        return shapes

    def load_mask(self, image_id):
        shapes = self._instances(image_id)
        masks = np.zeros((IMAGE_SIDE, IMAGE_SIDE, len(shapes)), dtype=bool)
        yy, xx = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE]
        for i, (kind, y1, x1, h, w, _) in enumerate(shapes):
            if kind == "rectangle":
                masks[y1:y1 + h, x1:x1 + w, i] = True
            else:
                cy, cx = y1 + (h - 1) / 2, x1 + (w - 1) / 2
                masks[..., i] = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1
        return masks, np.ones(len(shapes), dtype=np.int32)

    def load_image(self, image_id):
        image = np.full((IMAGE_SIDE, IMAGE_SIDE, 3), BACKGROUND, dtype=np.uint8)
        masks, _ = self.load_mask(image_id)
        for i, (*_, colour) in enumerate(self._instances(image_id)):
            image[masks[..., i]] = colour
        return image


def shapes_dataset(count=4, seed=0):
    """A prepared :class:`ShapesDataset` of ``count`` images."""
    dataset = ShapesDataset()
    dataset.load_shapes(count, seed)
    dataset.prepare()
    return dataset
