"""make tune against moto: the CreateHyperParameterTuningJob request as it reaches AWS, the
preflight, following a tuning job, and its results (table, plot, logs, the best job's model)
from tuning-job data the test provides. SageMaker's side is rehearsed in tests/rehearse."""

import dataclasses
import io
import json
import tarfile
import time

import boto3
import pytest
from accounts import requests_sent
from clock import Clock
from launch_helpers import BUCKET, REGION, TINY, create_job
from tiny import archives

from training.common.aws import session as aws_session
from training.common.aws import split_s3_uri
from training.common.errors import UserError
from training.common.sagemaker import LOG_GROUP, TUNING_JOB
from training.launch import experiments, follow
from training.launch.__main__ import main as launch
from training.launch.experiments import load
from training.launch.fetch import fetch
from training.launch.follow import JobEnd
from training.report import tuning


@pytest.fixture
def sent(aws):
    with requests_sent("CreateHyperParameterTuningJob") as requests:
        yield requests["CreateHyperParameterTuningJob"]


def launch_tune(tiny_splits, *extra: str) -> int:
    return launch(["tune", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "test", "--detach", *extra])  # fmt: skip


def test_the_tuning_request_carries_the_training_definition_ranges_and_limits(
    quotas, aws, sent, tiny_splits, capsys
):
    quotas.start = 4.0
    assert launch_tune(tiny_splits, "--max-jobs", "6", "--parallel", "3") == 0, (
        capsys.readouterr().err
    )
    out = capsys.readouterr().out
    assert "preflight for smoke" in out and "tuning: up to 6 jobs, 3 at once" in out
    (request,) = sent
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
    assert "train.py" in names and "vgg_transfer/contract.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert static["image_size"] == "32" and static["epochs_fine_tuned"] == "1"
    assert definition["Environment"]["VGG_PRICE_USD_PER_HOUR"] == "0.23"  # what preflight showed
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
    quotas, aws, sent, tiny_splits, capsys
):
    quotas.start = 1.0
    assert launch_tune(tiny_splits, "--max-jobs", "4", "--parallel", "2") == 2
    assert "quota for ml.m5.xlarge is 1 but the job needs 2" in capsys.readouterr().err
    assert sent == []
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
        tuning.table(description, jobs, {"vgg-small-1130-120000-002-b": "ml.g4dn.xlarge"}),
        fetched_training_job="vgg-small-1130-120000-002-b",
    )
    logs = {"vgg-small-1130-120000-001-a": ["=== stream ===", "[epoch] line"]}
    path = tuning.write_results(tmp_path / "runs" / "vgg-small-1130-120000", summary, best_report,
                              logs)  # fmt: skip
    summary = json.loads((path.parent / "tuning.json").read_text())
    assert summary["tuned"] == ["learning_rate_fine_tuned", "unfreeze_from"]
    assert [row["objective"] for row in summary["training_jobs"]] == [0.9705, 0.961, None]
    assert summary["best_training_job"] == "vgg-small-1130-120000-002-b"
    table = path.read_text()
    assert (
        "| vgg-small-1130-120000-002-b **(best)** | ml.g4dn.xlarge | Completed | 0.9705 | 1.0e-05 "
        "| block3_conv1 |" in table
    )
    # A failed job's reason, on one line of the table, its pipes escaped.
    assert "| ? | Failed | — | 9.5e-05 | block4_conv1 | AlgorithmError: bad hyperparameters: a\\|b " \
        "second line |" in table  # fmt: skip
    log = path.parent / "logs" / "vgg-small-1130-120000-001-a.log"
    assert log.read_text() == "=== stream ===\n[epoch] line\n"
    assert (
        "| fine_tuned | 0.9702 | 0.9665 |" in table
    )  # the best job's test accuracy and the seed's
    assert (path.parent / "tuning.png").stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["vgg-small-1130-120000"]


def tuning_in_moto(role_arn: str, tiny_run, without_model=()) -> JobEnd:
    """The tuning job of tuning_data() as SageMaker left it: each training job in moto with the
    tiny run's artifacts (``without_model``: stopped before it saved one) and a log stream."""
    description, jobs = tuning_data()
    s3, logs = boto3.client("s3", region_name=REGION), boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    for job in jobs:
        name = job["TrainingJobName"]
        create_job(name, role_arn, "ml.m5.xlarge")
        prefix = f"outputs/{name}/output"
        packed = archives(tiny_run)
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/output.tar.gz", Body=packed["output.tar.gz"])
        if name in without_model:  # SageMaker packs the empty model folder all the same
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/model.tar.gz", Body=empty_archive())
            stopped(name)
        else:
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/model.tar.gz", Body=packed["model.tar.gz"])
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{name}/algo-1-1")
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=f"{name}/algo-1-1",
                            logEvents=[{"timestamp": int(time.time() * 1000),
                                        "message": f"log of {name}"}])  # fmt: skip
    return JobEnd(TUNING_JOB, description, jobs)


def empty_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz"):
        pass
    return buffer.getvalue()


def stopped(name: str) -> None:
    from moto.sagemaker.models import sagemaker_backends

    job = sagemaker_backends["123456789012"][REGION].training_jobs[name]
    job.training_job_status, job.secondary_status = "Stopped", "Stopped"


def fetched_jobs(runs) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if (p / "report.json").exists())


def test_fetching_tuning_results_pulls_the_best_jobs_report_and_every_log(
    aws, tiny_run, tmp_path, capsys
):
    end = tuning_in_moto(aws["role_arn"], tiny_run)
    runs = tmp_path / "runs"
    path = fetch(TUNING_JOB, aws_session(REGION), "vgg-small-1130-120000", runs, end)
    assert fetched_jobs(runs) == ["vgg-small-1130-120000-002-b"]
    report = json.loads((runs / "vgg-small-1130-120000-002-b" / "report.json").read_text())
    assert f"| fine_tuned | {report['phases']['fine_tuned']['test_accuracy']:.4f} |" in (
        path.read_text()
    )
    logs = path.parent / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        f"{job['TrainingJobName']}.log" for job in end.children
    ]
    log = (logs / "vgg-small-1130-120000-003-c.log").read_text()
    assert (
        log == "=== vgg-small-1130-120000-003-c/algo-1-1 ===\nlog of vgg-small-1130-120000-003-c\n"
    )
    assert "make predict RUN=" in capsys.readouterr().out


def test_a_best_job_stopped_before_it_saved_a_model_gives_way_to_the_best_completed(
    aws, tiny_run, tmp_path, capsys
):
    end = tuning_in_moto(aws["role_arn"], tiny_run, without_model={"vgg-small-1130-120000-002-b"})
    end.children[1]["TrainingJobStatus"] = "Stopped"  # tuning's early stopping, before a model
    runs = tmp_path / "runs"
    path = fetch(TUNING_JOB, aws_session(REGION), "vgg-small-1130-120000", runs, end)
    assert fetched_jobs(runs) == ["vgg-small-1130-120000-001-a"]
    summary = json.loads((path.parent / "tuning.json").read_text())
    assert summary["best_training_job"] == "vgg-small-1130-120000-002-b"  # as SageMaker says
    assert summary["fetched_training_job"] == "vgg-small-1130-120000-001-a"
    assert "saved no model" in summary["note"] and "saved no model" in path.read_text()
    assert (
        "note: the best job vgg-small-1130-120000-002-b saved no model" in capsys.readouterr().out
    )


def test_tuning_results_are_written_when_no_job_saved_a_model(aws, tiny_run, tmp_path):
    end = tuning_in_moto(aws["role_arn"], tiny_run)
    end.description["HyperParameterTuningJobStatus"] = "Failed"
    end.description.pop("BestTrainingJob")
    for job in end.children:
        job.update(TrainingJobStatus="Failed", FailureReason="AlgorithmError: out of memory")
        job.pop("FinalHyperParameterTuningJobObjectiveMetric", None)
    runs = tmp_path / "runs"
    path = fetch(TUNING_JOB, aws_session(REGION), "vgg-small-1130-120000", runs, end)
    assert fetched_jobs(runs) == []
    table = path.read_text()
    assert "(Failed)" in table and table.count("AlgorithmError: out of memory") == 3
    assert "no model was fetched" in table


def test_following_prints_each_training_job_as_it_lands():
    """Two polls through botocore's Stubber: one job still running, then all three done."""
    from botocore.stub import Stubber

    sm = boto3.Session(region_name=REGION, aws_access_key_id="x",
                       aws_secret_access_key="y").client("sagemaker")  # fmt: skip
    stubber = Stubber(sm)
    description, jobs = tuning_data()
    running = [dict(jobs[0], TrainingJobStatus="InProgress")]
    running[0].pop("FinalHyperParameterTuningJobObjectiveMetric")
    for status, listed in (("InProgress", running), ("Completed", jobs)):
        stubber.add_response(
            "describe_hyper_parameter_tuning_job",
            described(description, HyperParameterTuningJobStatus=status),
        )
        stubber.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {"TrainingJobSummaries": [summary(job) for job in listed]},
        )
    stubber.activate()
    session = type("Session", (), {"client": lambda self, name, config=None: sm})()
    lines, clock = [], Clock()
    end = follow.follow(TUNING_JOB, session, "vgg-small-1130-120000", write=lines.append,
                        clock=clock)  # fmt: skip
    stubber.assert_no_pending_responses()
    assert end.description["HyperParameterTuningJobStatus"] == "Completed"
    assert len(end.children) == 3 and clock.waits == [30.0]  # a tuning job's polls, 30 s apart
    objective = "fine_tuned:best_val_accuracy"
    assert lines[0].endswith(f"vgg-small-1130-120000-001-a: InProgress, {objective} —")
    assert f"vgg-small-1130-120000-001-a: Completed, {objective} 0.9610" in lines[1]
    assert f"vgg-small-1130-120000-002-b: Completed, {objective} 0.9705" in lines[2]
    # A failed job's reason, on its line.
    assert lines[3].endswith(
        f"-003-c: Failed, {objective} — — AlgorithmError: bad hyperparameters: a|b second line"
    )
    assert lines[-1] == "[vgg-small-1130-120000] Completed"


def described(description: dict, **changed) -> dict:
    """A DescribeHyperParameterTuningJob answer with every field the API requires."""
    config = {
        **description["HyperParameterTuningJobConfig"],
        "Strategy": "Bayesian",
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 2},
    }
    return {
        **description,
        **changed,
        "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:"
        "hyper-parameter-tuning-job/vgg-small-1130-120000",
        "HyperParameterTuningJobConfig": config,
        "CreationTime": "2026-11-30T12:00:00Z",
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
        "BestTrainingJob": {**description["BestTrainingJob"], "TrainingJobArn": "arn:x",
                            "CreationTime": "2026-11-30T12:00:00Z", "TrainingJobStatus":
                            "Completed", "TunedHyperParameters": {}},
    }  # fmt: skip


def summary(job: dict) -> dict:
    """A training job summary with every field ListTrainingJobsForHyperParameterTuningJob has."""
    return {"TrainingJobArn": "arn:x", "CreationTime": "2026-11-30T12:00:00Z", **job}
