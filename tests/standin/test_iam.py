"""IAM as the rehearsal enforces it: the launcher signs as a user holding only the launcher
policy, the stand-in acts as the execution role, and moto checks every request against the
policies of the Pulumi program with the resource AWS would use. A denial is a finding. No job
here reaches a container, so these run without unshare."""

import json
from contextlib import contextmanager

import boto3
import pytest
from accounts import STACK, emulated_account
from botocore.exceptions import ClientError
from tiny import TINY

from training.launch.__main__ import main as launch
from training.standin.account import StackNames
from training.standin.iam import role_credentials, trust_allows

ROLE = StackNames(STACK).role
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/vgg-smoke-1"


def without(document: str, sid: str) -> str:
    policy = json.loads(document)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
    return json.dumps(policy)


@contextmanager
def stack(tmp_path, monkeypatch, change=None):
    """The rehearsal's stack in a fresh emulator; ``change(iam, outputs)`` edits it as an admin
    before the launcher's identity and enforcement take over."""
    with emulated_account(tmp_path, monkeypatch, change) as (outputs, _):
        yield outputs


def launch_cloud(tiny_splits, tmp_path, *extra: str) -> int:
    return launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "rehearse", "--runs", str(tmp_path / "runs"), *extra])  # fmt: skip


def denied(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_the_launcher_user_reaches_its_prefixes_and_jobs_and_nothing_else(tmp_path, monkeypatch):
    with stack(tmp_path, monkeypatch) as outputs:
        session = boto3.Session()  # signs as the launcher user now
        s3, bucket = session.client("s3"), outputs["bucket_name"]
        s3.head_bucket(Bucket=bucket)  # AWS authorises HeadBucket with s3:ListBucket
        s3.put_object(Bucket=bucket, Key="datasets/x", Body=b"1")
        assert denied(lambda: s3.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"1")) == (
            "AccessDenied"
        )
        assert denied(lambda: s3.delete_object(Bucket=bucket, Key="checkpoints/x")) == (
            "AccessDenied"
        )
        # Resource-scoped statements are checked against the job's ARN, not moto's "*".
        sagemaker = session.client("sagemaker")
        assert denied(lambda: sagemaker.describe_training_job(TrainingJobName="vgg-x")) == (
            "ValidationException"  # allowed, and the job does not exist
        )
        logs = session.client("logs")
        assert denied(lambda: logs.describe_log_streams(logGroupName="/somebody/else")) == (
            "AccessDeniedException"
        )


def test_the_execution_role_reads_inputs_and_writes_only_outputs_checkpoints_and_logs(
    tmp_path, monkeypatch
):
    with stack(tmp_path, monkeypatch) as outputs:
        role = role_credentials(outputs["role_arn"], JOB_ARN, "us-east-1")
        s3, bucket = boto3.client("s3", **role), outputs["bucket_name"]
        assert denied(lambda: s3.put_object(Bucket=bucket, Key="datasets/x", Body=b"1")) == (
            "AccessDenied"  # inputs are read-only to jobs
        )
        s3.put_object(Bucket=bucket, Key="checkpoints/run/x", Body=b"1")
        s3.delete_object(Bucket=bucket, Key="checkpoints/run/x")  # the sync mirrors deletes
        assert denied(lambda: s3.delete_object(Bucket=bucket, Key="outputs/x")) == "AccessDenied"
        logs = boto3.client("logs", **role)
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName="j/a")
        assert denied(lambda: logs.create_log_group(logGroupName="/other")) == (
            "AccessDeniedException"
        )


@pytest.mark.parametrize("command", ["cloud", "tune"])
def test_submitting_needs_pass_role_on_the_execution_role(
    command, tmp_path, monkeypatch, tiny_splits, capsys
):
    def drop_pass_role(iam, outputs):
        policy = iam.get_policy(PolicyArn=outputs["launcher_policy_arn"])["Policy"]
        document = iam.get_policy_version(
            PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]["Document"]
        document = document if isinstance(document, str) else json.dumps(document)
        iam.create_policy_version(
            PolicyArn=policy["Arn"],
            PolicyDocument=without(document, "PassExecutionRole"),
            SetAsDefault=True,
        )

    with stack(tmp_path, monkeypatch, change=drop_pass_role):
        assert launch([command, "--experiment", "smoke", "--hp", *TINY, "--splits",
                       str(tiny_splits), "--stack", "rehearse", "--detach"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "iam:PassRole" in err and "Traceback" not in err


def test_a_role_sagemaker_may_not_assume_is_refused_at_submission(
    tmp_path, monkeypatch, tiny_splits, capsys
):
    ec2_only = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ec2.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )

    def trust_ec2(iam, outputs):
        iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=ec2_only)

    with stack(tmp_path, monkeypatch, change=trust_ec2):
        assert launch_cloud(tiny_splits, tmp_path, "--detach") == 2
    err = capsys.readouterr().err
    assert "Could not assume role" in err and "Traceback" not in err


def test_a_job_whose_role_cannot_read_its_code_fails_with_access_denied(
    tmp_path, monkeypatch, tiny_splits, capsys
):
    from infra.bucket import PREFIXES
    from infra.role import Scope, execution_policy

    def code_unreadable(iam, outputs):
        scope = Scope(account="123456789012", region="us-east-1", partition="aws")
        policy = json.loads(execution_policy(f"arn:aws:s3:::{outputs['bucket_name']}", scope))
        for statement in policy["Statement"]:
            if statement.get("Sid") == "ReadInputs":
                statement["Resource"] = [
                    r for r in statement["Resource"] if f"/{PREFIXES['code']}/" not in r
                ]
        iam.put_role_policy(
            RoleName=ROLE, PolicyName="execution", PolicyDocument=json.dumps(policy)
        )

    with stack(tmp_path, monkeypatch, change=code_unreadable):
        assert launch_cloud(tiny_splits, tmp_path) != 0  # follows the job to its end
    err = capsys.readouterr().err
    assert "Failed: ClientError:" in err and "AccessDenied" in err


def test_the_trust_policy_holds_sagemaker_to_this_accounts_training_and_tuning_jobs():
    from infra.role import Scope, trust_policy

    document = trust_policy(Scope(account="123456789012", region="us-east-1", partition="aws"))
    assert trust_allows(document, {"aws:SourceAccount": "123456789012", "aws:SourceArn": JOB_ARN})
    tuning = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/vgg-smoke-1"
    assert trust_allows(document, {"aws:SourceAccount": "123456789012", "aws:SourceArn": tuning})
    assert not trust_allows(
        document, {"aws:SourceAccount": "999999999999", "aws:SourceArn": JOB_ARN}
    )
    assert not trust_allows(
        document,
        {
            "aws:SourceAccount": "123456789012",
            "aws:SourceArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x",
        },
    )


def test_the_launcher_policy_is_enough_to_start_a_tuning_job(
    tmp_path, monkeypatch, tiny_splits, capsys
):
    with stack(tmp_path, monkeypatch):
        code = launch(["tune", "--experiment", "smoke", "--hp", *TINY, "--splits",
                       str(tiny_splits), "--stack", "rehearse", "--detach"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "tuning" in captured.out
