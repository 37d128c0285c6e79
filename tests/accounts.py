"""The accounts tests run against.

- ``moto_account``: moto's in-process mock (no server), the stack's bucket and role, and SageMaker's
  service quotas as the stand-in answers them (training/standin/quotas.py): for the launcher's
  requests as sent, its preflight and its failures, in milliseconds.
- ``emulated_account``: a moto server on loopback with the project's stack
  (training/standin/account.py), the launcher user's keys in the environment, the stand-in
  running its jobs and IAM enforced, as ``make standin-up`` has it but without a second process,
  so a test can reach into it (its runs, its throttle).
"""

import json
from contextlib import contextmanager

import boto3

from training.standin import StandIn
from training.standin.account import (
    FOREIGN_SETTINGS,
    admin_environment,
    create_stack,
    free_port,
    launcher_keys,
    start_emulator,
)
from training.standin.iam import enforced

STACK = "rehearse"
REGION = "us-east-1"
BUCKET = "vgg-dogs-cats-test-abc123"
ROLE_NAME = "sagemaker-execution-abc123"


@contextmanager
def moto_account(tmp_path, monkeypatch, quotas):
    """Yields the stack's outputs (also in ``.infra/test.json`` of the test's cwd, tmp_path)."""
    from moto import mock_aws

    from training.standin.quotas import install

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        hooks = install(quotas)
        try:
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
        finally:
            hooks.restore()


@contextmanager
def emulated_account(tmp_path, monkeypatch, change=None, stand_in: dict | None = None):
    """Yields (the stack's outputs, the stand-in). ``change(iam, outputs)`` edits the stack as the
    administrator before the launcher's identity and enforcement take over; ``stand_in``: the
    StandIn's keyword arguments (an interruption, a throttle). The test's cwd holds .infra/."""
    monkeypatch.chdir(tmp_path)
    port = free_port()
    server = start_emulator(port)
    endpoint = f"http://127.0.0.1:{port}"
    for name in FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in admin_environment(endpoint).items():
        monkeypatch.setenv(name, value)
    try:
        outputs = create_stack(STACK, tmp_path / ".infra")
        if change:
            change(boto3.client("iam"), outputs)
        for name, value in launcher_keys(STACK).items():
            monkeypatch.setenv(name, value)
        standin = StandIn(endpoint, tmp_path / "standin", **(stand_in or {})).start()
        try:
            with enforced():
                yield outputs, standin
        finally:
            standin.stop()
    finally:
        server.stop()


@contextmanager
def requests_sent(*actions: str):
    """The request bodies (JSON, as sent) of SageMaker's ``actions`` that reach moto meanwhile,
    by action; and of IAM's SimulatePrincipalPolicy (moto has none: it is answered AccessDenied,
    as the launcher policy answers it), which the SageMaker SDK's own role check would call."""
    from moto.core.exceptions import AccessDeniedError
    from moto.iam.responses import IamResponse
    from moto.sagemaker.responses import SageMakerResponse

    from training.standin.hooks import Hooks

    sent: dict[str, list] = {action: [] for action in (*actions, "SimulatePrincipalPolicy")}
    hooks = Hooks()
    for action in actions:
        method = "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")
        original = getattr(SageMakerResponse, method)

        def record(response, _action=action, _original=original):
            sent[_action].append(json.loads(response.body))
            return _original(response)

        hooks.replace(SageMakerResponse, method, record)

    def simulate(response):
        sent["SimulatePrincipalPolicy"].append(dict(response.querystring))
        raise AccessDeniedError(user_arn="launcher", action="iam:SimulatePrincipalPolicy")

    hooks.replace(IamResponse, "simulate_principal_policy", simulate)
    try:
        yield sent
    finally:
        hooks.restore()
