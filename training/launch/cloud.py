"""The cloud path: preflight, staging, a SageMaker training job through SDK v3's ModelTrainer,
following it in the terminal, and fetching its results into ``runs/<job>/``.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from training.aws_errors import (
    AWS_ERRORS,
    AWS_OR_NETWORK_ERRORS,
    NOT_FOUND,
    aws_error,
    error_code,
    one_line,
)
from training.data.upload import dataset_prefix, upload_splits
from training.errors import Interrupted, UserError
from training.job.vgg_transfer import config as job_config
from training.launch import common
from training.launch.costs import CostEstimate, estimate
from training.launch.experiments import (
    Experiment,
    available,
    from_hyperparameter,
    load,
    to_hyperparameter,
)
from training.launch.infra_outputs import InfraOutputs
from training.launch.instances import AUTO, Instance, check_framework, lookup, p2_warning
from training.launch.prices import on_demand_price
from training.launch.quotas import QuotaReading, cheapest_with_quota, read_quotas, resolve_instance
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


def checkpoint_uri(
    outputs: InfraOutputs, experiment: Experiment, digest: str, fresh: str = ""
) -> str:
    """One folder per experiment, data and config: re-running the same thing resumes it.
    ``fresh`` (FRESH=1) adds a suffix, so the run starts from nothing."""
    config_hash = hashlib.sha256(
        json.dumps(experiment.resolved_hyperparameters(), sort_keys=True).encode()
    ).hexdigest()[:8]
    name = f"{experiment.name}-{digest}-{config_hash}" + (f"-fresh-{fresh}" if fresh else "")
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
    fresh: str = ""  # FRESH=1: a timestamp that makes a new checkpoint folder

    @property
    def checkpoint_uri(self) -> str:
        return checkpoint_uri(
            self.outputs, self.experiment, self.manifest["dataset_digest"], self.fresh
        )


def keras_major_of(instance: Instance) -> int:
    """The Keras major version of the image the instance runs (TF 2.16 switched to Keras 3)."""
    major, minor = (int(part) for part in instance.framework[0].split(".")[:2])
    return 3 if (major, minor) >= (2, 16) else 2


def validate_request(
    experiment: Experiment,
    instance_type: str,
    instance_count: int,
    weights_file: Path | None,
    network_isolation: bool,
) -> None:
    """Every argument checked before any AWS call or upload."""
    if instance_count < 1:
        raise UserError(f"INSTANCE_COUNT={instance_count}: a job needs at least one instance")
    hp = experiment.resolved_hyperparameters()
    if weights_file is not None:
        weights = Path(weights_file)
        if not weights.is_file():
            raise UserError(f"WEIGHTS={weights}: no such file (a VGG16 no-top .h5 file)")
        if weights.suffix.lower() not in (".h5", ".hdf5"):
            raise UserError(f"WEIGHTS={weights}: expected a Keras .h5 weights file")
    if network_isolation and hp["weights"] == "imagenet" and not weights_file:
        raise UserError(
            "network isolation blocks the ImageNet download: pass WEIGHTS=<vgg16 no-top .h5> "
            "(sent through the weights channel)"
        )
    if hp["cache_features"] and instance_count > 1:
        raise UserError(
            "cache_features=true runs on one host only; drop it or use INSTANCE_COUNT=1"
        )
    if instance_type != AUTO:
        instance = lookup(instance_type)
        check_framework(instance, instance.framework[0])
        replicas = max(instance.gpus, 1) * instance_count
        problem = job_config.xla_problem(hp["xla"], replicas, keras_major_of(instance))
        if problem:
            raise UserError(f"{problem} ({instance_count}x {instance.name})")


def check_identity(session: boto3.Session) -> str:
    try:
        return session.client("sts").get_caller_identity()["Arn"]
    except AWS_ERRORS as error:
        raise aws_error(error, "checking your AWS identity") from error


def check_bucket_and_role(session: boto3.Session, outputs: InfraOutputs) -> None:
    try:
        session.client("s3").head_bucket(Bucket=outputs.bucket)
    except AWS_ERRORS as error:
        if error_code(error) in ("404", "NoSuchBucket"):
            raise UserError(
                f"bucket {outputs.bucket} does not exist (torn down?): run `make infra-up`"
            ) from error
        raise aws_error(error, f"checking bucket {outputs.bucket}") from error
    try:
        session.client("iam").get_role(RoleName=outputs.role_arn.rsplit("/", 1)[-1])
    except AWS_ERRORS as error:
        if error_code(error) == "NoSuchEntity":
            raise UserError(
                f"role {outputs.role_arn} does not exist: run `make infra-up`"
            ) from error
        raise aws_error(error, f"checking role {outputs.role_arn}") from error


def training_quota(session: boto3.Session) -> QuotaReading:
    """The account's SageMaker training quotas (applied values over AWS's defaults)."""
    return read_quotas(session)


def alternative(reading: QuotaReading, experiment: Experiment, spot: bool, count: int) -> str:
    """The exact command to run instead, with the cheapest type the account has quota for."""
    choice = cheapest_with_quota(reading, spot, count)
    instance = choice.name if choice else "ml.g4dn.xlarge"
    command = f"make train-cloud EXPERIMENT={experiment.name} INSTANCE={instance}"
    return command if choice else f"{command} after a quota increase for it"


def check_quota(
    reading: QuotaReading, experiment: Experiment, instance: Instance, count: int
) -> None:
    spot = experiment.spot
    kind = "spot training" if spot else "training"
    offered = reading.offered(instance.name, spot)
    if offered is False:
        raise UserError(
            f"{instance.name} is not offered for {kind} jobs in this region; run "
            f"`{alternative(reading, experiment, spot, count)}` (or INSTANCE=auto)"
        )
    quota = reading.value(instance.name, spot)
    if quota is None:
        why = reading.problem or "not listed"
        print(f"  quota: unknown for {instance.name} {kind} ({why}); the job may wait or fail")
        return
    if quota < count:
        raise UserError(
            f"your {kind} quota for {instance.name} is {quota:g} but the job needs {count}: "
            f"run `{alternative(reading, experiment, spot, count)}` (or INSTANCE=auto), or "
            f"request an increase in the Service Quotas console (Amazon SageMaker → "
            f"'{instance.name} for {kind} job usage')"
        )
    print(
        f"  quota: {quota:g} {instance.name} for {kind} ({reading.source(instance.name, spot)}) ✓"
    )


def checkpoint_state(session: boto3.Session, uri: str) -> str:
    """'new', 'unfinished' or 'finished': what the job would find in its checkpoint folder."""
    bucket, prefix = split_s3_uri(uri)
    s3 = session.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}fine_tuned/state.json")["Body"].read()
        return "finished" if json.loads(body).get("finished") else "unfinished"
    except AWS_ERRORS as error:
        if error_code(error) not in NOT_FOUND:
            raise aws_error(error, f"reading the checkpoints at {uri}") from error
    except ValueError:
        return "unfinished"
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except AWS_ERRORS as error:
        raise aws_error(error, f"listing the checkpoints at {uri}") from error
    return "unfinished" if listed.get("KeyCount", 0) else "new"


def check_checkpoints(session: boto3.Session, plan: Plan) -> None:
    uri = plan.checkpoint_uri
    state = checkpoint_state(session, uri)
    if state == "finished":
        raise UserError(
            f"a finished run of {plan.experiment.name} with the same data and settings left its "
            f"checkpoints at {uri}; a new job would reuse them and train nothing. Start over "
            "with FRESH=1 (a new checkpoint folder), or fetch that run with `make results JOB=…`"
        )
    if state == "unfinished":
        print(f"  checkpoints: resuming the unfinished run at {uri} (FRESH=1 starts over)")
    else:
        print(f"  checkpoints: {uri} (new)")


def preflight(
    experiment: Experiment,
    outputs: InfraOutputs,
    splits_dir: Path,
    session: boto3.Session,
    instance_type: str | None = None,
    instance_count: int | None = None,
    weights_file: Path | None = None,
    network_isolation: bool = False,
    fresh: bool = False,
) -> Plan:
    """Everything that can fail before money is spent, cheapest first; stages data last."""
    instance_type = instance_type or experiment.instance_type
    count = experiment.instance_count if instance_count is None else instance_count
    validate_request(experiment, instance_type, count, weights_file, network_isolation)
    manifest = common.require_splits(splits_dir, experiment)
    print(f"preflight for {experiment.name} on {count}x {instance_type} ({outputs.region}):")
    print(f"  identity: {check_identity(session)} ✓")
    quotas = training_quota(session)
    instance = resolve_instance(instance_type, quotas, experiment.spot, count)
    if instance_type == AUTO:
        validate_request(experiment, instance.name, count, weights_file, network_isolation)
    check_quota(quotas, experiment, instance, count)
    warning = p2_warning(instance)
    if warning:
        print(f"  warning: {warning}")
    check_bucket_and_role(session, outputs)
    print(f"  bucket {outputs.bucket} and role {outputs.role_arn.rsplit('/', 1)[-1]} ✓")
    price = on_demand_price(session, instance.name, outputs.region)
    plan = Plan(
        experiment=experiment,
        outputs=outputs,
        instance=instance,
        instance_count=count,
        image_uri=image_uri(instance, outputs.region),
        manifest=manifest,
        cost=estimate(
            experiment, common.train_images(manifest, experiment), instance.name, count, price
        ),
        weights_file=weights_file,
        network_isolation=network_isolation,
        fresh=time.strftime("%Y%m%d-%H%M%S") if fresh else "",
    )
    check_checkpoints(session, plan)
    splits = list(common.channel_splits(experiment).values())
    upload_splits(splits_dir, outputs.bucket, splits, client=session.client("s3"))
    print(f"  image: {plan.image_uri}")
    print("  " + plan.cost.line())
    return plan


# --- submit -----------------------------------------------------------------------------------
SDK_ROLE_CHECK = "SAGEMAKER_VALIDATE_ROLE"
CODE_IGNORE = ["__pycache__", "*.pyc", ".pytest_cache", ".DS_Store", "*.egg-info", ".git"]


@contextlib.contextmanager
def sdk_role_check_off():
    """Turns the SDK's own role check off while our trainer is built, and only then.

    ``ModelTrainer`` simulates ``ecr:GetAuthorizationToken``, ``cloudwatch:PutMetricData`` and nine
    ``ec2:*`` actions on the role (sagemaker.train.defaults → iam_role_resolver). The stack's
    least-privilege role holds no ec2 rights (the job runs in no VPC) and scopes the others with
    conditions the simulation cannot read, so any caller allowed ``iam:SimulatePrincipalPolicy``
    (whoever ran `make infra-up`) would be refused. Preflight has already checked that the role
    exists; the SDK offers no argument, only this variable, so it is set and restored here."""
    previous = os.environ.get(SDK_ROLE_CHECK)
    os.environ[SDK_ROLE_CHECK] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SDK_ROLE_CHECK, None)
        else:
            os.environ[SDK_ROLE_CHECK] = previous


def project_trainer_class():
    """ModelTrainer that stages the code in the project bucket's code/ prefix, always.

    The SDK picks the staging place by simulating the role's s3:PutObject on the whole bucket:
    a caller who may call iam:SimulatePrincipalPolicy gets the output prefix, one who may not
    gets the default bucket, so the code would land in different places depending on who
    launches. The role reads code/, and the Session's default bucket and prefix say where."""
    from sagemaker.train import ModelTrainer

    class ProjectModelTrainer(ModelTrainer):
        def _resolve_staging_bucket(self) -> tuple[str, str | None]:
            return self.sagemaker_session.default_bucket(), None

    return ProjectModelTrainer


def stage_weights(session: boto3.Session, plan: Plan) -> str:
    """Uploads the weights file once (keyed by content) and returns its S3 folder."""
    data = Path(plan.weights_file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"{plan.outputs.weights_prefix}/{digest}/{Path(plan.weights_file).name}"
    s3 = session.client("s3")
    try:
        try:
            s3.head_object(Bucket=plan.outputs.bucket, Key=key)
        except ClientError as error:
            if error_code(error) not in NOT_FOUND:
                raise
            s3.upload_file(str(plan.weights_file), plan.outputs.bucket, key)
    except AWS_OR_NETWORK_ERRORS as error:
        where = f"s3://{plan.outputs.bucket}/{key}"
        raise aws_error(error, f"uploading {plan.weights_file} to {where}") from error
    return f"s3://{plan.outputs.bucket}/{key.rsplit('/', 1)[0]}/"


def job_hyperparameters(plan: Plan) -> dict:
    """The experiment's hyperparameters plus what this run adds: data digest, container paths,
    distribution. Encoded so that they reach train.py unchanged (see to_hyperparameter)."""
    hps = plan.experiment.resolved_hyperparameters()
    hps["dataset_digest"] = plan.manifest["dataset_digest"]
    hps["checkpoint_dir"] = CHECKPOINT_LOCAL_PATH
    if plan.weights_file:
        hps["weights"] = f"{common.CONTAINER_DATA}/weights/{Path(plan.weights_file).name}"
    if plan.instance_count > 1:
        hps["distribution"] = "multi_worker"
    return {key: to_hyperparameter(value) for key, value in hps.items()}


def build_trainer(plan: Plan, session: boto3.Session):
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import CheckpointConfig, OutputDataConfig
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
    if plan.weights_file:
        channels.append(InputData(channel_name="weights", data_source=stage_weights(session, plan)))
    max_runtime = experiment.max_runtime_minutes * 60
    # The project bucket is the SDK's default bucket, so no sagemaker-<region>-<account> bucket
    # appears; the code it uploads lands under the code/ prefix the role may read.
    sm_session = Session(
        boto_session=session,
        default_bucket=outputs.bucket,
        default_bucket_prefix=outputs.code_prefix,
    )
    commit = common.git_commit()
    with sdk_role_check_off():
        trainer = project_trainer_class()(
            sagemaker_session=sm_session,
            role=outputs.role_arn,
            base_job_name=f"vgg-{experiment.name}",  # the SDK appends a timestamp
            training_image=plan.image_uri,
            source_code=SourceCode(
                source_dir=str(common.JOB_DIR),
                entry_script=common.ENTRY_SCRIPT,
                ignore_patterns=CODE_IGNORE,
            ),
            compute=Compute(
                instance_type=plan.instance.name,
                instance_count=plan.instance_count,
                volume_size_in_gb=50,
                enable_managed_spot_training=experiment.spot,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=max_runtime,
                max_wait_time_in_seconds=experiment.max_wait_minutes * 60
                if experiment.spot
                else None,
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
            hyperparameters=job_hyperparameters(plan),
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
    try:
        trainer, channels = build_trainer(plan, session)
    except UserError:
        raise
    except AWS_OR_NETWORK_ERRORS as error:
        raise aws_error(error, "preparing the training job") from error
    except Exception as error:  # the SDK validates with its own exception types
        raise UserError(
            f"the SageMaker SDK refused the training job: {type(error).__name__}: "
            f"{one_line(error, 300)}"
        ) from error
    try:
        trainer.train(input_data_config=channels, wait=False, logs=False)
    except AWS_OR_NETWORK_ERRORS as error:
        raise aws_error(error, "creating the training job") from error
    except (ValueError, OSError) as error:
        raise UserError(f"creating the training job failed: {one_line(error, 300)}") from error
    # output_data is s3://<bucket>/<outputs prefix>/<job name>/output/output.tar.gz
    name = trainer.output_data.split("/")[-3]
    print(f"submitted {name}; checkpoints: {plan.checkpoint_uri}")
    return name


# --- follow -----------------------------------------------------------------------------------
@dataclass
class JobEnd:
    """A finished job's description and the last log lines the follower saw."""

    description: dict
    log_tail: list[str]


class LogFollower:
    """Streams new CloudWatch log lines of a job's streams; remembers the last ones.

    A failed log read never stops the following: the next poll tries again."""

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
        except AWS_OR_NETWORK_ERRORS:
            return  # no log group or stream before the instances start
        for stream in streams:
            name = stream["logStreamName"]
            while True:
                kwargs = {"logGroupName": LOG_GROUP, "logStreamName": name, "startFromHead": True}
                if name in self.tokens:
                    kwargs["nextToken"] = self.tokens[name]
                try:
                    response = self.logs.get_log_events(**kwargs)
                except AWS_OR_NETWORK_ERRORS:
                    break
                for event in response.get("events", []):
                    line = event["message"].rstrip()
                    self.tail.append(line)
                    self.write(line)
                token = response.get("nextForwardToken")
                if token == self.tokens.get(name):
                    break
                self.tokens[name] = token


def describe(sm, job: str) -> dict:
    try:
        return sm.describe_training_job(TrainingJobName=job)
    except AWS_ERRORS as error:
        message = one_line(error).lower()
        if error_code(error) in ("ValidationException", "ResourceNotFound") and (
            "not found" in message or "could not find" in message
        ):
            raise UserError(
                f"no training job named {job} in {sm.meta.region_name}: check the name "
                "(`aws sagemaker list-training-jobs`) and the stack's region"
            ) from error
        raise aws_error(error, f"describing training job {job}") from error


def follow(session: boto3.Session, job: str, poll_seconds: float = 15.0, write=print) -> JobEnd:
    """Prints status changes and log lines until the job ends.

    Ctrl-C asks whether to stop the job (it would otherwise keep running and billing)."""
    sm = session.client("sagemaker")
    follower = LogFollower(session, job, write)
    last = None
    try:
        while True:
            description = describe(sm, job)
            status = (description["TrainingJobStatus"], description.get("SecondaryStatus"))
            if status != last:
                write(f"[{job}] {status[0]} / {status[1]}")
                last = status
            follower.poll()
            if status[0] in TERMINAL:
                return JobEnd(description, list(follower.tail))
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        offer_stop(sm, job)
        raise Interrupted(
            f"stopped following {job}; pick it up again with `make results JOB={job}`"
        ) from None


def offer_stop(sm, job: str) -> None:
    keeps_running = (
        f"{job} keeps running; stop it with "
        f"`aws sagemaker stop-training-job --training-job-name {job}`"
    )
    if not sys.stdin.isatty():
        print(f"\n{keeps_running}")
        return
    try:
        answer = input(
            f"\nStop training job {job}? It keeps running (and billing) otherwise [y/N] "
        )
    except (EOFError, KeyboardInterrupt):
        print(f"\n{keeps_running}")
        return
    if answer.strip().lower() not in ("y", "yes"):
        print(keeps_running)
        return
    try:
        sm.stop_training_job(TrainingJobName=job)
    except AWS_OR_NETWORK_ERRORS as error:
        if error_code(error) == "ValidationException":
            print(f"{job} could not be stopped: {one_line(error)} (it may have ended already)")
        else:
            print(f"{job} could not be stopped: {aws_error(error, 'stopping it')}")
        return
    print(f"stop requested for {job}")


def explain_failure(description: dict, log_tail: list[str]) -> UserError:
    job = description["TrainingJobName"]
    status = description["TrainingJobStatus"]
    reason = description.get("FailureReason") or "no FailureReason given"
    tail = "\n".join("    " + line for line in log_tail[-10:])
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


def artifact_keys(description: dict) -> tuple[str, list[str]]:
    """(bucket, [model.tar.gz key, output.tar.gz key]) where the job wrote its artifacts."""
    job = description["TrainingJobName"]
    model_uri = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not model_uri:
        output_path = description["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model_uri = f"{output_path}/{job}/output/model.tar.gz"
    bucket, model_key = split_s3_uri(model_uri)
    return bucket, [model_key, model_key.rsplit("/", 1)[0] + "/output.tar.gz"]


def download_artifacts(session: boto3.Session, description: dict, target: Path) -> None:
    bucket, keys = artifact_keys(description)
    s3 = session.client("s3")
    missing = []
    for key in keys:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except AWS_ERRORS as error:
            if error_code(error) not in NOT_FOUND:
                raise aws_error(error, f"looking for s3://{bucket}/{key}") from error
            missing.append(f"s3://{bucket}/{key}")
    if missing:
        raise UserError(
            f"training job {description['TrainingJobName']} completed, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing (deleted, "
            "or removed by a lifecycle rule?); nothing was written under runs/"
        )
    for key in keys:
        try:
            s3.download_file(bucket, key, str(target / key.rsplit("/", 1)[-1]))
        except AWS_OR_NETWORK_ERRORS as error:
            raise aws_error(error, f"downloading s3://{bucket}/{key}") from error


def run_info(description: dict) -> RunInfo:
    job = description["TrainingJobName"]
    resources = description["ResourceConfig"]
    environment = description.get("Environment", {})
    billable = description.get("BillableTimeInSeconds")
    instance = lookup(resources["InstanceType"])
    experiment = environment.get("VGG_EXPERIMENT") or experiment_from_job_name(job)
    digest = description.get("HyperParameters", {}).get("dataset_digest", "")
    return RunInfo(
        job_name=job,
        mode="cloud",
        experiment=experiment,
        seed_reference=load(experiment).seed_reference if experiment in available() else None,
        instance_type=resources["InstanceType"],
        instance_count=resources["InstanceCount"],
        image_uri=description["AlgorithmSpecification"].get("TrainingImage", ""),
        git_commit=environment.get("VGG_GIT_COMMIT", "unknown"),
        dataset_digest=from_hyperparameter(digest),
        training_seconds=description.get("TrainingTimeInSeconds"),
        billable_seconds=billable,
        # Billable seconds already net out the spot saving; the rate is the on-demand one.
        cost_usd=None
        if billable is None
        else billable / 3600 * instance.price_per_hour * resources["InstanceCount"],
    )


def fetch_results(
    session: boto3.Session,
    job: str,
    runs_dir: Path = common.RUNS_DIR,
    end: JobEnd | None = None,
) -> Path:
    """Downloads model.tar.gz and output.tar.gz, unpacks them and writes the report into
    ``runs/<job>/``, which appears only once all of it succeeded."""
    end = end or JobEnd(describe(session.client("sagemaker"), job), [])
    status = end.description["TrainingJobStatus"]
    if status != "Completed":
        if status in TERMINAL:
            raise explain_failure(end.description, end.log_tail)
        raise UserError(f"training job {job} is still {status}; try again when it has finished")
    runs_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{job}.", dir=runs_dir))
    try:
        download_artifacts(session, end.description, partial)
        unpack_artifacts(partial)
        write_report(partial, run_info(end.description))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    run_dir = runs_dir / job
    if run_dir.exists():
        shutil.rmtree(run_dir)
    partial.rename(run_dir)  # the report links its plots by relative names
    return run_dir / "report.md"
