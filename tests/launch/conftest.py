"""Fixtures for the launcher's tests: moto AWS with the stack's bucket and role, tiny data."""

import json

import boto3
import pytest
from launch_helpers import BUCKET, REGION, ROLE_NAME
from moto import mock_aws


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Fake credentials, moto, the stack's bucket and role, and .infra/test.json in a temp cwd."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        role = boto3.client("iam").create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]
        outputs = {
            "bucket_name": BUCKET,
            "role_arn": role["Arn"],
            "region": REGION,
            "data_prefix": "datasets",
            "code_prefix": "code",
            "weights_prefix": "weights",
            "outputs_prefix": "outputs",
            "checkpoints_prefix": "checkpoints",
            "launcher_policy_arn": "arn:aws:iam::123456789012:policy/launcher-abc123",
        }
        (tmp_path / ".infra").mkdir()
        (tmp_path / ".infra" / "test.json").write_text(json.dumps(outputs))
        yield outputs
