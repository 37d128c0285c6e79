"""This checkout: where it is, the job folder SageMaker is sent, and the commit a run came from."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "training" / "job"  # the SageMaker source_dir, shipped as is
ENTRY_SCRIPT = "train.py"
# What never goes into the code SageMaker receives.
CODE_IGNORE = ["__pycache__", "*.pyc", ".pytest_cache", ".DS_Store", "*.egg-info", ".git"]


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
