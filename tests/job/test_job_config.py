"""Hyperparameter parsing: the seed's defaults, explicit booleans, clear errors, and what the
platform decides (model folder, reserved names, a tuning job's checkpoint folder)."""

import json

import pytest
from vgg_transfer import config, contract


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


def test_the_model_goes_to_sm_model_dir_whatever_model_dir_the_toolkit_passes(tmp_path):
    # AWS's TF toolkit passes a tuning job's training jobs `--model_dir <path or None>/<job>/model`.
    parsed = config.parse(
        ["--model_dir", "None/vgg-smoke-1-001-abcd1234/model"],
        environ={"SM_MODEL_DIR": "/opt/ml/model"},
    )
    assert parsed.paths.model_dir == "/opt/ml/model"
    assert any("model_dir=None/vgg-smoke-1-001-abcd1234/model" in note for note in parsed.notes)
    # Outside SageMaker (no SM_MODEL_DIR) the flag is the place, as for any local run.
    local = config.parse(["--model_dir", str(tmp_path / "model")], environ={})
    assert local.paths.model_dir == str(tmp_path / "model") and not local.notes


@pytest.mark.parametrize(
    "reserved",
    [
        ["--_tuning_objective_metric", "fine_tuned:best_val_accuracy"],
        ["--_tuning_objective_metric=fine_tuned:best_val_accuracy"],
        ["--sagemaker_program", "train.py"],
        ["--_flag"],
    ],
)
def test_hyperparameters_sagemaker_reserves_are_set_aside_not_fatal(reserved):
    parsed = config.parse([*reserved, "--image_size", "64"], environ={})
    assert parsed.hp.image_size == 64
    (note,) = parsed.notes
    assert "reserves" in note


def test_a_tuning_jobs_training_job_checkpoints_in_a_folder_of_its_own(tmp_path):
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps({"image_size": "64", "_tuning_objective_metric": "fine_tuned:x"})
    )
    environ = {"SM_INPUT_CONFIG_DIR": str(tmp_path), "TRAINING_JOB_NAME": "vgg-t-002-0a1b2c3d"}
    assert contract.tuning_job_member(environ) == "vgg-t-002-0a1b2c3d"
    parsed = config.parse(["--checkpoint_dir", "/opt/ml/checkpoints"], environ=environ)
    assert parsed.paths.checkpoint_dir == "/opt/ml/checkpoints/vgg-t-002-0a1b2c3d"
    # A training job of its own (no tuning objective sent) keeps the folder it was given.
    (tmp_path / "hyperparameters.json").write_text(json.dumps({"image_size": "64"}))
    assert contract.tuning_job_member(environ) is None
    plain = config.parse(["--checkpoint_dir", "/opt/ml/checkpoints"], environ=environ)
    assert plain.paths.checkpoint_dir == "/opt/ml/checkpoints"
