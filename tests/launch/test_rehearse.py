"""make rehearse: the unchanged cloud path against moto and the SageMaker stand-in, which runs the
SDK's own container drivers and train.py with /opt/ml mapped to a run folder."""

import csv
import json
import os
import shutil

import pytest
from launch_helpers import TINY

from training.errors import UserError
from training.launch.experiments import load
from training.rehearse import rehearse

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="the stand-in needs unshare"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # .infra/rehearse.json lands here
    return tmp_path


def history(run_dir) -> list:
    with open(run_dir / "output" / "history.csv") as handle:
        return [(row["phase"], int(row["epoch"])) for row in csv.DictReader(handle)]


def test_a_rehearsal_runs_the_sdk_drivers_and_train_py_end_to_end(workdir, tiny_splits, capsys):
    report = rehearse("smoke", TINY, tiny_splits, workdir / "runs")
    out = capsys.readouterr().out
    assert "preflight for smoke" in out and "submitted vgg-smoke-" in out
    assert "Running Basic Script driver" in out  # the SDK's driver, streamed from CloudWatch
    assert "[epoch] phase=fine_tuned epoch=1/1" in out
    assert "on AWS this run would have billed" in out
    assert "] Completed: Training job completed" in out  # SecondaryStatusTransitions, followed
    run_dir = report.parent
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["mode"] == "cloud" and summary["billable_seconds"] > 0
    # every hyperparameter reached train.py with its type and value intact
    config = json.loads((run_dir / "output" / "config.json").read_text())
    received = config["hyperparameters"]
    expected = load("smoke", TINY).resolved_hyperparameters()
    expected["dataset_digest"] = json.loads((tiny_splits / "manifest.json").read_text())[
        "dataset_digest"
    ]
    assert config["paths"]["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert config["paths"]["model_dir"] == "/opt/ml/model"  # SageMaker's paths, as the job saw them
    assert received == expected
    assert {k: type(v) for k, v in received.items()} == {k: type(v) for k, v in expected.items()}
    assert history(run_dir) == [("frozen", 1), ("fine_tuned", 1)]


def test_a_spot_interruption_resumes_from_s3_with_the_same_epochs(workdir, tiny_splits, capsys):
    settings = [*TINY[:-1], "epochs_fine_tuned=3"]
    report = rehearse("smoke", settings, tiny_splits, workdir / "runs", interrupt=True)
    out = capsys.readouterr().out
    assert "frozen: finished in an earlier run" in out  # restored from the S3 checkpoints
    assert "] Interrupted: " in out  # the reclaim, though the restart followed within a poll
    assert history(report.parent) == [("frozen", 1)] + [("fine_tuned", i) for i in (1, 2, 3)]
    summary = json.loads(report.with_suffix(".json").read_text())
    assert 0 < summary["billable_seconds"] < summary["training_seconds"]


def test_a_job_that_fails_in_the_container_shows_its_reason_and_log_tail(
    workdir, tiny_splits, capsys
):
    with pytest.raises(UserError, match="failed"):
        rehearse("smoke", [*TINY, "weights=/nonexistent/vgg16.h5"], tiny_splits, workdir / "runs")
    err = capsys.readouterr().err
    assert "Failed: AlgorithmError:" in err and "/nonexistent/vgg16.h5" in err
    assert "last log lines:" in err
    assert not list((workdir / "runs").glob("vgg-smoke-*")), "a failed job left a run folder"


@pytest.fixture(scope="module")
def two_host_splits(tmp_path_factory):
    """Enough images that each host's share of every split fills a batch piece per replica."""
    from training.data.prepare import prepare
    from training.data.sample import generate

    root = tmp_path_factory.mktemp("two-hosts")
    return prepare(generate(root / "raw", per_class=60), root / "splits", per_class=60).out


@pytest.mark.skipif(os.geteuid() != 0, reason="several instances need network namespaces (root)")
def test_a_two_instance_rehearsal_trains_one_model_written_by_algo_1(
    workdir, two_host_splits, capsys
):
    report = rehearse("smoke", TINY, two_host_splits, workdir / "runs", instance_count=2)
    out = capsys.readouterr().out
    assert "multi_worker x2" in out  # both hosts joined one MultiWorkerMirroredStrategy
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["instance_count"] == 2
    (attempt,) = (workdir / "runs" / "standin" / report.parent.name).iterdir()
    chief, worker = attempt / "algo-1" / "opt_ml", attempt / "algo-2" / "opt_ml"
    assert (chief / "model" / "model.h5").exists() and (
        chief / "output" / "data" / "metrics.json"
    ).exists()
    assert not list((worker / "model").iterdir()), "algo-2 wrote a model"
    assert not list((worker / "output" / "data").iterdir()), "algo-2 wrote outputs"
    metrics = json.loads((chief / "output" / "data" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["distribution"] == "multi_worker x2"
