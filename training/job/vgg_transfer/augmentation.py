"""The seed's augmentation (its ImageDataGenerator's random affine and horizontal flip), one warp
per batch, as the first step of the training step, on the accelerator, in ops XLA compiles (so it
stays there with xla=true): parameters drawn per image, their matrices, a sampling grid and one
gather of each pixel's four neighbours."""

import math

import tensorflow as tf
from tensorflow import keras

# The seed's ImageDataGenerator settings (docs/seed-study.md).
ROTATION_DEGREES = 40.0
WIDTH_SHIFT = 0.2  # fraction of the width
HEIGHT_SHIFT = 0.2  # fraction of the height
SHEAR_DEGREES = 0.2  # Keras reads shear_range in degrees, so the seed's 0.2 is a tiny shear
ZOOM = 0.2  # x and y zoom drawn independently from [0.8, 1.2]


# --- augmentation: the seed's ImageDataGenerator, one warp per batch -----------------------------
AUGMENTATION_PARAMETERS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip")


def random_parameters(batch: int, height: int, width: int, seed=None) -> dict:
    """Per-image draws in the seed's ranges, named as ImageDataGenerator.apply_transform names
    them: theta (rad), tx rows / ty columns (pixels), shear (rad), zx rows / zy columns, flip.
    ``seed`` (two int32): stateless draws from it, which XLA honours (it ignores the seeds of
    stateful random ops); default: TensorFlow's stateful ones, seeded by the global seed."""

    def uniform(shape, low=0.0, high=1.0, index=0):
        if seed is None:
            return tf.random.uniform(shape, low, high)
        return tf.random.stateless_uniform(shape, seed + [0, index], low, high)

    return {
        "theta": uniform([batch], -1.0, 1.0, 0) * (ROTATION_DEGREES * math.pi / 180.0),
        "tx": uniform([batch], -HEIGHT_SHIFT, HEIGHT_SHIFT, 1) * height,
        "ty": uniform([batch], -WIDTH_SHIFT, WIDTH_SHIFT, 2) * width,
        "shear": uniform([batch], -1.0, 1.0, 3) * (SHEAR_DEGREES * math.pi / 180.0),
        "zx": uniform([batch], 1.0 - ZOOM, 1.0 + ZOOM, 4),
        "zy": uniform([batch], 1.0 - ZOOM, 1.0 + ZOOM, 5),
        "flip": tf.cast(uniform([batch], index=6) < 0.5, tf.float32),
    }


def affine_transforms(params: dict, height: int, width: int) -> tf.Tensor:
    """One output→input transform per image, as ImageDataGenerator composes it, in
    ImageProjectiveTransformV3's layout ([batch, 8]: a0 a1 a2 b0 b1 b2 0 0).

    Keras composes rotation @ shift @ shear @ zoom about the image centre in (row, col) space,
    then flips. Built here in that space, then swapped to (x=col, y=row)."""
    theta, shear = params["theta"], params["shear"]
    batch = tf.shape(theta)[0]
    zeros, ones = tf.zeros([batch]), tf.ones([batch])

    def matrix(rows):
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)  # [batch, 3, 3]

    cos, sin = tf.cos(theta), tf.sin(theta)
    rotation = matrix([[cos, -sin, zeros], [sin, cos, zeros], [zeros, zeros, ones]])
    shift = matrix([[ones, zeros, params["tx"]], [zeros, ones, params["ty"]], [zeros, zeros, ones]])
    shearing = matrix(
        [[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros], [zeros, zeros, ones]]
    )
    zoom = matrix(
        [[params["zx"], zeros, zeros], [zeros, params["zy"], zeros], [zeros, zeros, ones]]
    )
    rc = tf.matmul(tf.matmul(tf.matmul(rotation, shift), shearing), zoom)
    # About the centre, as transform_matrix_offset_center: T(c) · M · T(-c), c = size/2 - 0.5.
    c_row, c_col = height / 2.0 - 0.5, width / 2.0 - 0.5
    to_centre = tf.constant([[1.0, 0.0, c_row], [0.0, 1.0, c_col], [0.0, 0.0, 1.0]])
    from_centre = tf.constant([[1.0, 0.0, -c_row], [0.0, 1.0, -c_col], [0.0, 0.0, 1.0]])
    rc = tf.matmul(tf.matmul(to_centre[None], rc), from_centre[None])
    # (row, col) → (x, y): swap the two axes on both sides.
    swap = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    xy = tf.matmul(tf.matmul(swap[None], rc), swap[None])
    # Horizontal flip after the affine: output x reads the transformed image at width-1-x.
    flip = params["flip"]
    flip_matrix = matrix(
        [
            [1.0 - 2.0 * flip, zeros, flip * (width - 1)],
            [zeros, ones, zeros],
            [zeros, zeros, ones],
        ]
    )
    xy = tf.matmul(xy, flip_matrix)
    return tf.reshape(xy, [batch, 9])[:, :8]


def sampling_grid(transforms: tf.Tensor, height, width) -> tuple:
    """Where each output pixel reads the input: (x, y), each [batch, height, width], from the
    batch's output→input matrices, clamped into the image: the seed's fill_mode="nearest"
    repeats the edge pixels (ImageProjectiveTransformV3 clamps the same way)."""
    height_f, width_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    rows, cols = tf.meshgrid(tf.range(height_f), tf.range(width_f), indexing="ij")
    t = transforms[:, :, None, None]
    x = t[:, 0] * cols + t[:, 1] * rows + t[:, 2]  # affine: the projective row stays (0, 0)
    y = t[:, 3] * cols + t[:, 4] * rows + t[:, 5]
    return tf.clip_by_value(x, 0.0, width_f - 1.0), tf.clip_by_value(y, 0.0, height_f - 1.0)


def warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Bilinear warp of a batch (uint8 or float) with the edges repeated, as float32: a sampling
    grid from the matrices and one gather of each output pixel's four neighbours, by flat index
    into the whole batch. Only ops XLA compiles (ImageProjectiveTransformV3, the op this
    replaces, has no XLA kernel), with that op's arithmetic: clamp, then interpolate. Gathering
    uint8 pixels and converting the gathered ones moves a quarter of the bytes."""
    return warp_from(images, tf.range(tf.shape(images)[0]), transforms)


def warp_from(images: tf.Tensor, which: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """``images[which[i]]`` warped by ``transforms[i]`` for each i (see warp): the gather reads
    the chosen images' pixels wherever they are in ``images``, a batch or a whole cache."""
    shape = tf.shape(images)
    height, width, channels = shape[1], shape[2], images.shape[3]
    x, y = sampling_grid(transforms, height, width)
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    col0, row0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    col1, row1 = tf.minimum(col0 + 1, width - 1), tf.minimum(row0 + 1, height - 1)
    first = tf.cast(which, tf.int32)[:, None, None, None] * (height * width)  # first pixels
    corners = tf.stack(
        [row0 * width + col0, row0 * width + col1, row1 * width + col0, row1 * width + col1],
        axis=1,
    )
    pixels = tf.gather(tf.reshape(images, [-1, channels]), corners + first)
    pixels = tf.cast(pixels, tf.float32)  # [batch, 4 corners, height, width, channels]
    top = pixels[:, 0] + wx * (pixels[:, 1] - pixels[:, 0])
    bottom = pixels[:, 2] + wx * (pixels[:, 3] - pixels[:, 2])
    return top + wy * (bottom - top)


def augment(images: tf.Tensor, seed=None) -> tf.Tensor:
    """The seed's random augmentation of a batch [b, h, w, 3] (uint8 or float) as float32:
    per-image draws (from ``seed``, see random_parameters), their matrices, the warp."""
    height, width = images.shape[1], images.shape[2]
    params = random_parameters(tf.shape(images)[0], height, width, seed)
    return warp(images, affine_transforms(params, height, width))


# The augmentation compiled on its own, draws and matrices included (one XLA launch per batch),
# for where the step around it is not: the input pipeline, and CPU training without xla=true.
# Measured (make bench, row 1e) faster on a CPU than the same ops run one by one, than
# ImageProjectiveTransformV3, and than compiling the warp alone.
compiled_augment = tf.function(augment, jit_compile=True)


def augment_batch(images: tf.Tensor, compiled: bool = False) -> tf.Tensor:
    if not compiled:
        return augment(images)
    # The batch's seed is drawn outside the compiled function, by a stateful op that follows
    # the global seed (hp.seed), so that CPU runs repeat draw for draw.
    seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32)
    return compiled_augment(images, seed)


class SeedAugmentation(keras.layers.Layer):
    """The first step of the training step: the seed's augmentation, in training only, on the
    accelerator, with or without xla=true (the warp is ops XLA compiles). Not part of the saved
    model, which takes images as they are. ``compiled``: compile the warp on its own, for a step
    that is not compiled as a whole."""

    def __init__(self, compiled: bool = False, **kwargs) -> None:
        kwargs.setdefault("dtype", "float32")  # the warp stays float32 under mixed precision
        super().__init__(**kwargs)
        self.compiled = compiled

    def call(self, images, training=None):
        if training:
            return augment_batch(images, self.compiled)
        return images

    def get_config(self) -> dict:
        return dict(super().get_config(), compiled=self.compiled)
