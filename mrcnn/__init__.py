"""mrcnn: Mask R-CNN on TensorFlow 2 / Keras 3 with Matterport's public API.

Importing the package is cheap (no TensorFlow); import the submodules you need,
as Matterport users do: ``from mrcnn.config import Config``, ``from mrcnn import utils``.
"""
__version__ = "0.1.0"
