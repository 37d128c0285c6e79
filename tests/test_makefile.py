"""The Makefile's own recipes that need no environment: make clean keeps the runs, make clean-runs
says what it deletes. Run against a copy of the Makefile in an empty folder."""

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=folder, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_clean_removes_environments_and_caches_and_keeps_runs_and_the_mlflow_store(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for folder in (".venv/bin", ".venv-compat", ".tools/uv", "runs/vgg-smoke-1", "runs/mlartifacts",
                   "data/splits", "training/__pycache__"):  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "runs" / "mlflow.db").write_text("store")
    done = make(tmp_path, "clean")
    assert done.returncode == 0, done.stderr
    for gone in (".venv", ".venv-compat", ".tools", "training/__pycache__"):
        assert not (tmp_path / gone).exists(), gone
    for kept in ("runs/vgg-smoke-1", "runs/mlflow.db", "runs/mlartifacts", "data/splits"):
        assert (tmp_path / kept).exists(), kept
    assert "kept: runs/ (run folders, the MLflow store" in done.stdout
    assert "make clean-runs deletes" in done.stdout

    deleted = make(tmp_path, "clean-runs")
    assert deleted.returncode == 0 and not (tmp_path / "runs").exists()
    for listed in ("runs/vgg-smoke-1", "runs/mlflow.db", "runs/mlartifacts"):
        assert listed in deleted.stdout, listed
    assert "no runs/: nothing to delete" in make(tmp_path, "clean-runs").stdout
