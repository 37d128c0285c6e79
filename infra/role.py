"""The SageMaker execution role (least privilege) and the policy for whoever launches jobs.

Policy documents are built by plain functions from ARNs, so tests can read them as JSON.
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import dlc
from infra.bucket import PREFIXES
from training.common.sagemaker import (
    LOG_GROUP,
    METRIC_NAMESPACE,
    TRAINING_JOB,
    TUNING_JOB,
    JobKind,
)


@dataclass(frozen=True)
class Scope:
    """Where the policies apply: the account, region and partition of the stack."""

    account: str
    region: str
    partition: str

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return ":".join(
            [
                "arn",
                self.partition,
                service,
                self.region if region else "",
                self.account if account else "",
                resource,
            ]
        )

    def jobs(self, kind: JobKind) -> str:
        """Every job of the kind in this account and region."""
        return kind.arn(self.partition, self.region, self.account)

    @property
    def training_jobs(self) -> str:
        return self.jobs(TRAINING_JOB)

    @property
    def tuning_jobs(self) -> str:
        return self.jobs(TUNING_JOB)

    @property
    def training_log_groups(self) -> str:
        return self.arn("logs", f"log-group:{LOG_GROUP}*")


def objects(bucket_arn: str, *purposes: str) -> list[str]:
    return [f"{bucket_arn}/{PREFIXES[p]}/*" for p in purposes]


def trust_policy(scope: Scope) -> str:
    """Only SageMaker may assume the role, and only for this account's training jobs and the
    training jobs its tuning jobs start. (Which ARN SageMaker gives as aws:SourceArn for the
    latter is not documented: the training job's or the tuning job's; both are admitted.)"""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sagemaker.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {  # confused-deputy protection
                        "StringEquals": {"aws:SourceAccount": scope.account},
                        "ArnLike": {"aws:SourceArn": [scope.training_jobs, scope.tuning_jobs]},
                    },
                }
            ],
        }
    )


def execution_policy(bucket_arn: str, scope: Scope, kms_key_arn: str | None = None) -> str:
    """What a training job uses: its data, code and weights; its outputs and checkpoints; logs,
    metrics and the DLC image. Nothing else."""
    statements = [
        {"Sid": "ListBucket", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {
            "Sid": "ReadInputs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": objects(bucket_arn, "data", "code", "weights"),
        },
        {
            "Sid": "WriteOutputsAndCheckpoints",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
            "Resource": objects(bucket_arn, "outputs", "checkpoints"),
        },
        {
            # SageMaker mirrors deletes in /opt/ml/checkpoints to S3, and the job replaces its
            # checkpoint files every epoch; without this the sync fails on the first replace.
            "Sid": "MirrorCheckpointDeletes",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": objects(bucket_arn, "checkpoints"),
        },
        {
            "Sid": "TrainingLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            "Resource": [scope.training_log_groups, scope.training_log_groups + ":log-stream:*"],
        },
        {
            "Sid": "TrainingMetrics",  # PutMetricData has no resource ARN; pin the namespace
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": f"{METRIC_NAMESPACE}*"}},
        },
        {
            "Sid": "EcrLogin",  # GetAuthorizationToken has no resource ARN
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullTensorFlowTrainingImage",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage",
            ],
            "Resource": dlc.repository_arn(scope.region),
        },
    ]
    if kms_key_arn:
        statements.append(bucket_key(kms_key_arn))
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def bucket_key(kms_key_arn: str) -> dict:
    """Use of the bucket's customer KMS key: reading and writing objects encrypted with it."""
    return {
        "Sid": "BucketKey",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": kms_key_arn,
    }


@dataclass(frozen=True)
class LauncherExtras:
    """What the launcher may also use, when the stack is configured with it."""

    kms_key_arn: str | None = None  # the bucket's customer KMS key
    mlflow_tracking_server_arn: str | None = None  # a SageMaker managed MLflow tracking server
    mlflow_artifact_uri: str | None = None  # s3://bucket/prefix: where its runs' artifacts go


def mlflow_statements(server_arn: str) -> list[dict]:
    """Recording runs in a SageMaker managed MLflow tracking server (training/report/tracking.py,
    through the sagemaker-mlflow plugin), asking its MLflow version, and make ui's presigned link
    to its UI."""
    return [
        {
            "Sid": "RecordRunsInMlflow",
            "Effect": "Allow",
            "Action": "sagemaker-mlflow:*",
            "Resource": server_arn,
        },
        {
            "Sid": "ReadMlflowServer",
            "Effect": "Allow",
            "Action": [
                "sagemaker:DescribeMlflowTrackingServer",
                "sagemaker:CreatePresignedMlflowTrackingServerUrl",
            ],
            "Resource": server_arn,
        },
    ]


def split_artifact_uri(artifact_uri: str) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// location; ValueError naming the setting otherwise."""
    bucket, _, prefix = artifact_uri.removeprefix("s3://").partition("/")
    if not artifact_uri.startswith("s3://") or not bucket:
        raise ValueError(f"mlflowArtifactUri {artifact_uri!r}: expected s3://bucket[/prefix]")
    return bucket, prefix.strip("/")


def mlflow_artifact_statements(artifact_uri: str, partition: str = "aws") -> list[dict]:
    """Writing and reading runs' artifacts where an MLflow server keeps them: the managed server's
    plugin, and MLflow's own client for a server started with --no-serve-artifacts, upload them
    to S3 with the caller's credentials. Objects under the prefix only; listing (which MLflow's
    artifact browsing and downloads use) is granted on the bucket, as S3 authorises it."""
    bucket, prefix = split_artifact_uri(artifact_uri)
    return [
        {
            "Sid": "ListMlflowArtifacts",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:{partition}:s3:::{bucket}",
        },
        {
            "Sid": "ReadWriteMlflowArtifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": f"arn:{partition}:s3:::{bucket}/{prefix + '/' if prefix else ''}*",
        },
    ]


def launcher_policy(
    bucket_arn: str, role_arn: str, scope: Scope, extras: LauncherExtras = LauncherExtras()
) -> str:
    """For the person or CI that runs `make train-cloud`: stage data, run and follow jobs."""
    statements = [
        {"Sid": "ListBucket", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {
            "Sid": "ReadWritePrefixes",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": objects(bucket_arn, *PREFIXES),
        },
        # One statement per kind of job the launcher runs (training/common/sagemaker.py):
        # what it calls on that kind, on that kind's ARNs. A tuning job's training jobs are
        # training jobs.
        *(
            {
                "Sid": kind.noun.title().replace(" ", "") + "s",
                "Effect": "Allow",
                "Action": list(kind.launcher_actions),
                "Resource": scope.jobs(kind),
            }
            for kind in (TRAINING_JOB, TUNING_JOB)
        ),
        {
            # Preflight: does another job of ours still run on the checkpoint folder? (List
            # actions have no resource ARN.)
            "Sid": "FindJobsOnCheckpoints",
            "Effect": "Allow",
            "Action": "sagemaker:ListTrainingJobs",
            "Resource": "*",
        },
        {
            "Sid": "CheckExecutionRole",  # preflight: does the role exist?
            "Effect": "Allow",
            "Action": "iam:GetRole",
            "Resource": role_arn,
        },
        {
            "Sid": "PassExecutionRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        {
            "Sid": "ReadTrainingLogs",
            "Effect": "Allow",
            "Action": ["logs:GetLogEvents", "logs:DescribeLogStreams"],
            "Resource": [scope.training_log_groups, scope.training_log_groups + ":log-stream:*"],
        },
        {
            # List actions have no resource ARN. ListServiceQuotas returns applied values only;
            # an account that never raised a quota has just AWS's defaults.
            "Sid": "ReadTrainingQuotas",
            "Effect": "Allow",
            "Action": [
                "servicequotas:ListServiceQuotas",
                "servicequotas:ListAWSDefaultServiceQuotas",
            ],
            "Resource": "*",
        },
        {
            "Sid": "ReadOnDemandPrices",  # the Price List API has no resource ARN
            "Effect": "Allow",
            "Action": "pricing:GetProducts",
            "Resource": "*",
        },
    ]
    if extras.kms_key_arn:
        # Staging, the SDK's code upload and artifact downloads encrypt/decrypt with the key.
        statements.append(bucket_key(extras.kms_key_arn))
    if extras.mlflow_tracking_server_arn:
        statements += mlflow_statements(extras.mlflow_tracking_server_arn)
    if extras.mlflow_artifact_uri:
        statements += mlflow_artifact_statements(extras.mlflow_artifact_uri, scope.partition)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class SageMakerExecutionRole(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        bucket_arn: pulumi.Input[str],
        scope: Scope,
        kms_key_arn: str | None = None,
        opts=None,
    ) -> None:
        super().__init__("vgg-dogs-cats:iam:SageMakerExecutionRole", name, None, opts)
        self.role = aws.iam.Role(
            name,
            assume_role_policy=trust_policy(scope),
            description="SageMaker training jobs of the VGG16 dogs-vs-cats project",
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=pulumi.Output.from_input(bucket_arn).apply(
                lambda arn: execution_policy(arn, scope, kms_key_arn)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.role.arn
        self.register_outputs({"arn": self.arn})


class LauncherPolicy(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        bucket_arn: pulumi.Input[str],
        role_arn: pulumi.Input[str],
        scope: Scope,
        extras: LauncherExtras = LauncherExtras(),
        opts=None,
    ) -> None:
        super().__init__("vgg-dogs-cats:iam:LauncherPolicy", name, None, opts)
        self.policy = aws.iam.Policy(
            name,
            description="Launch and follow VGG16 dogs-vs-cats SageMaker training jobs",
            policy=pulumi.Output.all(bucket_arn, role_arn).apply(
                lambda args: launcher_policy(args[0], args[1], scope, extras)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.policy.arn
        self.register_outputs({"arn": self.arn})
