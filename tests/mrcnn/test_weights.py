"""Weights files: Matterport / Keras-2 .h5 by layer name, native Keras 3 checkpoints, COCO path.

The Keras 2 files are written here by hand with h5py, in the layout Matterport's files have
(root attribute `layer_names`, one group per layer with `weight_names`, arrays at
group[weight_name]), independently of save_legacy_h5, so the loader is not tested against itself.
"""
import os

import h5py
import keras
import numpy as np
import pytest

from mrcnn import weights as W
from mrcnn.weights import WeightsError

FEATURES = 4  # channels of the "backbone" output fed to rpn_model and the head
ANCHORS = 3   # anchors per location: rpn_class_raw has 2 x 3 filters, rpn_bbox_pred 4 x 3
HEAD = 6      # filters of mrcnn_class_conv1


def build_rpn_model():
    feature_map = keras.Input((None, None, FEATURES), name="input_rpn_feature_map")
    shared = keras.layers.Conv2D(5, 3, padding="same", activation="relu",
                                 name="rpn_conv_shared")(feature_map)
    class_raw = keras.layers.Conv2D(2 * ANCHORS, 1, name="rpn_class_raw")(shared)
    bbox_pred = keras.layers.Conv2D(4 * ANCHORS, 1, name="rpn_bbox_pred")(shared)
    return keras.Model(feature_map, [class_raw, bbox_pred], name="rpn_model")


def build_model(num_classes=3, time_distributed=True):
    """A miniature Mask R-CNN naming: stem, BN, nested rpn_model, a head conv that is a
    TimeDistributed wrapper or a plain Conv2D, and a class-specific Dense."""
    image = keras.Input((8, 8, 3), name="input_image")
    x = keras.layers.Conv2D(FEATURES, 3, padding="same", name="conv1")(image)
    x = keras.layers.BatchNormalization(name="bn_conv1")(x)
    rpn_class, rpn_bbox = build_rpn_model()(x)
    if time_distributed:
        rois = keras.layers.Reshape((1, 8, 8, FEATURES), name="roi_align_classifier")(x)
        head = keras.layers.TimeDistributed(keras.layers.Conv2D(HEAD, 8), name="mrcnn_class_conv1")
        h = head(rois)  # [B, 1, 1, 1, HEAD]
    else:
        h = keras.layers.Conv2D(HEAD, 8, name="mrcnn_class_conv1")(x)  # [B, 1, 1, HEAD]
    h = keras.layers.Flatten(name="pool_squeeze")(h)
    logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits")(h)
    model = keras.Model(image, [rpn_class, rpn_bbox, logits], name="mask_rcnn")
    randomise(model, np.random.default_rng(123))
    return model


def randomise(model, rng):
    for variable in model.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


def model_layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return model.get_layer("rpn_model").get_layer(name)


def snapshot(model):
    return [np.array(v.numpy()) for v in model.weights]


def assert_weights_equal(model, before):
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value,
                                      err_msg=variable.path)


def assert_layer_equals(model, name, arrays):
    variables = model_layer(model, name).weights
    assert len(variables) == len(arrays), name
    for variable, array in zip(variables, arrays):
        np.testing.assert_array_equal(variable.numpy(), array,
                                      err_msg=variable.path)


def matterport_spec(rng, num_classes=3, rpn_weight_prefixes=None, extra=()):
    """(layer name, [(weight name, array)]) as in Matterport's file, weightless layers included.
    rpn_weight_prefixes: what the rpn_model group's weight names start with (Matterport: the
    sub-layer names)."""
    def arr(*shape):
        return rng.normal(size=shape).astype("float32")

    rpn_prefixes = rpn_weight_prefixes or ["rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
    rpn_shapes = [(3, 3, FEATURES, 5), (5,), (1, 1, 5, 2 * ANCHORS), (2 * ANCHORS,),
                  (1, 1, 5, 4 * ANCHORS), (4 * ANCHORS,)]
    rpn_names = [f"{rpn_prefixes[i // 2]}/{'kernel' if i % 2 == 0 else 'bias'}:0"
                 for i in range(6)]
    spec = [
        ("input_image", []),
        ("conv1", [("conv1/kernel:0", arr(3, 3, 3, FEATURES)), ("conv1/bias:0", arr(FEATURES))]),
        ("bn_conv1", [(f"bn_conv1/{n}:0", arr(FEATURES))
                      for n in ("gamma", "beta", "moving_mean", "moving_variance")]),
        ("rpn_model", [(n, arr(*s)) for n, s in zip(rpn_names, rpn_shapes)]),
        ("mrcnn_class_conv1", [("mrcnn_class_conv1/kernel:0", arr(8, 8, FEATURES, HEAD)),
                               ("mrcnn_class_conv1/bias:0", arr(HEAD))]),
        ("mrcnn_class_logits", [("mrcnn_class_logits/kernel:0", arr(HEAD, num_classes)),
                                ("mrcnn_class_logits/bias:0", arr(num_classes))]),
        ("mrcnn_bbox", []),
    ]
    return spec + list(extra)


def write_keras2_h5(path, spec, model_weights_group=False, str_attrs=False, chunked=False):
    """Keras 2 `save_weights` layout (or `model.save`'s, under `model_weights`)."""
    def names_attr(attrs, key, names):
        if str_attrs:
            attrs.create(key, names, dtype=h5py.string_dtype())
        else:
            attrs[key] = np.asarray([n.encode("utf8") for n in names])  # empty -> float64 []

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights_group else f
        layer_names = [name for name, _ in spec]
        if chunked:
            names_attr(root.attrs, "layer_names0", layer_names[:3])
            names_attr(root.attrs, "layer_names1", layer_names[3:])
        else:
            names_attr(root.attrs, "layer_names", layer_names)
        root.attrs["keras_version"] = b"2.0.8"
        root.attrs["backend"] = b"tensorflow"
        for name, weights in spec:
            group = root.create_group(name)
            names_attr(group.attrs, "weight_names", [w for w, _ in weights])
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=array)
    return str(path)


def spec_arrays(spec):
    return {name: [a for _, a in weights] for name, weights in spec}


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def plain_model():
    return build_model(time_distributed=False)


# ---------------------------------------------------------------------------------------------
# load_legacy_h5

@pytest.mark.parametrize("time_distributed", [True, False])
@pytest.mark.parametrize("layout", ["save_weights", "model.save with str attrs", "chunked names"])
def test_load_legacy_assigns_every_array(tmp_path, rng, model, plain_model, time_distributed,
                                         layout):
    net = model if time_distributed else plain_model
    spec = matterport_spec(rng)
    path = write_keras2_h5(tmp_path / "w.h5", spec,
                           model_weights_group=layout.startswith("model.save"),
                           str_attrs=layout.startswith("model.save"),
                           chunked=layout == "chunked names")
    report = W.load_legacy_h5(net, path, by_name=True)

    arrays = spec_arrays(spec)
    for name in ("conv1", "bn_conv1", "rpn_model", "mrcnn_class_conv1", "mrcnn_class_logits"):
        assert_layer_equals(net, name, arrays[name])
    # The rpn_model group's six arrays went to the nested model's sub-layers, in order.
    assert_layer_equals(net, "rpn_class_raw", arrays["rpn_model"][2:4])
    assert report.format == "legacy"
    assert report.loaded == ["conv1", "bn_conv1", "rpn_model", "mrcnn_class_conv1",
                             "mrcnn_class_logits"]
    assert report.num_arrays == 2 + 4 + 6 + 2 + 2
    assert report.missing_in_file == [] and report.unused_in_file == []
    assert report.excluded == [] and report.skipped_mismatch == []


def test_nested_model_arrays_follow_weight_names_not_file_order(tmp_path, rng, model):
    spec = matterport_spec(rng)
    rpn = dict(spec)["rpn_model"]
    reordered = rpn[4:] + rpn[:4]  # rpn_bbox_pred first, as another Keras might write it
    spec = [(n, reordered if n == "rpn_model" else w) for n, w in spec]
    W.load_legacy_h5(model, write_keras2_h5(tmp_path / "w.h5", spec))
    assert_layer_equals(model, "rpn_conv_shared", [a for _, a in rpn[0:2]])
    assert_layer_equals(model, "rpn_class_raw", [a for _, a in rpn[2:4]])
    assert_layer_equals(model, "rpn_bbox_pred", [a for _, a in rpn[4:6]])


def test_nested_model_with_uninformative_weight_names_loads_in_order(tmp_path, rng, model):
    spec = matterport_spec(rng, rpn_weight_prefixes=["rpn_model/a", "rpn_model/b", "rpn_model/c"])
    W.load_legacy_h5(model, write_keras2_h5(tmp_path / "w.h5", spec))
    assert_layer_equals(model, "rpn_model", spec_arrays(spec)["rpn_model"])


def test_exclude_class_specific_layers_with_other_num_classes(tmp_path, rng):
    net = build_model(num_classes=3)
    coco_classes = 81
    spec = matterport_spec(rng, num_classes=coco_classes)
    path = write_keras2_h5(tmp_path / "coco.h5", spec)
    logits_before = snapshot(net)[-2:]  # mrcnn_class_logits kernel and bias are the last weights

    with pytest.raises(WeightsError) as info:
        W.load_legacy_h5(net, path)
    message = str(info.value)
    assert path in message
    assert "mrcnn_class_logits" in message and "mrcnn_class_logits/kernel:0" in message
    assert f"({HEAD}, {coco_classes})" in message and f"({HEAD}, 3)" in message
    assert "exclude=['mrcnn_class_logits']" in message

    report = W.load_legacy_h5(net, path, exclude=list(W.COCO_EXCLUDE))
    assert report.excluded == ["mrcnn_class_logits"]
    assert report.missing_in_file == []
    arrays = spec_arrays(spec)
    assert_layer_equals(net, "conv1", arrays["conv1"])
    assert_layer_equals(net, "mrcnn_class_conv1", arrays["mrcnn_class_conv1"])
    assert_layer_equals(net, "mrcnn_class_logits", logits_before)


def test_exclude_accepts_a_single_name_and_a_sub_layer_of_rpn_model(tmp_path, rng, model):
    before = {"rpn_class_raw": [np.array(v.numpy()) for v in model_layer(model, "rpn_class_raw").weights]}
    spec = matterport_spec(rng)
    path = write_keras2_h5(tmp_path / "w.h5", spec)
    report = W.load_legacy_h5(model, path, exclude="rpn_class_raw")
    assert report.excluded == ["rpn_class_raw"]
    assert_layer_equals(model, "rpn_class_raw", before["rpn_class_raw"])
    rpn = spec_arrays(spec)["rpn_model"]
    assert_layer_equals(model, "rpn_conv_shared", rpn[0:2])
    assert_layer_equals(model, "rpn_bbox_pred", rpn[4:6])

    # The first load set conv1 from the file; give it other values, then exclude it.
    conv1 = model_layer(model, "conv1")
    conv1.set_weights([w + 1.0 for w in conv1.get_weights()])
    changed = [np.array(v.numpy()) for v in conv1.weights]
    report = W.load_legacy_h5(model, path, exclude=["conv1"])
    assert report.excluded == ["conv1"] and "conv1" not in report.missing_in_file
    assert_layer_equals(model, "conv1", changed)


def test_skip_mismatch_loads_the_rest(tmp_path, rng):
    net = build_model(num_classes=3)
    logits_before = snapshot(net)[-2:]
    spec = matterport_spec(rng, num_classes=81)
    report = W.load_legacy_h5(net, write_keras2_h5(tmp_path / "w.h5", spec), skip_mismatch=True)
    assert report.skipped_mismatch == ["mrcnn_class_logits"]
    assert "mrcnn_class_logits" not in report.loaded
    assert_layer_equals(net, "mrcnn_class_logits", logits_before)
    assert_layer_equals(net, "bn_conv1", spec_arrays(spec)["bn_conv1"])


def test_report_lists_missing_and_unused_layers(tmp_path, rng, model):
    extra = [("res5a_branch2a", [("res5a_branch2a/kernel:0", np.ones((1, 1, 2, 2), "float32"))])]
    spec = [(n, w) for n, w in matterport_spec(rng, extra=extra) if n != "bn_conv1"]
    report = W.load_legacy_h5(model, write_keras2_h5(tmp_path / "w.h5", spec), verbose=1)
    assert report.missing_in_file == ["bn_conv1"]
    assert report.unused_in_file == ["res5a_branch2a"]
    assert "bn_conv1" in report.summary() and "res5a_branch2a" in report.summary()


def test_no_matching_layer_is_an_error(tmp_path, rng, model):
    spec = [("fc1000", [("fc1000/kernel:0", rng.normal(size=(2, 2)))]), ("flatten_1", [])]
    path = write_keras2_h5(tmp_path / "imagenet.h5", spec)
    before = snapshot(model)
    with pytest.raises(WeightsError) as info:
        W.load_legacy_h5(model, path)
    message = str(info.value)
    assert path in message and "fc1000" in message and "conv1" in message
    assert_weights_equal(model, before)


def test_only_excluded_matches_is_an_error(tmp_path, rng, model):
    spec = [("conv1", matterport_spec(rng)[1][1])]
    with pytest.raises(WeightsError, match="excluded"):
        W.load_legacy_h5(model, write_keras2_h5(tmp_path / "w.h5", spec), exclude=["conv1"])


def test_wrong_array_count_is_an_error(tmp_path, rng, model):
    spec = matterport_spec(rng)
    spec = [(n, w[:1] if n == "conv1" else w) for n, w in spec]  # kernel without its bias
    with pytest.raises(WeightsError) as info:
        W.load_legacy_h5(model, write_keras2_h5(tmp_path / "w.h5", spec))
    message = str(info.value)
    assert "'conv1'" in message and "1 arrays" in message and "2 weights" in message


def test_failed_load_leaves_the_model_unchanged(tmp_path, rng):
    net = build_model(num_classes=3)
    before = snapshot(net)
    # Every layer fits except the last one in the file.
    spec = matterport_spec(rng, num_classes=5)
    with pytest.raises(WeightsError, match="mrcnn_class_logits"):
        W.load_legacy_h5(net, write_keras2_h5(tmp_path / "w.h5", spec))
    assert_weights_equal(net, before)


def test_missing_unreadable_and_foreign_files(tmp_path, model):
    missing = str(tmp_path / "nowhere" / "mask_rcnn_coco.h5")
    with pytest.raises(WeightsError) as info:
        W.load_legacy_h5(model, missing)
    assert isinstance(info.value, FileNotFoundError) and missing in str(info.value)

    text = tmp_path / "weights.h5"
    text.write_text("not hdf5")
    with pytest.raises(WeightsError, match="Not an HDF5") as info:
        W.load_legacy_h5(model, str(text))
    assert str(text) in str(info.value)

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsError, match="layer_names") as info:
        W.load_legacy_h5(model, str(other))
    assert str(other) in str(info.value)

    with pytest.raises(WeightsError, match="directory"):
        W.load_legacy_h5(model, str(tmp_path))


def test_by_position_is_not_implemented(tmp_path, rng, model):
    path = write_keras2_h5(tmp_path / "w.h5", matterport_spec(rng))
    with pytest.raises(NotImplementedError, match="by_name=True"):
        W.load_legacy_h5(model, path, by_name=False)


# ---------------------------------------------------------------------------------------------
# save_legacy_h5

def test_save_legacy_writes_matterports_layout(tmp_path, model):
    path = W.save_legacy_h5(model, tmp_path / "out.h5")
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]
    with h5py.File(path, "r") as f:
        layer_names = list(f.attrs["layer_names"])
        assert layer_names == [layer.name.encode() for layer in model.layers]
        assert list(f["conv1"].attrs["weight_names"]) == [b"conv1/kernel:0", b"conv1/bias:0"]
        assert list(f["bn_conv1"].attrs["weight_names"]) == [
            b"bn_conv1/gamma:0", b"bn_conv1/beta:0", b"bn_conv1/moving_mean:0",
            b"bn_conv1/moving_variance:0"]
        assert list(f["rpn_model"].attrs["weight_names"]) == [
            b"rpn_conv_shared/kernel:0", b"rpn_conv_shared/bias:0", b"rpn_class_raw/kernel:0",
            b"rpn_class_raw/bias:0", b"rpn_bbox_pred/kernel:0", b"rpn_bbox_pred/bias:0"]
        assert list(f["mrcnn_class_conv1"].attrs["weight_names"]) == [
            b"mrcnn_class_conv1/kernel:0", b"mrcnn_class_conv1/bias:0"]
        assert len(f["roi_align_classifier"].attrs["weight_names"]) == 0
        np.testing.assert_array_equal(
            f["rpn_model"]["rpn_class_raw/kernel:0"][()],
            model_layer(model, "rpn_class_raw").kernel.numpy())


@pytest.mark.parametrize("time_distributed", [True, False])
def test_save_legacy_then_load_round_trip(tmp_path, time_distributed):
    source = build_model(time_distributed=time_distributed)
    randomise(source, np.random.default_rng(7))
    target = build_model(time_distributed=time_distributed)
    path = W.save_legacy_h5(source, tmp_path / "w.h5")
    report = W.load_legacy_h5(target, path)
    assert report.missing_in_file == [] and report.unused_in_file == []
    assert_weights_equal(target, snapshot(source))


def test_keras_own_legacy_loader_reads_save_legacy_h5(tmp_path, rng):
    def simple():
        x = keras.Input((4,))
        h = keras.layers.Dense(3, name="mrcnn_bbox_fc")(x)
        h = keras.layers.BatchNormalization(name="mrcnn_class_bn1")(h)
        return keras.Model(x, h)

    source, target = simple(), simple()
    randomise(source, rng)
    path = W.save_legacy_h5(source, tmp_path / "w.h5")
    target.load_weights(path, by_name=True)
    assert_weights_equal(target, snapshot(source))


# ---------------------------------------------------------------------------------------------
# Native Keras 3 checkpoints

def test_native_save_load_round_trip_is_atomic(tmp_path, model):
    path = str(tmp_path / "ckpt" / "mask_rcnn_leaf_0001.weights.h5")
    W.save_weights(model, path)
    W.save_weights(model, path)  # overwriting is fine
    assert os.listdir(tmp_path / "ckpt") == ["mask_rcnn_leaf_0001.weights.h5"]
    target = build_model()
    W.load_weights(target, path)
    assert_weights_equal(target, snapshot(model))
    with pytest.raises(WeightsError, match=r"\.weights\.h5"):
        W.save_weights(model, str(tmp_path / "ckpt" / "plain.h5"))


def test_native_save_failure_leaves_old_file_and_no_temp(tmp_path, model, monkeypatch):
    path = str(tmp_path / "w.weights.h5")
    W.save_weights(model, path)
    with open(path, "rb") as f:
        old = f.read()

    def broken_save(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_weights", broken_save)
    with pytest.raises(OSError, match="disk full"):
        W.save_weights(model, path)
    assert os.listdir(tmp_path) == ["w.weights.h5"]
    with open(path, "rb") as f:
        assert f.read() == old


def test_load_weights_auto_dispatches_by_content(tmp_path, rng, model):
    native = W.save_weights(model, str(tmp_path / "trained.weights.h5"))
    legacy_spec = matterport_spec(rng)
    # A legacy file whose name does not say so.
    legacy = write_keras2_h5(tmp_path / "matterport_weights.bin", legacy_spec)
    assert W.detect_format(native) == "native"
    assert W.detect_format(legacy) == "legacy"

    target = build_model()
    report = W.load_weights_auto(target, native)
    assert report.format == "native"
    assert report.missing_in_file == [] and report.unused_in_file == []
    assert_weights_equal(target, snapshot(model))

    report = W.load_weights_auto(target, legacy)
    assert report.format == "legacy"
    assert_layer_equals(target, "rpn_model", spec_arrays(legacy_spec)["rpn_model"])
    assert_layer_equals(target, "mrcnn_class_conv1", spec_arrays(legacy_spec)["mrcnn_class_conv1"])


def test_native_by_name_with_exclude_and_other_num_classes(tmp_path, model):
    native = W.save_weights(model, str(tmp_path / "three_classes.weights.h5"))
    target = build_model(num_classes=5, time_distributed=True)
    logits_before = snapshot(target)[-2:]
    with pytest.raises(WeightsError, match=r"mrcnn_class_logits.*\(6, 3\).*\(6, 5\)"):
        W.load_weights_auto(target, native)
    report = W.load_weights_auto(target, native, exclude=["mrcnn_class_logits"])
    assert report.excluded == ["mrcnn_class_logits"]
    assert_layer_equals(target, "mrcnn_class_logits", logits_before)
    for name in ("conv1", "bn_conv1", "rpn_conv_shared", "rpn_bbox_pred", "mrcnn_class_conv1"):
        assert_layer_equals(target, name, [v.numpy()
                                           for v in model_layer(model, name).weights])


def test_excluding_rpn_model_works_for_both_formats(tmp_path, rng, model):
    legacy = write_keras2_h5(tmp_path / "w.h5", matterport_spec(rng))
    native = W.save_weights(build_model(), str(tmp_path / "w.weights.h5"))
    for path, excluded in ((legacy, ["rpn_model"]),
                           (native, ["rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"])):
        before = snapshot(model_layer(model, "rpn_model"))
        report = W.load_weights_auto(model, path, exclude=["rpn_model"])
        assert sorted(report.excluded) == sorted(excluded)
        assert report.missing_in_file == []
        assert_weights_equal(model_layer(model, "rpn_model"), before)


def test_load_legacy_h5_refuses_a_native_file_with_a_hint(tmp_path, model):
    native = W.save_weights(model, str(tmp_path / "n.weights.h5"))
    with pytest.raises(WeightsError, match="load_weights_auto"):
        W.load_legacy_h5(model, native)


# ---------------------------------------------------------------------------------------------
# COCO weights location

def test_resolve_coco_weights_order(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(W.COCO_WEIGHTS_ENV, raising=False)
    default = tmp_path / "keras_home" / "models" / "mask_rcnn_coco.h5"
    default.parent.mkdir(parents=True)
    default.write_bytes(b"")
    assert W.resolve_coco_weights() == str(default)

    from_env = tmp_path / "env" / "mask_rcnn_coco.h5"
    from_env.parent.mkdir()
    from_env.write_bytes(b"")
    monkeypatch.setenv(W.COCO_WEIGHTS_ENV, str(from_env))
    assert W.resolve_coco_weights() == str(from_env)
    monkeypatch.setenv(W.COCO_WEIGHTS_ENV, str(from_env.parent))  # a directory holding it
    assert W.resolve_coco_weights() == str(from_env)

    given = tmp_path / "given.h5"
    given.write_bytes(b"")
    assert W.resolve_coco_weights(given) == str(given)


def test_resolve_coco_weights_missing_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(W.COCO_WEIGHTS_ENV, raising=False)
    default = str(tmp_path / "keras_home" / "models" / "mask_rcnn_coco.h5")
    with pytest.raises(FileNotFoundError) as info:
        W.resolve_coco_weights()
    message = str(info.value)
    assert W.COCO_WEIGHTS_URL in message and default in message
    assert W.COCO_WEIGHTS_ENV in message
    assert W.COCO_WEIGHTS_URL == (
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5")

    # A wrong explicit setting is an error, even when the default file exists.
    os.makedirs(os.path.dirname(default))
    open(default, "wb").close()
    wrong = str(tmp_path / "typo.h5")
    monkeypatch.setenv(W.COCO_WEIGHTS_ENV, wrong)
    with pytest.raises(FileNotFoundError, match=W.COCO_WEIGHTS_ENV) as info:
        W.resolve_coco_weights()
    assert wrong in str(info.value)
    with pytest.raises(FileNotFoundError, match="typo2"):
        W.resolve_coco_weights(tmp_path / "typo2.h5")


# ---------------------------------------------------------------------------------------------
# Weights that describe themselves

def test_native_file_carries_config_and_class_names(tmp_path, model):
    path = str(tmp_path / "m.weights.h5")
    W.save_weights(model, path, config_yaml="NAME: toy\nNUM_CLASSES: 3\n", class_names=["BG", "leaf", "stem"])
    metadata = W.read_metadata(path)
    assert metadata.config_yaml == "NAME: toy\nNUM_CLASSES: 3\n"
    assert metadata.class_names == ["BG", "leaf", "stem"]
    with h5py.File(path, "r") as f:  # root attributes, beside Keras's own layout
        assert "config_yaml" in f.attrs and "layers" in f
    target = build_model()  # Keras's own loader and the loader by name still read it
    W.load_weights(target, path)
    assert_weights_equal(target, snapshot(model))
    W.load_weights_auto(build_model(), path)

    plain = str(tmp_path / "plain.weights.h5")
    W.save_weights(model, plain)
    assert W.read_metadata(plain) is None
    assert W.read_metadata(write_keras2_h5(tmp_path / "w.h5", matterport_spec(np.random.default_rng(0)))) is None


def test_maskrcnn_save_weights_records_config_and_training_class_names(tmp_path):
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN
    from tests.toy_data import ToyConfig

    model = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1), tmp_path)
    path = model.save_weights(tmp_path / "a.weights.h5")
    metadata = W.read_metadata(path)
    assert ToyConfig.from_yaml_text(metadata.config_yaml) == ToyConfig(IMAGES_PER_GPU=1)
    assert Config.from_yaml_text(metadata.config_yaml).to_dict() == ToyConfig(IMAGES_PER_GPU=1).to_dict()
    assert metadata.class_names is None  # not told, not known
    model.save_weights(tmp_path / "b.weights.h5", class_names=["BG", "shape"])
    assert W.read_metadata(tmp_path / "b.weights.h5").class_names == ["BG", "shape"]
    other = MaskRCNN("inference", ToyConfig(IMAGES_PER_GPU=1), tmp_path)
    other.load_weights(str(tmp_path / "b.weights.h5"))
    assert other.class_names == ["BG", "shape"]


def test_mismatch_error_says_another_configuration_first(tmp_path, rng):
    net = build_model(num_classes=3)
    with pytest.raises(W.WeightsMismatchError) as info:
        W.load_legacy_h5(net, write_keras2_h5(tmp_path / "w.h5", matterport_spec(rng, num_classes=5)))
    first, *rest = str(info.value).splitlines()
    assert first.startswith(f"{tmp_path / 'w.h5'} does not fit the model: these weights were trained with another "
                            f"configuration (")
    assert first == info.value.headline and "mrcnn_class_logits" in first
    assert any("mrcnn_class_logits" in line for line in rest)
    assert "mrcnn_class_logits" in info.value.layers and info.value.problems
    assert not any(word in str(info.value).lower() for word in ("leaf", "--config"))


def test_missing_matterport_file_says_where_to_get_it(tmp_path, model, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    missing = str(tmp_path / "mask_rcnn_coco.h5")
    with pytest.raises(W.WeightsFileNotFoundError) as info:
        W.load_weights_auto(model, missing)
    message = str(info.value)
    assert message.startswith(f"Weights file not found: {missing}. ")
    assert W.COCO_WEIGHTS_URL in message and W.COCO_WEIGHTS_ENV in message
    assert str(tmp_path / "keras_home" / "models" / "mask_rcnn_coco.h5") in message
    other = str(tmp_path / "other.h5")
    with pytest.raises(W.WeightsFileNotFoundError) as info:
        W.load_weights_auto(model, other)
    assert str(info.value) == f"Weights file not found: {other}"
    help_text = W.coco_weights_help()
    assert "e.g." not in help_text and "pass the path" not in help_text
    assert "For example:\n  mkdir -p " in help_text
