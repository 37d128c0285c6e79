"""Preflight: everything about a cloud run that can fail before money is spent, cheapest first.
Checks only; staging (training/launch/staging.py) uploads afterwards.

Order: the settings (no AWS call), credentials, quota for each candidate instance type and
capacity (INSTANCE=auto lists the types with quota), the stack's bucket and role, the checkpoint
folder (refusing to re-run a finished experiment), then the cost line. The candidates that pass
are the run's attempts, in order (failover.py tries them).
"""

import dataclasses
import time
from dataclasses import dataclass

import boto3
from vgg_transfer import config as job_config
from vgg_transfer import contract
from vgg_transfer.contract import OptMl

from training.common.aws import split_s3_uri
from training.common.aws_errors import AWS_ERRORS, NOT_FOUND, aws_error, error_code
from training.common.errors import UserError
from training.common.infra_outputs import InfraOutputs
from training.common.instances import Instance
from training.common.sagemaker import TRAINING_JOB, base_name
from training.data import splits
from training.launch.capacity import (
    CostEstimate,
    QuotaReading,
    cheapest_with_quota,
    choose_auto,
    estimate,
    on_demand_price,
    p2_warning,
    quota_kind,
    read_quotas,
)
from training.launch.experiments import Experiment
from training.launch.request import RunRequest
from training.launch.spec import checkpoint_uri, job_settings


def image_uri(instance: Instance, region: str) -> str:
    """The TF training image for the type (the request has checked the type can run it)."""
    from sagemaker.core import image_uris

    version, python = instance.framework
    return image_uris.retrieve(
        framework="tensorflow",
        region=region,
        version=version,
        py_version=python,
        instance_type=instance.name,
        image_scope="training",
    )


@dataclass(frozen=True)
class Candidate:
    """One way to run the job: an instance type on spot or on-demand capacity, its image, and its
    cost with the price it was worked out from."""

    instance: Instance
    spot: bool
    image_uri: str
    cost: CostEstimate

    @property
    def label(self) -> str:
        return f"{self.instance.name} {'spot' if self.spot else 'on-demand'}"


@dataclass(frozen=True)
class Plan:
    """A checked request, with what preflight found out: the candidates in the order they are
    tried, the job's settings as the container will parse them (what its checkpoints keep), and
    where it checkpoints (one folder for every attempt, so a later one resumes an earlier one)."""

    request: RunRequest
    outputs: InfraOutputs
    candidates: tuple[Candidate, ...]
    settings: job_config.Hyperparameters
    checkpoint_uri: str

    @property
    def experiment(self) -> Experiment:
        return self.request.experiment

    @property
    def instance(self) -> Instance:
        return self.candidates[0].instance

    @property
    def image_uri(self) -> str:
        return self.candidates[0].image_uri

    @property
    def cost(self) -> CostEstimate:
        return self.candidates[0].cost


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


def alternative(reading: QuotaReading, request: RunRequest, spot: bool, count: int) -> str:
    """The exact command to run instead, with the cheapest type the account has quota for."""
    choice = cheapest_with_quota(reading, spot, count)
    instance = choice.name if choice else "ml.g4dn.xlarge"
    target = "tune" if request.command == "tune" else "train-cloud"
    command = f"make {target} EXPERIMENT={request.experiment.name} INSTANCE={instance}"
    return command if choice else f"{command} after a quota increase for it"


def check_quota(reading: QuotaReading, request: RunRequest, instance: Instance, spot: bool) -> None:
    count = request.concurrent
    kind = quota_kind(spot)
    offered = reading.offered(instance.name, spot)
    if offered is False:
        raise UserError(
            f"{instance.name} is not offered for {kind} jobs in this region; run "
            f"`{alternative(reading, request, spot, count)}` (or INSTANCE=auto)"
        )
    quota = reading.value(instance.name, spot)
    if quota is None:
        why = reading.problem or "not listed"
        print(f"  quota: unknown for {instance.name} {kind} ({why}); the job may wait or fail")
        return
    if quota < count:
        raise UserError(
            f"your {kind} quota for {instance.name} is {quota:g} but the job needs {count}: "
            f"run `{alternative(reading, request, spot, count)}` (or INSTANCE=auto), or "
            f"request an increase in the Service Quotas console (Amazon SageMaker → "
            f"'{instance.name} for {kind} job usage')"
        )
    print(
        f"  quota: {quota:g} {instance.name} for {kind} ({reading.source(instance.name, spot)}) ✓"
    )


def checkpoint_state(session: boto3.Session, uri: str, recipe: dict) -> str:
    """'new', 'unfinished' or 'finished': what the job would find in its checkpoint folder.
    Checkpoints of another recipe are refused here, before anything is spent, in the words the
    job would use (vgg_transfer.phases.load_state)."""
    bucket, prefix = split_s3_uri(uri)
    s3 = session.client("s3")
    states = {}
    for phase in contract.PHASES:
        key = prefix + contract.state_path("", phase).lstrip("/")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except AWS_ERRORS as error:
            if error_code(error) not in NOT_FOUND:
                raise aws_error(error, f"reading the checkpoints at {uri}") from error
            continue
        states[phase] = contract.read_state(body.decode("utf-8", "replace"))
    for phase, state in states.items():
        differences = job_config.recipe_differences(state.get("config") or {}, recipe)
        if state.get("config") and differences:
            raise UserError(
                f"the checkpoints at {uri} ({phase}) were written with other settings "
                f"({'; '.join(differences)}): start over with FRESH=1 (a new checkpoint folder)"
            )
    if contract.is_finished(states.get(contract.FINE_TUNED, {})):
        return "finished"
    if states:
        return "unfinished"
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except AWS_ERRORS as error:
        raise aws_error(error, f"listing the checkpoints at {uri}") from error
    return "unfinished" if listed.get("KeyCount", 0) else "new"


WAIT_SECONDS = 5.0  # how often a job that is stopping is asked whether it has stopped
STOPPING_MINUTES = 15  # SageMaker gives a stopped job 2 min, then uploads what it saved


def jobs_on(session: boto3.Session, plan: Plan) -> list[dict]:
    """Our experiment's training jobs that run or stop on this checkpoint folder."""
    sm = session.client("sagemaker")
    found = []
    try:
        for status in ("InProgress", "Stopping"):
            pages = sm.get_paginator("list_training_jobs").paginate(
                StatusEquals=status, NameContains=base_name(plan.experiment.name)
            )
            for summary in (s for page in pages for s in page["TrainingJobSummaries"]):
                job = TRAINING_JOB.describe(sm, summary["TrainingJobName"])
                if (job.get("CheckpointConfig") or {}).get("S3Uri") == plan.checkpoint_uri:
                    found.append(job)
    except AWS_ERRORS as error:
        raise aws_error(
            error, "listing the training jobs that may use these checkpoints"
        ) from error
    return found


def check_no_other_job(session: boto3.Session, plan: Plan, clock=time) -> None:
    """A second job on one checkpoint folder would train the same epochs beside the first, each
    overwriting the other's checkpoints: one that runs is refused; one that is stopping (Ctrl-C,
    a max runtime) is waited for, since its last checkpoints are still being uploaded."""
    deadline = clock.time() + STOPPING_MINUTES * 60
    while jobs := jobs_on(session, plan):
        running = [j["TrainingJobName"] for j in jobs if j["TrainingJobStatus"] == "InProgress"]
        if running:
            name = running[0]
            raise UserError(
                f"{name} is still running on these checkpoints ({plan.checkpoint_uri}): follow "
                f"it with `{TRAINING_JOB.results_command(name)}`, or stop it "
                f"(`{TRAINING_JOB.stop_command(name)}`) and run this again"
            )
        names = ", ".join(j["TrainingJobName"] for j in jobs)
        if clock.time() > deadline:
            raise UserError(f"{names} still stopping after {STOPPING_MINUTES} min: try again later")
        print(f"  checkpoints: waiting for {names} to finish stopping (its last checkpoints are "
              "being uploaded)", flush=True)  # fmt: skip
        clock.sleep(WAIT_SECONDS)


def check_checkpoints(session: boto3.Session, plan: Plan) -> None:
    uri = plan.checkpoint_uri
    check_no_other_job(session, plan)
    state = checkpoint_state(session, uri, job_config.recipe(plan.settings))
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


def leave_out(items: list, check, skipped) -> list:
    """The items ``check`` passes, in order. Of several, one it refuses is left out with the line
    ``skipped(item, refusal)``, and only none left is refused (with the first refusal); one item
    alone is refused at once, its remedy whole."""
    if len(items) == 1:
        check(items[0])
        return items
    kept, refusals = [], []
    for item in items:
        try:
            check(item)
        except UserError as refusal:
            refusals.append(refusal)
            print(f"  skipped: {skipped(item, refusal)}")
            continue
        kept.append(item)
    if not kept:
        raise refusals[0]
    return kept


def usable(quotas: QuotaReading, request: RunRequest) -> list[tuple[Instance, bool]]:
    """The (type, spot) pairs to try, in order. INSTANCE=auto's types must run the recipe (named
    types were checked with the request): one that cannot (a batch 4 GPUs do not divide) is left
    out. Then each pair needs quota for the job: one without is left out."""
    instances = list(request.instances) or leave_out(
        choose_auto(quotas, request.spot_modes, request.concurrent),
        request.check_on,
        lambda instance, refusal: f"{instance.name}: {refusal}",
    )
    return leave_out(
        [(instance, spot) for instance in instances for spot in request.spot_modes],
        lambda pair: check_quota(quotas, request, *pair),
        lambda pair, refusal: (
            f"{pair[0].name} {'spot' if pair[1] else 'on-demand'}: {str(refusal).split(':')[0]}"
        ),
    )


def candidates(request: RunRequest, pairs: list[tuple[Instance, bool]], session, region: str,
               train_images: int) -> tuple[Candidate, ...]:  # fmt: skip
    """Each (type, spot) pair with its image and cost; each type is priced (Price List API) and
    its image looked up once, whether it is tried on spot, on-demand or both."""
    types = dict.fromkeys(instance for instance, _ in pairs)
    prices = {instance: on_demand_price(session, instance, region) for instance in types}
    images = {instance: image_uri(instance, region) for instance in types}
    return tuple(
        Candidate(
            instance=instance,
            spot=spot,
            image_uri=images[instance],
            cost=estimate(
                dataclasses.replace(request.experiment, spot=spot),
                train_images,
                instance,
                request.instance_count,
                prices[instance],
            ),
        )  # fmt: skip
        for instance, spot in pairs
    )


def preflight(request: RunRequest, outputs: InfraOutputs, session: boto3.Session) -> Plan:
    """Everything that can fail before money is spent, cheapest first. Nothing is uploaded."""
    experiment = request.experiment
    print(
        f"preflight for {experiment.name} on {request.instance_count}x {request.instance_type} "
        f"({outputs.region}):"
    )
    print(f"  identity: {check_identity(session)} ✓")
    pairs = usable(read_quotas(session), request)
    for instance in dict.fromkeys(instance for instance, _ in pairs):
        warning = p2_warning(instance)
        if warning:
            print(f"  warning: {warning}")
    check_bucket_and_role(session, outputs)
    print(f"  bucket {outputs.bucket} and role {outputs.role_arn.rsplit('/', 1)[-1]} ✓")
    train_images = splits.images(request.manifest, experiment.train_split)
    settings = job_settings(request, OptMl())
    fresh = time.strftime("%Y%m%d-%H%M%S") if request.fresh else ""
    plan = Plan(
        request=request,
        outputs=outputs,
        candidates=candidates(request, pairs, session, outputs.region, train_images),
        settings=settings,
        checkpoint_uri=checkpoint_uri(outputs, settings, experiment.name, fresh),
    )
    check_checkpoints(session, plan)
    print(f"  image: {plan.image_uri}")
    print("  " + plan.cost.line())
    if len(plan.candidates) > 1:
        print(f"  candidates, in order: {', '.join(c.label for c in plan.candidates)} (the next "
              "is tried when one has no capacity; the checkpoints carry over)")  # fmt: skip
    if request.command == "tune":
        print("  " + plan.cost.tuning_line(request.max_jobs, request.parallel))
    return plan
