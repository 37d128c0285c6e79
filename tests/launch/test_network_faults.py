"""The launcher against a network that drops, refuses, stalls and throttles: a fault-injecting
proxy (faultproxy.py) between it and a moto server on loopback, as AWS_ENDPOINT_URL."""

import json
import threading
import time
from datetime import UTC, datetime

import boto3
import pytest
from faultproxy import Fault, FaultProxy, throttling
from tiny import archives

from training.common.aws import session as aws_session
from training.common.errors import UserError
from training.common.sagemaker import TRAINING_JOB
from training.launch import fetch, follow
from training.launch.__main__ import main as launch
from training.standin.account import admin_environment, free_port, start_emulator

pytestmark = pytest.mark.slow
REGION = "us-east-1"
BUCKET = "vgg-network-test"
JOB = "vgg-smoke-20261201-120000"
LINES = 60


@pytest.fixture
def artifacts(tiny_run):
    """model.tar.gz and output.tar.gz of a real tiny run, as SageMaker packs them."""
    return archives(tiny_run)


@pytest.fixture
def network(tmp_path, monkeypatch):
    """moto on 127.0.0.1 behind the fault proxy; this process's AWS settings go through the
    proxy; the returned client talks to moto directly (what SageMaker itself would do)."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    server = start_emulator(port)
    try:
        with FaultProxy(port) as proxy:
            for name, value in admin_environment(proxy.url).items():
                monkeypatch.setenv(name, value)
            direct = boto3.Session(region_name=REGION)
            endpoint = f"http://127.0.0.1:{port}"
            yield proxy, lambda service: direct.client(service, endpoint_url=endpoint)
    finally:
        server.stop()


def running_job(client, artifacts: dict) -> object:
    """A training job in moto, running, with its artifacts in place and a log stream."""
    from moto.sagemaker.models import sagemaker_backends

    client("s3").create_bucket(Bucket=BUCKET)
    for name, body in artifacts.items():
        client("s3").put_object(Bucket=BUCKET, Key=f"outputs/{JOB}/output/{name}", Body=body)
    client("sagemaker").create_training_job(
        TrainingJobName=JOB,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/sagemaker-execution",
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/outputs/"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    job = sagemaker_backends["123456789012"][REGION].training_jobs[JOB]
    job.training_job_status, job.secondary_status = "InProgress", "Training"
    job.secondary_status_transitions = [
        {"Status": "Training", "StartTime": datetime.now(UTC), "StatusMessage": "training"}
    ]
    logs = client("logs")
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{JOB}/algo-1"
    )
    return job


def write_log(client, job, seconds_apart: float = 0.25, proxy=None) -> threading.Thread:
    """The job at work: LINES log lines, then Completed, straight into moto. With ``proxy``, the
    job ends only once the follower has met every fault scheduled (60 s at most)."""

    def work() -> None:
        logs = client("logs")
        for i in range(LINES):
            logs.put_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs",
                logStreamName=f"{JOB}/algo-1",
                logEvents=[{"timestamp": int(time.time() * 1000), "message": f"line {i:03d}"}],
            )
            time.sleep(seconds_apart)
        deadline = time.monotonic() + 60
        while proxy and proxy.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        now = datetime.now(UTC)
        job.secondary_status_transitions[-1]["EndTime"] = now
        job.secondary_status_transitions.append(
            {"Status": "Completed", "StartTime": now, "StatusMessage": "Training job completed"}
        )
        job.training_job_status = job.secondary_status = "Completed"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def assert_every_line_once(printed: list[str]) -> None:
    lines = [line for line in printed if line.startswith("line ")]
    assert lines == [f"line {i:03d}" for i in range(LINES)], "a log line was lost or repeated"
    completed = [
        i for i, line in enumerate(printed) if line.endswith("Completed: Training job completed")
    ]
    assert len(completed) == 1 and completed[0] > printed.index(f"line {LINES - 1:03d}")


def test_a_follow_across_a_20_second_outage_prints_every_line_once_and_fetches_the_results(
    network, artifacts, tmp_path
):
    proxy, client = network
    job = running_job(client, artifacts)
    writer = write_log(client, job)
    threading.Timer(3, proxy.refuse_for, args=(20,)).start()
    session = aws_session(REGION)
    printed: list[str] = []
    started = time.monotonic()
    end = follow.follow(TRAINING_JOB, session, JOB, poll_seconds=1, write=printed.append,
                        reconnect_minutes=2)  # fmt: skip
    writer.join()
    assert time.monotonic() - started > 20  # the outage happened while following
    assert_every_line_once(printed)
    lost = [line for line in printed if "lost the connection to AWS" in line]
    back = [line for line in printed if "AWS answers again" in line]
    assert len(lost) == 1 and len(back) == 1, printed
    report = fetch.fetch(TRAINING_JOB, session, JOB, tmp_path / "runs", end)
    assert report.exists() and json.loads(report.with_suffix(".json").read_text())["phases"]


def test_a_follow_through_throttling_and_slow_answers_prints_every_line_once(
    network, artifacts, tmp_path
):
    proxy, client = network
    job = running_job(client, artifacts)
    proxy.add(  # the first matching fault with turns left answers a request
        Fault("delay", "GetLogEvents", 3, seconds=2),
        throttling("GetLogEvents", 8),  # more than one request's tries
        throttling("DescribeTrainingJob", 5),
        Fault("status", "DescribeLogStreams", 4),  # 503s
    )
    writer = write_log(client, job, seconds_apart=0.1, proxy=proxy)
    printed: list[str] = []
    session = aws_session(REGION)
    end = follow.follow(TRAINING_JOB, session, JOB, poll_seconds=0.5, write=printed.append)
    writer.join()
    assert_every_line_once(printed)
    assert proxy.count("status 400") == 13 and proxy.count("status 503") == 4
    assert proxy.count("delay") == 3
    report = fetch.fetch(TRAINING_JOB, session, JOB, tmp_path / "runs", end)
    assert report.exists()


def refuse_once_reached(proxy, seconds: float, timeout: float = 20.0) -> None:
    """Refuses connections from the follower's first answered request on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not proxy.seen:
        time.sleep(0.01)
    proxy.refuse_for(seconds)


def test_an_outage_longer_than_the_window_ends_in_one_line_and_leaves_the_job(
    network, artifacts, tmp_path, capsys
):
    proxy, client = network
    running_job(client, artifacts)
    outputs = {"bucket_name": BUCKET, "role_arn": "arn:aws:iam::123456789012:role/r",
               "region": REGION, "data_prefix": "datasets", "code_prefix": "code",
               "weights_prefix": "weights", "outputs_prefix": "outputs",
               "checkpoints_prefix": "checkpoints", "launcher_policy_arn": "arn:p"}  # fmt: skip
    (tmp_path / ".infra").mkdir()
    (tmp_path / ".infra" / "test.json").write_text(json.dumps(outputs))
    # The outage begins once the follower has reached AWS: a network that never answered is
    # one line at once (test_launch_failures.py), not a wait.
    threading.Thread(target=refuse_once_reached, args=(proxy, 60), daemon=True).start()
    started = time.monotonic()
    code = launch(["results", "--job", JOB, "--stack", "test", "--poll-seconds", "0.5",
                   "--reconnect-minutes", "0.1"])  # fmt: skip
    assert code == 2 and time.monotonic() - started < 30
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1, err
    assert "no answer from AWS for 0.1 min" in err[0] and f"make results JOB={JOB}" in err[0]
    status = client("sagemaker").describe_training_job(TrainingJobName=JOB)["TrainingJobStatus"]
    assert status == "InProgress"  # untouched
    assert not (tmp_path / "runs").exists()


def test_staging_2000_files_through_connection_resets_uploads_each_once(network, tmp_path):
    from training.data.prepare import prepare
    from training.data.sample import generate
    from training.data.upload import load_manifest, s3_client, upload_splits

    proxy, client = network
    client("s3").create_bucket(Bucket=BUCKET)
    splits = prepare(generate(tmp_path / "raw", per_class=880), tmp_path / "splits",
                     per_class=880).out  # fmt: skip
    files = sorted(p for p in splits.glob("*/*/*.jpg"))
    assert len(files) >= 2000
    proxy.add(Fault("reset", "PUT /", 200, every=7))  # one upload in 7 is cut off, 200 in all
    stats = upload_splits(splits, BUCKET, client=s3_client(REGION))
    assert stats.uploaded == len(files) and proxy.count("reset") == 200
    prefix = f"datasets/{load_manifest(splits)['dataset_digest']}"
    for path in files:  # every file there, as it is, and stored once
        key = f"{prefix}/{path.relative_to(splits).as_posix()}"
        assert proxy.count("ok", f"PUT /{BUCKET}/{key} ") == 1, key
    listed = client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = {item["Key"] for page in listed for item in page.get("Contents", [])}
    assert len(keys) == len(files) + 1  # and the manifest, written last
    assert upload_splits(splits, BUCKET, client=s3_client(REGION)).uploaded == 0


def test_a_results_download_cut_in_the_middle_leaves_nothing_and_the_rerun_completes(
    network, artifacts, tmp_path
):
    proxy, client = network
    job = running_job(client, artifacts)
    job.training_job_status = job.secondary_status = "Completed"
    output = f"GET /{BUCKET}/outputs/{JOB}/output/output.tar.gz"
    proxy.add(Fault("cut", output, 100))  # model.tar.gz arrives; output.tar.gz half-way, never
    session = aws_session(REGION)
    runs = tmp_path / "runs"
    with pytest.raises(UserError, match="cannot reach AWS while downloading .*output.tar.gz"):
        fetch.fetch(TRAINING_JOB, session, JOB, runs)
    assert proxy.count("cut") >= 2, "the download was not retried"
    assert not (runs / JOB).exists() and not list(runs.glob(f".{JOB}*"))
    kept = sorted(p.name for p in (runs / fetch.KEPT / JOB).iterdir())
    assert kept == ["model.tar.gz", "model.tar.gz.etag"], "a half-written file was left"
    model = f"GET /{BUCKET}/outputs/{JOB}/output/model.tar.gz"
    model_requests = proxy.count("ok", model)  # one per part of a multipart download
    proxy.clear()
    report = fetch.fetch(TRAINING_JOB, session, JOB, runs)
    assert report.exists() and (report.parent / "model" / "model.h5").exists()
    assert proxy.count("ok", model) == model_requests, "the re-run downloaded model.tar.gz again"
    assert not (runs / fetch.KEPT).exists()
