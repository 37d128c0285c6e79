"""The model: the seed's head, weights as asked (never a silent fallback), a portable save format."""

import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from job_helpers import write_legacy_weights
from vgg_transfer import model as vgg


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A VGG16 no-top weight file in the published files' format, with known random values."""
    tf.keras.utils.set_random_seed(7)
    base = tf.keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.h5"
    write_legacy_weights(base, path)
    return path, {layer.name: layer.get_weights() for layer in base.layers if layer.weights}


def test_head_is_the_seeds(tmp_path):
    model = vgg.build_model(32, "rescale", "none")
    dense, prediction = model.get_layer("dense"), model.get_layer("prediction")
    assert dense.units == 256 and dense.activation.__name__ == "relu"
    assert prediction.units == 1 and prediction.activation.__name__ == "sigmoid"
    assert not any(layer.name == "dropout" for layer in model.layers), "the seed had no dropout"
    assert model.get_layer("flatten") is not None


def test_weights_from_a_file_are_loaded(weights_file):
    path, expected = weights_file
    model = vgg.build_model(32, "rescale", str(path))
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], expected[name][0])


def test_a_missing_weights_file_fails_clearly(tmp_path):
    with pytest.raises(vgg.WeightsError, match="does not exist.*weights=imagenet"):
        vgg.build_model(32, "rescale", str(tmp_path / "missing.h5"))


def test_a_failed_imagenet_download_names_the_remedy(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(vgg.WeightsError, match="weights channel"):
        vgg.build_model(32, "rescale", "imagenet")


def test_vgg16_preprocessing_matches_keras_preprocess_input():
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    layer = vgg.preprocessing_layer("vgg16")
    ours = layer(tf.constant(images)).numpy()
    expected = tf.keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_saved_model_round_trips(tmp_path):
    model = vgg.build_model(32, "vgg16", "none", dropout=0.5)
    images = np.random.default_rng(1).uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    path = vgg.save_model(model, str(tmp_path))
    assert path.endswith("model.h5")
    loaded = vgg.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5
    )
