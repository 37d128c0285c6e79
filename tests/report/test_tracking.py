"""Runs in MLflow: recorded from the files a run wrote, read back with MlflowClient, once per job,
and never at the cost of the run's files."""

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from training.report import tracking
from training.report.mlflow_server import TRACKING_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def run_dir(tiny_run, tmp_path):
    """A finished tiny local run, copied (a test changes its files)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name))


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv(TRACKING_ENV, uri)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def active_runs(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_a_recorded_run_holds_its_params_curves_results_tags_and_files(run_dir, store):
    run_id = tracking.record_run(run_dir)
    run = store.get_run(run_id)
    report = json.loads((run_dir / "report.json").read_text())
    # params: every resolved hyperparameter, and where and with what it ran
    for key, value in report["config"].items():
        assert run.data.params[key] == str(value), key
    assert run.data.params["instance_count"] == "1"
    assert run.data.params["dataset_digest"] == report["dataset_digest"]
    assert run.data.params["git_commit"] == report["git_commit"]
    assert run.data.params["tensorflow"] == report["versions"]["tensorflow"]
    # metrics: both phases' curves on one step axis, as history.csv has them
    with open(run_dir / "output" / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        points = store.get_metric_history(run_id, name)
        assert [p.step for p in points] == list(range(1, len(history) + 1)), name
        assert [p.value for p in points] == pytest.approx([float(r[name]) for r in history])
    for phase, row in report["phases"].items():
        assert run.data.metrics[f"{phase}.test_accuracy"] == pytest.approx(row["test_accuracy"])
        assert run.data.metrics[f"{phase}.test_loss"] == pytest.approx(row["test_loss"])
    assert run.data.metrics["training_seconds"] == pytest.approx(report["training_seconds"])
    # tags: the job, where it ran, its status
    assert run.data.tags[tracking.JOB_TAG] == report["job_name"]
    assert run.data.tags["sagemaker.arn"] == "local" and run.data.tags["status"] == "Completed"
    assert run.info.run_name == report["job_name"] and run.info.status == "FINISHED"
    # the job's own times: launched when named, for the seconds it trained
    stamp = report["job_name"].rsplit("-", 2)[-2:]
    named = time.mktime(time.strptime("-".join(stamp), "%Y%m%d-%H%M%S"))
    assert run.info.start_time == int(named * 1000)
    assert run.info.end_time - run.info.start_time == int(report["training_seconds"] * 1000)
    experiment = store.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # artifacts: the report, its plots, the resolved config
    files = {item.path for item in store.list_artifacts(run_id)}
    assert {"report.md", "accuracy.png", "loss.png", "confusion.png", "config.json"} <= files
    assert store.get_experiment(run.info.experiment_id).name == "smoke"


def test_recording_a_run_twice_keeps_one_run(run_dir, store):
    first = tracking.record_run(run_dir)
    assert tracking.record_run(run_dir) == first  # the same files: nothing to do
    # The files change (a cloud run's results fetched again, say): still one run for the job.
    report = json.loads((run_dir / "report.json").read_text())
    (run_dir / "report.json").write_text(json.dumps(dict(report, training_seconds=123.0)))
    try:
        again = tracking.record_run(run_dir)
    finally:
        (run_dir / "report.json").write_text(json.dumps(report))
    runs = active_runs(store, "smoke")
    assert [r.info.run_id for r in runs] == [again]
    assert runs[0].data.metrics["training_seconds"] == 123.0


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "nonsense://nowhere"])
def test_an_unreachable_or_bad_tracking_uri_is_one_line_and_loses_nothing(
    run_dir, monkeypatch, uri
):
    monkeypatch.setenv(TRACKING_ENV, uri)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    lines = []
    assert tracking.record_run(run_dir, print_line=lines.append) is None
    assert len(lines) == 1 and "was not recorded in MLflow" in lines[0] and "make track" in lines[0]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_make_track_records_a_tuning_job_with_a_child_per_training_job(run_dir, store, tmp_path):
    """tuning.json and the training jobs' logs, as make tune writes them; the best job's run
    folder beside them."""
    runs = run_dir.parent  # the run folder is already there, as the best job's
    best = json.loads((run_dir / "report.json").read_text())["job_name"]
    tuning = runs / "vgg-smoke-1201-120000"
    (tuning / "logs").mkdir(parents=True)
    rows = []
    for index, objective in ((1, None), (2, 0.75)):
        job = best if index == 2 else "vgg-smoke-1201-120000-001-0a1b2c3d"
        rows.append({"training_job": job, "status": "Completed" if objective else "Failed",
                     "objective": objective, "learning_rate_fine_tuned": f"{index}e-05",
                     "failure_reason": None if objective else "AlgorithmError: no"})  # fmt: skip
        (tuning / "logs" / f"{job}.log").write_text(
            "[epoch] phase=frozen epoch=1/1 loss=0.6 accuracy=0.5 val_loss=0.7 val_accuracy=0.5 "
            "best_val_accuracy=0.5 seconds=1.0\n[epoch] phase=fine_tuned epoch=1/1 loss=0.4 "
            "accuracy=0.8 val_loss=0.5 val_accuracy=0.75 best_val_accuracy=0.75 seconds=1.0\n"
        )
    summary = {"tuning_job": tuning.name, "status": "Completed",
               "objective": "fine_tuned:best_val_accuracy", "tuned": ["learning_rate_fine_tuned"],
               "best_training_job": best, "fetched_training_job": best, "note": "",
               "training_jobs": rows}  # fmt: skip
    (tuning / "tuning.json").write_text(json.dumps(summary))
    (tuning / "tuning.md").write_text("# table\n")
    (tuning / "tuning.png").write_bytes(b"png")
    assert tracking.main([str(runs)]) == 0
    runs_found = active_runs(store, "smoke")
    (parent,) = [r for r in runs_found if r.data.tags[tracking.JOB_TAG] == tuning.name]
    children = [
        r for r in runs_found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert sorted(r.data.tags[tracking.JOB_TAG] for r in children) == sorted(
        row["training_job"] for row in rows
    )
    (failed,) = [r for r in children if r.data.tags[tracking.JOB_TAG] != best]
    assert failed.data.tags["failure_reason"] == "AlgorithmError: no"
    assert failed.data.params["learning_rate_fine_tuned"] == "1e-05"
    assert [p.value for p in store.get_metric_history(failed.info.run_id, "val_accuracy")] == [
        0.5,
        0.75,
    ]
    (fetched,) = [r for r in children if r.data.tags[tracking.JOB_TAG] == best]
    assert "report.md" in {item.path for item in store.list_artifacts(fetched.info.run_id)}
    assert len(runs_found) == 3, "the best job's own run and its child record are one run"
