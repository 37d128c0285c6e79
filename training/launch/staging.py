"""Staging: after preflight, the data and any weights file go to the stack's bucket (each only
once, keyed by content), and the run becomes a job spec whose channels point at them."""

import hashlib

import boto3
from vgg_transfer.contract import OptMl

from training.common import sagemaker
from training.common.aws_errors import AWS_OR_NETWORK_ERRORS, NOT_FOUND, aws_error, error_code
from training.data.upload import dataset_prefix, s3_client, upload_splits
from training.launch import common
from training.launch.preflight import Plan
from training.launch.spec import JobSpec, job_hyperparameters


def stage_weights(session: boto3.Session, plan: Plan) -> str:
    """Uploads the weights file once (keyed by content) and returns its S3 folder."""
    weights_file = plan.request.weights_file
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()[:16]
    key = f"{plan.outputs.weights_prefix}/{digest}/{weights_file.name}"
    s3 = session.client("s3")
    try:
        try:
            s3.head_object(Bucket=plan.outputs.bucket, Key=key)
        except AWS_OR_NETWORK_ERRORS as error:
            if error_code(error) not in NOT_FOUND:
                raise
            s3.upload_file(str(weights_file), plan.outputs.bucket, key)
    except AWS_OR_NETWORK_ERRORS as error:
        where = f"s3://{plan.outputs.bucket}/{key}"
        raise aws_error(error, f"uploading {weights_file} to {where}") from error
    return f"s3://{plan.outputs.bucket}/{key.rsplit('/', 1)[0]}/"


def stage(plan: Plan, session: boto3.Session) -> JobSpec:
    """Uploads what is missing and returns the cloud run's spec."""
    request, outputs, experiment = plan.request, plan.outputs, plan.experiment
    digest = plan.manifest["dataset_digest"]
    splits = common.channel_splits(experiment)
    upload_splits(
        request.splits,
        outputs.bucket,
        list(splits.values()),
        client=s3_client(session=session),
        data_prefix=outputs.data_prefix,
    )
    data_root = f"s3://{outputs.bucket}/{dataset_prefix(digest, outputs.data_prefix)}"
    channels = {channel: f"{data_root}/{split}/" for channel, split in splits.items()}
    if request.weights_file:
        channels["weights"] = stage_weights(session, plan)
    return JobSpec(
        name=sagemaker.base_name(experiment.name),
        experiment=experiment,
        dataset_digest=digest,
        hyperparameters=job_hyperparameters(request, digest, OptMl()),
        channels=channels,
        checkpoint=plan.checkpoint_uri,
        instance_type=plan.instance.name,
        instance_count=request.instance_count,
        image=plan.image_uri,
        output=f"s3://{outputs.bucket}/{outputs.outputs_prefix}/",
        role_arn=outputs.role_arn,
        code_bucket=outputs.bucket,
        code_prefix=outputs.code_prefix,
        network_isolation=request.network_isolation,
        tags={
            "project": "vgg-dogs-cats",
            "experiment": experiment.name,
            "dataset_digest": digest,
            "git_commit": common.git_commit(),
        },
    )
