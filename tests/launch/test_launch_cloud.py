"""The cloud path against moto: preflight, staging, the CreateTrainingJob request as it reaches
AWS, and failures. (SageMaker's side, run by the stand-in, is in tests/rehearse.)"""

import os
import time

import boto3
import pytest
from accounts import requests_sent
from botocore.stub import Stubber
from launch_helpers import BUCKET, REGION, TINY, create_job, quotas_for, request, running

from training.common import instances
from training.common.aws import session as aws_session
from training.common.aws import split_s3_uri
from training.common.errors import Interrupted, UserError
from training.common.instances import quota_name
from training.common.sagemaker import LOG_GROUP, TRAINING_JOB
from training.launch import capacity, follow, preflight, submit
from training.launch.__main__ import main as launch
from training.launch.experiments import from_hyperparameter, load


@pytest.fixture
def sent(aws):
    """The CreateTrainingJob requests as they reach AWS, and the SDK's IAM simulations."""
    with requests_sent("CreateTrainingJob") as requests:
        yield requests


def test_the_training_job_request_as_sent(aws, sent, tiny_splits, tmp_path, capsys):
    code = launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "test", "--detach"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (request,) = sent["CreateTrainingJob"]
    printed = capsys.readouterr().out
    assert "preflight for smoke" in printed and "cost:" in printed

    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"].endswith("tensorflow-training:2.19-cpu-py312")
    names = {d["Name"] for d in algorithm["MetricDefinitions"]}
    assert {"frozen:val_accuracy", "fine_tuned:test_accuracy"} <= names
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert request["EnableManagedSpotTraining"] is True
    assert (
        request["StoppingCondition"]["MaxWaitTimeInSeconds"]
        >= request["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
    hps = request["HyperParameters"]
    digest = from_hyperparameter(hps["dataset_digest"])
    assert (hps["image_size"], hps["epochs_frozen"], hps["weights"]) == ("32", "1", "none")
    assert hps["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert request["CheckpointConfig"]["S3Uri"].startswith(
        f"s3://{BUCKET}/checkpoints/smoke-{digest}-"
    )
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/outputs/"
    uris = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in request["InputDataConfig"]
    }
    assert uris["train"] == f"s3://{BUCKET}/datasets/{digest}/train_full/"
    assert uris["validation"] == f"s3://{BUCKET}/datasets/{digest}/validation/"
    assert uris["code"].startswith(f"s3://{BUCKET}/code/")  # the SDK's uploads stay under code/
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["experiment"] == "smoke" and tags["dataset_digest"] == digest and tags["git_commit"]
    s3 = boto3.client("s3", region_name=REGION)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET], "SDK made its own bucket"

    # What SageMaker then does with this request is rehearsed end to end in test_rehearse.py.


def test_a_failed_job_shows_its_reason_and_log_tail(aws, capsys):
    from moto.sagemaker.models import sagemaker_backends

    create_job("vgg-small-failed", aws["role_arn"])
    job = sagemaker_backends["123456789012"][REGION].training_jobs["vgg-small-failed"]
    job.training_job_status = "Failed"
    job.failure_reason = "AlgorithmError: ExecuteUserScriptError: exit code 2"
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="vgg-small-failed/algo-1-1")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="vgg-small-failed/algo-1-1",
        logEvents=[
            {"timestamp": now, "message": "[setup] one GPU replicas=1"},
            {"timestamp": now + 1, "message": "ERROR: channel 'train': 2 unreadable files"},
        ],
    )
    assert launch(["results", "--job", "vgg-small-failed", "--stack", "test"]) == 2
    captured = capsys.readouterr()
    assert "ExecuteUserScriptError" in captured.err
    assert "ERROR: channel 'train': 2 unreadable files" in captured.err  # the log tail
    assert "[vgg-small-failed] Failed" in captured.out
    assert "Traceback" not in captured.err


def test_missing_infra_outputs_say_run_infra_up(aws, tiny_splits, capsys):
    assert launch(["cloud", "--experiment", "smoke", "--stack", "nope", "--splits",
                   str(tiny_splits)]) == 2  # fmt: skip
    assert "make infra-up STACK=nope" in capsys.readouterr().err


def test_no_credentials_is_one_clear_line(aws, tiny_splits, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    code = launch(
        ["cloud", "--experiment", "smoke", "--splits", str(tiny_splits), "--stack", "test"]
    )
    assert code == 2
    assert "no AWS credentials" in capsys.readouterr().err


def test_quota_zero_stops_before_anything_is_staged(quotas, aws, tiny_splits, capsys):
    quotas.start = 0.0  # a new account: no training quota, but for the two types below
    quotas.values = {quota_name(i, spot): 1.0 for i in ("ml.g5.xlarge", "ml.g6.xlarge")
                     for spot in (False, True)}  # fmt: skip
    assert (
        launch(
            [
                "cloud",
                "--experiment",
                "smoke",
                "--instance",
                "ml.p2.xlarge",
                "--splits",
                str(tiny_splits),
                "--stack",
                "test",
            ]
        )
        == 2  # fmt: skip
    )
    err = capsys.readouterr().err
    assert "quota for ml.p2.xlarge is 0" in err
    # the exact command to run instead, with the cheapest type the account may use
    assert "`make train-cloud EXPERIMENT=smoke INSTANCE=ml.g6.xlarge`" in err
    assert (
        boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"]
        == []
    )
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    assert listed["KeyCount"] == 0, "data was staged before the quota check"


def quota_client(responses, errors=()):
    session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    client = session.client("service-quotas")
    stubber = Stubber(client)
    for operation, response in responses:
        stubber.add_response(operation, response, {"ServiceCode": "sagemaker"})
    for operation, message, status in errors:
        stubber.add_client_error(operation, "ServiceException", message, status,
                                 expected_params={"ServiceCode": "sagemaker"})  # fmt: skip
    session.client = lambda *args, **kwargs: client
    return session, stubber


def test_quota_falls_back_to_the_aws_default_when_none_was_applied():
    defaults = [
        {"QuotaName": "ml.p2.xlarge for spot training job usage", "Value": 0.0},
        {"QuotaName": "ml.g4dn.xlarge for spot training job usage", "Value": 1.0},
        {"QuotaName": "ml.g4dn.xlarge for training job usage", "Value": 1.0},
    ]
    applied = [{"QuotaName": "ml.g5.xlarge for spot training job usage", "Value": 4.0}]
    session, stubber = quota_client(
        [("list_aws_default_service_quotas", {"Quotas": defaults}),
         ("list_service_quotas", {"Quotas": applied})]
    )  # fmt: skip
    with stubber:
        reading = capacity.read_quotas(session)
    assert reading.value("ml.g4dn.xlarge", spot=True) == 1.0
    assert reading.source("ml.g4dn.xlarge", spot=True) == "AWS default"
    assert reading.value("ml.g5.xlarge", spot=True) == 4.0
    assert reading.source("ml.g5.xlarge", spot=True) == "applied"
    assert reading.value("ml.p2.xlarge", spot=True) == 0.0
    assert reading.offered("ml.p3.2xlarge", spot=True) is False  # no quota at all: not offered
    assert reading.problem is None


def test_a_quota_endpoint_answering_html_gives_one_line(capsys):
    page = "<html><head><title>500</title></head><body><h1>Internal Server Error</h1></body></html>"
    session, stubber = quota_client(
        [], [("list_aws_default_service_quotas", page, 500), ("list_service_quotas", page, 500)]
    )
    with stubber:
        reading = capacity.read_quotas(session)
    assert "<" not in reading.problem and "Internal Server Error" in reading.problem
    preflight.check_quota(reading, request("small"), instances.lookup("ml.g4dn.xlarge"), True)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("quota: unknown for ml.g4dn.xlarge")
    assert "<html>" not in printed[0]


def test_a_type_the_region_does_not_offer_is_refused_with_the_alternative():
    reading = quotas_for(1.0)
    reading.defaults = dict(reading.applied)
    del reading.applied["ml.p2.xlarge for spot training job usage"]
    del reading.defaults["ml.p2.xlarge for spot training job usage"]
    with pytest.raises(capacity.UserError) as caught:
        preflight.check_quota(reading, request("small"), instances.lookup("ml.p2.xlarge"), True)
    assert "not offered for spot training jobs in this region" in str(caught.value)
    assert "`make train-cloud EXPERIMENT=small INSTANCE=ml.g4dn.xlarge`" in str(caught.value)


def test_instance_auto_lists_the_gpu_types_with_quota_cheapest_first(capsys):
    reading = quotas_for(0.0, ml_g6_xlarge=2.0, ml_g5_xlarge=2.0)
    choices = capacity.choose_auto(reading, spot_modes=(True,), count=2)
    assert [i.name for i in choices] == ["ml.g6.xlarge", "ml.g5.xlarge"]
    line = capsys.readouterr().out
    assert "ml.g6.xlarge, ml.g5.xlarge — the GPU types with spot training quota (applied)" in line
    assert "no quota for ml.g4dn.xlarge" in line
    with pytest.raises(capacity.UserError, match="INSTANCE=auto found no GPU type"):
        capacity.choose_auto(quotas_for(0.0), spot_modes=(True,), count=1)


def test_p2_runs_with_a_plain_warning_before_anything_is_spent(aws, sent, tiny_splits, capsys):
    code = launch(["cloud", "--experiment", "smoke", "--instance", "ml.p2.xlarge", "--hp", *TINY,
                   "--splits", str(tiny_splits), "--stack", "test", "--detach"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if "warning:" in line)
    assert "deprecated P2" in warning and "TensorFlow 2.11 image, unpatched" in warning
    assert out.index("warning:") < out.index("submitted")
    (request,) = sent["CreateTrainingJob"]
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith(":2.11-gpu-py39")


def test_the_sdks_role_check_neither_blocks_nor_leaks(aws, sent, tiny_splits, capsys):
    """ModelTrainer simulates ec2:* on the role: an admin caller would see our least-privilege
    role refused, and a launcher-policy caller may not simulate at all. The launcher turns that
    check off for its own trainer only, and stages the code in code/ whoever the caller is."""
    assert submit.SDK_ROLE_CHECK not in os.environ
    code = launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "test", "--detach"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    assert submit.SDK_ROLE_CHECK not in os.environ, "the launcher left the SDK check off"
    assert sent["SimulatePrincipalPolicy"] == [], "the SDK simulated IAM"
    (request,) = sent["CreateTrainingJob"]
    uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in request["InputDataConfig"]}  # fmt: skip
    assert uris["code"].startswith(f"s3://{BUCKET}/code/")
    assert uris["sm_drivers"].startswith(f"s3://{BUCKET}/code/")
    bucket, prefix = split_s3_uri(uris["code"])
    s3 = boto3.client("s3", region_name=REGION)
    shipped = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert any(key.endswith("/train.py") for key in shipped)
    assert not [key for key in shipped if "__pycache__" in key or key.endswith(".pyc")]


def test_whatever_the_sdk_refuses_is_one_line():
    with pytest.raises(UserError) as caught, submit.sdk_errors("the training job"):
        raise ValueError("Invalid instance_type 'ml.nope'.\nMore lines the user need not see")
    assert str(caught.value) == (
        "the SageMaker SDK refused the training job: ValueError: Invalid instance_type "
        "'ml.nope'. More lines the user need not see"
    )


def test_p2_is_refused_with_tensorflow_212_or_newer():
    p2 = instances.lookup("ml.p2.xlarge")
    capacity.check_framework(p2, "2.11")
    with pytest.raises(capacity.UserError, match="up to 2.11"):
        capacity.check_framework(p2, "2.12")
    assert preflight.image_uri(p2, REGION).endswith("tensorflow-training:2.11-gpu-py39")
    g5 = instances.lookup("ml.g5.xlarge")
    assert preflight.image_uri(g5, REGION).endswith(":2.19-gpu-py312")


def test_metric_definitions_match_the_jobs_log_lines():
    import re

    from vgg_transfer import contract
    from vgg_transfer.contract import EPOCH_LINE, TEST_LINE

    epoch = EPOCH_LINE.format(phase="fine_tuned", epoch=3, epochs=50, loss=0.25, accuracy=0.9,
                              val_loss=0.125, val_accuracy=0.95, best_val_accuracy=0.96,
                              seconds=41.5)  # fmt: skip
    test = TEST_LINE.format(phase="frozen", test_loss=0.3, test_accuracy=0.898)
    found = {}
    for definition in contract.metric_definitions():
        for line in (epoch, test):
            match = re.search(definition["Regex"], line)
            if match:
                found[definition["Name"]] = float(match.group(1))
    assert found == {
        "fine_tuned:loss": 0.25,
        "fine_tuned:accuracy": 0.9,
        "fine_tuned:val_loss": 0.125,
        "fine_tuned:val_accuracy": 0.95,
        "fine_tuned:best_val_accuracy": 0.96,
        "frozen:test_loss": 0.3,
        "frozen:test_accuracy": 0.898,
    }


def test_network_isolation_needs_a_weights_file(aws, tiny_splits, capsys):
    code = launch(["cloud", "--experiment", "smoke", "--hp", "weights=imagenet",
                   "--network-isolation", "--splits", str(tiny_splits), "--stack", "test"])  # fmt: skip
    assert code == 2 and "WEIGHTS=" in capsys.readouterr().err


def test_experiments_reproduce_the_seed_and_refuse_bad_overrides():
    small = load("small").hp
    assert (small.epochs_frozen, small.epochs_fine_tuned, small.batch_size) == (30, 50, 64)
    assert load("full").hp.early_stopping_patience == 10
    assert load("small", ["epochs_fine_tuned=10"]).hp.epochs_fine_tuned == 10
    with pytest.raises(capacity.UserError, match="unknown hyperparameter"):
        load("small", ["epoch=3"])
    with pytest.raises(capacity.UserError, match="invalid int value"):
        load("small", ["epochs_fine_tuned=ten"])
    with pytest.raises(capacity.UserError, match="unknown experiment"):
        load("huge")


class CtrlC:
    """A clock whose wait is cut short by Ctrl-C, as a person presses it while following."""

    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt


def test_following_streams_logs_and_ctrl_c_says_how_to_stop_or_resume(aws, capsys):
    create_job("vgg-small-running", aws["role_arn"])
    running(REGION, "vgg-small-running")
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="vgg-small-running/algo-1-1")
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="vgg-small-running/algo-1-1",
        logEvents=[
            {"timestamp": int(time.time() * 1000), "message": "[epoch] phase=frozen epoch=1/30"}
        ],
    )
    session = aws_session(REGION)
    with pytest.raises(Interrupted) as caught:
        follow.follow(TRAINING_JOB, session, "vgg-small-running", clock=CtrlC())
    out = capsys.readouterr().out
    assert "[vgg-small-running] InProgress\n" in out
    assert "[vgg-small-running] Starting: Preparing the instances for training" in out
    assert "[epoch] phase=frozen epoch=1/30" in out  # the log line, streamed
    assert "stop-training-job --training-job-name vgg-small-running" in out  # no tty
    assert "make results JOB=vgg-small-running" in str(caught.value)
    assert caught.value.exit_code == 130


def test_following_prints_every_status_transition_once_even_between_polls():
    def description(status: str, *transitions: tuple[str, str]) -> dict:
        return {
            "TrainingJobStatus": status,
            "SecondaryStatus": transitions[-1][0],
            "SecondaryStatusTransitions": [
                {"Status": name, "StatusMessage": message} for name, message in transitions
            ],
        }

    first = description("InProgress", ("Starting", "Preparing the instances for training"))
    assert follow.status_lines("j", first, 0, None) == [
        "[j] InProgress",
        "[j] Starting: Preparing the instances for training",
    ]
    # An interruption and the restart both happen between two polls.
    second = description(
        "InProgress",
        ("Starting", "Preparing the instances for training"),
        ("Training", "Training in progress."),
        ("Interrupted", "spot instance reclaimed"),
        ("Downloading", "Downloading input data"),
    )
    assert follow.status_lines("j", second, 1, "InProgress") == [
        "[j] Training: Training in progress.",
        "[j] Interrupted: spot instance reclaimed",
        "[j] Downloading: Downloading input data",
    ]
    # The job's own status is not repeated when its newest transition says the same.
    done = description(
        "Completed", *[(t["Status"], "") for t in second["SecondaryStatusTransitions"]]
    )
    done["SecondaryStatusTransitions"].append({"Status": "Completed"})
    assert follow.status_lines("j", done, 4, "InProgress") == ["[j] Completed"]
