"""Shared by both test environments: the TensorFlow and Keras versions in the log header, the
order the tests run in, and the MLflow store the runs they make are recorded in."""

import os
from pathlib import Path

import pytest


def pytest_report_header(config):
    import keras
    import tensorflow as tf

    return f"tensorflow {tf.__version__}, keras {keras.__version__}"


# The longest tests first: make test runs them on every core (pytest-xdist, work stealing), and a
# long test that starts last would leave the other cores idle while it runs.
LONGEST_FIRST = (
    "test_scenarios.py",
    "test_job_train.py",
    "test_bench.py",
    "test_network_faults.py",
    "test_tracking_server.py",
    "test_first_hour.py",
    "test_local.py",
    "test_tune.py",
    "test_iam.py",
    "test_throttle.py",
    "test_predict.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """Every run the tests make is recorded in MLflow, as the product does, in one store per
    test session (as MLFLOW_TRACKING_URI points a user's runs at one server): a new SQLite store
    costs seconds of migrations, and each test's runs folder is new. The tracking tests point
    runs at stores of their own."""
    from training.report.mlflow_server import TRACKING_ENV

    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    previous = os.environ.get(TRACKING_ENV)
    os.environ[TRACKING_ENV] = f"sqlite:///{store}"
    yield
    if previous is None:
        os.environ.pop(TRACKING_ENV, None)
    else:
        os.environ[TRACKING_ENV] = previous


def shared(tmp_path_factory, name: str, build):
    """What ``build(folder)`` makes, once for the whole test run: pytest-xdist's workers (one per
    core) wait for the first to build it, under a lock, instead of each building its own."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common parent: this run's, not an earlier run's
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            done.write_text(str(build(folder)))
    return Path(done.read_text())


@pytest.fixture(scope="session")
def tiny_splits(tmp_path_factory):
    """The sample generator at 20 images per class: 2/1/3/17 per class and split (tiny.py)."""
    from tiny import tiny_splits

    return shared(tmp_path_factory, "tiny", tiny_splits)


@pytest.fixture
def quotas():
    """The test account's SageMaker training quotas (Service Quotas, as the stand-in answers
    them): 2 of every type, spot and on-demand, unless the test sets others before launching."""
    from training.standin.quotas import Quotas

    return Quotas(start=2.0)


@pytest.fixture
def aws(monkeypatch, tmp_path, quotas):
    """Fake credentials, moto, the stack's bucket and role, its quotas, and .infra/test.json in a
    temp cwd (accounts.moto_account)."""
    from accounts import moto_account

    with moto_account(tmp_path, monkeypatch, quotas) as outputs:
        yield outputs


@pytest.fixture(scope="session")
def tiny_run(tiny_splits, tmp_path_factory):
    """One `make train-local` of the tiny experiment (tiny.py), shared by every test that reads a
    finished run: its folder, artifacts, report and MLflow record. Tests copy it to change it."""
    from tiny import TINY

    from training.launch.__main__ import main as launch

    def build(runs: Path) -> Path:
        code = launch(["local", "--hp", *TINY, "--splits", str(tiny_splits), "--runs", str(runs)])
        assert code == 0
        (run_dir,) = [path for path in runs.iterdir() if path.is_dir()]
        return run_dir

    return shared(tmp_path_factory, "tiny-run", build)
