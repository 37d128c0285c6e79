"""The Pulumi program's body: reads the stack config, creates the components, returns outputs.

Run by ``infra/__main__.py`` under the pulumi CLI, and by the tests under Pulumi's mocks.
"""

import pulumi
import pulumi_aws as aws

from infra import dlc
from infra.bucket import PREFIXES, BucketSettings, TrainingBucket
from infra.role import (
    LauncherExtras,
    LauncherPolicy,
    SageMakerExecutionRole,
    Scope,
    split_artifact_uri,
)


def read_settings(config: pulumi.Config) -> BucketSettings:
    defaults = BucketSettings()
    return BucketSettings(
        name_prefix=config.get("bucketPrefix") or defaults.name_prefix,
        encryption=config.get("encryption") or defaults.encryption,
        kms_key_arn=config.get("kmsKeyArn"),
        noncurrent_version_days=config.get_int("noncurrentVersionDays")
        or defaults.noncurrent_version_days,
        abort_multipart_days=config.get_int("abortMultipartDays") or defaults.abort_multipart_days,
        checkpoint_expiry_days=config.get_int("checkpointExpiryDays") or 0,
        force_destroy=config.get_bool("forceDestroy") or False,
    )


def mlflow_settings(config: pulumi.Config) -> dict[str, str | None]:
    """Off by default: where the launcher records runs in MLflow besides the project's own store.
    ``mlflowArtifactUri``: the S3 location a team's MLflow keeps artifacts in (a managed server's
    ArtifactStoreUri, or a shared server's --default-artifact-root); ``mlflowTrackingServerArn``:
    a SageMaker managed MLflow tracking server, whose plugin uploads there with the launcher's
    own credentials, so it needs the location too."""
    server = config.get("mlflowTrackingServerArn")
    artifacts = config.get("mlflowArtifactUri")
    if server and not artifacts:
        raise ValueError(
            "mlflowTrackingServerArn needs mlflowArtifactUri: the server's artifact store, which "
            "the launcher writes to (aws sagemaker describe-mlflow-tracking-server "
            "--tracking-server-name <name> --query ArtifactStoreUri), then "
            "`pulumi config set mlflowArtifactUri s3://…`"
        )
    if artifacts:
        split_artifact_uri(artifacts)  # a malformed location is refused before anything is made
    return {"mlflow_tracking_server_arn": server, "mlflow_artifact_uri": artifacts}


def define_stack() -> dict[str, pulumi.Input]:
    region = pulumi.Config("aws").require("region")
    settings = read_settings(pulumi.Config())
    identity = aws.get_caller_identity()
    scope = Scope(account=identity.account_id, region=region, partition=dlc.partition(region))

    bucket = TrainingBucket("training", settings)
    role = SageMakerExecutionRole("sagemaker-execution", bucket.arn, scope, settings.kms_key_arn)
    extras = LauncherExtras(kms_key_arn=settings.kms_key_arn, **mlflow_settings(pulumi.Config()))
    launcher = LauncherPolicy("launcher", bucket.arn, role.arn, scope, extras)

    outputs: dict[str, pulumi.Input] = {
        "bucket_name": bucket.name,
        "role_arn": role.arn,
        "region": region,
        "launcher_policy_arn": launcher.arn,
    }
    outputs.update({f"{purpose}_prefix": prefix for purpose, prefix in PREFIXES.items()})
    return outputs
