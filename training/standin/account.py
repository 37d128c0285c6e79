"""One emulated AWS account: a moto server on 127.0.0.1, the project's stack created in it from the
Pulumi program's own policy documents, and a launcher user holding the launcher policy alone.

``make standin-up`` (service.py) keeps one such account up for any number of commands; ``make
rehearse`` starts one per scenario. Either way a command reaches it only through its environment
(``shell_environment``): the endpoint, the launcher user's keys and the region, as a user's shell
gets them by sourcing ``.standin/env``.
"""

import logging
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3

from training.common.infra_outputs import INFRA_DIR, save_outputs

REGION = "us-east-1"
# What a command must not inherit from the user's own AWS setup: it would sign as someone else.
FOREIGN_SETTINGS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN")


@dataclass(frozen=True)
class StackNames:
    """The physical names of a stack's resources in the emulated account."""

    stack: str

    @property
    def bucket(self) -> str:
        return f"vgg-dogs-cats-{self.stack}"

    @property
    def role(self) -> str:
        return f"sagemaker-execution-{self.stack}"

    @property
    def launcher(self) -> str:  # a user holding the launcher policy and nothing else
        return f"launcher-{self.stack}"

    @property
    def admin(self) -> str:  # the account's administrator, for what a team's admin does by hand
        return f"admin-{self.stack}"

    @property
    def mlflow_artifacts(self) -> str:
        """A team MLflow server's artifact location, granted as the stack's mlflowArtifactUri
        setting grants it; its bucket is not created with the stack (make rehearse TRACK=server
        creates it late, so that a record fails first and make track repairs it)."""
        return f"s3://vgg-mlflow-{self.stack}/mlflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(port: int):
    """A moto server on 127.0.0.1:``port``, empty; returns it (``.stop()`` ends it)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # The emulator's state lives in this process: start from nothing (moto's public reset).
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    ).close()
    return server


def admin_environment(endpoint: str) -> dict[str, str]:
    """AWS settings that reach the emulator as its administrator (moto's root): what creates the
    stack. Apply them with FOREIGN_SETTINGS removed."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "standin-admin",
        "AWS_SECRET_ACCESS_KEY": "standin-admin",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def create_stack(stack: str, infra_dir: Path = INFRA_DIR) -> dict:
    """The bucket, role and launcher policy, with the Pulumi program's policy documents (the stack
    configured with an MLflow artifact location, StackNames.mlflow_artifacts), and a user holding
    that policy alone (the identity commands sign as); writes
    ``<infra_dir>/<stack>.json`` as ``make infra-up`` does and returns its outputs."""
    from infra.bucket import PREFIXES
    from infra.role import LauncherExtras, Scope, execution_policy, launcher_policy, trust_policy

    names = StackNames(stack)
    account = boto3.client("sts").get_caller_identity()["Account"]
    scope = Scope(account=account, region=REGION, partition="aws")
    boto3.client("s3").create_bucket(Bucket=names.bucket)
    bucket_arn = f"arn:aws:s3:::{names.bucket}"
    iam = boto3.client("iam")
    role = iam.create_role(RoleName=names.role, AssumeRolePolicyDocument=trust_policy(scope))
    role_arn = role["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=names.role,
        PolicyName="execution",
        PolicyDocument=execution_policy(bucket_arn, scope),
    )
    extras = LauncherExtras(mlflow_artifact_uri=names.mlflow_artifacts)
    launcher = iam.create_policy(
        PolicyName=names.launcher,
        PolicyDocument=launcher_policy(bucket_arn, role_arn, scope, extras),
    )["Policy"]
    iam.create_user(UserName=names.launcher)
    iam.attach_user_policy(UserName=names.launcher, PolicyArn=launcher["Arn"])
    iam.create_user(UserName=names.admin)
    iam.put_user_policy(UserName=names.admin, PolicyName="administrator",
                        PolicyDocument=ADMINISTRATOR)  # fmt: skip
    outputs = {
        "bucket_name": names.bucket,
        "role_arn": role_arn,
        "region": REGION,
        "launcher_policy_arn": launcher["Arn"],
    }
    outputs.update({f"{purpose}_prefix": prefix for purpose, prefix in PREFIXES.items()})
    save_outputs(outputs, stack, infra_dir)
    return outputs


ADMINISTRATOR = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)


def launcher_keys(stack: str) -> dict[str, str]:
    """A new access key of the stack's launcher user, as environment variables."""
    return _new_key(StackNames(stack).launcher)


def admin_keys(stack: str) -> dict[str, str]:
    """A new access key of the account's administrator, as environment variables: what a
    rehearsal signs with where a team's admin would act (creating an MLflow artifact bucket)."""
    return _new_key(StackNames(stack).admin)


def _new_key(user: str) -> dict[str, str]:
    key = boto3.client("iam").create_access_key(UserName=user)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def shell_environment(endpoint: str, keys: dict[str, str], stack: str) -> dict[str, str]:
    """What a shell needs to run every make target against the account, unchanged: the endpoint,
    the launcher user's keys, the region, and the stack (make's STACK)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        **keys,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "STACK": stack,
    }


def command_environment(shell: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``shell`` applied, as a user's shell has it after
    ``source .standin/env``: their own AWS profile or session token no longer apply."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
    env.update(shell)
    return env
