"""Batching: the order each worker reads a split's cache in, batches every replica gets a piece
of, and the tf.data pipeline the job trains and evaluates on (``make_dataset``), built from
stages make bench composes too (``reading_order``, ``batch_images``, ``loader``, ``finish``)."""

import dataclasses
from typing import Optional

import tensorflow as tf
from tensorflow import keras

from vgg_transfer import config, contract
from vgg_transfer.cache import ImageCache


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


def reading_order(cache: ImageCache, hp: config.Hyperparameters, training: bool,
                  sharding: Sharding = Sharding()) -> tuple:  # fmt: skip
    """(indices into the cache in the order this worker reads them, how many). Training reads
    this worker's share in a fresh shuffle every epoch (``hp.seed``); evaluation reads the whole
    split on every worker, so that all run the same steps and every image counts once per worker:
    accuracy and loss are the split's own."""
    count = len(cache)
    if training:
        return image_order(count, True, hp.seed, sharding.workers, sharding.index), (
            count // sharding.workers
        )
    return image_order(count, False, hp.seed), count


def loader(cache: ImageCache, transform=None):
    """The map from a batch of indices to (images, labels): the uint8 images gathered from the
    cache, then ``transform``ed (default: cast to float32 in [0, 255])."""
    size = cache.images.shape[1]

    def load(indices):
        batch, batch_labels = tf.numpy_function(cache.take, [indices], (tf.uint8, tf.float32))
        batch.set_shape((None, size, size, 3))
        batch_labels.set_shape((None,))
        return (transform or to_float)(batch), batch_labels

    return load


def to_float(batch: tf.Tensor) -> tf.Tensor:
    return tf.cast(batch, tf.float32)


def finish(dataset: tf.data.Dataset, sharding: Sharding = Sharding(),
           options: Optional[tf.data.Options] = None) -> tf.data.Dataset:  # fmt: skip
    """The batches as the strategy takes them, prefetched."""
    if sharding.workers > 1:
        # The strategy splits each batch into one piece per replica, so a worker runs more steps
        # than its dataset has batches; Keras 3 would stop at the dataset's known cardinality
        # and skip images. Unknown cardinality: every step runs until the data ends.
        dataset = dataset.filter(lambda images, labels: True)
    options = options or tf.data.Options()
    # Sharded explicitly (reading_order); the distribution strategy must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    cache: ImageCache,
    hp: config.Hyperparameters,
    training: bool,
    sharding: Sharding = Sharding(),
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 255], labels) from the cache, in batches of
    ``hp.batch_size`` that every replica gets a piece of. The job augments in the training step
    (augmentation.SeedAugmentation), not here."""
    order, count = reading_order(cache, hp, training, sharding)
    batches = batch_images(order, count, hp.batch_size, training, sharding.replicas,
                           cache.split.name)  # fmt: skip
    return finish(batches.map(loader(cache), num_parallel_calls=tf.data.AUTOTUNE), sharding)


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
