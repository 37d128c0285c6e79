"""The built-in synthetic sample set."""

import numpy as np
from PIL import Image

from training.data import sample
from training.data.prepare import prepare


def test_sample_is_split_like_the_seed_scaled_down(tmp_path):
    source = sample.generate(tmp_path / "raw")
    result = prepare(source, tmp_path / "splits", per_class=sample.PER_CLASS)
    counts = {s: info["counts"] for s, info in result.manifest["splits"].items()}
    assert counts == {
        "validation": {"cats": 20, "dogs": 20},
        "test": {"cats": 20, "dogs": 20},
        "train_small": {"cats": 40, "dogs": 40},
        "train_full": {"cats": 210, "dogs": 210},
    }
    assert result.manifest["index_ranges"]["train_full"] == [40, 250]


def test_classes_look_different(tmp_path):
    source = sample.generate(tmp_path / "raw", per_class=20)

    def mean_colour(animal):
        return np.mean(
            [np.asarray(Image.open(p)).mean(axis=(0, 1)) for p in source.glob(f"{animal}.*")],
            axis=0,
        )

    cat, dog = mean_colour("cat"), mean_colour("dog")
    assert cat[0] > cat[2] + 50 and dog[2] > dog[0] + 50  # warm cats, cool dogs


def test_generation_is_deterministic_and_skipped_when_complete(tmp_path):
    a = sample.generate(tmp_path / "a", per_class=5)
    b = sample.generate(tmp_path / "b", per_class=5)
    assert (a / "cat.3.jpg").read_bytes() == (b / "cat.3.jpg").read_bytes()
    stamp = (a / "dog.4.jpg").stat().st_mtime_ns
    sample.generate(tmp_path / "a", per_class=5)
    assert (a / "dog.4.jpg").stat().st_mtime_ns == stamp
