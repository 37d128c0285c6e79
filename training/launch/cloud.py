"""The cloud path: preflight, staging, a SageMaker training job through SDK v3's ModelTrainer,
following it in the terminal, and fetching its results into ``runs/<job>/``.
"""

import hashlib
import json
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError, NoCredentialsError

from training.aws_errors import AWS_ERRORS, aws_error, error_code
from training.data.upload import dataset_prefix, upload_splits
from training.errors import UserError
from training.launch import common
from training.launch.costs import CostEstimate, estimate
from training.launch.experiments import Experiment, available, load, to_argument
from training.launch.infra_outputs import InfraOutputs
from training.launch.instances import Instance, check_framework, lookup
from training.report.results import PHASES, RunInfo, unpack_artifacts, write_report

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TERMINAL = ("Completed", "Failed", "Stopped")


def boto_session(region: str) -> boto3.Session:
    return boto3.Session(region_name=region)


# --- what the job is told ---------------------------------------------------------------------
def metric_definitions() -> list[dict[str, str]]:
    """Regexes over the job's log lines (training/job/train.py documents their format)."""
    number = r"([-+0-9.eE]+|nan)"
    definitions = []
    for phase in PHASES:
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            definitions.append(
                {
                    "Name": f"{phase}:{metric}",
                    "Regex": rf"\[epoch\] phase={phase} epoch=\S+ .*\b{metric}={number}",
                }
            )
        for metric in ("test_loss", "test_accuracy"):
            definitions.append(
                {
                    "Name": f"{phase}:{metric}",
                    "Regex": rf"\[test\] phase={phase} .*\b{metric}={number}",
                }
            )
    return definitions


def image_uri(instance: Instance, region: str) -> str:
    from sagemaker.core import image_uris

    version, python = instance.framework
    check_framework(instance, version)
    return image_uris.retrieve(
        framework="tensorflow",
        region=region,
        version=version,
        py_version=python,
        instance_type=instance.name,
        image_scope="training",
    )


def checkpoint_uri(outputs: InfraOutputs, experiment: Experiment, digest: str) -> str:
    """One folder per experiment, data and config: re-running the same thing resumes it."""
    config_hash = hashlib.sha256(
        json.dumps(experiment.resolved_hyperparameters(), sort_keys=True).encode()
    ).hexdigest()[:8]
    name = f"{experiment.name}-{digest}-{config_hash}"
    return f"s3://{outputs.bucket}/{outputs.checkpoints_prefix}/{name}/"


# --- preflight --------------------------------------------------------------------------------
@dataclass
class Plan:
    experiment: Experiment
    outputs: InfraOutputs
    instance: Instance
    instance_count: int
    image_uri: str
    manifest: dict
    cost: CostEstimate
    weights_file: Path | None = None
    network_isolation: bool = False

    @property
    def checkpoint_uri(self) -> str:
        return checkpoint_uri(self.outputs, self.experiment, self.manifest["dataset_digest"])


def check_identity(session: boto3.Session) -> str:
    try:
        return session.client("sts").get_caller_identity()["Arn"]
    except AWS_ERRORS as error:
        raise aws_error(error, "checking your AWS identity") from error


def check_bucket_and_role(session: boto3.Session, outputs: InfraOutputs) -> None:
    try:
        session.client("s3").head_bucket(Bucket=outputs.bucket)
    except ClientError as error:
        if error_code(error) in ("404", "NoSuchBucket"):
            raise UserError(
                f"bucket {outputs.bucket} does not exist (torn down?): run `make infra-up`"
            ) from error
        raise aws_error(error, f"checking bucket {outputs.bucket}") from error
    try:
        session.client("iam").get_role(RoleName=outputs.role_arn.rsplit("/", 1)[-1])
    except ClientError as error:
        if error_code(error) == "NoSuchEntity":
            raise UserError(
                f"role {outputs.role_arn} does not exist: run `make infra-up`"
            ) from error
        raise aws_error(error, f"checking role {outputs.role_arn}") from error


def training_quota(session: boto3.Session, instance: str, spot: bool) -> float | None:
    """The account's quota for this instance type in training jobs; None when it can't be read."""
    wanted = f"{instance} for {'spot ' if spot else ''}training job usage"
    try:
        paginator = session.client("service-quotas").get_paginator("list_service_quotas")
        for page in paginator.paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                if quota.get("QuotaName") == wanted:
                    return float(quota["Value"])
    except (ClientError, NoCredentialsError) as error:
        print(f"  quota: not checked ({error})")
        return None
    return None


def check_quota(session: boto3.Session, plan: Plan) -> None:
    quota = training_quota(session, plan.instance.name, plan.experiment.spot)
    kind = "spot training" if plan.experiment.spot else "training"
    if quota is None:
        print(f"  quota: unknown for {plan.instance.name} {kind} (not listed or not allowed)")
        return
    if quota < plan.instance_count:
        raise UserError(
            f"your {kind} quota for {plan.instance.name} is {quota:g} but the job needs "
            f"{plan.instance_count}: request an increase in the Service Quotas console "
            f"(Amazon SageMaker → '{plan.instance.name} for {kind} job usage'), or pick "
            "another INSTANCE"
        )
    print(f"  quota: {quota:g} {plan.instance.name} for {kind} ✓")


def preflight(
    experiment: Experiment,
    outputs: InfraOutputs,
    splits_dir: Path,
    session: boto3.Session,
    instance_type: str | None = None,
    instance_count: int | None = None,
    weights_file: Path | None = None,
    network_isolation: bool = False,
) -> Plan:
    """Everything that can fail before money is spent, in order of cost; stages data if needed."""
    instance = lookup(instance_type or experiment.instance_type)
    count = instance_count or experiment.instance_count
    uri = image_uri(instance, outputs.region)  # refuses impossible pairs, no AWS call
    if (
        network_isolation
        and experiment.resolved_hyperparameters()["weights"] == "imagenet"
        and not weights_file
    ):
        raise UserError(
            "network isolation blocks the ImageNet download: pass WEIGHTS=<vgg16 no-top .h5> "
            "(sent through the weights channel)"
        )
    manifest = common.require_splits(splits_dir, experiment)
    print(f"preflight for {experiment.name} on {count}x {instance.name} ({outputs.region}):")
    print(f"  identity: {check_identity(session)} ✓")
    check_bucket_and_role(session, outputs)
    print(f"  bucket {outputs.bucket} and role {outputs.role_arn.rsplit('/', 1)[-1]} ✓")
    splits = list(common.channel_splits(experiment).values())
    upload_splits(splits_dir, outputs.bucket, splits, client=session.client("s3"))
    plan = Plan(
        experiment=experiment,
        outputs=outputs,
        instance=instance,
        instance_count=count,
        image_uri=uri,
        manifest=manifest,
        cost=estimate(experiment, common.train_images(manifest, experiment), instance.name, count),
        weights_file=weights_file,
        network_isolation=network_isolation,
    )
    check_quota(session, plan)
    print(f"  image: {uri}")
    print("  " + plan.cost.line())
    return plan


# --- submit -----------------------------------------------------------------------------------
def stage_weights(session: boto3.Session, plan: Plan) -> str:
    """Uploads the weights file once (keyed by content) and returns its S3 folder."""
    data = Path(plan.weights_file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"{plan.outputs.weights_prefix}/{digest}/{Path(plan.weights_file).name}"
    s3 = session.client("s3")
    try:
        s3.head_object(Bucket=plan.outputs.bucket, Key=key)
    except ClientError:
        s3.upload_file(str(plan.weights_file), plan.outputs.bucket, key)
    return f"s3://{plan.outputs.bucket}/{key.rsplit('/', 1)[0]}/"


def build_trainer(plan: Plan, session: boto3.Session):
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import CheckpointConfig, OutputDataConfig
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import (
        Compute,
        InputData,
        MetricDefinition,
        Networking,
        SourceCode,
        StoppingCondition,
        Tag,
    )

    outputs, experiment = plan.outputs, plan.experiment
    digest = plan.manifest["dataset_digest"]
    data_root = f"s3://{outputs.bucket}/{dataset_prefix(digest)}"
    channels = [
        InputData(channel_name=channel, data_source=f"{data_root}/{split}/")
        for channel, split in common.channel_splits(experiment).items()
    ]
    hps = experiment.resolved_hyperparameters()
    hps["dataset_digest"] = digest
    hps["checkpoint_dir"] = CHECKPOINT_LOCAL_PATH
    if plan.weights_file:
        channels.append(InputData(channel_name="weights", data_source=stage_weights(session, plan)))
        hps["weights"] = f"{common.CONTAINER_DATA}/weights/{Path(plan.weights_file).name}"
    if plan.instance_count > 1:
        hps["distribution"] = "multi_worker"
    max_runtime = experiment.max_runtime_minutes * 60
    # The project bucket is the SDK's default bucket, so no sagemaker-<region>-<account> bucket
    # appears; the code it uploads lands under the code/ prefix the role may read.
    sm_session = Session(
        boto_session=session,
        default_bucket=outputs.bucket,
        default_bucket_prefix=outputs.code_prefix,
    )
    commit = common.git_commit()
    trainer = ModelTrainer(
        sagemaker_session=sm_session,
        role=outputs.role_arn,
        base_job_name=f"vgg-{experiment.name}",  # the SDK appends a timestamp
        training_image=plan.image_uri,
        source_code=SourceCode(source_dir=str(common.JOB_DIR), entry_script=common.ENTRY_SCRIPT),
        compute=Compute(
            instance_type=plan.instance.name,
            instance_count=plan.instance_count,
            volume_size_in_gb=50,
            enable_managed_spot_training=experiment.spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=max_runtime,
            max_wait_time_in_seconds=experiment.max_wait_minutes * 60 if experiment.spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=f"s3://{outputs.bucket}/{outputs.outputs_prefix}/"
        ),
        checkpoint_config=CheckpointConfig(
            s3_uri=plan.checkpoint_uri, local_path=CHECKPOINT_LOCAL_PATH
        ),
        networking=Networking(enable_network_isolation=plan.network_isolation)
        if plan.network_isolation
        else None,
        hyperparameters={k: to_argument(v) for k, v in hps.items()},
        environment={"VGG_EXPERIMENT": experiment.name, "VGG_GIT_COMMIT": commit},
        tags=[
            Tag(key="project", value="vgg-dogs-cats"),
            Tag(key="experiment", value=experiment.name),
            Tag(key="dataset_digest", value=digest),
            Tag(key="git_commit", value=commit),
        ],
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
    ), channels


def submit(plan: Plan, session: boto3.Session) -> str:
    trainer, channels = build_trainer(plan, session)
    try:
        trainer.train(input_data_config=channels, wait=False, logs=False)
    except AWS_ERRORS as error:
        raise aws_error(error, "creating the training job") from error
    name = trainer._latest_training_job.training_job_name
    print(f"submitted {name}; checkpoints: {plan.checkpoint_uri}")
    return name


# --- follow -----------------------------------------------------------------------------------
class LogFollower:
    """Streams new CloudWatch log lines of a job's streams; remembers the last ones."""

    def __init__(self, session: boto3.Session, job: str, write=print, keep: int = 20) -> None:
        self.logs = session.client("logs")
        self.job = job
        self.write = write
        self.tokens: dict[str, str] = {}
        self.tail: deque[str] = deque(maxlen=keep)

    def poll(self) -> None:
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job}/"
            ).get("logStreams", [])
        except ClientError:
            return  # no log group or stream before the instances start
        for stream in streams:
            name = stream["logStreamName"]
            while True:
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": name, "startFromHead": True}
                if name in self.tokens:
                    kwargs["nextToken"] = self.tokens[name]
                response = self.logs.get_log_events(**kwargs)
                for event in response.get("events", []):
                    line = event["message"].rstrip()
                    self.tail.append(line)
                    self.write(line)
                token = response.get("nextForwardToken")
                if token == self.tokens.get(name):
                    break
                self.tokens[name] = token


def follow(session: boto3.Session, job: str, poll_seconds: float = 15.0, write=print) -> dict:
    """Prints status changes and log lines until the job ends; returns its description.

    Ctrl-C asks whether to stop the job (it would otherwise keep running and billing)."""
    sm = session.client("sagemaker")
    follower = LogFollower(session, job, write)
    last = None
    try:
        while True:
            description = sm.describe_training_job(TrainingJobName=job)
            status = (description["TrainingJobStatus"], description.get("SecondaryStatus"))
            if status != last:
                write(f"[{job}] {status[0]} / {status[1]}")
                last = status
            follower.poll()
            if status[0] in TERMINAL:
                description["_log_tail"] = list(follower.tail)
                return description
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        offer_stop(sm, job)
        raise UserError(
            f"stopped following {job}; pick it up again with `make results JOB={job}`"
        ) from None


def offer_stop(sm, job: str) -> None:
    if not sys.stdin.isatty():
        print(
            f"\n{job} keeps running; stop it with `aws sagemaker stop-training-job --training-job-name {job}`"
        )
        return
    answer = input(f"\nStop training job {job}? It keeps running (and billing) otherwise [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        sm.stop_training_job(TrainingJobName=job)
        print(f"stop requested for {job}")


def explain_failure(description: dict) -> UserError:
    job = description["TrainingJobName"]
    status = description["TrainingJobStatus"]
    reason = description.get("FailureReason") or "no FailureReason given"
    tail = "\n".join("    " + line for line in description.get("_log_tail", [])[-10:])
    return UserError(
        f"training job {job} {status}: {reason}"
        + (f"\n  last log lines:\n{tail}" if tail else "\n  (no log lines were found)")
    )


# --- results ----------------------------------------------------------------------------------
def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def experiment_from_job_name(job: str) -> str:
    """Jobs are named vgg-<experiment>-<timestamp>: base_job_name plus the SDK's timestamp."""
    match = re.fullmatch(r"vgg-(.+?)-\d[\d-]*", job)
    return match.group(1) if match else "unknown"


def fetch_results(
    session: boto3.Session,
    job: str,
    runs_dir: Path = common.RUNS_DIR,
    description: dict | None = None,
) -> Path:
    """Downloads model.tar.gz and output.tar.gz, unpacks them and writes the report."""
    sm = session.client("sagemaker")
    try:
        description = description or sm.describe_training_job(TrainingJobName=job)
    except ClientError as error:
        raise aws_error(error, f"describing training job {job}") from error
    status = description["TrainingJobStatus"]
    if status != "Completed":
        if status in TERMINAL:
            raise explain_failure(description)
        raise UserError(f"training job {job} is still {status}; try again when it has finished")
    bucket, model_key = split_s3_uri(description["ModelArtifacts"]["S3ModelArtifacts"])
    output_key = model_key.rsplit("/", 1)[0] + "/output.tar.gz"
    run_dir = runs_dir / job
    run_dir.mkdir(parents=True, exist_ok=True)
    s3 = session.client("s3")
    for key, name in ((model_key, "model.tar.gz"), (output_key, "output.tar.gz")):
        try:
            s3.download_file(bucket, key, str(run_dir / name))
        except ClientError as error:
            raise aws_error(error, f"downloading s3://{bucket}/{key}") from error
    unpack_artifacts(run_dir)
    resources = description["ResourceConfig"]
    environment = description.get("Environment", {})
    billable = description.get("BillableTimeInSeconds")
    instance = lookup(resources["InstanceType"])
    experiment = environment.get("VGG_EXPERIMENT") or experiment_from_job_name(job)
    info = RunInfo(
        job_name=job,
        mode="cloud",
        experiment=experiment,
        seed_reference=load(experiment).seed_reference if experiment in available() else None,
        instance_type=resources["InstanceType"],
        instance_count=resources["InstanceCount"],
        image_uri=description["AlgorithmSpecification"].get("TrainingImage", ""),
        git_commit=environment.get("VGG_GIT_COMMIT", "unknown"),
        dataset_digest=description.get("HyperParameters", {}).get("dataset_digest", ""),
        training_seconds=description.get("TrainingTimeInSeconds"),
        billable_seconds=billable,
        # Billable seconds already net out the spot saving; the rate is the on-demand one.
        cost_usd=None
        if billable is None
        else billable / 3600 * instance.price_per_hour * resources["InstanceCount"],
    )
    return write_report(run_dir, info)
