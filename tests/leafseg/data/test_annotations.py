"""leafseg.data.annotations: COCO and LabelMe instance annotations, read by prepare and LeafDataset."""
import base64
import hashlib
import io
import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from leafseg.data.annotations import mask_to_polygons, read_coco, read_labelme, region_masks
from leafseg.data.dataset import LeafDataset
from leafseg.inference.predict import predict_images
from leafseg.cli.prepare import main
from leafseg.data.prepare import assign_subset, prepare_dataset

H, W = 12, 16
RECT = [1, 1, 7, 1, 7, 5, 1, 5]  # x 1..7, y 1..5: pixels x 1..6, y 1..4, 6 x 4 = 24


def _image(path, height=H, width=W):
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8))
    return path


def _coco(path, images, annotations, categories=({"id": 1, "name": "leaf"},)):
    document = {"images": images, "annotations": annotations, "categories": list(categories)}
    path.write_text(json.dumps(document))
    return path


def _img(image_id, name, height=H, width=W):
    return {"id": image_id, "file_name": name, "height": height, "width": width}


def _ann(ann_id, image_id, segmentation, category=1, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category, "segmentation": segmentation,
            "iscrowd": 0, **extra}


def _rect_mask(x0, y0, x1, y1):
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _read(tmp_path, annotations, images=None, **kwargs):
    _image(tmp_path / "images" / "a.png")
    path = _coco(tmp_path / "ann.json", images or [_img(1, "a.png")], annotations, **kwargs)
    return read_coco(path, tmp_path / "images")


def _reasons(problems):
    return [p.reason for p in problems]


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------

def test_a_rectangle_polygon_gives_its_pixels_as_pycocotools_does(tmp_path):
    images, problems = _read(tmp_path, [_ann(1, 1, [RECT])])
    assert problems == [] and [i.id for i in images] == ["a"]
    masks, crowd = region_masks(images[0])
    assert masks.shape == (H, W, 1) and not crowd.any()
    assert masks.sum() == 24  # hand count: 6 x 4
    np.testing.assert_array_equal(masks[..., 0], _rect_mask(1, 1, 7, 5))
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([RECT], H, W))) > 0
    np.testing.assert_array_equal(masks[..., 0], expected)


def test_several_polygons_of_one_annotation_are_their_union(tmp_path):
    second = [10, 6, 14, 6, 14, 10, 10, 10]  # 4 x 4 = 16
    images, _ = _read(tmp_path, [_ann(1, 1, [RECT, second])])
    masks, _ = region_masks(images[0])
    assert masks.shape[-1] == 1 and masks.sum() == 24 + 16
    np.testing.assert_array_equal(masks[..., 0], _rect_mask(1, 1, 7, 5) | _rect_mask(10, 6, 14, 10))


def test_uncompressed_and_compressed_rle_give_back_the_mask(tmp_path):
    leaf = np.zeros((H, W), bool)
    leaf[2:9, 3:5] = True
    leaf[5, 3:15] = True
    rle = mask_utils.encode(np.asfortranarray(leaf.astype(np.uint8)))
    compressed = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    flat = leaf.flatten(order="F")  # COCO runs go down the columns, starting with a background run
    changes = np.flatnonzero(np.diff(flat.astype(int))) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    uncompressed = {"size": [H, W], "counts": counts}
    images, problems = _read(tmp_path, [_ann(1, 1, uncompressed), _ann(2, 1, compressed)])
    assert problems == []
    masks, _ = region_masks(images[0])
    np.testing.assert_array_equal(masks[..., 0], leaf)
    np.testing.assert_array_equal(masks[..., 1], leaf)


def test_crowd_regions_are_crowd_boxes_in_the_dataset_and_not_prepared(tmp_path):
    _image(tmp_path / "images" / "b.png")
    annotations = [_ann(1, 1, [RECT]), _ann(2, 1, [[8, 6, 15, 6, 15, 11, 8, 11]], iscrowd=1), _ann(3, 2, [RECT])]
    _image(tmp_path / "images" / "a.png")
    path = _coco(tmp_path / "ann.json", [_img(1, "a.png"), _img(2, "b.png")], annotations)
    dataset = LeafDataset()
    assert dataset.load_coco(path, tmp_path / "images") == 2
    dataset.prepare()
    by_id = {info["id"]: k for k, info in enumerate(dataset.image_info)}
    masks, class_ids = dataset.load_mask(by_id["a"])
    assert class_ids.tolist() == [1, -1] and masks.shape == (H, W, 2)
    result = prepare_dataset(tmp_path / "images", tmp_path / "out", coco=path, progress=False)
    assert result.prepared == ["b"]
    [problem] = result.problems
    assert problem.reason == "crowd region" and "image id 1 (a.png)" in problem.detail
    assert "annotation id 2" in problem.detail and problem.path == path


def test_categories_are_chosen_by_name_and_unknown_names_listed(tmp_path):
    categories = [{"id": 1, "name": "leaf"}, {"id": 2, "name": "stem"}]
    images, _ = _read(tmp_path, [_ann(1, 1, [RECT]), _ann(2, 1, [[8, 6, 15, 6, 15, 11]], category=2)],
                      categories=categories)
    assert len(images[0].regions) == 2  # default: every category is a leaf
    assert [r.category for r in images[0].regions] == ["leaf", "stem"]  # each region keeps its category's name
    leaves, _ = read_coco(tmp_path / "ann.json", tmp_path / "images", categories=["leaf"])
    assert [r.annotation for r in leaves[0].regions] == ["annotation id 1"]
    with pytest.raises(ValueError, match=r"ann\.json: no category named 'leaves'; its categories are 'leaf', 'stem'"):
        read_coco(tmp_path / "ann.json", tmp_path / "images", categories=["leaves"])


# ---------------------------------------------------------------------------------------------
# What the tools write
# ---------------------------------------------------------------------------------------------

def test_cvat_coco_relative_subfolders_and_attributes(tmp_path):
    _image(tmp_path / "images" / "tray1" / "p1.png")
    image = {**_img(1, "tray1/p1.png"), "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
    annotation = _ann(1, 1, [RECT], area=24.0, bbox=[1, 1, 6, 4], attributes={"occluded": False})
    path = _coco(tmp_path / "instances_default.json", [image], [annotation],
                 categories=[{"id": 1, "name": "leaf", "supercategory": ""}])
    images, problems = read_coco(path, tmp_path / "images")
    assert problems == [] and images[0].image == tmp_path / "images" / "tray1" / "p1.png"
    assert images[0].id == "p1"


def test_cvat_subfolders_holding_the_same_file_name(tmp_path):
    # A CVAT task of two cameras' folders, each numbering from IMG_0001: the export's
    # images/default/tray_a/IMG_0001.jpg and images/default/tray_b/IMG_0001.jpg.
    for tray in ("tray_a", "tray_b"):
        _image(tmp_path / "export" / "images" / "default" / tray / "IMG_0001.png")
    (tmp_path / "export" / "annotations").mkdir()
    path = _coco(tmp_path / "export" / "annotations" / "instances_default.json",
                 [_img(1, "tray_a/IMG_0001.png"), _img(2, "tray_b/IMG_0001.png")],
                 [_ann(1, 1, [RECT]), _ann(2, 2, [RECT])])
    images, problems = read_coco(path, tmp_path / "export" / "images")
    assert problems == []
    assert [image.image.parent.name for image in images] == ["tray_a", "tray_b"]
    result = prepare_dataset(None, tmp_path / "out", coco=path, progress=False)
    assert sorted(result.prepared) == ["IMG_0001_1", "IMG_0001_2"] and result.problems == []


def test_cvat_masks_come_marked_iscrowd_and_are_leaves(tmp_path, caplog):
    # CVAT's COCO writer (datumaro) writes every mask it exports -- brush and SAM masks, ellipses --
    # as uncompressed column-major RLE with iscrowd 1 (cvat-ai/cvat#7030), with CVAT's attributes.
    _image(tmp_path / "images" / "default" / "p1.png")
    leaf = _rect_mask(8, 6, 15, 11)
    flat = leaf.ravel(order="F")  # column-major, runs from a run of 0s, as datumaro's mask_to_rle
    counts = [0] * bool(flat[0]) + [len(run) for run in np.split(flat, np.flatnonzero(np.diff(flat)) + 1)]
    annotations = [_ann(1, 1, [RECT], attributes={"occluded": False}),
                   _ann(2, 1, {"counts": counts, "size": [H, W]}, iscrowd=1, area=float(leaf.sum()),
                        bbox=[8.0, 6.0, 7.0, 5.0], attributes={"occluded": False})]
    path = _coco(tmp_path / "instances_default.json", [_img(1, "p1.png")], annotations)
    with caplog.at_level("INFO"):
        images, problems = read_coco(path, tmp_path / "images")
    assert problems == [] and not images[0].has_crowd
    masks, crowd = region_masks(images[0])
    assert crowd.tolist() == [False, False] and (masks[..., 1] == leaf).all()
    assert "1 RLE annotation(s) marked iscrowd are CVAT masks" in caplog.text
    result = prepare_dataset(None, tmp_path / "out", coco=path, progress=False)
    assert result.prepared == ["p1"] and result.problems == []
    # Without CVAT's attributes an iscrowd RLE is a crowd, as COCO means it.
    del annotations[1]["attributes"]
    _coco(path, [_img(1, "p1.png")], annotations)
    assert read_coco(path, tmp_path / "images")[0][0].has_crowd


@pytest.mark.parametrize("file_name", ["images/3f2a1b9c-p1.png", r"\/data\/upload\/7\/3f2a1b9c-p1.png"])
def test_label_studio_paths_resolve_by_base_name(tmp_path, file_name):
    _image(tmp_path / "export" / "images" / "3f2a1b9c-p1.png")
    text = json.dumps({"images": [_img(0, "FILE")], "annotations": [_ann(0, 0, [RECT], category=0)],
                       "categories": [{"id": 0, "name": "leaf"}]}).replace('"FILE"', json.dumps(file_name).replace(
                           "\\\\/", "\\/"))  # Label Studio escapes slashes, as JSON allows
    (tmp_path / "result.json").write_text(text)
    images, problems = read_coco(tmp_path / "result.json", tmp_path / "export" / "images")
    assert problems == [] and images[0].image == tmp_path / "export" / "images" / "3f2a1b9c-p1.png"
    if file_name.startswith("images/"):  # also as given, relative to the export folder
        assert read_coco(tmp_path / "result.json", tmp_path / "export")[0][0].image == images[0].image


def test_label_studio_phone_photo_polygons_are_rescaled_to_the_photo_as_shown(tmp_path):
    # Label Studio (label-studio#6608): a portrait phone photo -- landscape pixels, EXIF
    # orientation 6 -- is shown turned in the browser and annotated in percentages of it; the COCO
    # converter writes the stored size and multiplies the percentages by it.
    from PIL import ImageOps

    stored = Image.fromarray(np.random.default_rng(3).integers(0, 256, (W, H, 3), np.uint8))  # 12 wide, 16 high
    exif = stored.getexif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    stored.save(tmp_path / "images" / "3f2a1b9c-IMG_1.jpg", exif=exif.tobytes())
    shown = ImageOps.exif_transpose(Image.open(tmp_path / "images" / "3f2a1b9c-IMG_1.jpg"))
    assert shown.size == (W, H)  # shown 16 wide, 12 high
    leaf = [(1, 1), (7, 1), (7, 5), (1, 5)]  # in the photo as shown
    percent = [(x / shown.width * 100, y / shown.height * 100) for x, y in leaf]
    written = [v for px, py in percent for v in (px / 100 * stored.width, py / 100 * stored.height)]
    document = {"images": [{"width": stored.width, "height": stored.height, "id": 0,
                            "file_name": "images/3f2a1b9c-IMG_1.jpg"}],
                "categories": [{"id": 0, "name": "leaf"}],
                "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "segmentation": [written], "bbox": [],
                                 "ignore": 0, "iscrowd": 0, "area": 0}],
                "info": {"year": 2026, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                         "date_created": "2026-12-07 10:41:12"}}
    (tmp_path / "result.json").write_text(json.dumps(document))
    images, problems = read_coco(tmp_path / "result.json", tmp_path / "images")
    assert problems == [] and (images[0].height, images[0].width) == (H, W)  # as shown
    masks, _ = region_masks(images[0])
    assert (masks[..., 0] == _rect_mask(1, 1, 7, 5)).all()
    result = prepare_dataset(None, tmp_path / "out", coco=tmp_path / "result.json", val_fraction=0, progress=False)
    assert result.prepared == ["3f2a1b9c-IMG_1"] and result.size_mismatches == []
    mask = cv2.imread(str(tmp_path / "out" / "train" / "3f2a1b9c-IMG_1" / "masks" / "3f2a1b9c-IMG_1_0.png"), 0) > 0
    turned_back = np.asarray(Image.fromarray(_rect_mask(1, 1, 7, 5)).transpose(Image.Transpose.ROTATE_90))
    assert (mask == turned_back).all()
    # Another tool's export of the same photo, its size as shown, is not rescaled.
    document["info"]["contributor"] = "someone"
    (tmp_path / "other.json").write_text(json.dumps(document))
    assert (read_coco(tmp_path / "other.json", tmp_path / "images")[0][0].height,) == (stored.height,)


def test_roboflow_parent_category_does_not_matter(tmp_path):
    categories = [{"id": 0, "name": "leaves-xyz", "supercategory": "none"},
                  {"id": 1, "name": "leaf", "supercategory": "leaves-xyz"}]
    images, problems = _read(tmp_path, [_ann(0, 1, [RECT])], categories=categories)
    assert problems == [] and len(images[0].regions) == 1
    chosen, _ = read_coco(tmp_path / "ann.json", tmp_path / "images", categories=["leaf"])
    assert len(chosen[0].regions) == 1


def test_absolute_file_names(tmp_path):
    image = _image(tmp_path / "elsewhere" / "a.png")
    images, problems = _read(tmp_path, [_ann(1, 1, [RECT])], images=[_img(1, str(image))])
    assert problems == [] and images[0].image == image


def test_image_size_from_the_file_when_the_entry_has_none(tmp_path):
    images, problems = _read(tmp_path, [_ann(1, 1, [RECT])], images=[{"id": 1, "file_name": "a.png"}])
    assert problems == [] and (images[0].height, images[0].width) == (H, W)


def test_images_sharing_a_stem_get_distinct_ids(tmp_path, caplog):
    _image(tmp_path / "images" / "x" / "a.png")
    _image(tmp_path / "images" / "y" / "a.png")
    path = _coco(tmp_path / "ann.json", [_img(4, "x/a.png"), _img(9, "y/a.png")],
                 [_ann(1, 4, [RECT]), _ann(2, 9, [RECT])])
    images, problems = read_coco(path, tmp_path / "images")
    assert [i.id for i in images] == ["a_4", "a_9"] and problems == []
    assert "ann.json: 2 images have the stem 'a'; this one gets the sample id 'a_4'" in caplog.text


def _labelme(folder, name, shapes, image_path=None, image_data=None):
    document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
                "imageData": image_data, "imageHeight": H, "imageWidth": W}
    (folder / f"{name}.json").write_text(json.dumps(document))


def _shape(points, label="leaf", group_id=None, shape_type="polygon"):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def test_labelme_with_image_files_and_with_only_image_data(tmp_path):
    folder = tmp_path / "labelme"
    folder.mkdir()
    _image(tmp_path / "photos" / "p1.png")
    rect = [[1, 1], [7, 1], [7, 5], [1, 5]]
    _labelme(folder, "p1", [_shape(rect), _shape([[10, 6], [14, 6], [14, 10], [10, 10]], group_id=1),
                            _shape([[10, 1], [14, 1], [14, 3], [10, 3]], group_id=1),
                            _shape([[0, 0], [3, 3]], shape_type="line")], image_path="..\\photos\\p1.png")
    pixels = _image(tmp_path / "p2.png")
    _labelme(folder, "p2", [_shape(rect)], image_path="gone/p2.png",
             image_data=base64.b64encode(pixels.read_bytes()).decode())
    images, problems = read_labelme(folder)
    assert [i.id for i in images] == ["p1", "p2"]
    assert _reasons(problems) == ["not an area"] and "p1.json" in str(problems[0].path)
    masks, _ = region_masks(images[0])
    # Drawn as LabelMe draws them, outline pixels included: 7 x 5; group_id 1: one leaf of two polygons.
    assert masks.sum(axis=(0, 1)).tolist() == [35, 5 * 5 + 5 * 3]
    assert {r.category for r in images[0].regions} == {"leaf"}  # a region keeps its shapes' label
    assert images[1].embedded and images[1].image == folder / "p2.json"
    dataset = LeafDataset()
    dataset.load_labelme(folder)
    dataset.prepare()
    np.testing.assert_array_equal(dataset.load_image(1), cv2.imread(str(pixels))[..., ::-1])
    result = prepare_dataset(folder, tmp_path / "out", labelme=True, val_fraction=0, progress=False)
    assert sorted(result.prepared) == ["p1", "p2"]
    written = tmp_path / "out" / "train" / "p2" / "images" / "p2.png"
    np.testing.assert_array_equal(cv2.imread(str(written)), cv2.imread(str(pixels)))


def _b64_png(mask):
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")  # 0 / 1, as LabelMe writes it
    return base64.b64encode(buffer.getvalue()).decode()


def _labelme_drawing(shapes, height, width):
    """LabelMe's own instance label image (utils.shapes_to_label, shape_to_mask): every shape drawn
    with PIL in file order over the earlier ones; a mask pasted at its box. [H, W] int, and the
    (label, group) of each instance id - 1."""
    ins, instances = np.zeros((height, width), np.int32), []
    for index, shape in enumerate(shapes):
        key = (shape["label"], f"shape {index}" if shape["group_id"] is None else shape["group_id"])
        if key not in instances:
            instances.append(key)
        kind, xy = shape["shape_type"], [tuple(p) for p in shape["points"]]
        if kind == "mask":
            mask = np.zeros((height, width), bool)
            (x1, y1), (x2, y2) = np.asarray(shape["points"]).astype(int)
            mask[y1: y2 + 1, x1: x2 + 1] = np.array(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))) > 0
        else:
            canvas = Image.fromarray(np.zeros((height, width), np.uint8))
            draw = ImageDraw.Draw(canvas)
            if kind == "circle":
                (cx, cy), (px, py) = xy
                d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
                draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
            elif kind == "rectangle":  # sorted: PIL 9.2+ refuses corners dragged up or left
                (x1, y1), (x2, y2) = xy
                draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
            else:
                draw.polygon(xy=xy, outline=1, fill=1)
            mask = np.array(canvas, bool)
        ins[mask] = instances.index(key) + 1
    return ins, instances


def test_labelme_masks_rectangles_and_circles_come_back_as_labelme_draws_them(tmp_path):
    """Issue 26, 3: every instance within IoU 0.90 of LabelMe's own drawing (here: equal), later
    shapes hiding earlier ones, a group_id's shapes one leaf; point and line shapes are problems."""
    height, width = 40, 48
    blob = np.zeros((11, 15), bool)  # an ellipse in its 15 x 11 box, pasted at (20, 24)-(34, 34)
    yy, xx = np.mgrid[:11, :15]
    blob[((xx - 7) / 7.5) ** 2 + ((yy - 5) / 5.5) ** 2 <= 1] = True
    shapes = [
        _shape([[2, 2], [16, 3], [14, 14], [3, 12]]),                              # a polygon leaf
        _shape([[12.4, 9.6], [6.2, 20.3]], shape_type="rectangle"),                # dragged up-left; hides it
        _shape([[30, 8], [30, 14.5]], shape_type="circle"),                        # centre, point on the circle
        {**_shape([[20.7, 24.2], [34.9, 34.8]], shape_type="mask"), "mask": _b64_png(blob)},
        _shape([[2, 26], [8, 26], [8, 34], [2, 34]], group_id=3),                  # one leaf of two parts
        _shape([[32, 0], [46, 0], [39, 14]], label="pot"),                         # another label: hides only
        _shape([[44, 20], [44, 23]], shape_type="circle", group_id=3),             # the group's second part
        _shape([[5, 5]], shape_type="point"),
        _shape([[0, 39], [47, 39]], shape_type="line"),
        {**_shape([[0, 0], [9, 9]], shape_type="mask"), "mask": _b64_png(blob)},   # 15 x 11, box 10 x 10
    ]
    folder = tmp_path / "labelme"
    folder.mkdir()
    _image(folder / "p.png", height, width)
    document = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "p.png", "imageData": None,
                "imageHeight": height, "imageWidth": width}
    (folder / "p.json").write_text(json.dumps(document))

    images, problems = read_labelme(folder, categories=["leaf"])
    assert _reasons(problems) == ["not an area", "not an area", "bad mask"]
    assert "shape 7 (label 'leaf'): shape_type 'point' covers no area" in problems[0].detail
    assert "the mask is 15x11 px but its box (0, 0)-(9, 9) is 10x10" in problems[2].detail
    masks, crowd = region_masks(images[0])
    drawn = [s for k, s in enumerate(shapes) if k < 7]  # what LabelMe draws (it would fail on the others)
    ins, instances = _labelme_drawing(drawn, height, width)
    leaves = [k + 1 for k, (label, _) in enumerate(instances) if label == "leaf"]
    assert masks.shape == (height, width, len(leaves)) == (height, width, 5) and not crowd.any()
    assert [r.annotation for r in images[0].regions] == ["shape 0", "shape 1", "shape 2", "shape 3", "shape 4, 6"]
    for k, instance in enumerate(leaves):
        expected = ins == instance
        iou = (masks[..., k] & expected).sum() / (masks[..., k] | expected).sum()
        assert iou >= 0.90, (k, iou)
        np.testing.assert_array_equal(masks[..., k], expected)
    assert masks[..., 0].sum() < 120 and masks[12, 8, 1] and not masks[12, 8, 0]  # the rectangle hides the polygon
    assert masks[..., 3].sum() == blob.sum() and masks[24 + 5, 20 + 7, 3]
    assert not masks[4, 35].any() and ins[4, 35] == instances.index(("pot", "shape 5")) + 1  # the pot hides the circle
    assert masks[20, 44, 4] and masks[30, 5, 4]  # both parts of group 3
    # prepare writes these masks.
    result = prepare_dataset(folder, tmp_path / "out", labelme=True, categories=["leaf"], val_fraction=0,
                             progress=False)
    assert result.prepared == ["p"]
    for k in range(5):
        written = cv2.imread(str(tmp_path / "out" / "train" / "p" / "masks" / f"p_{k}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written > 0, masks[..., k])


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def test_missing_images_and_unknown_image_ids(tmp_path):
    images, problems = _read(tmp_path, [_ann(1, 1, [RECT]), _ann(2, 2, [RECT]), _ann(3, 5, [RECT])],
                             images=[_img(1, "a.png"), _img(2, "gone.png")])
    assert [i.id for i in images] == ["a"]
    assert _reasons(problems) == ["missing image", "unknown image id"]
    assert "image id 2 (gone.png): not found; tried" in problems[0].detail
    assert problems[1].detail == "annotation id 3 (image id 5): no image has id 5"
    assert all(p.path == tmp_path / "ann.json" for p in problems)


@pytest.mark.parametrize("segmentation, reason", [
    (None, "no segmentation"), ([], "no segmentation"),
    ([[1, 1, 7, 1]], "degenerate polygon"),              # 2 points (pycocotools would read a box)
    ([[1, 1, 4, 4, 8, 8]], "degenerate polygon"),         # collinear: no area
    ([[20, 20, 30, 20, 30, 30]], "outside the image"),
    ([[-9, -9, -1, -9, -1, -1]], "outside the image"),
    ({"size": [H + 1, W], "counts": [H * W + W]}, "bad RLE"),
    ({"size": [H, W], "counts": [5, 3]}, "bad RLE"),
])
def test_unusable_annotations_are_reported_by_id_and_left_out(tmp_path, segmentation, reason):
    images, problems = _read(tmp_path, [_ann(7, 1, segmentation, bbox=[1, 1, 6, 4]), _ann(8, 1, [RECT])])
    assert _reasons(problems) == [reason]
    assert problems[0].detail.startswith("annotation id 7 (image id 1): ")
    assert [r.annotation for r in images[0].regions] == ["annotation id 8"]


@pytest.mark.parametrize("sliver, reason", [
    ([1, 1, 4, 4, 8, 8], "degenerate polygon part"),      # collinear: what mask-to-polygon tools leave
    ([20, 20, 30, 20, 30, 30], "outside the image part"),
])
def test_a_leaf_of_several_polygons_keeps_its_real_ones(tmp_path, sliver, reason):
    """Issue 26, 1: one empty or outside polygon of a multi-polygon leaf is left out with a
    problem naming the annotation; the leaf is kept with its other polygons."""
    images, problems = _read(tmp_path, [_ann(2, 1, [sliver, RECT])])
    assert _reasons(problems) == [reason]
    assert problems[0].detail.startswith("annotation id 2 (image id 1): ")
    assert "left out, its other 1 polygon(s) kept" in problems[0].detail
    assert [r.annotation for r in images[0].regions] == ["annotation id 2"]
    masks, _ = region_masks(images[0])
    plain, _ = _read(tmp_path / "plain", [_ann(2, 1, [RECT])])
    np.testing.assert_array_equal(masks, region_masks(plain[0])[0])


def test_polygons_partly_outside_are_clipped(tmp_path):
    images, problems = _read(tmp_path, [_ann(1, 1, [[-5, -5, 4, -5, 4, 4, -5, 4]])])
    masks, _ = region_masks(images[0])
    assert problems == [] and masks.sum() == 16
    np.testing.assert_array_equal(masks[..., 0], _rect_mask(0, 0, 4, 4))


def test_duplicate_image_and_annotation_ids(tmp_path):
    _image(tmp_path / "images" / "b.png")
    _image(tmp_path / "images" / "c.png")
    annotations = [_ann(1, 1, [RECT]), _ann(2, 3, [RECT]), _ann(2, 3, [RECT]),
                   _ann(3, 3, [RECT]), _ann(3, 3, [[8, 6, 15, 6, 15, 11]])]
    images, problems = _read(tmp_path, annotations, images=[_img(1, "a.png"), _img(1, "b.png"), _img(3, "c.png")])
    assert [i.id for i in images] == ["c"]
    assert _reasons(problems) == ["duplicate image id", "duplicate annotation id", "duplicate annotation id"]
    assert "image id 1 is used by 2 images (a.png, b.png)" in problems[0].detail
    assert "annotation id 2 (image id 3)" in problems[1].detail and "identical copy, dropped" in problems[1].detail
    assert "different annotation, kept" in problems[2].detail
    assert [r.annotation for r in images[0].regions] == ["annotation id 2", "annotation id 3", "annotation id 3"]


def test_invalid_json_names_the_file_line_and_column(tmp_path):
    (tmp_path / "ann.json").write_text('{"images": [],\n "annotations": [}\n')
    with pytest.raises(ValueError, match=r"ann\.json: not valid JSON: .* at line 2, column 18"):
        read_coco(tmp_path / "ann.json", tmp_path)
    folder = tmp_path / "labelme"
    folder.mkdir()
    (folder / "bad.json").write_text("{\n")
    _image(folder / "ok.png")
    _labelme(folder, "ok", [_shape([[1, 1], [7, 1], [7, 5]])], image_path="ok.png")
    images, problems = read_labelme(folder)
    assert [i.id for i in images] == ["ok"] and _reasons(problems) == ["invalid JSON"]
    assert problems[0].path == folder / "bad.json" and "line 2" in problems[0].detail


# ---------------------------------------------------------------------------------------------
# prepare --coco
# ---------------------------------------------------------------------------------------------

def _dataset(tmp_path, count=6):
    images = [_img(k, f"plant{k}.png") for k in range(count)]
    for image in images:
        _image(tmp_path / "images" / image["file_name"])
    annotations = [_ann(10 + k, k, [RECT]) for k in range(count)] + [_ann(99, 0, [[8, 6, 15, 6, 15, 11, 8, 11]])]
    return _coco(tmp_path / "ann.json", images, annotations)


def test_prepare_coco_writes_the_layout_resumes_and_leaves_the_input(tmp_path):
    path = _dataset(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = prepare_dataset(tmp_path / "images", tmp_path / "out", coco=path, seed=1, progress=False)
    assert len(result.prepared) == 6 and result.problems == []
    subset = assign_subset("plant0", 1, 0.2)
    sample = tmp_path / "out" / subset / "plant0"
    masks = sorted((sample / "masks").iterdir())
    assert [m.name for m in masks] == ["plant0_0.png", "plant0_1.png"]
    np.testing.assert_array_equal(cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED), _rect_mask(1, 1, 7, 5) * 255)
    assert (sample / "images" / "plant0.png").read_bytes() == before[tmp_path / "images" / "plant0.png"]
    meta = json.loads((sample / "sample.json").read_text())
    assert meta["annotations"] == ["annotation id 10", "annotation id 99"] and meta["source_label"] == str(path)
    again = prepare_dataset(tmp_path / "images", tmp_path / "out", coco=path, seed=1, progress=False)
    assert again.prepared == [] and len(again.skipped) == 6
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "out" not in p.parts} == before


def test_prepare_coco_exit_status_and_bad_samples(tmp_path, capsys):
    path = _dataset(tmp_path, 2)
    (tmp_path / "images" / "plant1.png").write_bytes(b"not a png")
    args = ["--coco", str(path), "--input", str(tmp_path / "images"), "--quiet"]
    assert main(args + ["--output", str(tmp_path / "out")]) == 0
    assert main(args + ["--output", str(tmp_path / "out2"), "--strict"]) == 1
    assert "plant1.png: unreadable image" in capsys.readouterr().err
    assert main(args + ["--output", str(tmp_path / "out3"), "--category", "stem"]) == 2
    assert "no category named 'stem'; its categories are 'leaf'" in capsys.readouterr().err
    (tmp_path / "images" / "plant0.png").unlink()
    assert main(args + ["--output", str(tmp_path / "out4")]) == 1
    assert "nothing could be prepared from the annotations of" in capsys.readouterr().err
    assert main(["--labelme", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    (tmp_path / "broken.json").write_text('{"images": [\n  {"id": 1,}]}')
    assert main(["--coco", str(tmp_path / "broken.json"), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "broken.json: not valid JSON: " in capsys.readouterr().err
    folder = tmp_path / "labelme"
    folder.mkdir()
    _image(folder / "p.png")
    _labelme(folder, "p", [_shape([[1, 1], [7, 1], [7, 5], [1, 5]])], image_path="p.png")
    assert main(["--labelme", str(folder), "--output", str(tmp_path / "o5"), "--quiet", "--strict"]) == 0
    assert (tmp_path / "o5" / assign_subset("p") / "p" / "masks" / "p_0.png").is_file()


def test_dataset_split_matches_prepare(tmp_path):
    path = _dataset(tmp_path, 12)
    prepare_dataset(tmp_path / "images", tmp_path / "out", coco=path, seed=3, progress=False)
    for subset in ("train", "val"):
        dataset = LeafDataset()
        dataset.load_coco(path, tmp_path / "images", subset, seed=3)
        assert sorted(info["id"] for info in dataset.image_info) == sorted(
            p.name for p in (tmp_path / "out" / subset).iterdir())


# What the importers read, checked in test_predictions_coco_json_imports_and_round_trips:
# CVAT "COCO 1.0" goes through its Datumaro fork's COCO reader (datumaro/plugins/coco_format/
# extractor.py): an image's item id is file_name without its suffix, which CVAT matches to the
# task's image names (cvat/apps/dataset_manager/bindings.py, match_frame / match_frame_fuzzy:
# equal paths, or equal trailing path parts), so an absolute path matches nothing; "id",
# "image_id", "category_id" (int) and "iscrowd" (int) are required fields; a polygon needs at
# least 3 (x, y) pairs; a dict segmentation is imported as a mask whatever iscrowd says; "score"
# becomes the shape's score attribute; "supercategory" is optional; info and licenses are not
# required (https://docs.cvat.ai/docs/dataset_management/formats/format-coco/).
# Label Studio's converter (label_studio_sdk/converter/imports/coco.py, convert_coco_to_ls) joins
# --image-root-url and file_name (os.path.join: an absolute file_name drops the root), reads each
# image's width and height and each annotation's bbox and score unguarded, and makes one polygon
# region per polygon of segmentation; it reads no RLE.
COCO_SHAPE = (60, 80)


def _leaves():
    """Hand-made detections of known shapes (bool [H, W, 5], scores): a stem (0.95) over a bar
    (0.8) splits the bar's visible pixels in two; a disc, an L and a ring (a leaf with a hole)."""
    yy, xx = np.mgrid[:COCO_SHAPE[0], :COCO_SHAPE[1]]
    stem = (yy >= 40) & (xx >= 35) & (xx < 45)
    disc = (yy - 15) ** 2 + (xx - 15) ** 2 <= 49
    ell = ((yy >= 5) & (yy < 35) & (xx >= 40) & (xx < 46)) | ((yy >= 30) & (yy < 35) & (xx >= 40) & (xx < 70))
    bar = (yy >= 45) & (yy < 55) & (xx >= 5) & (xx < 75)
    ring = ((yy - 12) ** 2 + (xx - 62) ** 2 <= 64) & ((yy - 12) ** 2 + (xx - 62) ** 2 > 9)
    return np.stack([stem, disc, ell, bar, ring], axis=-1), np.array([0.95, 0.9, 0.85, 0.8, 0.7])


class _Model:
    """MaskRCNN's inference surface for predict_images: detect() and config.NUM_CLASSES."""

    config = type("Config", (), {"NUM_CLASSES": 2})

    def detect(self, images):
        masks, scores = _leaves()
        return [{"masks": masks, "scores": scores, "class_ids": np.ones(len(scores), int),
                 "rois": np.zeros((len(scores), 4), int)}]


@pytest.mark.parametrize("coco_format", ["rle", "polygons"])
def test_predictions_coco_json_imports_and_round_trips(tmp_path, coco_format):
    """predict --coco-json rle|polygons -> the fields CVAT and Label Studio read -> prepare --coco
    -> the visible masks: RLE exactly, polygons with holes filled (IoU >= 0.95 without holes)."""
    _image(tmp_path / "photos" / "plant7.png", *COCO_SHAPE)
    report = predict_images(_Model(), [tmp_path / "photos"], tmp_path / "pred", coco_json=coco_format, progress=False)
    document = json.loads(report.outputs["predictions_coco.json"].read_text())
    masks, _ = _leaves()
    visible = masks.copy()
    visible[..., 3] &= ~masks[..., 0]  # the stem covers the bar: two pieces remain

    (image,) = document["images"]
    assert image["file_name"] == "plant7.png"  # base name: CVAT matches it, LS joins it to its root URL
    assert image["path"] == str(tmp_path / "photos" / "plant7.png")
    assert (image["id"], image["height"], image["width"]) == (1, *COCO_SHAPE)  # LS reads width, height
    assert document["categories"] == [{"id": 1, "name": "leaf", "supercategory": "plant"}]
    annotations = document["annotations"]
    assert [a["id"] for a in annotations] == [1, 2, 3, 4, 5]
    for k, annotation in enumerate(annotations):
        assert annotation["image_id"] == 1 and annotation["category_id"] == 1
        assert annotation["iscrowd"] == 0  # CVAT requires it; 0: a leaf, never a crowd
        assert annotation["score"] == pytest.approx(_leaves()[1][k])  # LS's converter reads it unguarded
        assert annotation["area"] == visible[..., k].sum()
        x, y, w, h = annotation["bbox"]  # COCO xywh, pixel edges
        ys, xs = np.nonzero(visible[..., k])
        assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        if coco_format == "polygons":  # a list of flat [x, y, ...] lists of 3 points or more
            assert annotation["segmentation"] == mask_to_polygons(visible[..., k])
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in annotation["segmentation"])
        else:
            assert set(annotation["segmentation"]) == {"size", "counts"}
    if coco_format == "polygons":
        assert [len(a["segmentation"]) for a in annotations] == [1, 1, 1, 2, 1]  # the bar: two pieces

    result = prepare_dataset(tmp_path / "photos", tmp_path / "out", coco=report.outputs["predictions_coco.json"],
                             val_fraction=0, progress=False)
    assert result.prepared == ["plant7"]
    for k in range(5):
        mask = cv2.imread(str(tmp_path / "out" / "train" / "plant7" / "masks" / f"plant7_{k}.png"),
                          cv2.IMREAD_UNCHANGED) > 0
        if coco_format == "rle":
            np.testing.assert_array_equal(mask, visible[..., k])
            continue
        filled = np.zeros(COCO_SHAPE, np.uint8)
        contours, _ = cv2.findContours(visible[..., k].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        np.testing.assert_array_equal(mask, cv2.drawContours(filled, contours, -1, 1, -1) > 0)
        if k != 4:  # the ring's hole is filled
            assert visible[..., k].sum() > 100
            assert (mask & visible[..., k]).sum() / (mask | visible[..., k]).sum() >= 0.95


def test_mask_to_polygons_pieces_largest_first_and_exact_pixels():
    mask = np.zeros((H, W), bool)
    mask[1:3, 1:3] = True      # 4 px
    mask[5:11, 6:15] = True    # 54 px
    mask[0, 15] = True         # 1 px, in the corner
    polygons = mask_to_polygons(mask)
    assert [len(p) // 2 for p in polygons] == [4, 4, 4]
    assert polygons[0] == [6.25, 5.25, 6.25, 10.75, 14.75, 10.75, 14.75, 5.25]  # 0.25 px inside the edges
    back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, H, W))) > 0
    np.testing.assert_array_equal(back, mask)
    assert mask_to_polygons(np.zeros((H, W), bool)) == []
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((H, W, 1), bool))