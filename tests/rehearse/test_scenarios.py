"""make rehearse: sequences of real commands (make train-cloud, results, tune, tune-results) from a
shell pointed at a stand-in of their own, which runs the SDK's container drivers (training jobs)
or AWS's own toolkit (tuning jobs) and train.py with /opt/ml mapped to a job volume."""

import csv
import dataclasses
import json
import os
import re
import shutil
import uuid

import pytest
from tiny import TINY

from training.common.errors import UserError
from training.launch.experiments import load
from training.predict.__main__ import main as predict
from training.rehearse.scenarios import Rehearsal, rehearse

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("unshare") is None, reason="the stand-in needs unshare"),
]


def plan_for(tmp_path, splits, **settings) -> Rehearsal:
    """A rehearsal with a stack of its own (tests run side by side, each with its .infra file)."""
    stack = f"t{uuid.uuid4().hex[:10]}"
    return Rehearsal(splits=splits, runs=tmp_path / "runs", stack=stack, **settings)


def history(run_dir) -> list:
    with open(run_dir / "output" / "history.csv") as handle:
        return [(row["phase"], int(row["epoch"])) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def two_host_splits(tmp_path_factory):
    """Enough images that each host's share of every split fills a batch piece per replica."""
    from training.data.prepare import prepare
    from training.data.sample import generate

    root = tmp_path_factory.mktemp("two-hosts")
    return prepare(generate(root / "raw", per_class=60), root / "splits", per_class=60).out


HOSTS = 2 if os.geteuid() == 0 else 1
G5, G4DN = "ml.g5.xlarge", "ml.g4dn.xlarge"  # several instances need network namespaces (root)


def test_detach_then_results_runs_the_sdk_drivers_and_resumes_a_spot_reclaim(
    tmp_path, two_host_splits, capsys, monkeypatch
):
    """make train-cloud DETACH=1 INSTANCE_COUNT=2, then make results JOB=…, with the spot
    reclaim of INTERRUPT=1 once a fine-tuning epoch is in S3 (scenario detach): both hosts run,
    algo-1 writes the model, and the restart resumes inside the phase."""
    monkeypatch.setenv("WORKSTATION_ONLY", "a variable no SageMaker container has")
    settings = [*TINY[:-1], "epochs_fine_tuned=3"]
    plan = plan_for(tmp_path, two_host_splits, overrides=settings, interrupt="checkpoint",
                    instance_count=HOSTS)  # fmt: skip
    summary = rehearse("detach", plan)
    out = capsys.readouterr().out
    job = re.search(r"submitted (vgg-smoke-\d+)", out).group(1)
    assert f"DETACH=1 submitted {job}; make results followed it to Completed" in summary
    detached, followed = out.split(f"$ make results JOB={job}")
    assert "preflight for smoke" in detached and "[epoch]" not in detached
    assert "Running Basic Script driver" in followed  # the SDK's driver, streamed from CloudWatch
    # Every log line the job wrote comes before its final status (SecondaryStatusTransitions).
    completed = followed.index("] Completed: Training job completed")
    assert completed > followed.rindex("Training Container Execution Completed")
    assert completed > followed.rindex("[epoch]")
    # The SDK's dump of the container's environment: the image's and SageMaker's, nothing else.
    dump = followed[followed.index("Environment Variables:") : followed.index("Running Basic")]
    assert f"TRAINING_JOB_NAME={job}" in dump and "TRAINING_JOB_ARN=" in dump
    for workstation in ("WORKSTATION_ONLY", "MAKEFLAGS", "VIRTUAL_ENV", "PWD=/work", "TF_CPP_MIN"):
        assert workstation not in dump, f"{workstation} reached the container"
    # What the emulator cannot answer is not shown as AWS's answer.
    assert "quota: 8 ml.m5.xlarge for spot training (not AWS's answer:" in detached
    assert "the Price List API was not asked: requests go to http://127.0.0.1:" in detached

    # The reclaim came once a fine-tuning epoch was in S3: the restart resumed inside the phase,
    # with the frozen phase restored from S3, and trained each finished epoch once.
    assert "] Interrupted: " in followed
    assert "fine_tuned epochs in S3: 1" in out  # the stand-in's own line
    assert "frozen: finished in an earlier run" in followed
    assert "[phase] fine_tuned: resuming after epoch 1/3" in followed
    # Epoch 1 ran before the reclaim, which comes as soon as algo-1's checkpoint is in S3: another
    # host may be stopped before its own epoch line reaches CloudWatch, as on AWS. Epochs 2 and 3
    # ran after the resume on every host. No host trains an epoch twice.
    epoch_lines = [followed.count(f"[epoch] phase=fine_tuned epoch={e}/3 ") for e in (1, 2, 3)]
    assert 1 <= epoch_lines[0] <= HOSTS and epoch_lines[1:] == [HOSTS, HOSTS], epoch_lines
    run_dir = plan.runs / job
    assert history(run_dir) == [("frozen", 1)] + [("fine_tuned", i) for i in (1, 2, 3)]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["mode"] == "cloud"
    assert 0 < report["billable_seconds"] < report["training_seconds"]

    # Every hyperparameter reached train.py with its type and value intact.
    config = json.loads((run_dir / "output" / "config.json").read_text())
    expected = dataclasses.asdict(load("smoke", settings).hp)
    expected["dataset_digest"] = json.loads((two_host_splits / "manifest.json").read_text())[
        "dataset_digest"
    ]
    if HOSTS > 1:
        expected["distribution"] = "multi_worker"
    assert config["paths"]["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert config["paths"]["model_dir"] == "/opt/ml/model"  # SageMaker's paths, as the job saw them
    assert config["hyperparameters"] == expected
    assert {k: type(v) for k, v in config["hyperparameters"].items()} == {
        k: type(v) for k, v in expected.items()
    }
    assert "stopped, with every job it held" in out  # the stand-in went down with the scenario
    if HOSTS > 1:
        hosts_each_wrote_their_part(followed, plan, run_dir, report)


def hosts_each_wrote_their_part(followed: str, plan, run_dir, report: dict) -> None:
    """Both hosts joined one MultiWorkerMirroredStrategy; algo-1 alone wrote the model."""
    assert "multi_worker x2" in followed
    # Keras warns its input "ran out of data" in each worker's first epoch; every worker still
    # read its whole share (50 of the 100 training images), in the same steps, every epoch.
    counts = [line for line in followed.splitlines() if line.startswith("[input]")]
    assert {c.split(",")[0] for c in counts} == {"[input] worker 1/2", "[input] worker 2/2"}
    assert all("read 50 training images (its whole share)" in c for c in counts), counts
    assert report["instance_count"] == 2
    attempts = sorted((plan.runs / ".standin" / "detach" / "jobs" / run_dir.name).glob("attempt-*"))
    chief, worker = attempts[-1] / "algo-1" / "opt_ml", attempts[-1] / "algo-2" / "opt_ml"
    assert (chief / "model" / "model.h5").exists()
    assert (chief / "output" / "data" / "metrics.json").exists()
    assert not list((worker / "model").iterdir()), "algo-2 wrote a model"
    assert not list((worker / "output" / "data").iterdir()), "algo-2 wrote outputs"
    metrics = json.loads((chief / "output" / "data" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["distribution"] == "multi_worker x2"


def test_a_run_stopped_past_its_max_runtime_resumes_when_run_again(tmp_path, tiny_splits, capsys):
    """Scenario max-runtime: MaxRuntimeExceeded once an epoch is done, one line saying so, then
    the same command again resumes from the job's checkpoints and trains no epoch twice. Each
    command finds no spot capacity on its first candidate (CAPACITY_FAIL) and moves to the
    second, which resumes what the last command's second candidate left."""
    settings = ["image_size=48", "batch_size=8", "epochs_frozen=10", "epochs_fine_tuned=1"]
    plan = plan_for(tmp_path, tiny_splits, overrides=settings, max_runtime_minutes=0.25,
                    instance=f"{G5},{G4DN}", capacity_fail=(G5,),
                    capacity_wait_minutes=0.05)  # fmt: skip
    summary = rehearse("max-runtime", plan)
    out = capsys.readouterr().out
    assert "stopped by MaxRuntimeExceeded" in summary and "resumed" in summary, summary
    *stopped, again = out.split("$ make train-cloud")[1:]
    for ran in stopped:
        assert "] MaxRuntimeExceeded: Training job runtime exceeded MaxRuntimeInSeconds" in ran
        (line,) = [line for line in ran.splitlines() if line.startswith("error: training job")]
        assert "Stopped: MaxRuntimeExceeded" in line and "before it saved a model" in line
        assert "MAX_RUNTIME_MINUTES" in line and "run the same command again" in line
    assert "checkpoints: resuming the unfinished run" in again
    done = len(re.findall(r"\[epoch\] phase=frozen", stopped[-1]))
    assert f"[phase] frozen: resuming after epoch {done}/10" in again
    assert len(re.findall(r"\[epoch\] phase=frozen", again)) == 10 - done
    (job,) = [p.name for p in plan.runs.glob("vgg-smoke-*")]  # only the finished job's folder
    assert history(plan.runs / job) == [("frozen", i) for i in range(1, 11)] + [("fine_tuned", 1)]
    for ran in (*stopped, again):  # every command: the g5 job waited, then the g4dn job ran
        assert f"attempt 1/2: {G5} spot" in ran and f"attempt 2/2: {G4DN} spot" in ran
        assert "no spot capacity after" in ran and "(CAPACITY_WAIT=0.05): stopping it" in ran
    report = json.loads((plan.runs / job / "report.json").read_text())
    assert report["instance_type"] == G4DN
    first, second = report["attempts"]
    assert (first["instance_type"], first["spot"], first["billable_seconds"]) == (G5, True, 0)
    assert first["ended"].startswith("no spot capacity after")
    assert (second["instance_type"], second["job"], second["ended"]) == (G4DN, job, "Completed")
    assert "## Capacity attempts" in (plan.runs / job / "report.md").read_text()


def test_tune_detach_then_tune_results_under_throttling(tmp_path, tiny_splits, capsys):
    """Scenario tune-detach on a stand-in throttling at a fifth of AWS's rates: AWS's toolkit runs
    each training job, one is reclaimed and resumes from its own checkpoint folder, and
    make tune-results reads every job's log and fetches the best model all the same. TRACK=server:
    the records go to an MLflow server whose artifact bucket is missing until make track."""
    settings = [*TINY[:-1], "epochs_fine_tuned=2"]
    plan = plan_for(tmp_path, tiny_splits, overrides=settings, tune=True, max_jobs=2,
                    parallel=2, interrupt="checkpoint", pace=0.2, track="server",
                    instance=f"{G5},{G4DN}", capacity_fail=(G5,))  # fmt: skip
    summary = rehearse("tune-detach", plan)
    out = capsys.readouterr().out
    assert "2 training jobs checked" in summary, summary
    assert (
        "2 record(s) failed at the upload while the bucket was missing; make track repaired"
        in summary
    ), summary  # the tuning job's and its fetched best job's
    assert "requests throttled (ThrottlingException: Rate exceeded)" in out
    name = re.search(r"submitted tuning job (vgg-smoke-[\d-]+)", out).group(1)
    tuning = json.loads((plan.runs / name / "tuning.json").read_text())
    jobs = [row["training_job"] for row in tuning["training_jobs"]]
    # InstanceConfigs by priority: the stand-in had no g5, so SageMaker's allocation took g4dn.
    assert f"instance types by priority: {G5}, {G4DN}" in out
    assert {row["instance_type"] for row in tuning["training_jobs"]} == {G4DN}
    assert len(jobs) == 2 and all(re.fullmatch(rf"{name}-00\d-[0-9a-f]{{8}}", j) for j in jobs)
    # The rehearsal's own check: each model.tar.gz holds model.h5, each objective is the best
    # fine-tuned val_accuracy of the job's history.csv.
    checked = [line for line in out.splitlines() if "model.tar.gz holds model.h5" in line]
    assert len(checked) == 2 and all(line.endswith("✓") for line in checked), checked
    logs = {job: (plan.runs / name / "logs" / f"{job}.log").read_text() for job in jobs}
    for job, log in logs.items():  # AWS's toolkits ran each job, under the tuning service's args
        assert "sagemaker-training-toolkit INFO     Reporting training SUCCESS" in log, job
        assert f"--model_dir None/{job}/model" in log
        assert f"checkpoints in /opt/ml/checkpoints/{job}" in log
    (reclaim,) = [line for line in out.splitlines() if line.startswith("[stand-in] reclaiming")]
    assert reclaim.endswith("fine_tuned epochs in S3: 1")
    (resumed,) = [job for job, log in logs.items() if "resuming after epoch 1/2" in log]
    assert resumed in reclaim
    assert logs[resumed].count("=== ") == 2, "the restart wrote no stream of its own"
    # The rehearsal read the repaired records back from the server: the parent and a child per
    # training job, each with the objective tuning.json has for it.
    assert f"tracking: {name} was not recorded in MLflow at http://127.0.0.1:" in out
    assert "(An error occurred (NoSuchBucket) when calling the PutObject operation" in out
    assert f"  {name}: FINISHED, 3 artifacts in s3://vgg-mlflow-{plan.stack}/mlflow/" in out
    for row in tuning["training_jobs"]:
        assert f"  {row['training_job']}: {tuning['objective']} {row['objective']} ✓" in out
    fetched = tuning["fetched_training_job"]
    assert fetched == tuning["best_training_job"]
    assert f"make predict RUN={plan.runs / fetched}" in out
    assert predict(["--run", str(plan.runs / fetched), "--images", str(tiny_splits / "test")]) == 0


def test_a_job_that_fails_in_the_container_shows_its_reason_and_log_tail(
    tmp_path, tiny_splits, capsys
):
    plan = plan_for(tmp_path, tiny_splits, overrides=[*TINY, "weights=/nonexistent/vgg16.h5"])
    with pytest.raises(UserError, match="exited 2"):
        rehearse("run", plan)
    out = capsys.readouterr().out
    assert "Failed: AlgorithmError:" in out and "/nonexistent/vgg16.h5" in out
    assert "last log lines:" in out
    assert not list(plan.runs.glob("vgg-smoke-*")), "a failed job left a run folder"
