"""The ``Dataset`` base class: Matterport's API for registering classes and images.

Subclass it, register classes and images in a ``load_*`` method, override ``load_mask``
(and ``load_image`` if images are not files), then call ``prepare()``::

    class LeafDataset(Dataset):
        def load_leaves(self, root):
            self.add_class("leaf", 1, "leaf")
            for i, path in enumerate(sorted(Path(root).glob("*.png"))):
                self.add_image("leaf", image_id=path.stem, path=str(path))

        def load_mask(self, image_id):
            ...  # bool [H, W, N], int32 [N]

    train = LeafDataset()
    train.load_leaves("data/train")
    train.prepare()

Classes and images from several *sources* (data sets) can share one ``Dataset``. Each class
is known by ``(source, id in that source)`` and gets one internal id; class 0 is always the
background ``BG``. Internal image ids are ``0 .. num_images - 1`` in order of ``add_image``.

This module imports neither TensorFlow nor the augmentation libraries, so it is cheap to import.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_image_file"]

logger = logging.getLogger(__name__)


class Dataset:
    """Registry of classes and images, and the loaders the input pipeline calls.

    After ``prepare()``:
        image_ids: int array [num_images], the internal image ids 0 .. num_images - 1.
        num_images, num_classes: counts (num_classes includes the background).
        class_ids: int array [num_classes]; class_names: [num_classes] names.
        class_from_source_map / image_from_source_map: {"source.id": internal id}.
        sources: sorted source names; source_class_ids: {source: [internal class ids]}
            (every source includes the background, id 0).

    Registering a class or an image after ``prepare()`` undoes it: call ``prepare()`` again.
    """

    def __init__(self, class_map=None):
        # class_map is accepted for compatibility with Matterport, which also ignores it.
        self.image_info = []
        # Background is always the first class.
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self._prepared = None
        self._warned_default_mask = False

    # ----------------------------------------------------------------------- registering

    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source``; a second registration is ignored."""
        if "." in source:
            raise ValueError(f"source name {source!r} cannot contain a dot (class keys are 'source.id')")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})
        self._prepared = None

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; ``image_id`` is the source's own id, ``kwargs`` land in image_info."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)
        self._prepared = None

    def append_data(self, class_info, image_info):
        """Register the classes and images of another dataset's ``class_info`` / ``image_info``.

        The background entry and classes already known are skipped; call ``prepare()`` after.
        """
        for info in class_info:
            if info["source"] == "" and info["id"] == 0:
                continue
            self.add_class(info["source"], info["id"], info["name"])
        for info in image_info:
            extra = {k: v for k, v in info.items() if k not in ("source", "id", "path")}
            self.add_image(info["source"], info["id"], info.get("path"), **extra)

    def prepare(self, class_map=None):
        """Build the internal ids and lookup tables. Call it once all classes and images are added.

        class_map: accepted for compatibility with Matterport, which ignores it too; passing
        one logs a warning because classes are not merged.
        """
        if class_map is not None:
            logger.warning("Dataset.prepare(class_map=...) is ignored (as in Matterport): classes are not merged")

        def clean_name(name):
            # COCO names such as "person, people": keep the first.
            return ",".join(str(name).split(",")[:1])

        num_classes = len(self.class_info)
        num_images = len(self.image_info)
        class_ids = np.arange(num_classes)
        image_ids = np.arange(num_images)
        sources = sorted({info["source"] for info in self.class_info} - {""})
        self._prepared = {
            "num_classes": num_classes,
            "class_ids": class_ids,
            "class_names": [clean_name(c["name"]) for c in self.class_info],
            "num_images": num_images,
            "image_ids": image_ids,
            "class_from_source_map": {
                f"{info['source']}.{info['id']}": int(i) for info, i in zip(self.class_info, class_ids)
            },
            "image_from_source_map": {
                f"{info['source']}.{info['id']}": int(i) for info, i in zip(self.image_info, image_ids)
            },
            "sources": sources,
            "source_class_ids": {
                source: [i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]
                for source in sources
            },
        }
        # Sources that have images but no classes still need an entry (background only), so
        # that load_image_gt can compute active class ids for their images.
        for info in self.image_info:
            self._prepared["source_class_ids"].setdefault(info["source"], [0])

    def _get(self, name):
        if self._prepared is None:
            raise RuntimeError(
                f"{type(self).__name__}.{name} is not available: call prepare() after adding the "
                "classes and images (and again after adding more)"
            )
        return self._prepared[name]

    @property
    def image_ids(self):
        return self._get("image_ids")

    @property
    def num_images(self):
        return self._get("num_images")

    @property
    def num_classes(self):
        return self._get("num_classes")

    @property
    def class_ids(self):
        return self._get("class_ids")

    @property
    def class_names(self):
        return self._get("class_names")

    @property
    def class_from_source_map(self):
        return self._get("class_from_source_map")

    @property
    def image_from_source_map(self):
        return self._get("image_from_source_map")

    @property
    def sources(self):
        return self._get("sources")

    @property
    def source_class_ids(self):
        return self._get("source_class_ids")

    # ------------------------------------------------------------------------- mapping

    def map_source_class_id(self, source_class_id):
        """Internal class id of ``"source.id"``, e.g. ``map_source_class_id("coco.12")``."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            known = ", ".join(sorted(self.class_from_source_map))
            raise KeyError(f"unknown source class id {source_class_id!r}; known: {known}") from None

    def get_source_class_id(self, class_id, source):
        """The source's own id of internal class ``class_id``, which must belong to ``source``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise KeyError(
                f"internal class id {class_id} ({info['name']!r}) belongs to source {info['source']!r}, not {source!r}"
            )
        return info["id"]

    # ------------------------------------------------------------------------- loading

    def image_reference(self, image_id):
        """Where the image comes from (its path, or ""), for error messages and links."""
        return str(self.image_info[image_id].get("path") or "")

    def source_image_link(self, image_id):
        """The image's path or URL."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """The image as RGB uint8 [H, W, 3] (see :func:`load_image_file` for the conversions)."""
        return load_image_file(self.image_info[image_id]["path"])

    def load_mask(self, image_id):
        """Instance masks bool [H, W, N] and their internal class ids int32 [N].

        Override it. The base class returns no instances (an empty [0, 0, 0] array, as
        Matterport does) and logs a warning once.
        """
        if not self._warned_default_mask:
            logger.warning(
                "%s uses the default Dataset.load_mask(), which returns no instances; override it",
                type(self).__name__,
            )
            self._warned_default_mask = True
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], dtype=np.int32)


def load_image_file(path) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3].

    Grayscale is replicated to three channels, an alpha channel is dropped, 16-bit images are
    scaled to 8 bits over their full range (``value / 257``, so 65535 -> 255), float images are
    taken as [0, 1]. Raises FileNotFoundError or OSError naming the path when it cannot be read.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        # Formats OpenCV does not read (e.g. some GIF/TIFF variants) may still be readable.
        import skimage.io

        try:
            with warnings.catch_warnings():
                # imageio tries every plugin on an unknown file; some warn that they are deprecated.
                warnings.simplefilter("ignore", DeprecationWarning)
                image = skimage.io.imread(str(path))
        except Exception as err:  # imageio's plugins raise many types; keep the cause, name the file
            raise OSError(f"cannot read image {path}: {err}") from err
        channel_order = "rgb"
    else:
        channel_order = "bgr"
    return _to_rgb_uint8(np.asarray(image), channel_order, path)


def _to_rgb_uint8(image, channel_order, path):
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]  # drop alpha
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., np.newaxis], 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 3:
        if channel_order == "bgr":
            image = image[..., ::-1]
    else:
        raise OSError(f"cannot use image {path}: expected [H, W] or [H, W, 1..4], got shape {image.shape}")

    if image.dtype == np.uint8:
        pass
    elif image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif np.issubdtype(image.dtype, np.floating):
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise OSError(f"cannot use image {path}: unsupported pixel type {image.dtype} (uint8, uint16, float)")
    return np.ascontiguousarray(image)
