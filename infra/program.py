"""The Pulumi program's body: reads the stack config, creates the components, returns outputs.

Run by ``infra/__main__.py`` under the pulumi CLI, and by the tests under Pulumi's mocks.
"""

import pulumi
import pulumi_aws as aws

from infra import dlc
from infra.bucket import PREFIXES, BucketSettings, TrainingBucket
from infra.role import LauncherExtras, LauncherPolicy, SageMakerExecutionRole, Scope


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


def define_stack() -> dict[str, pulumi.Input]:
    region = pulumi.Config("aws").require("region")
    settings = read_settings(pulumi.Config())
    identity = aws.get_caller_identity()
    scope = Scope(account=identity.account_id, region=region, partition=dlc.partition(region))

    bucket = TrainingBucket("training", settings)
    role = SageMakerExecutionRole("sagemaker-execution", bucket.arn, scope, settings.kms_key_arn)
    extras = LauncherExtras(
        kms_key_arn=settings.kms_key_arn,
        # Off by default: the launcher records runs in MLflow here only when this is set.
        mlflow_tracking_server_arn=pulumi.Config().get("mlflowTrackingServerArn"),
    )
    launcher = LauncherPolicy("launcher", bucket.arn, role.arn, scope, extras)

    outputs: dict[str, pulumi.Input] = {
        "bucket_name": bucket.name,
        "role_arn": role.arn,
        "region": region,
        "launcher_policy_arn": launcher.arn,
    }
    outputs.update({f"{purpose}_prefix": prefix for purpose, prefix in PREFIXES.items()})
    return outputs
