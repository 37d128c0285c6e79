"""The seed's model: VGG16 conv base → Flatten → Dense(256, relu) → Dense(1, sigmoid).

The conv base's layers are called directly in one flat functional graph (not nested), so the
saved ``.h5`` holds plain layers that Keras 2 and Keras 3 both load. Preprocessing is part of the
graph, so the saved model takes raw RGB images in [0, 255].
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow import keras

from vgg_transfer import contract

# VGG16's ImageNet training used caffe-style inputs: BGR order, per-channel mean subtracted.
VGG16_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


class WeightsError(contract.JobError, RuntimeError):
    """VGG16 weights cannot be had as asked; the message names the remedy."""


def preprocessing_layer(kind: str) -> keras.layers.Layer:
    if kind == "rescale":
        return keras.layers.Rescaling(1.0 / 255, name="rescale")
    # preprocess_input("caffe") as a fixed 1×1 convolution: a channel permutation (RGB→BGR)
    # plus the mean as a bias. A plain Conv2D serialises in every Keras version; a Lambda does not.
    kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        kernel[0, 0, rgb, bgr] = 1.0
    bias = -np.array(VGG16_BGR_MEAN, dtype=np.float32)
    return keras.layers.Conv2D(
        3,
        1,
        name="vgg16_preprocess",
        trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant(bias),
    )


def load_conv_base(weights: str, image_size: int) -> keras.Model:
    """VGG16 without its top, with weights as asked and never another kind silently."""
    shape = (image_size, image_size, 3)
    if weights == "none":
        return keras.applications.VGG16(weights=None, include_top=False, input_shape=shape)
    if weights == "imagenet":
        try:
            return keras.applications.VGG16(
                weights="imagenet", include_top=False, input_shape=shape
            )
        except Exception as error:  # Keras raises a bare Exception on a failed download
            raise WeightsError(
                f"could not download the ImageNet weights ({error}). The job needs internet access for "
                f"weights=imagenet; otherwise upload {IMAGENET_WEIGHTS_FILE} and pass weights=<its path> (the launcher's "
                "WEIGHTS=..., which uses the weights channel), or weights=none for a smoke run "
                "with random weights"
            ) from error
    if not os.path.isfile(weights):
        raise WeightsError(
            f"weights file {weights!r} does not exist; pass weights=imagenet, weights=none or the path "
            f"of a VGG16 no-top .h5 such as {IMAGENET_WEIGHTS_FILE}"
        )
    try:
        return keras.applications.VGG16(weights=weights, include_top=False, input_shape=shape)
    except Exception as error:
        raise WeightsError(
            f"weights file {weights!r} does not fit VGG16 without its top ({error}); use {IMAGENET_WEIGHTS_FILE}"
        ) from error


def build_model(
    image_size: int, preprocessing: str, weights: str, dropout: float = 0.0
) -> keras.Model:
    conv_base = load_conv_base(weights, image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = preprocessing_layer(preprocessing)(inputs)
    for layer in conv_base.layers[1:]:  # reuse the loaded layers in one flat graph
        x = layer(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", name="dense")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 output keeps the sigmoid and the loss stable under mixed precision.
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prediction", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vgg16_dogs_cats")


def with_augmentation(model: keras.Model, augmentation: keras.layers.Layer) -> keras.Model:
    """The model behind a training-only augmentation layer: what fit() trains. It shares every
    weight with ``model``, which is what gets checkpointed and saved."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(inputs, model(augmentation(inputs)), name="augmenting")


def conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if layer.name.startswith("block")]


def head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    names = ("flatten", "dense", "dropout", "prediction")
    return [layer for layer in model.layers if layer.name in names]


def freeze_conv_base(model: keras.Model) -> None:
    for layer in conv_layers(model):
        layer.trainable = False


def unfreeze_from(model: keras.Model, first_trainable: str) -> None:
    """Layers from ``first_trainable`` on train; earlier conv layers stay frozen."""
    trainable = False
    for layer in conv_layers(model):
        trainable = trainable or layer.name == first_trainable
        layer.trainable = trainable


def feature_extractor(model: keras.Model) -> keras.Model:
    """The frozen part of the graph: raw image → block5_pool features (for feature caching).

    The layers are shared with the VGG16 they were loaded in, so ``layer.output`` would name that
    graph's tensor; calling them again on a fresh input builds this graph instead.
    """
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in model.layers[1:]:
        if layer.name == "flatten":
            break
        x = layer(x)
    return keras.Model(inputs, x, name="features")


def head_model(model: keras.Model, feature_shape) -> keras.Model:
    """The head alone, sharing its layers (and so its weights) with ``model``."""
    inputs = keras.Input(tuple(feature_shape), name="features")
    x = inputs
    for layer in head_layers(model):
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def set_precision(mixed_precision: bool, on_gpu: bool) -> str:
    policy = "float32"
    if mixed_precision:
        policy = "mixed_float16" if on_gpu else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


LOSS = "binary_crossentropy"  # one sigmoid output: P(dog)


def compile_model(
    model: keras.Model,
    optimizer: Optional[keras.optimizers.Optimizer] = None,
    xla: bool = False,
    extra_metrics=(),
) -> keras.Model:
    """The one place the loss is set: training phases pass their optimizer; evaluation passes
    none (it does not step) and extra metrics."""
    model.compile(
        optimizer=optimizer or "rmsprop",
        loss=LOSS,
        metrics=["accuracy", *extra_metrics],
        jit_compile=bool(xla),
    )
    return model


def is_mixed(model: keras.Model) -> bool:
    return any(_policy_name(layer) != "float32" for layer in model.layers)


def _policy_name(layer: keras.layers.Layer) -> str:
    policy = getattr(layer, "dtype_policy", None) or getattr(layer, "_dtype_policy", None)
    return getattr(policy, "name", "float32")


def float32_copy(model: keras.Model) -> keras.Model:
    """The same graph and weights with every layer computing in float32.

    Mixed precision is a training-time choice. A model saved with mixed layer policies runs in
    float16 or bfloat16 wherever it is loaded (slow and less exact on a CPU), and Keras 3 cannot
    even read the ``Policy`` objects Keras 2 writes into an .h5 (its loader fails with "'str'
    object has no attribute 'quantization_mode'"). The variables are float32 either way."""
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def save_model(model: keras.Model, model_dir: str) -> str:
    """HDF5: the one full-model format that Keras 2 (the TF 2.11 image) and Keras 3 both load,
    with float32 layers whatever precision trained it (see float32_copy)."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, contract.MODEL_FILE)
    (float32_copy(model) if is_mixed(model) else model).save(path)
    return path


def load_model(path: str, compile: bool = False) -> keras.Model:  # noqa: A002 (Keras' name)
    """A saved model.h5 with float32 layers, also one saved with mixed policies by an older
    version of this job (Keras 2 names its policy class ``Policy``, Keras 3 ``DTypePolicy``)."""
    custom = {"Policy": keras.DTypePolicy} if hasattr(keras, "DTypePolicy") else None
    model = keras.models.load_model(path, compile=compile, custom_objects=custom)
    return float32_copy(model) if is_mixed(model) else model


def keras_version() -> str:
    return getattr(keras, "__version__", tf.__version__)


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))
