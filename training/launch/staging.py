"""Staging: after preflight, the data and any weights file go to the stack's bucket (each only
once, keyed by content), and the run becomes a job spec whose channels point at them."""

import hashlib
from pathlib import Path

import boto3

from training.aws_errors import AWS_OR_NETWORK_ERRORS, NOT_FOUND, aws_error, error_code
from training.data.upload import dataset_prefix, upload_splits
from training.launch import common
from training.launch.preflight import Plan
from training.launch.spec import OPT_ML, JobSpec, job_hyperparameters


def stage_weights(session: boto3.Session, plan: Plan) -> str:
    """Uploads the weights file once (keyed by content) and returns its S3 folder."""
    data = Path(plan.weights_file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"{plan.outputs.weights_prefix}/{digest}/{Path(plan.weights_file).name}"
    s3 = session.client("s3")
    try:
        try:
            s3.head_object(Bucket=plan.outputs.bucket, Key=key)
        except AWS_OR_NETWORK_ERRORS as error:
            if error_code(error) not in NOT_FOUND:
                raise
            s3.upload_file(str(plan.weights_file), plan.outputs.bucket, key)
    except AWS_OR_NETWORK_ERRORS as error:
        where = f"s3://{plan.outputs.bucket}/{key}"
        raise aws_error(error, f"uploading {plan.weights_file} to {where}") from error
    return f"s3://{plan.outputs.bucket}/{key.rsplit('/', 1)[0]}/"


def stage(plan: Plan, splits_dir: Path, session: boto3.Session) -> JobSpec:
    """Uploads what is missing and returns the cloud run's spec."""
    outputs, experiment = plan.outputs, plan.experiment
    digest = plan.manifest["dataset_digest"]
    splits = common.channel_splits(experiment)
    upload_splits(
        splits_dir,
        outputs.bucket,
        list(splits.values()),
        client=session.client("s3"),
        data_prefix=outputs.data_prefix,
    )
    data_root = f"s3://{outputs.bucket}/{dataset_prefix(digest, outputs.data_prefix)}"
    channels = {channel: f"{data_root}/{split}/" for channel, split in splits.items()}
    if plan.weights_file:
        channels["weights"] = stage_weights(session, plan)
    return JobSpec(
        name=f"vgg-{experiment.name}",
        experiment=experiment,
        dataset_digest=digest,
        hyperparameters=job_hyperparameters(
            experiment, digest, OPT_ML, plan.weights_file, plan.instance_count
        ),
        channels=channels,
        checkpoint=plan.checkpoint_uri,
        instance_type=plan.instance.name,
        instance_count=plan.instance_count,
        image=plan.image_uri,
        output=f"s3://{outputs.bucket}/{outputs.outputs_prefix}/",
        role_arn=outputs.role_arn,
        code_bucket=outputs.bucket,
        code_prefix=outputs.code_prefix,
        network_isolation=plan.network_isolation,
        tags={
            "project": "vgg-dogs-cats",
            "experiment": experiment.name,
            "dataset_digest": digest,
            "git_commit": common.git_commit(),
        },
    )
