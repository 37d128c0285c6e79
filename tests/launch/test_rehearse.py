"""make rehearse: the unchanged cloud path against moto and the SageMaker stand-in, which runs the
SDK's own container drivers (training jobs) or AWS's own container toolkit (tuning jobs) and
train.py with /opt/ml mapped to a run folder."""

import csv
import json
import os
import re
import shutil
import time

import boto3
import pytest
from launch_helpers import TINY

from training.common.errors import UserError
from training.launch.experiments import load
from training.predict import main as predict
from training.report import tracking
from training.standin.rehearse import Rehearsal, rehearse

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


def test_a_rehearsal_runs_the_sdk_drivers_and_train_py_and_resumes_a_spot_interruption(
    workdir, tiny_splits, capsys, monkeypatch
):
    """The whole make train-cloud path, with the spot reclaim of make rehearse INTERRUPT=1 once
    a fine-tuning epoch is in S3 (a plain run is the same path without the reclaim)."""
    monkeypatch.setenv("WORKSTATION_ONLY", "a variable no SageMaker container has")
    settings = [*TINY[:-1], "epochs_fine_tuned=3"]
    plan = Rehearsal(overrides=settings, interrupt="checkpoint")
    report = rehearse(plan, tiny_splits, workdir / "runs")
    out = capsys.readouterr().out
    assert "preflight for smoke" in out and "submitted vgg-smoke-" in out
    assert "Running Basic Script driver" in out  # the SDK's driver, streamed from CloudWatch
    assert "on AWS this run would have billed" in out
    # Every log line the job wrote comes before its final status (SecondaryStatusTransitions).
    completed = out.index("] Completed: Training job completed")
    assert completed > out.rindex("Training Container Execution Completed")
    assert completed > out.rindex("[epoch]")
    # The SDK's dump of the container's environment: the image's and SageMaker's, nothing else.
    dump = out[out.index("Environment Variables:") : out.index("Running Basic Script driver")]
    assert "TRAINING_JOB_NAME=vgg-smoke-" in dump and "TRAINING_JOB_ARN=" in dump
    for workstation in ("WORKSTATION_ONLY", "MAKEFLAGS", "VIRTUAL_ENV", "PWD=/work", "TF_CPP_MIN"):
        assert workstation not in dump, f"{workstation} reached the container"
    # What the emulator cannot answer is not shown as AWS's answer.
    assert "quota: unknown for ml.m5.xlarge spot training (not AWS's answer:" in out
    assert "the Price List API was not asked: requests go to http://127.0.0.1:" in out

    # The reclaim came once a fine-tuning epoch was in S3: the restart resumed inside the phase,
    # with the frozen phase restored from S3, and trained each finished epoch once.
    assert "] Interrupted: " in out  # the reclaim, though the restart followed within a poll
    assert "fine_tuned epochs in S3: 1" in out
    assert "frozen: finished in an earlier run" in out
    assert "[phase] fine_tuned: resuming after epoch 1/3" in out
    for epoch in (1, 2, 3):
        assert out.count(f"[epoch] phase=fine_tuned epoch={epoch}/3 ") == 1, f"epoch {epoch}"
    run_dir = report.parent
    assert history(run_dir) == [("frozen", 1)] + [("fine_tuned", i) for i in (1, 2, 3)]
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["mode"] == "cloud"
    assert 0 < summary["billable_seconds"] < summary["training_seconds"]

    # Every hyperparameter reached train.py with its type and value intact.
    config = json.loads((run_dir / "output" / "config.json").read_text())
    received = config["hyperparameters"]
    expected = load("smoke", settings).resolved_hyperparameters()
    expected["dataset_digest"] = json.loads((tiny_splits / "manifest.json").read_text())[
        "dataset_digest"
    ]
    assert config["paths"]["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert config["paths"]["model_dir"] == "/opt/ml/model"  # SageMaker's paths, as the job saw them
    assert received == expected
    assert {k: type(v) for k, v in received.items()} == {k: type(v) for k, v in expected.items()}


def test_a_job_past_its_max_runtime_ends_stopped_in_one_line(workdir, tiny_splits, capsys):
    plan = Rehearsal(overrides=TINY, max_runtime_minutes=0.05)  # 3 s: TF has not loaded yet
    with pytest.raises(UserError, match="failed"):
        rehearse(plan, tiny_splits, workdir / "runs")
    captured = capsys.readouterr()
    assert "] MaxRuntimeExceeded: Training job runtime exceeded MaxRuntimeInSeconds" in (
        captured.out
    )
    (line,) = [line for line in captured.err.splitlines() if line.startswith("error: training job")]
    assert "Stopped: MaxRuntimeExceeded" in line and "before it saved a model" in line
    assert "MAX_RUNTIME_MINUTES" in line
    assert not list((workdir / "runs").glob("vgg-smoke-*")), "a stopped job left a run folder"


def test_a_tuning_rehearsal_runs_aws_toolkit_and_one_job_resumes_its_own_checkpoints(
    workdir, tiny_splits, capsys
):
    settings = [*TINY[:-1], "epochs_fine_tuned=2"]
    plan = Rehearsal(overrides=settings, tune=True, max_jobs=3, parallel=2, interrupt="checkpoint")
    summary_path = rehearse(plan, tiny_splits, workdir / "runs")
    out = capsys.readouterr().out
    summary = json.loads(summary_path.with_name("tuning.json").read_text())
    jobs = [row["training_job"] for row in summary["training_jobs"]]
    assert len(jobs) == 3 and all(
        re.fullmatch(r"vgg-smoke-[\d-]+-00\d-[0-9a-f]{8}", j) for j in jobs
    )
    # The rehearsal's own check: each model.tar.gz holds model.h5, each objective is the best
    # fine-tuned val_accuracy of the job's history.csv.
    checked = [line for line in out.splitlines() if "model.tar.gz holds model.h5" in line]
    assert len(checked) == 3 and all(line.endswith("✓") for line in checked), checked
    assert all(row["status"] == "Completed" for row in summary["training_jobs"])
    logs = {job: (summary_path.parent / "logs" / f"{job}.log").read_text() for job in jobs}
    for job, log in logs.items():  # AWS's toolkits ran each job, under the tuning service's args
        assert "sagemaker-training-toolkit INFO     Reporting training SUCCESS" in log, job
        assert f"--model_dir None/{job}/model" in log
        assert f"checkpoints in /opt/ml/checkpoints/{job}" in log
    # One job was reclaimed once an epoch was in S3, and resumed from its own folder.
    (reclaim,) = [line for line in out.splitlines() if line.startswith("[stand-in] reclaiming")]
    assert reclaim.endswith("fine_tuned epochs in S3: 1")
    (resumed,) = [job for job, log in logs.items() if "resuming after epoch 1/2" in log]
    assert resumed in reclaim
    assert logs[resumed].count("=== ") == 2, "the restart wrote no stream of its own"
    assert "make predict RUN=" in out
    # MLflow: the tuning job is a parent run, each training job a child with its objective.
    parent, children = tracking.tuning_record(summary["tuning_job"], summary["objective"])
    assert children == {row["training_job"]: row["objective"] for row in summary["training_jobs"]}
    assert f"is run {parent}, its children:" in out
    fetched = summary["fetched_training_job"]
    assert fetched == summary["best_training_job"]
    assert predict(["--run", str(workdir / "runs" / fetched), "--images",
                    str(tiny_splits / "test")]) == 0  # fmt: skip


def test_a_job_that_fails_in_the_container_shows_its_reason_and_log_tail(
    workdir, tiny_splits, capsys
):
    plan = Rehearsal(overrides=[*TINY, "weights=/nonexistent/vgg16.h5"])
    with pytest.raises(UserError, match="failed"):
        rehearse(plan, tiny_splits, workdir / "runs")
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
    report = rehearse(
        Rehearsal(overrides=TINY, instance_count=2), two_host_splits, workdir / "runs"
    )
    out = capsys.readouterr().out
    assert "multi_worker x2" in out  # both hosts joined one MultiWorkerMirroredStrategy
    # Keras warns its input "ran out of data" in each worker's first epoch; every worker still
    # read its whole share (50 of the 100 training images), in the same steps, every epoch.
    counts = [line for line in out.splitlines() if line.startswith("[input]")]
    assert (
        sorted(c.split(",")[0] for c in counts)
        == ["[input] worker 1/2"] * 2 + ["[input] worker 2/2"] * 2
    )
    assert all("read 50 training images (its whole share)" in c for c in counts), counts
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["instance_count"] == 2
    (attempt,) = (workdir / "runs" / "standin" / report.parent.name).glob("attempt-*")
    chief, worker = attempt / "algo-1" / "opt_ml", attempt / "algo-2" / "opt_ml"
    assert (chief / "model" / "model.h5").exists() and (
        chief / "output" / "data" / "metrics.json"
    ).exists()
    assert not list((worker / "model").iterdir()), "algo-2 wrote a model"
    assert not list((worker / "output" / "data").iterdir()), "algo-2 wrote outputs"
    metrics = json.loads((chief / "output" / "data" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["distribution"] == "multi_worker x2"


def test_stop_training_job_stops_a_running_job_as_sagemaker_does(workdir, tiny_splits):
    from botocore.exceptions import ClientError

    from training.launch.__main__ import main as launch
    from training.standin import StandIn
    from training.standin.iam import enforced
    from training.standin.rehearse import STACK, act_as_launcher, create_stack, emulator

    with emulator() as endpoint:
        create_stack(workdir / ".infra")
        act_as_launcher()
        stand_in = StandIn(endpoint, workdir / "standin").start()
        try:
            with enforced():
                assert launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--stack", STACK,
                               "--splits", str(tiny_splits), "--detach"]) == 0  # fmt: skip
                (name,) = stand_in.runs
                sm = boto3.Session().client("sagemaker")  # signs as the launcher
                sm.stop_training_job(TrainingJobName=name)  # the launcher may (Ctrl-C offers it)
                deadline = time.time() + 120
                while time.time() < deadline:
                    description = sm.describe_training_job(TrainingJobName=name)
                    if description["TrainingJobStatus"] == "Stopped":
                        break
                    time.sleep(0.5)
                assert description["TrainingJobStatus"] == "Stopped"
                assert description["SecondaryStatus"] == "Stopped"
                with pytest.raises(ClientError, match="in status Stopped"):
                    sm.stop_training_job(TrainingJobName=name)
        finally:
            stand_in.stop()
