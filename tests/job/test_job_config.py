"""Hyperparameter parsing: the seed's defaults, explicit booleans, clear errors."""

import pytest
from vgg_transfer import config


def test_defaults_reproduce_the_seed():
    hp, _ = config.parse_args([])
    assert (hp.image_size, hp.batch_size, hp.preprocessing, hp.augment) == (
        150,
        64,
        "rescale",
        True,
    )
    assert (hp.epochs_frozen, hp.learning_rate_frozen) == (30, 0.001)
    assert (hp.epochs_fine_tuned, hp.learning_rate_fine_tuned) == (50, 1e-5)
    assert hp.unfreeze_from == "block4_conv1"
    assert hp.weights == "imagenet" and hp.dropout == 0.0 and hp.early_stopping_patience == 0


@pytest.mark.parametrize(("text", "value"), [("False", False), ("true", True), ("0", False)])
def test_booleans_are_parsed_explicitly(text, value):
    hp, _ = config.parse_args(["--augment", text])
    assert hp.augment is value


def test_a_non_boolean_is_refused():
    with pytest.raises(config.ConfigError, match="expected true or false"):
        config.parse_args(["--augment", "maybe"])


def test_an_unknown_key_is_named():
    with pytest.raises(config.ConfigError, match="unknown hyperparameter.*--epochs"):
        config.parse_args(["--epochs", "3"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--unfreeze_from", "block9_conv1"], "not a VGG16 layer"),
        (["--image_size", "16"], "below VGG16's minimum"),
        (["--preprocessing", "imagenet"], "preprocessing='imagenet'"),
        (["--learning_rate_frozen", "0"], "must be positive"),
    ],
)
def test_bad_values_say_what_to_change(args, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse_args(args)


def test_paths_default_to_sagemaker_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(tmp_path / "train"))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    _, paths = config.parse_args([])
    assert paths.train == str(tmp_path / "train")
    assert paths.model_dir == str(tmp_path / "model")
    assert paths.checkpoint_dir == "/opt/ml/checkpoints"


def test_xla_with_several_replicas_is_refused_under_keras_2_only():
    assert config.xla_problem(True, 2, keras_major=2) is not None
    assert "xla=true" in config.xla_problem(True, 8, keras_major=2)
    assert config.xla_problem(True, 1, keras_major=2) is None
    assert config.xla_problem(True, 2, keras_major=3) is None
    assert config.xla_problem(False, 8, keras_major=2) is None
