"""Channel checks and the input pipeline."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import train
from job_helpers import JOB_DIR
from vgg_transfer import augmentation, batching
from vgg_transfer import cache as job_cache
from vgg_transfer import channels as job_channels
from vgg_transfer.config import Hyperparameters


def test_channels_are_listed_with_labels(channels):
    split = job_channels.read_split("train", str(channels["train"]))
    assert split.class_counts() == {"cats": 12, "dogs": 12}
    assert all(
        label == (1 if "/dogs/" in path else 0)
        for path, label in zip(split.paths, split.labels, strict=True)
    )


def test_missing_channel_is_named(tmp_path):
    with pytest.raises(job_channels.ChannelError, match="channel 'test'.*does not exist"):
        job_channels.read_split("test", str(tmp_path / "nope"))


def test_missing_class_folder_is_named(channels):
    for path in (channels["validation"] / "dogs").iterdir():
        path.unlink()
    (channels["validation"] / "dogs").rmdir()
    with pytest.raises(job_channels.ChannelError, match="class folder .*dogs.* is missing"):
        job_channels.read_split("validation", str(channels["validation"]))


def test_corrupt_and_empty_files_are_listed(channels):
    (channels["train"] / "cats" / "cat.99.jpg").write_bytes(b"")
    (channels["train"] / "dogs" / "dog.98.jpg").write_text("<html>not an image</html>")
    with pytest.raises(job_channels.ChannelError) as caught:
        job_channels.read_split("train", str(channels["train"]))
    assert "cat.99.jpg" in str(caught.value) and "dog.98.jpg" in str(caught.value)


def test_bad_channel_fails_the_job_before_training(job_args, channels, tmp_path, capsys):
    (channels["test"] / "dogs" / "dog.0.jpg").write_bytes(b"\x00\x01")
    assert train.main(job_args()) == 2
    assert "dog.0.jpg" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists(), "training started despite a bad channel"


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_images_that_do_not_decode_are_named_before_training(job_args, channels, tmp_path, capsys):
    # A valid JPEG header with its data cut short passes the header check, then used to kill the
    # run mid-epoch with a TensorFlow traceback that named no file.
    truncate(channels["train"] / "cats" / "cat.3.jpg", 200)
    truncate(channels["validation"] / "dogs" / "dog.1.jpg", 400)
    assert job_channels.read_split("train", str(channels["train"]))  # the header check lets it pass
    assert train.main(job_args()) == 2
    err = capsys.readouterr().err
    assert "2 image(s) do not decode" in err
    assert "cat.3.jpg" in err and "dog.1.jpg" in err
    assert "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists(), "training started despite a corrupt image"


def cache_of(channels, name="train", size=24, **kwargs):
    return job_cache.build_cache(job_channels.read_split(name, str(channels[name])), size, **kwargs)


def test_each_split_is_decoded_once_into_a_uint8_cache(channels, tmp_path):
    cache = cache_of(channels, cache_dir=str(tmp_path / "cache"))
    assert cache.images.shape == (24, 24, 24, 3) and cache.images.dtype == np.uint8
    assert cache.nbytes == 24 * 24 * 24 * 3 and cache.location == "in memory"
    assert list(cache.labels) == [0.0] * 12 + [1.0] * 12
    expected = job_channels.decode_resized(tf.constant(cache.split.paths[5]), 24).numpy()
    np.testing.assert_array_equal(cache.images[5], expected)
    # no memory to spare: the same pixels in a memory-mapped file on the volume
    on_disk = cache_of(channels, cache_dir=str(tmp_path / "cache"), memory_budget=0)
    assert "train-24.npy" in on_disk.location and (tmp_path / "cache" / "train-24.npy").exists()
    np.testing.assert_array_equal(np.asarray(on_disk.images), cache.images)


def identities(cache) -> dict:
    return {cache.images[i].tobytes(): i for i in range(len(cache))}


@pytest.mark.parametrize("memory_budget", [None, 0])
def test_training_reads_every_image_once_per_epoch_in_a_new_order(
    channels, tmp_path, memory_budget
):
    cache = cache_of(channels, cache_dir=str(tmp_path), memory_budget=memory_budget)
    known = identities(cache)
    assert len(known) == len(cache), "generated images are not distinct"
    dataset = batching.make_dataset(cache, Hyperparameters(batch_size=5, seed=3), training=True)
    orders = []
    for _ in range(3):
        order = []
        for images, labels in dataset:
            assert images.dtype == tf.float32 and images.shape[1:] == (24, 24, 3)
            for image, label in zip(images.numpy(), labels.numpy(), strict=True):
                index = known[image.astype(np.uint8).tobytes()]  # unaugmented: cached pixels
                assert label == cache.labels[index]
                order.append(index)
        assert sorted(order) == list(range(len(cache))), "an image is missing or repeated"
        orders.append(order)
    assert len({tuple(o) for o in orders}) == 3, "the training order repeats between epochs"
    assert orders[0] != sorted(orders[0]), "the training set is not shuffled"


def test_validation_reads_the_cache_in_order_without_augmentation(channels, tmp_path):
    cache = cache_of(channels, "validation", cache_dir=str(tmp_path))
    dataset = batching.make_dataset(cache, Hyperparameters(batch_size=5, seed=3), training=False)
    for _ in range(2):
        images = np.concatenate([batch.numpy() for batch, _ in dataset])
        np.testing.assert_array_equal(images, cache.images.astype(np.float32))


def test_two_workers_together_read_every_training_image_once_per_epoch():
    shards = [batching.image_order(24, True, seed=7, num_shards=2, shard_index=i) for i in (0, 1)]
    epochs = []
    for _ in range(2):
        seen = [list(shard.as_numpy_iterator()) for shard in shards]
        assert not set(seen[0]) & set(seen[1]), "workers' shards overlap"
        assert sorted(seen[0] + seen[1]) == list(range(24)), "an image is missing or repeated"
        epochs.append(seen[0] + seen[1])
    assert epochs[0] != epochs[1], "the training order does not change between epochs"


def test_workers_get_equal_shares_and_the_odd_images_sit_out_in_turn():
    shards = [batching.image_order(25, True, seed=7, num_shards=2, shard_index=i) for i in (0, 1)]
    left_out = set()
    for _ in range(6):
        seen = [list(shard.as_numpy_iterator()) for shard in shards]
        assert len(seen[0]) == len(seen[1]) == 12, "workers would run different step counts"
        assert not set(seen[0]) & set(seen[1]), "workers' shards overlap"
        (missing,) = set(range(25)) - set(seen[0] + seen[1])
        left_out.add(missing)
    assert len(left_out) > 1, "the same image sits out every epoch"


@pytest.mark.parametrize(
    ("count", "batch_size", "replicas", "expected"),
    [
        (9, 4, 1, 4),  # one replica: the batch size as given
        (10, 4, 2, 4),  # last batch 2: a piece each
        (9, 4, 2, 6),  # 4 would leave 1 image for 2 replicas, 2 too; 6 leaves 3
        (2000, 64, 8, 64),  # full's test split on 8 GPUs: last batch 16
        (2000, 64, 24, 48),  # 64 is no multiple of 24; 48 leaves 32
    ],
)
def test_evaluation_batches_give_every_replica_an_image(count, batch_size, replicas, expected):
    size = batching.evaluation_batch_size(count, batch_size, replicas)
    assert size == expected
    assert size % replicas == 0 and not batching.short_last_batch(count, size, replicas)


def test_batching_that_cannot_feed_every_replica_is_refused_with_the_remedy():
    order = tf.data.Dataset.range(10)
    with pytest.raises(batching.BatchingError, match="use a multiple of 4"):
        batching.batch_images(order, 10, 6, training=True, replicas=4)
    with pytest.raises(batching.BatchingError, match="3 images cannot be batched"):
        batching.evaluation_batch_size(3, 8, 4, "test")


def test_training_drops_only_a_last_batch_too_small_to_split():
    def sizes(count, replicas):
        order = tf.data.Dataset.range(count)
        batches = batching.batch_images(order, count, 4, training=True, replicas=replicas)
        return [len(batch) for batch in batches.as_numpy_iterator()]

    assert sizes(13, 1) == [4, 4, 4, 1]  # one replica: every image, as the seed
    assert sizes(13, 2) == [4, 4, 4]  # one image sits out this epoch
    assert sizes(14, 2) == [4, 4, 4, 2]


TWO_REPLICAS = """
import sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tensorflow import keras
from vgg_transfer import augmentation, batching, config
from vgg_transfer import cache as job_cache
from vgg_transfer import channels as job_channels

def Cache(count):
    images = np.random.RandomState(0).randint(0, 255, (count, 8, 8, 3)).astype("uint8")
    split = job_channels.Split("test", ["x.jpg"] * count, [i % 2 for i in range(count)])
    return job_cache.ImageCache(split, images, "in memory")

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    # the job's CPU augmentation: the warp compiled on its own, inside each replica's step
    model = keras.Sequential([keras.Input((8, 8, 3)), augmentation.SeedAugmentation(compiled=True),
                              keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)])
    model.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
hp = config.Hyperparameters(batch_size=4, seed=1)
two = batching.Sharding(replicas=2)
train = batching.make_dataset(Cache(13), hp, True, two)
model.fit(train, epochs=2, verbose=0)
test = batching.make_dataset(Cache(9), hp, False, two)
images = sum(len(labels) for _, labels in test)
model.evaluate(test, verbose=0)
print("ok", images)
"""


def test_two_replicas_train_and_evaluate_splits_that_do_not_divide_evenly(tmp_path):
    # 13 training images in batches of 4 end in a batch of 1, and 9 test images likewise: each
    # would hand a replica an empty piece, which failed mid-epoch under Keras 2 and 3. The
    # replicas augment as the job does on CPUs.
    env = dict(os.environ, PYTHONPATH=str(JOB_DIR), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["ok", "9"], "evaluation skipped test images"


# --- the seed's augmentation -----------------------------------------------------------------
def keras_seed_transform(image: np.ndarray, params: dict) -> np.ndarray:
    """ImageDataGenerator's own transform with the seed's (Keras 2.1.4) axis convention.

    Since keras-preprocessing 1.1 (Keras 2.2.5) the generator builds its matrix in (x, y) order
    and swaps it, so tx and height_shift_range move the image sideways; Keras 2.1.4, which the
    seed ran, built it in (row, col) order. On a square image that is today's generator applied
    to the transposed image."""
    generator = tf.keras.preprocessing.image.ImageDataGenerator(fill_mode="nearest")
    keras_params = {
        "theta": np.rad2deg(params["theta"]),
        "tx": params["tx"],
        "ty": params["ty"],
        "shear": np.rad2deg(params["shear"]),
        "zx": params["zx"],
        "zy": params["zy"],
    }
    moved = generator.apply_transform(image.transpose(1, 0, 2), keras_params).transpose(1, 0, 2)
    return moved[:, ::-1] if params["flip"] else moved  # the generator flips after the affine


def seed_parameter_draws(rng, size: int, count: int) -> list:
    """``count`` parameter sets in the seed's ranges (shear wider, to see it)."""
    return [
        {
            "theta": rng.uniform(-1, 1) * np.deg2rad(augmentation.ROTATION_DEGREES),
            "tx": rng.uniform(-1, 1) * augmentation.HEIGHT_SHIFT * size,
            "ty": rng.uniform(-1, 1) * augmentation.WIDTH_SHIFT * size,
            "shear": rng.uniform(-1, 1) * np.deg2rad(10.0),  # wider than the seed's, to see it
            "zx": rng.uniform(1 - augmentation.ZOOM, 1 + augmentation.ZOOM),
            "zy": rng.uniform(1 - augmentation.ZOOM, 1 + augmentation.ZOOM),
            "flip": float(rng.uniform() < 0.5),
        }
        for _ in range(count)
    ]


def smooth_image(rng, size: int) -> np.ndarray:
    image = rng.uniform(0, 255, size=(size, size, 3)).astype(np.float32)
    return tf.image.resize(tf.image.resize(image, (10, 10)), (size, size)).numpy()


def batched(params: dict) -> dict:
    return {k: tf.constant([v], tf.float32) for k, v in params.items()}


TRANSFORM_TOLERANCE = 0.05  # of 255: float rounding, whatever the warp's implementation


@pytest.mark.parametrize(
    "warp",
    [augmentation.warp, tf.function(augmentation.warp, jit_compile=True)],
    ids=["ops", "xla"],
)
def test_the_augmentation_is_the_seeds_transform_for_fixed_parameters(warp):
    rng = np.random.default_rng(11)
    size = 40
    image = smooth_image(rng, size)
    for params in seed_parameter_draws(rng, size, 8):
        transforms = augmentation.affine_transforms(batched(params), size, size)
        expected = keras_seed_transform(image, params)
        ours = warp(image[None], transforms)[0].numpy()
        np.testing.assert_allclose(ours, expected, atol=TRANSFORM_TOLERANCE)
        # the pipeline hands the warp its uint8 cache: the same transform of those pixels
        pixels = np.round(image).astype(np.uint8)
        ours_uint8 = warp(pixels[None], transforms)[0].numpy()
        np.testing.assert_allclose(
            ours_uint8, keras_seed_transform(pixels.astype(np.float32), params), atol=0.05
        )


def test_with_xla_the_augmentation_runs_in_the_compiled_training_step(monkeypatch):
    """A training step compiled by XLA (jit_compile=True) whose loss is the distance between the
    in-step augmentation's output and ImageDataGenerator's transform of the same image with the
    same parameters: XLA compiles the warp (ImageProjectiveTransformV3, which it replaced,
    fails to compile) and the loss is ~0 only if the compiled output is the generator's."""
    rng = np.random.default_rng(3)
    size = 24
    image = smooth_image(rng, size)
    params = seed_parameter_draws(rng, size, 1)[0]
    # Project patch 1 of 4: the draws are random inside the compiled step; fixing them is the
    # only way to compare its output with the generator's for the same parameters.
    monkeypatch.setattr(
        augmentation, "random_parameters", lambda batch, h, w, seed=None: batched(params)
    )
    expected = keras_seed_transform(image, params)

    inputs = tf.keras.Input((size, size, 3))
    augmented = augmentation.SeedAugmentation(name="augment")(inputs)
    scaled = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(
        tf.keras.layers.Reshape((size * size * 3, 1))(augmented)
    )  # a trainable identity, so there is a step to compile
    model = tf.keras.Model(inputs, tf.keras.layers.Flatten()(scaled))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.0), loss="mae", jit_compile=True)
    loss = model.train_on_batch(image[None], expected.reshape(1, -1))
    assert float(np.ravel(loss)[0]) < TRANSFORM_TOLERANCE / 5
    identity = model.predict(image[None], verbose=0)  # evaluation: no augmentation
    np.testing.assert_allclose(identity.reshape(image.shape), image, atol=1e-3)


def test_random_parameters_span_exactly_the_seeds_ranges():
    tf.random.set_seed(5)
    height, width = 150, 120
    params = {k: v.numpy() for k, v in augmentation.random_parameters(20000, height, width).items()}
    bounds = {
        "theta": np.deg2rad(40.0),  # rotation_range=40
        "tx": 0.2 * height,  # height_shift_range=0.2, in rows
        "ty": 0.2 * width,  # width_shift_range=0.2, in columns
        "shear": np.deg2rad(0.2),  # shear_range=0.2 (degrees, as Keras reads it)
    }
    for name, bound in bounds.items():
        assert np.abs(params[name]).max() <= bound * (1 + 1e-6), f"{name} exceeds the seed's range"
        assert params[name].max() > 0.99 * bound and params[name].min() < -0.99 * bound, name
    for name in ("zx", "zy"):  # zoom_range=0.2: [0.8, 1.2], drawn independently
        assert 0.8 <= params[name].min() < 0.81 and 1.19 < params[name].max() <= 1.2, name
    assert not np.allclose(params["zx"], params["zy"])
    assert 0.47 < params["flip"].mean() < 0.53  # horizontal_flip=True


@pytest.mark.parametrize("compiled", [False, True], ids=["ops", "xla"])
def test_the_augmentation_repeats_under_the_same_global_seed(compiled):
    images = tf.random.uniform([4, 24, 24, 3], 0, 255)
    runs = []
    for seed in (7, 7, 8):
        tf.random.set_seed(seed)
        runs.append(augmentation.augment_batch(images, compiled=compiled).numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_stateless_draws_span_the_same_ranges_as_the_stateful_ones():
    seeded = augmentation.random_parameters(20000, 150, 120, seed=tf.constant([3, 4]))
    tf.random.set_seed(3)
    stateful = augmentation.random_parameters(20000, 150, 120)
    for name in augmentation.AUGMENTATION_PARAMETERS:
        a, b = seeded[name].numpy(), stateful[name].numpy()
        assert abs(a.min() - b.min()) < 0.01 * (b.max() - b.min() + 1e-9), name
        assert abs(a.max() - b.max()) < 0.01 * (b.max() - b.min() + 1e-9), name
        assert abs(a.mean() - b.mean()) < 0.03 * (b.max() - b.min() + 1e-9), name


def test_augmentation_runs_in_training_only_and_changes_every_image():
    layer = augmentation.SeedAugmentation()
    images = tf.random.uniform([6, 32, 32, 3], 0, 255)
    np.testing.assert_array_equal(layer(images, training=False).numpy(), images.numpy())
    augmented = layer(images, training=True).numpy()
    assert augmented.shape == (6, 32, 32, 3)
    assert all(not np.allclose(a, b) for a, b in zip(augmented, images.numpy(), strict=True))
    # fill_mode "nearest" repeats edge pixels: no black fill appears in a bright image
    bright = tf.fill([4, 32, 32, 3], 200.0)
    assert float(tf.reduce_min(layer(bright, training=True))) == pytest.approx(200.0, abs=1e-3)


@pytest.mark.parametrize("xla", [False, True])
def test_the_job_augments_in_the_training_step_whatever_the_flags(xla):
    hp = Hyperparameters(image_size=32, weights="none", xla=xla)
    layer = train.seed_augmentation(hp)
    assert isinstance(layer, augmentation.SeedAugmentation)
    assert layer.compiled is (not xla)  # no GPU here: compiled alone, or with the step
