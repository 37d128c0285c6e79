"""make standin-up / standin-down: one emulated account kept up for any number of commands, used
from a plain shell through .standin/env, and the stand-in's answers to what a command sends it."""

import shutil
import subprocess
import time
import uuid

import boto3
import pytest
from accounts import emulated_account
from tiny import TINY

from training.launch.__main__ import main as launch
from training.standin import service

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")


def shell(files: service.Files, command: str) -> subprocess.CompletedProcess:
    """``command`` in a fresh bash that sources the env file and nothing else of the stand-in."""
    from training.rehearse.shell import REPO

    return subprocess.run(["bash", "-c", f"source {files.env} && {command}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_up_writes_a_shell_environment_that_every_command_uses_and_down_stops_it(tmp_path):
    from training.rehearse.shell import REPO

    files = service.Files(state=tmp_path / "state", infra=REPO / ".infra")
    stack = f"t{uuid.uuid4().hex[:10]}"
    record = service.up(stack, files)
    try:
        env = files.env.read_text()
        assert f"export AWS_ENDPOINT_URL={record['endpoint']}" in env
        assert f"export STACK={stack}" in env and "unset AWS_PROFILE" in env
        assert (files.infra / f"{stack}.json").exists()
        assert service.up(stack, files) == record  # a second one says so and changes nothing
        with pytest.raises(service.UserError, match="already runs"):
            service.up("another", files)
        # A plain shell meets the account as the launcher user: its identity, and one line for
        # a job the account does not have.
        who = shell(files, "aws_id=$(.venv/bin/python -c 'import boto3; print(boto3.client(\"sts\")"
                    ".get_caller_identity()[\"Arn\"])') && echo $aws_id")  # fmt: skip
        assert who.stdout.strip().endswith(f":user/launcher-{stack}"), who.stderr
        unknown = shell(files, "make --no-print-directory results JOB=vgg-smoke-nope RUNS="
                        f"{tmp_path / 'runs'}")  # fmt: skip
        assert unknown.returncode == 2
        assert "error: no training job named vgg-smoke-nope in us-east-1" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        said = service.down(files)
    assert "stopped" in said, said
    assert not files.env.exists() and not (files.infra / f"{stack}.json").exists()
    assert service.down(files) == "no stand-in runs: nothing to stop"


@pytest.mark.slow
def test_stop_training_job_stops_a_running_job_as_sagemaker_does(
    tmp_path, monkeypatch, tiny_splits
):
    from botocore.exceptions import ClientError

    with emulated_account(tmp_path, monkeypatch) as (_, standin):
        assert launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--stack", "rehearse",
                       "--splits", str(tiny_splits), "--detach"]) == 0  # fmt: skip
        (name,) = standin.runs
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
