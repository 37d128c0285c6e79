"""The prepared splits a run reads (data/splits/<split>/{cats,dogs}, with manifest.json), checked
before anything is staged or submitted: every split there, neither class empty, and as many images
of each class as the split's index range holds (Kaggle's layout: cat.<i>.jpg and dog.<i>.jpg for
every index), so a job never starts, billed, on data that cannot reproduce its experiment."""

from pathlib import Path

from training.common.errors import UserError
from training.data.prepare import load_manifest, shortfalls

REMEDY = "prepare Kaggle's whole train.zip (`make data`, or DATA=path/to/train.zip)"


def load(splits_dir: Path) -> dict | None:
    """The manifest when the splits are prepared, else None."""
    return load_manifest(splits_dir)


def images(manifest: dict, split: str) -> int:
    """How many images a prepared split holds, both classes."""
    return sum(manifest["splits"][split]["counts"].values())


def require(splits_dir: Path, splits: list[str], train: tuple[str, int] | None = None) -> dict:
    """The manifest, once each of ``splits`` is there and whole; ``train``: (split, the number
    of images the experiment trains on, e.g. the seed's 4,000). Else one line: what is missing
    and what to run."""
    manifest = load_manifest(splits_dir)
    if manifest is None:
        raise UserError(
            f"no prepared data in {splits_dir}: run `make data` (Kaggle's train.zip, downloaded "
            "with your token, or DATA=path/to/train.zip), or `make data-sample` for the "
            "synthetic set"
        )
    missing = [split for split in splits if split not in manifest["splits"]]
    if missing:
        raise UserError(f"{', '.join(missing)} not in {splits_dir}: {REMEDY}")
    lacking = shortfalls(manifest, splits)
    if lacking:
        raise UserError(f"the data in {splits_dir} is incomplete: {'; '.join(lacking)}: {REMEDY}")
    if train and images(manifest, train[0]) != train[1]:
        raise UserError(
            f"{train[0]} in {splits_dir} has {images(manifest, train[0])} images but the "
            f"experiment trains on {train[1]} (the seed's): {REMEDY}"
        )
    return manifest
