"""Which layers train: Matterport's presets and ``set_trainable``.

A preset is a regular expression that must match a layer's whole name (``re.fullmatch``).
"heads" trains the randomly initialised parts (RPN, FPN and the mrcnn_ heads) on top of a
pretrained backbone; "3+", "4+" and "5+" also train the ResNet stages from 3, 4 or 5 up.

BatchNorm differs from Matterport on purpose. There, ``TRAIN_BN = False`` froze only the
statistics (inference mode) while a selected BatchNorm's gamma and beta kept training. Here
a BatchNorm trains (gamma, beta and statistics) only when its name matches *and*
``train_bn`` is True; otherwise it is frozen whole. With the batch of one or two images
detection trains with, the affine parameters of a layer whose statistics are frozen only
drift against the pretrained statistics, and Keras 3 runs every non-trainable
BatchNormalization in inference mode, so "frozen" means one consistent thing.

Changing ``trainable`` after ``compile()`` needs a new ``compile()`` (Keras builds the
train function with the trainable variables of that moment).
"""
import re

import keras

__all__ = ["LAYER_REGEX", "set_trainable", "trainable_layer_names"]

LAYER_REGEX = {
    # All layers but the backbone.
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # From a specific ResNet stage and up.
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # All layers.
    "all": ".*",
}


def set_trainable(model, layer_regex, train_bn=False, verbose=0):
    """Make exactly the weight-carrying layers whose names match ``layer_regex`` trainable.

    model: a Keras model; nested models (``rpn_model``) are entered. A layer inside a
        nested model matches by its own name (Matterport's rule: "rpn_conv_shared") or by
        the nested model's name ("rpn_model").
    layer_regex: a key of :data:`LAYER_REGEX` ("heads", "3+", "4+", "5+", "all") or a
        regular expression, matched against whole layer names.
    train_bn: let matching BatchNorm layers train; if False every BatchNorm is frozen
        (non-trainable, inference mode). See the module docstring for how this differs
        from Matterport. Pass the value the model was built with (config.TRAIN_BN): a
        :class:`mrcnn.layers.BatchNorm` built with train_bn=False stays in inference mode
        regardless, so True here would train only its gamma and beta (Matterport's way).
    verbose: if > 0, print each layer made trainable, as Matterport did.

    Returns: names of the layers made trainable, in model order (nested ones included).
    """
    pattern = re.compile(LAYER_REGEX.get(layer_regex, layer_regex))
    # Setting a container's flag resets its sublayers, so open every container first and
    # then decide layer by layer.
    model.trainable = True
    return _set(model, pattern, train_bn, verbose, parent_matches=False, indent=0)


def _set(model, pattern, train_bn, verbose, parent_matches, indent):
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if verbose > 0:
                print(f"{' ' * indent}In model: {layer.name}")
            matches = parent_matches or bool(pattern.fullmatch(layer.name))
            names += _set(layer, pattern, train_bn, verbose, matches, indent + 4)
            continue
        if not layer.weights:
            continue
        trainable = parent_matches or bool(pattern.fullmatch(layer.name))
        if isinstance(layer, keras.layers.BatchNormalization):
            trainable = trainable and train_bn
        layer.trainable = trainable
        if trainable:
            names.append(layer.name)
            if verbose > 0:
                print(f"{' ' * indent}{layer.name:20}   ({type(layer).__name__})")
    return names


def trainable_layer_names(model):
    """Names of the layers (nested models entered) that currently have trainable weights."""
    if not model.trainable:
        return []
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names += trainable_layer_names(layer)
        elif layer.trainable_weights:
            names.append(layer.name)
    return names
