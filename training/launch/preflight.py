"""Preflight: everything about a cloud run that can fail before money is spent, cheapest first.
Checks only; staging (training/launch/staging.py) uploads afterwards.

Order: the settings (no AWS call), credentials, quota for the instance type (INSTANCE=auto picks
one), the stack's bucket and role, the checkpoint folder (refusing to re-run a finished
experiment), then the cost line.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from vgg_transfer import config as job_config

from training.aws_errors import AWS_ERRORS, NOT_FOUND, aws_error, error_code
from training.errors import UserError
from training.infra_outputs import InfraOutputs
from training.launch import common
from training.launch.costs import CostEstimate, estimate
from training.launch.experiments import Experiment
from training.launch.instances import AUTO, Instance, check_framework, lookup, p2_warning
from training.launch.prices import on_demand_price
from training.launch.quotas import QuotaReading, cheapest_with_quota, read_quotas, resolve_instance
from training.launch.spec import checkpoint_uri


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
    if experiment.spot and experiment.max_runtime_seconds > experiment.max_wait_seconds:
        raise UserError(
            f"a max runtime of {experiment.max_runtime_minutes:g} min exceeds the experiment's "
            f"max_wait_minutes={experiment.max_wait_minutes:g} (a spot job waits at most that "
            "long, its runtime included): lower MAX_RUNTIME_MINUTES or raise max_wait_minutes "
            f"in training/experiments/{experiment.name}.yaml"
        )
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
        problem = job_config.xla_problem(
            hp["xla"], replicas, keras_major_of(instance)
        ) or job_config.batch_problem(hp["batch_size"], replicas)
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
    bucket, prefix = common.split_s3_uri(uri)
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
    concurrent: int | None = None,
) -> Plan:
    """Everything that can fail before money is spent, cheapest first. Nothing is uploaded.

    ``concurrent``: instances running at once, for the quota (tuning: PARALLEL jobs); default:
    the job's own count."""
    instance_type = instance_type or experiment.instance_type
    count = experiment.instance_count if instance_count is None else instance_count
    at_once = concurrent or count
    validate_request(experiment, instance_type, count, weights_file, network_isolation)
    manifest = common.require_splits(splits_dir, experiment)
    print(f"preflight for {experiment.name} on {count}x {instance_type} ({outputs.region}):")
    print(f"  identity: {check_identity(session)} ✓")
    quotas = training_quota(session)
    instance = resolve_instance(instance_type, quotas, experiment.spot, at_once)
    if instance_type == AUTO:
        validate_request(experiment, instance.name, count, weights_file, network_isolation)
    check_quota(quotas, experiment, instance, at_once)
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
    print(f"  image: {plan.image_uri}")
    print("  " + plan.cost.line())
    return plan
