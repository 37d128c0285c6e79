"""Channels → tf.data pipelines: fast channel checks, parallel decode, the seed's augmentation.

Images stay in [0, 255] here; rescaling or VGG16 preprocessing lives inside the model, so the
saved model takes raw images.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

CLASSES = ("cats", "dogs")  # label 0 = cat, 1 = dog: the order flow_from_directory used
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The seed's ImageDataGenerator settings (docs/seed-study.md).
ROTATION_DEGREES = 40.0
WIDTH_SHIFT = 0.2  # fraction of the width
HEIGHT_SHIFT = 0.2  # fraction of the height
SHEAR_DEGREES = 0.2  # Keras reads shear_range in degrees, so the seed's 0.2 is a tiny shear
ZOOM = 0.2  # x and y zoom drawn independently from [0.8, 1.2]


class ChannelError(ValueError):
    """A channel the job cannot train on; the message names the channel and the files."""


class Split:
    """The image paths and labels of one channel."""

    def __init__(self, name: str, paths: list[str], labels: list[int]) -> None:
        self.name = name
        self.paths = paths
        self.labels = labels

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        return {c: self.labels.count(i) for i, c in enumerate(CLASSES)}


def _looks_like_image(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)


def read_split(name: str, directory: str) -> Split:
    """Lists a channel and checks every file's header: seconds, not a decode of every image."""
    if not directory or not os.path.isdir(directory):
        raise ChannelError(
            f"channel {name!r}: directory {directory!r} does not exist; pass --{name} or stage the data "
            "(make data / make data-sample)"
        )
    paths, labels, bad = [], [], []
    for label, cls in enumerate(CLASSES):
        class_dir = os.path.join(directory, cls)
        if not os.path.isdir(class_dir):
            raise ChannelError(
                f"channel {name!r}: class folder {class_dir!r} is missing; expected {directory}/cats and {directory}/dogs"
            )
        for entry in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, entry)
            if not entry.lower().endswith(IMAGE_SUFFIXES) or not os.path.isfile(path):
                continue
            try:
                ok = os.path.getsize(path) > 0 and _looks_like_image(path)
            except OSError:
                ok = False
            if not ok:
                bad.append(path)
                continue
            paths.append(path)
            labels.append(label)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ChannelError(
            f"channel {name!r}: {len(bad)} unreadable, empty or non-image file(s): {shown}; remove them or re-run "
            "make data, which excludes them"
        )
    split = Split(name, paths, labels)
    empty = [c for c, n in split.class_counts().items() if n == 0]
    if empty:
        raise ChannelError(
            "channel {!r}: no images in class folder(s) {} under {!r}".format(
                name, ", ".join(empty), directory
            )
        )
    return split


def read_channels(directories: dict[str, str]) -> dict[str, Split]:
    return {name: read_split(name, path) for name, path in directories.items()}


def _decode_problem(path: str) -> str:
    """Why the image does not decode ("" when it does). JPEGs decode at 1/8 scale: libjpeg still
    reads every byte of the compressed data, so truncation and corruption show, at a fraction of
    the cost of a full decode."""
    try:
        data = tf.io.read_file(path)
        if tf.io.is_jpeg(data):
            tf.io.decode_jpeg(data, channels=3, ratio=8)
        else:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        return ""
    except (tf.errors.OpError, ValueError) as error:
        return str(getattr(error, "message", error)).strip().splitlines()[0][:120]


def check_decodes(splits: dict[str, Split], threads: int = 0) -> None:
    """Refuses, naming the files, images whose header is fine but whose data does not decode:
    before training, not as a TensorFlow traceback mid-epoch after GPU time was spent."""
    bad = []
    with ThreadPoolExecutor(max_workers=threads or min(32, (os.cpu_count() or 1) * 2)) as pool:
        for split in splits.values():
            for path, problem in zip(split.paths, pool.map(_decode_problem, split.paths)):
                if problem:
                    bad.append(f"{split.name}: {path} ({problem})")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ChannelError(
            f"{len(bad)} image(s) do not decode: {shown}. Remove them, or re-run make data, "
            "which excludes them"
        )


def decode(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes a JPEG at the smallest DCT scale (1, 1/2, 1/4, 1/8) that still covers
    ``image_size``: libjpeg skips most of the inverse DCT, the input pipeline's main cost, and
    the downscale averages pixels like an area filter. Other formats decode in full."""

    def jpeg_at(ratio: int):
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=ratio)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        short_side = tf.minimum(shape[0], shape[1])
        branches = [jpeg_at(1), jpeg_at(2), jpeg_at(4), jpeg_at(8)]
        index = tf.reduce_sum(
            tf.cast(short_side >= image_size * tf.constant([2, 4, 8]), tf.int32)
        )  # how many halvings keep the short side >= image_size
        return tf.switch_case(index, branches)

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def load_image(path: tf.Tensor, image_size: int, augment: bool = False) -> tf.Tensor:
    """Read, decode and resize (and, for training, augment) one image; float32 in [0, 255]."""
    image = decode(tf.io.read_file(path), image_size)
    if augment:
        return resize_and_augment(image, image_size)
    image = tf.image.resize(image, (image_size, image_size))  # bilinear
    image.set_shape((image_size, image_size, 3))
    return image


def random_affine_transforms(batch: int, height: int, width: int) -> tf.Tensor:
    """One fused output→input transform per image, as ImageDataGenerator composes it.

    Keras composes rotation @ shift @ shear @ zoom about the image centre in (row, col) space,
    then flips. Built here in (x=col, y=row) space for ImageProjectiveTransformV3, so one op
    transforms the whole batch on every TF version (Keras 2 has no shear layer).
    """
    uniform = tf.random.uniform
    theta = uniform([batch], -1.0, 1.0) * (ROTATION_DEGREES * math.pi / 180.0)
    shift_rows = uniform([batch], -HEIGHT_SHIFT, HEIGHT_SHIFT) * height
    shift_cols = uniform([batch], -WIDTH_SHIFT, WIDTH_SHIFT) * width
    shear = uniform([batch], -1.0, 1.0) * (SHEAR_DEGREES * math.pi / 180.0)
    zoom_rows = uniform([batch], 1.0 - ZOOM, 1.0 + ZOOM)
    zoom_cols = uniform([batch], 1.0 - ZOOM, 1.0 + ZOOM)
    flip = tf.cast(uniform([batch]) < 0.5, tf.float32)

    zeros, ones = tf.zeros([batch]), tf.ones([batch])

    def matrix(rows):
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)  # [batch, 3, 3]

    cos, sin = tf.cos(theta), tf.sin(theta)
    rotation = matrix([[cos, -sin, zeros], [sin, cos, zeros], [zeros, zeros, ones]])
    shift = matrix([[ones, zeros, shift_rows], [zeros, ones, shift_cols], [zeros, zeros, ones]])
    shearing = matrix(
        [[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros], [zeros, zeros, ones]]
    )
    zoom = matrix([[zoom_rows, zeros, zeros], [zeros, zoom_cols, zeros], [zeros, zeros, ones]])
    rc = tf.matmul(tf.matmul(tf.matmul(rotation, shift), shearing), zoom)

    # (row, col) → (x, y): swap the two axes on both sides.
    swap = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    xy = tf.matmul(tf.matmul(swap[None], rc), swap[None])
    # About the centre: T(c) · M · T(-c).
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    to_centre = tf.constant([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    from_centre = tf.constant([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    xy = tf.matmul(tf.matmul(to_centre[None], xy), from_centre[None])
    # Horizontal flip after the affine: output x reads the transformed image at width-1-x.
    flip_matrix = matrix(
        [
            [1.0 - 2.0 * flip, zeros, flip * (width - 1)],
            [zeros, ones, zeros],
            [zeros, zeros, ones],
        ]
    )
    xy = tf.matmul(xy, flip_matrix)
    flat = tf.reshape(xy, [batch, 9])
    return flat[:, :8]


def resize_and_augment(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """One bilinear pass from the decoded image to an augmented ``image_size`` square.

    The random transform is drawn in output space and composed with the output→input scale, so
    resizing and augmenting cost one ImageProjectiveTransformV3 instead of two passes."""
    shape = tf.cast(tf.shape(image), tf.float32)
    scale_y, scale_x = shape[0] / image_size, shape[1] / image_size
    zero = tf.constant(0.0)
    scale = tf.stack(
        [
            tf.stack([scale_x, zero, 0.5 * scale_x - 0.5]),  # pixel centres line up
            tf.stack([zero, scale_y, 0.5 * scale_y - 0.5]),
            tf.constant([0.0, 0.0, 1.0]),
        ]
    )
    augment = tf.reshape(
        tf.concat([random_affine_transforms(1, image_size, image_size)[0], [1.0]], axis=0), [3, 3]
    )
    transform = tf.reshape(tf.matmul(scale, augment), [9])[:8]
    output = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],  # uint8 as decoded: no float copy of the full-size image
        transforms=transform[None],
        output_shape=tf.constant([image_size, image_size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",  # the seed's fill_mode="nearest": repeat the edge pixels
    )[0]
    output = tf.cast(output, tf.float32)
    output.set_shape((image_size, image_size, 3))
    return output


def file_order(
    split: Split, training: bool, seed: int, num_shards: int = 1, shard_index: int = 0
) -> tf.data.Dataset:
    """(path, label) pairs in the order one worker reads them.

    Training order is a fresh shuffle every epoch, the same on every worker (same seed); each
    worker then keeps every num_shards-th file from its index on, so that across workers every
    image is read exactly once per epoch. TensorFlow's auto-sharding by element would shard
    after the parallel, non-deterministic decode, where workers' orders differ and shards
    overlap."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.array(split.paths), np.array(split.labels, dtype=np.float32))
    )
    if training:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if num_shards > 1:
        dataset = dataset.shard(num_shards, shard_index)
    return dataset


def make_dataset(
    split: Split,
    image_size: int,
    batch_size: int,
    training: bool,
    augment: bool,
    seed: int,
    threads: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """Decode, resize and augment in parallel, batch, prefetch; sharded across workers."""
    dataset = file_order(split, training, seed, num_shards, shard_index)
    augment = training and augment
    dataset = dataset.map(
        lambda path, label: (load_image(path, image_size, augment), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training,  # training order is shuffled anyway; don't wait in line
    )
    dataset = dataset.batch(batch_size)
    if num_shards > 1:
        # The strategy splits each batch into one piece per replica, so a worker runs more steps
        # than its dataset has batches; Keras 3 would stop at the dataset's known cardinality
        # and skip images. Unknown cardinality: every step runs until the data ends.
        dataset = dataset.filter(lambda images, labels: True)
    options = tf.data.Options()
    # Sharded explicitly in file_order; the distribution strategy must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if threads:
        options.threading.private_threadpool_size = threads  # make bench: per-core speed
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def labels_array(split: Split) -> np.ndarray:
    return np.array(split.labels, dtype=np.int64)


def split_summary(splits: dict[str, Split]) -> dict[str, dict[str, int]]:
    return {name: dict(split.class_counts(), total=len(split)) for name, split in splits.items()}
