"""The stand-in throttles what AWS throttles, and what reads a tuning job's logs back to back
rides it out."""

import time

import boto3
from accounts import emulated_account

from training.common.sagemaker import LOG_GROUP
from training.launch.fetch import job_log
from training.launch.outage import Outage
from training.standin.iam import role_credentials
from training.standin.throttle import RATES, Throttle


def test_each_action_gets_its_rate_and_burst_then_rate_exceeded():
    throttle = Throttle()
    admitted = sum(throttle.admit("logs", "GetLogEvents") for _ in range(100))
    assert admitted == RATES[("logs", "GetLogEvents")]  # the burst, then refused
    assert throttle.admit("logs", "PutLogEvents")  # not throttled here
    assert throttle.admit("logs", "DescribeLogStreams")  # each action has its own bucket
    time.sleep(0.2)
    assert throttle.admit("logs", "GetLogEvents")  # 25 a second come back
    assert "GetLogEvents 75" in throttle.summary()


def test_a_tuning_jobs_logs_are_read_whole_at_the_rate_the_account_allows(tmp_path, monkeypatch):
    # One GetLogEvents every 4 s: more than the follower client's own three tries ride out.
    throttle = Throttle(scale=0.01)
    with emulated_account(tmp_path, monkeypatch, stand_in={"throttle": throttle}) as (outputs, _):
        job = "vgg-smoke-1206-120000-001-0123abcd"
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"
        logs = boto3.client("logs", **role_credentials(outputs["role_arn"], arn, "us-east-1"))
        logs.create_log_group(logGroupName=LOG_GROUP)
        for host in ("algo-1-1", "algo-1-2"):  # an attempt and its spot restart
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{job}/{host}")
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=f"{job}/{host}", logEvents=[
                {"timestamp": int(time.time() * 1000) + i, "message": f"{host} line {i}"}
                for i in range(5)])  # fmt: skip
        outage = Outage(job, "make tune-results TUNING_JOB=…", 2, reached=True)
        lines = job_log(boto3.Session(), job, outage)  # as the launcher
    assert lines == [
        f"=== {job}/algo-1-1 ===", *(f"algo-1-1 line {i}" for i in range(5)),
        f"=== {job}/algo-1-2 ===", *(f"algo-1-2 line {i}" for i in range(5)),
    ]  # fmt: skip
    assert throttle.throttled, "the reads were never throttled: the test proves nothing"
