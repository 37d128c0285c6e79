"""Channel checks and the input pipeline."""

import numpy as np
import pytest
import tensorflow as tf
import train
from vgg_transfer import data


def test_channels_are_listed_with_labels(channels):
    split = data.read_split("train", str(channels["train"]))
    assert split.class_counts() == {"cats": 12, "dogs": 12}
    assert all(
        label == (1 if "/dogs/" in path else 0)
        for path, label in zip(split.paths, split.labels, strict=True)
    )


def test_missing_channel_is_named(tmp_path):
    with pytest.raises(data.ChannelError, match="channel 'test'.*does not exist"):
        data.read_split("test", str(tmp_path / "nope"))


def test_missing_class_folder_is_named(channels):
    for path in (channels["validation"] / "dogs").iterdir():
        path.unlink()
    (channels["validation"] / "dogs").rmdir()
    with pytest.raises(data.ChannelError, match="class folder .*dogs.* is missing"):
        data.read_split("validation", str(channels["validation"]))


def test_corrupt_and_empty_files_are_listed(channels):
    (channels["train"] / "cats" / "cat.99.jpg").write_bytes(b"")
    (channels["train"] / "dogs" / "dog.98.jpg").write_text("<html>not an image</html>")
    with pytest.raises(data.ChannelError) as caught:
        data.read_split("train", str(channels["train"]))
    assert "cat.99.jpg" in str(caught.value) and "dog.98.jpg" in str(caught.value)


def test_bad_channel_fails_the_job_before_training(job_args, channels, tmp_path, capsys):
    (channels["test"] / "dogs" / "dog.0.jpg").write_bytes(b"\x00\x01")
    assert train.main(job_args()) == 2
    assert "dog.0.jpg" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists(), "training started despite a bad channel"


def test_pipeline_decodes_resizes_and_batches(channels):
    split = data.read_split("train", str(channels["train"]))
    dataset = data.make_dataset(split, 48, 5, training=False, augment=False, seed=0)
    images, labels = next(iter(dataset))
    assert images.shape == (5, 48, 48, 3) and labels.shape == (5,)
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0


def neutral_uniform(shape, minval=0.0, maxval=1.0):
    """Every random draw at its no-op value: no rotation, shift, shear or zoom, and no flip."""
    if (minval, maxval) == (0.0, 1.0):
        return tf.fill(shape, 0.9)  # the flip draw: >= 0.5 means no flip
    return tf.fill(shape, float((minval + maxval) / 2.0))


def test_augmentation_changes_images_but_keeps_their_range():
    tf.random.set_seed(0)
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], (40, 1, 3))
    augmented = np.stack([data.resize_and_augment(tf.constant(ramp), 32).numpy() for _ in range(8)])
    assert augmented.shape == (8, 32, 32, 3)
    assert augmented.min() >= 0 and augmented.max() <= 255.0
    assert len({a.tobytes() for a in augmented}) == 8, "augmentations repeat"
    # fill_mode "nearest" repeats edge pixels: no black fill appears in a bright image
    bright = tf.fill([40, 24, 3], tf.constant(200, tf.uint8))
    assert float(tf.reduce_min(data.resize_and_augment(bright, 32))) == 200.0


def test_without_randomness_the_fused_transform_is_a_bilinear_resize(monkeypatch):
    monkeypatch.setattr(tf.random, "uniform", neutral_uniform)
    transforms = data.random_affine_transforms(2, 20, 30).numpy()
    np.testing.assert_allclose(transforms, [[1, 0, 0, 0, 1, 0, 0, 0]] * 2, atol=1e-5)
    image = np.random.default_rng(0).integers(0, 256, size=(60, 90, 3)).astype(np.uint8)
    ours = data.resize_and_augment(tf.constant(image), 30).numpy()
    expected = tf.image.resize(image, (30, 30)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1.0)  # uint8 rounding


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_images_that_do_not_decode_are_named_before_training(job_args, channels, tmp_path, capsys):
    # A valid JPEG header with its data cut short passes the header check, then used to kill the
    # run mid-epoch with a TensorFlow traceback that named no file.
    truncate(channels["train"] / "cats" / "cat.3.jpg", 200)
    truncate(channels["validation"] / "dogs" / "dog.1.jpg", 400)
    assert data.read_split("train", str(channels["train"]))  # the header check lets it pass
    assert train.main(job_args()) == 2
    err = capsys.readouterr().err
    assert "2 image(s) do not decode" in err
    assert "cat.3.jpg" in err and "dog.1.jpg" in err
    assert "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists(), "training started despite a corrupt image"


def test_two_workers_together_read_every_training_image_once_per_epoch(channels):
    split = data.read_split("train", str(channels["train"]))
    shards = [data.file_order(split, True, seed=7, num_shards=2, shard_index=i) for i in (0, 1)]
    epochs = []
    for _ in range(2):
        seen = [[path.decode() for path, _ in shard.as_numpy_iterator()] for shard in shards]
        assert not set(seen[0]) & set(seen[1]), "workers' shards overlap"
        assert sorted(seen[0] + seen[1]) == sorted(split.paths), "an image is missing or repeated"
        epochs.append(seen[0] + seen[1])
    assert epochs[0] != epochs[1], "the training order does not change between epochs"
