"""Pieces the local and cloud paths share: git commit, channels, data checks."""

import subprocess
from pathlib import Path

import boto3

from training.common import aws
from training.common.errors import UserError
from training.common.paths import RUNS_DIR  # noqa: F401  (the launcher's default --runs)
from training.data.prepare import load_manifest
from training.launch.experiments import Experiment

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "training" / "job"  # the SageMaker source_dir, shipped as is
ENTRY_SCRIPT = "train.py"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def git_commit() -> str:
    """The commit a run was launched from, marked -dirty when tracked files have changes."""
    try:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return _git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def channel_splits(experiment: Experiment) -> dict[str, str]:
    """Channel name → prepared split name."""
    return {"train": experiment.train_split, "validation": "validation", "test": "test"}


def require_splits(splits_dir: Path, experiment: Experiment) -> dict:
    manifest = load_manifest(splits_dir)
    if manifest is None:
        raise UserError(
            f"no prepared data in {splits_dir}: run `make data DATA=path/to/train.zip` "
            "(or `make data-sample` for the synthetic set)"
        )
    for split in channel_splits(experiment).values():
        if split not in manifest["splits"]:
            raise UserError(f"split {split} is not in {splits_dir}; re-run `make data`")
    return manifest


def train_images(manifest: dict, experiment: Experiment) -> int:
    return sum(manifest["splits"][experiment.train_split]["counts"].values())


def boto_session(region: str) -> boto3.Session:
    """The session every launcher step takes: its clients retry as training/common/aws.py says."""
    return aws.session(region)
