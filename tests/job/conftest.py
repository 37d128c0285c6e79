"""Fixtures for the job's tests (helpers live in job_helpers.py, importable by name)."""

import pytest
from job_helpers import make_channels


@pytest.fixture
def channels(tmp_path):
    return make_channels(tmp_path / "data")


@pytest.fixture
def job_args(channels, tmp_path):
    """Arguments of a tiny 1+1-epoch run with random weights."""

    def build(**overrides):
        values = {
            "image_size": 32,
            "batch_size": 8,
            "epochs_frozen": 1,
            "epochs_fine_tuned": 1,
            "weights": "none",
            "train": channels["train"],
            "validation": channels["validation"],
            "test": channels["test"],
            "model_dir": tmp_path / "model",
            "output_data_dir": tmp_path / "output",
            "checkpoint_dir": tmp_path / "checkpoints",
        }
        values.update(overrides)
        args = []
        for key, value in values.items():
            args += ["--" + key, str(value)]
        return args

    return build
