"""Staging: after preflight, the data and any weights file go to the stack's bucket (each only
once, keyed by content), and the run becomes a job spec whose channels point at them. For a
tuning job the job folder goes up too, as ``sourcedir.tar.gz`` (``upload_code``)."""

import fnmatch
import hashlib
import tarfile
import tempfile
from pathlib import Path

import boto3
from vgg_transfer.contract import OptMl

from training.common import sagemaker
from training.common.aws_errors import AWS_OR_NETWORK_ERRORS, NOT_FOUND, aws_error, error_code
from training.common.repo import CODE_IGNORE, JOB_DIR, git_commit
from training.data.upload import dataset_prefix, s3_client, upload_splits
from training.launch.preflight import Plan
from training.launch.spec import JobSpec, job_hyperparameters

# What the job description carries back to `make results`: the container sees these too.
EXPERIMENT_ENV = "VGG_EXPERIMENT"
COMMIT_ENV = "VGG_GIT_COMMIT"
PRICE_ENV = "VGG_PRICE_USD_PER_HOUR"  # the on-demand price preflight showed...
PRICE_SOURCE_ENV = "VGG_PRICE_SOURCE"  # ...and where it came from


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
    digest = plan.settings.dataset_digest
    upload_splits(
        request.splits,
        outputs.bucket,
        list(experiment.channels.values()),
        client=s3_client(session=session),
        data_prefix=outputs.data_prefix,
    )
    data_root = f"s3://{outputs.bucket}/{dataset_prefix(digest, outputs.data_prefix)}"
    channels = {channel: f"{data_root}/{split}/" for channel, split in experiment.channels.items()}
    if request.weights_file:
        channels["weights"] = stage_weights(session, plan)
    commit = git_commit()
    return JobSpec(
        name=sagemaker.base_name(experiment.name),
        experiment=experiment,
        dataset_digest=digest,
        hyperparameters=job_hyperparameters(plan.settings, OptMl()),
        channels=channels,
        checkpoint=plan.checkpoint_uri,
        instance_type=plan.instance.name,
        instance_count=request.instance_count,
        spot=plan.candidates[0].spot,
        instance_types=tuple(dict.fromkeys(c.instance.name for c in plan.candidates)),
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
            "git_commit": commit,
        },
        environment={
            EXPERIMENT_ENV: experiment.name,
            COMMIT_ENV: commit,
            PRICE_ENV: f"{plan.cost.price.per_hour:g}",
            PRICE_SOURCE_ENV: plan.cost.price.source,
        },
    )


def upload_code(session: boto3.Session, spec: JobSpec, name: str) -> str:
    """The job folder as sourcedir.tar.gz under the stack's code/ prefix; returns its S3 URI.

    The tuning API takes no container entrypoint, so the image's own toolkit fetches the code from
    the ``sagemaker_submit_directory`` hyperparameter. Left to itself the SDK would upload that
    tarball outside code/, where the execution role may not read, with __pycache__ inside."""
    key = f"{spec.code_prefix}/{name}/sourcedir.tar.gz"
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "sourcedir.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(JOB_DIR.rglob("*")):
                relative = path.relative_to(JOB_DIR)
                if path.is_file() and not any(
                    fnmatch.fnmatch(part, pattern)
                    for part in relative.parts
                    for pattern in CODE_IGNORE
                ):
                    tar.add(path, arcname=str(relative))
        try:
            session.client("s3").upload_file(str(archive), spec.code_bucket, key)
        except AWS_OR_NETWORK_ERRORS as error:
            where = f"s3://{spec.code_bucket}/{key}"
            raise aws_error(error, f"uploading the job's code to {where}") from error
    return f"s3://{spec.code_bucket}/{key}"
