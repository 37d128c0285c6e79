"""make tune against moto: the CreateHyperParameterTuningJob request as sent, the preflight, and
the results table and plot from tuning-job data the test provides."""

import copy
import dataclasses
import io
import json
import tarfile

import boto3
import pytest
from launch_helpers import BUCKET, TINY, quotas_for

from training.common.aws import split_s3_uri
from training.common.errors import UserError
from training.launch import common, experiments, preflight, tune
from training.launch.__main__ import main as launch
from training.launch.experiments import load


@pytest.fixture
def tuning_requests(monkeypatch):
    requests = []
    real_session = common.boto_session

    def session(region):
        boto_session = real_session(region)
        boto_session.events.register(
            "provide-client-params.sagemaker.CreateHyperParameterTuningJob",
            lambda params, **kwargs: requests.append(copy.deepcopy(params)),
        )
        return boto_session

    monkeypatch.setattr(common, "boto_session", session)
    return requests


def launch_tune(tiny_splits, *extra: str) -> int:
    return launch(["tune", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "test", "--detach", *extra])  # fmt: skip


def test_the_tuning_request_carries_the_training_definition_ranges_and_limits(
    aws, tuning_requests, tiny_splits, monkeypatch, capsys
):
    monkeypatch.setattr(preflight, "training_quota", lambda *args: quotas_for(4.0))
    assert launch_tune(tiny_splits, "--max-jobs", "6", "--parallel", "3") == 0, (
        capsys.readouterr().err
    )
    out = capsys.readouterr().out
    assert "preflight for smoke" in out and "tuning: up to 6 jobs, 3 at once" in out
    (request,) = tuning_requests
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "fine_tuned:best_val_accuracy",
    }
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 3
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert continuous["learning_rate_fine_tuned"]["ScalingType"] == "Logarithmic"
    assert float(continuous["learning_rate_fine_tuned"]["MinValue"]) == 1e-6
    assert float(continuous["learning_rate_fine_tuned"]["MaxValue"]) == 1e-4
    assert float(continuous["learning_rate_frozen"]["MaxValue"]) == 1e-2
    (categorical,) = ranges["CategoricalParameterRanges"]
    assert categorical == {
        "Name": "unfreeze_from",
        "Values": ["block3_conv1", "block4_conv1", "block5_conv1"],
    }

    definition = request["TrainingJobDefinition"]
    algorithm = definition["AlgorithmSpecification"]
    assert algorithm["TrainingImage"].endswith("tensorflow-training:2.19-cpu-py312")
    assert "fine_tuned:best_val_accuracy" in {d["Name"] for d in algorithm["MetricDefinitions"]}
    assert definition["RoleArn"] == aws["role_arn"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in definition["InputDataConfig"]}  # fmt: skip
    assert {"train", "validation", "test", "sm_drivers"} <= set(channels)
    assert channels["train"].startswith(f"s3://{BUCKET}/datasets/")
    assert channels["sm_drivers"].startswith(f"s3://{BUCKET}/code/")
    static = definition["StaticHyperParameters"]
    # The tuning API takes no container entrypoint: the image's toolkit runs sagemaker_program
    # from the code tarball, which must lie under code/ (the role reads nothing else) and hold
    # no __pycache__.
    assert static["sagemaker_program"] == "train.py"
    bucket, key = split_s3_uri(static["sagemaker_submit_directory"])
    assert bucket == BUCKET and key.startswith("code/") and key.endswith("sourcedir.tar.gz")
    with tarfile.open(
        fileobj=io.BytesIO(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    ) as tar:
        names = tar.getnames()
    assert "train.py" in names and "vgg_transfer/data.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert static["image_size"] == "32" and static["epochs_fine_tuned"] == "1"
    assert "learning_rate_fine_tuned" not in static and "unfreeze_from" not in static
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["CheckpointConfig"]["S3Uri"].startswith(f"s3://{BUCKET}/checkpoints/smoke-")
    assert "-fresh-" in definition["CheckpointConfig"]["S3Uri"]  # a new folder for the tuning
    stopping = definition["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["experiment"] == "smoke" and tags["project"] == "vgg-dogs-cats"
    assert len(request["HyperParameterTuningJobName"]) <= 32


def test_quota_for_parallel_jobs_is_checked_before_anything_is_staged(
    aws, tuning_requests, tiny_splits, monkeypatch, capsys
):
    monkeypatch.setattr(preflight, "training_quota", lambda *args: quotas_for(1.0))
    assert launch_tune(tiny_splits, "--max-jobs", "4", "--parallel", "2") == 2
    assert "quota for ml.m5.xlarge is 1 but the job needs 2" in capsys.readouterr().err
    assert tuning_requests == []
    assert launch_tune(tiny_splits, "--max-jobs", "2", "--parallel", "3") == 2
    assert "PARALLEL=3 exceeds MAX_JOBS=2" in capsys.readouterr().err


def test_ranges_come_from_the_experiment_file_and_are_checked():
    def with_ranges(ranges: dict):
        return dataclasses.replace(load("small"), tuning=ranges)

    assert experiments.tuning_ranges(load("small")) == experiments.DEFAULT_RANGES
    ranges = {"learning_rate_fine_tuned": {"min": 1e-5, "max": 1e-3}}
    assert experiments.tuning_ranges(with_ranges(ranges)) == ranges
    with pytest.raises(UserError, match="not a VGG16 layer"):
        experiments.tuning_ranges(with_ranges({"unfreeze_from": ["block9_conv1"]}))
    with pytest.raises(UserError, match="give {min"):
        experiments.tuning_ranges(with_ranges({"learning_rate_fine_tuned": {"min": 1e-5}}))


def tuning_data() -> tuple[dict, list[dict]]:
    description = {
        "HyperParameterTuningJobName": "vgg-small-1130-120000",
        "HyperParameterTuningJobStatus": "Completed",
        "HyperParameterTuningJobConfig": {
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate_fine_tuned", "MinValue": "1e-6", "MaxValue": "1e-4"}
                ],
                "CategoricalParameterRanges": [
                    {"Name": "unfreeze_from", "Values": ["block3_conv1", "block4_conv1"]}
                ],
                "IntegerParameterRanges": [],
            }
        },
        "BestTrainingJob": {"TrainingJobName": "vgg-small-1130-120000-002-b"},
    }
    jobs = [
        {"TrainingJobName": f"vgg-small-1130-120000-00{i}-{c}", "TrainingJobStatus": status,
         "TunedHyperParameters": {"learning_rate_fine_tuned": lr, "unfreeze_from": block},
         **({"FinalHyperParameterTuningJobObjectiveMetric": {
             "MetricName": "fine_tuned:best_val_accuracy", "Value": value}} if value else {}),
         **({"FailureReason": reason} if reason else {})}
        for i, c, status, lr, block, value, reason in [
            (1, "a", "Completed", "2.1e-05", "block4_conv1", 0.961, None),
            (2, "b", "Completed", "1.0e-05", "block3_conv1", 0.9705, None),
            (3, "c", "Failed", "9.5e-05", "block4_conv1", None,
             "AlgorithmError: bad hyperparameters: a|b\nsecond line"),
        ]
    ]  # fmt: skip
    return description, jobs


def test_results_table_and_plot_come_from_the_tuning_jobs_data(tmp_path, monkeypatch):
    description, jobs = tuning_data()
    best_report = {"phases": {
        "frozen": {"test_accuracy": 0.901, "seed": {"test_accuracy": 0.898}},
        "fine_tuned": {"test_accuracy": 0.9702, "seed": {"test_accuracy": 0.9665}},
    }}  # fmt: skip
    summary = dict(
        tune.table(description, jobs), fetched_training_job="vgg-small-1130-120000-002-b"
    )
    logs = {"vgg-small-1130-120000-001-a": ["=== stream ===", "[epoch] line"]}
    path = tune.write_results(tmp_path / "runs" / "vgg-small-1130-120000", summary, best_report,
                              logs)  # fmt: skip
    summary = json.loads((path.parent / "tuning.json").read_text())
    assert summary["tuned"] == ["learning_rate_fine_tuned", "unfreeze_from"]
    assert [row["objective"] for row in summary["training_jobs"]] == [0.9705, 0.961, None]
    assert summary["best_training_job"] == "vgg-small-1130-120000-002-b"
    table = path.read_text()
    assert (
        "| vgg-small-1130-120000-002-b **(best)** | Completed | 0.9705 | 1.0e-05 | block3_conv1 |"
        in table
    )
    # A failed job's reason, on one line of the table, its pipes escaped.
    assert "| Failed | — | 9.5e-05 | block4_conv1 | AlgorithmError: bad hyperparameters: a\\|b " \
        "second line |" in table  # fmt: skip
    log = path.parent / "logs" / "vgg-small-1130-120000-001-a.log"
    assert log.read_text() == "=== stream ===\n[epoch] line\n"
    assert (
        "| fine_tuned | 0.9702 | 0.9665 |" in table
    )  # the best job's test accuracy and the seed's
    assert (path.parent / "tuning.png").stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["vgg-small-1130-120000"]


def fake_fetching(monkeypatch, without_model=()):
    """results.fetch_results and the log reader, as for jobs that saved a model (but those in
    ``without_model``, which were stopped first); returns the jobs asked for."""
    fetched = []

    def fetch_results(session, job, runs_dir, end=None):
        fetched.append(job)
        if job in without_model:
            raise tune.UserError(f"training job {job} Stopped: Stopped, before it saved a model")
        report = runs_dir / job / "report.md"
        report.parent.mkdir(parents=True)
        report.with_suffix(".json").write_text(json.dumps(
            {"phases": {"fine_tuned": {"test_accuracy": 0.97, "seed": {"test_accuracy": 0.9665}}}}
        ))  # fmt: skip
        return report

    monkeypatch.setattr(tune.results, "fetch_results", fetch_results)
    monkeypatch.setattr(tune, "job_log", lambda session, job, outage: [f"log of {job}"])
    return fetched


def test_fetching_tuning_results_pulls_the_best_jobs_report_and_every_log(
    tmp_path, monkeypatch, capsys
):
    description, jobs = tuning_data()
    fetched = fake_fetching(monkeypatch)
    path = tune.fetch(None, "vgg-small-1130-120000", tmp_path, description, jobs)
    assert fetched == ["vgg-small-1130-120000-002-b"]
    assert "| fine_tuned | 0.9700 | 0.9665 |" in path.read_text()
    assert sorted(p.name for p in (path.parent / "logs").iterdir()) == [
        f"{job['TrainingJobName']}.log" for job in jobs
    ]
    assert "make predict RUN=" in capsys.readouterr().out


def test_a_best_job_stopped_before_it_saved_a_model_gives_way_to_the_best_completed(
    tmp_path, monkeypatch, capsys
):
    description, jobs = tuning_data()
    jobs[1]["TrainingJobStatus"] = "Stopped"  # tuning's early stopping, say, before any model
    fetched = fake_fetching(monkeypatch, without_model={"vgg-small-1130-120000-002-b"})
    path = tune.fetch(None, "vgg-small-1130-120000", tmp_path, description, jobs)
    assert fetched == ["vgg-small-1130-120000-002-b", "vgg-small-1130-120000-001-a"]
    summary = json.loads((path.parent / "tuning.json").read_text())
    assert summary["best_training_job"] == "vgg-small-1130-120000-002-b"  # as SageMaker says
    assert summary["fetched_training_job"] == "vgg-small-1130-120000-001-a"
    assert "saved no model" in summary["note"] and "saved no model" in path.read_text()
    assert (
        "note: the best job vgg-small-1130-120000-002-b saved no model" in capsys.readouterr().out
    )


def test_tuning_results_are_written_when_no_job_saved_a_model(tmp_path, monkeypatch):
    description, jobs = tuning_data()
    description["HyperParameterTuningJobStatus"] = "Failed"
    description.pop("BestTrainingJob")
    for job in jobs:
        job.update(TrainingJobStatus="Failed", FailureReason="AlgorithmError: out of memory")
        job.pop("FinalHyperParameterTuningJobObjectiveMetric", None)
    fetched = fake_fetching(monkeypatch)
    path = tune.fetch(None, "vgg-small-1130-120000", tmp_path, description, jobs)
    assert fetched == []
    table = path.read_text()
    assert "(Failed)" in table and table.count("AlgorithmError: out of memory") == 3
    assert "no model was fetched" in table


class FakeTuningSageMaker:
    """DescribeHyperParameterTuningJob and its training jobs, two polls: one job still running,
    then both done."""

    def __init__(self) -> None:
        self.polls = 0
        self.meta = type("Meta", (), {"region_name": "us-east-1"})()

    def describe_hyper_parameter_tuning_job(self, HyperParameterTuningJobName):  # noqa: N803
        self.polls += 1
        description, _ = tuning_data()
        description["HyperParameterTuningJobStatus"] = (
            "InProgress" if self.polls == 1 else "Completed"
        )
        return description

    def get_paginator(self, operation):
        assert operation == "list_training_jobs_for_hyper_parameter_tuning_job"
        _, jobs = tuning_data()
        if self.polls == 1:
            jobs = [dict(jobs[0], TrainingJobStatus="InProgress")]
            jobs[0].pop("FinalHyperParameterTuningJobObjectiveMetric")
        return type("Paginator", (), {"paginate": lambda self, **kwargs: [
            {"TrainingJobSummaries": jobs}]})()  # fmt: skip


def test_following_prints_each_training_job_as_it_lands(monkeypatch):
    fake = FakeTuningSageMaker()
    session = type("Session", (), {"client": lambda self, name, config=None: fake})()
    monkeypatch.setattr(tune.time, "sleep", lambda seconds: None)
    lines = []
    description, jobs = tune.follow(session, "vgg-small-1130-120000", write=lines.append)
    assert description["HyperParameterTuningJobStatus"] == "Completed" and len(jobs) == 3
    objective = "fine_tuned:best_val_accuracy"
    assert lines[0].endswith(f"vgg-small-1130-120000-001-a: InProgress, {objective} —")
    assert f"vgg-small-1130-120000-001-a: Completed, {objective} 0.9610" in lines[1]
    assert f"vgg-small-1130-120000-002-b: Completed, {objective} 0.9705" in lines[2]
    # A failed job's reason, on its line.
    assert lines[3].endswith(
        f"-003-c: Failed, {objective} — — AlgorithmError: bad hyperparameters: a|b second line"
    )
    assert lines[-1] == "[vgg-small-1130-120000] Completed"
