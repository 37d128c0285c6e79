"""The prepared splits a run reads (data/splits/<split>/{cats,dogs}, with manifest.json), checked
before anything is staged or submitted."""

from pathlib import Path

from training.common.errors import UserError
from training.data.prepare import load_manifest


def require(splits_dir: Path, splits: list[str]) -> dict:
    """The manifest, once each of ``splits`` is there; else one line saying what to run."""
    manifest = load_manifest(splits_dir)
    if manifest is None:
        raise UserError(
            f"no prepared data in {splits_dir}: run `make data` (Kaggle's train.zip, downloaded "
            "with your token, or DATA=path/to/train.zip), or `make data-sample` for the "
            "synthetic set"
        )
    for split in splits:
        if split not in manifest["splits"]:
            raise UserError(f"split {split} is not in {splits_dir}; re-run `make data`")
    return manifest


def images(manifest: dict, split: str) -> int:
    """How many images a prepared split holds, both classes."""
    return sum(manifest["splits"][split]["counts"].values())


def load(splits_dir: Path) -> dict | None:
    """The manifest when the splits are prepared, else None."""
    return load_manifest(splits_dir)
