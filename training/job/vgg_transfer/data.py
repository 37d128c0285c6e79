"""Channels → tf.data pipelines: channel checks, a decode-once image cache, the seed's augmentation.

Each split is decoded and resized once per job into a uint8 cache (as flow_from_directory resized
on load); every epoch then shuffles indices into it. The seed's augmentation warps a whole batch
as the first step of the training step, on the accelerator, in ops XLA compiles (so it stays
there with xla=true). Images stay in [0, 255]
here; rescaling or VGG16 preprocessing lives inside the model, so the saved model takes raw
images.
"""

import dataclasses
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow import keras

from vgg_transfer import config, contract

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


class ChannelError(contract.JobError, ValueError):
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


def decode_resized(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One image file as the model sees it before augmentation (see image_from_bytes)."""
    return image_from_bytes(tf.io.read_file(path), image_size)


def image_from_bytes(data, image_size: int) -> tf.Tensor:
    """Encoded image bytes as the model sees them before augmentation: uint8, ``image_size``
    square (bilinear resize of the decode), as flow_from_directory resized on load. Training,
    evaluation and ``make predict`` all go through here."""
    image = decode(tf.convert_to_tensor(data, dtype=tf.string), image_size)
    image = tf.image.resize(image, (image_size, image_size))
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    image.set_shape((image_size, image_size, 3))
    return image


class ImageCache:
    """Every image of a split, decoded and resized once: uint8 [n, size, size, 3] in memory, or
    in a memory-mapped file when memory is short. Epochs then read arrays, not JPEGs."""

    def __init__(self, split: Split, images: np.ndarray, location: str) -> None:
        self.split = split
        self.images = images
        self.labels = np.array(split.labels, dtype=np.float32)
        self.location = location
        self.served = 0  # images handed to the input pipeline so far
        self._lock = threading.Lock()

    def take(self, indices: np.ndarray):
        """One batch: a fancy-indexing copy (sorting first, for memory-mapped reads, cost more
        than it saved), counted."""
        with self._lock:
            self.served += len(indices)
        return self.images[indices], self.labels[indices]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def describe(self) -> str:
        return f"{self.split.name}: {len(self)} images, {self.nbytes / 1e6:.0f} MB {self.location}"


def available_memory() -> int:
    """Bytes this process can still use (MemAvailable, capped by a cgroup limit)."""
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 << 30  # not Linux: assume a workstation's few GB
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as handle:
                available = min(available, int(handle.read().strip()))
        except (OSError, ValueError):
            continue
    return available


def build_cache(
    split: Split,
    image_size: int,
    cache_dir: str,
    memory_budget: Optional[int] = None,
    threads: int = 0,
) -> ImageCache:
    """Decodes the split once, in parallel, into a uint8 array: in memory when it takes at most
    ``memory_budget`` bytes (default: a third of the memory available), else in
    ``cache_dir/<split>-<size>.npy`` on disk, memory-mapped."""
    shape = (len(split), image_size, image_size, 3)
    nbytes = int(np.prod(shape))
    budget = available_memory() // 3 if memory_budget is None else memory_budget
    if nbytes <= budget:
        images, location = np.empty(shape, dtype=np.uint8), "in memory"
    else:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"{split.name}-{image_size}.npy")
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        location = f"in {path} (memory-mapped: {nbytes >> 20} MiB > {budget >> 20} MiB budget)"
    dataset = tf.data.Dataset.from_tensor_slices(np.array(split.paths)).map(
        lambda path: decode_resized(path, image_size),
        num_parallel_calls=threads or tf.data.AUTOTUNE,
        deterministic=True,
    )
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = threads
        dataset = dataset.with_options(options)
    start = 0
    for batch in dataset.batch(256).prefetch(2):
        images[start : start + len(batch)] = batch.numpy()
        start += len(batch)
    return ImageCache(split, images, location)


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


def image_order(
    count: int, training: bool, seed: int, num_shards: int = 1, shard_index: int = 0
) -> tf.data.Dataset:
    """Indices into a split's cache in the order one worker reads them.

    Training order is a fresh shuffle every epoch, the same on every worker (same seed); each
    worker then keeps every num_shards-th index from its own on, so that across workers no image
    is read twice in an epoch. Every worker gets the same number of images, so that all run the
    same number of steps (a worker that runs out first would feed its replicas empty batches):
    the count % num_shards images at the end of each epoch's shuffle sit the epoch out, a
    different few every epoch. (TensorFlow's auto-sharding by element would shard the output of
    a non-deterministic parallel pipeline, where workers' orders differ and shards overlap.)"""
    order = tf.data.Dataset.range(count)
    if training:
        order = order.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if num_shards > 1:
        order = order.take(count - count % num_shards).shard(num_shards, shard_index)
    return order


class BatchingError(contract.JobError, ValueError):
    """A split or batch size that cannot give every replica at least one image per batch."""


# The distribution strategy cuts every batch into one piece per replica in sync (with several
# workers, all workers' replicas: each worker's batch is taken as a global one). Keras 2 and 3
# both fail mid-epoch when a full batch does not divide evenly, or when a piece is empty.
def short_last_batch(count: int, batch_size: int, replicas: int) -> bool:
    """Would the last batch hold fewer images than there are replicas (an empty piece)?"""
    return 0 < count % batch_size < replicas


def evaluation_batch_size(count: int, batch_size: int, replicas: int, split: str = "") -> int:
    """A multiple of replicas whose last batch leaves no replica without an image: the largest up
    to batch_size, else the smallest up to twice that (evaluation keeps no activations for a
    backward pass, so it has the memory). Evaluation must see every image, and its metrics do not
    depend on the batch size; with one replica this is batch_size itself."""
    smaller = range(batch_size - batch_size % replicas, 0, -replicas)
    larger = range(batch_size - batch_size % replicas + replicas, 2 * batch_size + 1, replicas)
    for size in (*smaller, *larger):
        if not short_last_batch(count, size, replicas):
            return size
    raise BatchingError(
        f"the {split or 'evaluation'} split's {count} images cannot be batched so that each of "
        f"the {replicas} replicas gets an image in every batch (batch_size={batch_size}): "
        "change batch_size or the number of GPUs or instances"
    )


def batch_images(
    order: tf.data.Dataset, count: int, batch_size: int, training: bool, replicas: int, split=""
) -> tf.data.Dataset:
    """Batches every replica gets a piece of. Training drops a last batch smaller than the
    replicas (fewer than replicas images an epoch, a different few each epoch); evaluation picks
    a batch size that needs no drop. One replica: plain batch(batch_size)."""
    problem = config.batch_problem(batch_size, replicas)
    if problem:
        raise BatchingError(problem)
    if training:
        return order.batch(batch_size, drop_remainder=short_last_batch(count, batch_size, replicas))
    return order.batch(evaluation_batch_size(count, batch_size, replicas, split))


@dataclasses.dataclass(frozen=True)
class Sharding:
    """How the input is shared out: ``workers`` hosts (this one ``index``), and the ``replicas`` in
    sync, all workers' together, that the strategy cuts every batch into."""

    workers: int = 1
    index: int = 0
    replicas: int = 1


def make_dataset(
    cache: ImageCache,
    hp: config.Hyperparameters,
    training: bool,
    sharding: Sharding = Sharding(),
    augment: bool = False,
    threads: int = 0,
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], labels) from the cache; training order is a fresh
    shuffle of image indices every epoch (``hp.seed``), in batches of ``hp.batch_size``.
    ``augment`` warps the batches here, on the CPU, as the seed's generator did (make bench
    compares the two); the job augments in the training step instead (SeedAugmentation).

    With several workers training reads this worker's share; evaluation reads the whole split on
    every worker, so that all run the same steps and every image counts once per worker:
    accuracy and loss are the split's own. ``threads``: make bench's pipeline on that many cores."""
    count = len(cache)
    if training:
        order = image_order(count, True, hp.seed, sharding.workers, sharding.index)
        count //= sharding.workers
    else:
        order = image_order(count, False, hp.seed)
    size = cache.images.shape[1]

    def load(indices):
        batch, batch_labels = tf.numpy_function(cache.take, [indices], (tf.uint8, tf.float32))
        batch.set_shape((None, size, size, 3))
        batch_labels.set_shape((None,))
        if augment:  # the warp reads the uint8 batch, gathering bytes
            return augment_batch(batch, compiled=True), batch_labels
        return tf.cast(batch, tf.float32), batch_labels

    batches = batch_images(
        order, count, hp.batch_size, training, sharding.replicas, cache.split.name
    )
    dataset = batches.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if sharding.workers > 1:
        # The strategy splits each batch into one piece per replica, so a worker runs more steps
        # than its dataset has batches; Keras 3 would stop at the dataset's known cardinality
        # and skip images. Unknown cardinality: every step runs until the data ends.
        dataset = dataset.filter(lambda images, labels: True)
    options = tf.data.Options()
    # Sharded explicitly above; the distribution strategy must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = threads
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def training_share(count: int, batch_size: int, sharding: Sharding) -> int:
    """The training images one worker reads an epoch (image_order, batch_images)."""
    share = count // sharding.workers
    if short_last_batch(share, batch_size, sharding.replicas):
        return share - share % batch_size
    return share


class InputCount(keras.callbacks.Callback):
    """With several workers: what this worker read for training each epoch, in how many steps.

    The strategy cuts each worker's batches into pieces for the replicas of all workers, so a
    worker runs more steps than its dataset has batches, and make_dataset hides the dataset's
    length from Keras on purpose (it would stop early). Keras then reads the first epoch to its
    end, warns "Your input ran out of data; interrupting training" there, and runs as many steps
    every later epoch. These lines show what that warning leaves out: each epoch reads the
    worker's whole share, in the same number of steps."""

    def __init__(self, cache: ImageCache, share: int, sharding: Sharding) -> None:
        super().__init__()
        self.cache, self.share, self.sharding = cache, share, sharding
        self.mark = self.steps = 0
        self.first = True

    def on_train_begin(self, logs=None) -> None:
        self.mark, self.first = self.cache.served, True

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.steps = 0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.steps += 1

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        read, self.mark = self.cache.served - self.mark, self.cache.served
        whole = "its whole share" if read == self.share else f"expected {self.share}"
        note = ""
        if self.first and read == self.share:
            note = (
                "; Keras' warning that the input ran out of data marks where it learned the "
                "epoch's length: no image was skipped"
            )
        self.first = False
        print(
            f"[input] worker {self.sharding.index + 1}/{self.sharding.workers}, epoch "
            f"{epoch + 1}: read {read} "
            f"training images ({whole}) in {self.steps} steps{note}",
            flush=True,
        )


def labels_array(split: Split) -> np.ndarray:
    return np.array(split.labels, dtype=np.int64)


def split_summary(splits: dict[str, Split]) -> dict[str, dict[str, int]]:
    return {name: dict(split.class_counts(), total=len(split)) for name, split in splits.items()}
