"""Fixtures for the data tests (helpers live in kaggle_helpers.py, importable by name)."""

import pytest
from kaggle_helpers import write_kaggle_zip


@pytest.fixture(scope="session")
def full_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("kaggle") / "train.zip"
    write_kaggle_zip(path)
    return path
