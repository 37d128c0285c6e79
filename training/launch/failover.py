"""Capacity failover: a plan's candidates (instance type × spot or on-demand, preflight.py) tried
in order until one gets capacity, every attempt printed as it happens and carried into the report.

The launcher moves to the next candidate when
- CreateTrainingJob answers ``ResourceLimitExceeded`` (the account's quota is in use by other jobs);
- the job fails for capacity (``CapacityError: Unable to provision requested ML compute
  capacity``, ``InsufficientCapacityError``, "temporarily unavailable"), or a spot job's wait ends
  ``MaxWaitTimeExceeded`` before any instance started;
- a spot job has waited for capacity longer than ``CAPACITY_WAIT`` minutes: it is stopped first.

Every attempt uses the plan's one checkpoint folder, so an attempt that trained resumes in the
next one. The attempts before the job that ran travel in that job's Environment
(``ATTEMPTS_ENV``), so the report of ``make results JOB=…`` lists them as well as the launch's.
Tuning jobs do not fail over here: SageMaker tries the candidates itself (``InstanceConfigs``
with ``AllocationStrategy: Prioritized``, submit.py).
"""

import json
import re
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import boto3

from training.common.errors import UserError
from training.common.sagemaker import TRAINING_JOB, JobKind
from training.launch.follow import JobEnd, follow
from training.launch.preflight import Candidate, Plan
from training.launch.spec import JobSpec
from training.launch.staging import PRICE_ENV, PRICE_SOURCE_ENV
from training.launch.submit import NoCapacity, submit
from training.report.tuning import reason_line

ATTEMPTS_ENV = "VGG_EARLIER_ATTEMPTS"  # the attempts before this job, as JSON rows
ENVIRONMENT_VALUE_LIMIT = 512  # SageMaker's limit on one Environment value
ENDED_LIMIT = 60  # characters of an earlier attempt's reason that travel (cut ones end in …)
CAPACITY_FAILURE = re.compile(
    r"CapacityError|InsufficientCapacity|Unable to provision requested ML compute capacity|"
    r"temporarily unavailable",
    re.IGNORECASE,
)
# Secondary statuses once the instances are up: a job that reached one has had its capacity.
STARTED = frozenset({"Downloading", "Training", "Uploading", "Interrupted", "Restarting"})


@dataclass(frozen=True)
class Attempt:
    """One try of one candidate: where, how long it waited for capacity, what it was billed and
    how it ended."""

    instance_type: str
    spot: bool
    job: str  # "" when SageMaker refused to create it
    waited_seconds: float
    billable_seconds: float
    cost_usd: float
    ended: str

    @property
    def label(self) -> str:
        return f"{self.instance_type} {'spot' if self.spot else 'on-demand'}"

    def line(self) -> str:
        return (f"{self.label}{f' ({self.job})' if self.job else ''}: {self.ended}, waited "
                f"{self.waited_seconds / 60:.1f} min, billed {self.billable_seconds:.0f} s "
                f"(${self.cost_usd:.2f})")  # fmt: skip

    def row(self) -> list:
        return [self.instance_type, int(self.spot), self.job, round(self.waited_seconds),
                round(self.billable_seconds), round(self.cost_usd, 4),
                reason_line(self.ended, ENDED_LIMIT)]  # fmt: skip

    @classmethod
    def from_row(cls, row: list) -> "Attempt":
        instance_type, spot, job, waited, billable, cost, ended = row
        return cls(instance_type, bool(spot), job, waited, billable, cost, ended)


def started(description: dict) -> bool:
    return any(t.get("Status") in STARTED for t in description.get("SecondaryStatusTransitions")
               or [])  # fmt: skip


def waited_seconds(description: dict, now: datetime | None = None) -> float:
    """From the job's creation to its instances being up (or to its end, or ``now``)."""
    created = description.get("CreationTime")
    if not isinstance(created, datetime):
        return 0.0
    up = next((t.get("StartTime") for t in description.get("SecondaryStatusTransitions") or []
               if t.get("Status") in STARTED), None)  # fmt: skip
    until = up or description.get("TrainingEndTime") or now or datetime.now(UTC)
    return max(0.0, (until - created).total_seconds())


def record(description: dict, spot: bool, price_per_hour: float, ended: str) -> Attempt:
    billable = float(description.get("BillableTimeInSeconds") or 0)
    count = description["ResourceConfig"]["InstanceCount"]
    return Attempt(
        instance_type=description["ResourceConfig"]["InstanceType"],
        spot=spot,
        job=description["TrainingJobName"],
        waited_seconds=waited_seconds(description),
        billable_seconds=billable,
        cost_usd=billable / 3600 * price_per_hour * count,
        ended=ended,
    )


def capacity_shortage(end: JobEnd) -> str | None:
    """Why the job ended for want of capacity, or None when it ran (or failed otherwise)."""
    description = end.description
    if end.gave_up:
        return end.gave_up
    status = description["TrainingJobStatus"]
    reason = description.get("FailureReason") or ""
    if status == "Failed" and CAPACITY_FAILURE.search(reason):
        return reason.split(". ")[0]
    if description.get("SecondaryStatus") == "MaxWaitTimeExceeded" and not started(description):
        return "MaxWaitTimeExceeded before any instance started"
    return None


class CapacityWait:
    """``follow``'s give_up for a spot job: it has waited too long for capacity."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    def __call__(self, description: dict) -> str | None:
        if started(description) or description.get("TrainingJobStatus") != "InProgress":
            return None
        waited = waited_seconds(description)
        if waited <= self.minutes * 60:
            return None
        return f"no spot capacity after {waited / 60:.1f} min (CAPACITY_WAIT={self.minutes:g})"


def earlier_attempts(environment: dict) -> list[Attempt]:
    """The attempts before a job, from its Environment (none for a job that ran first)."""
    try:
        return [Attempt.from_row(row) for row in json.loads(environment.get(ATTEMPTS_ENV, "[]"))]
    except (ValueError, TypeError):
        return []


def encode(attempts: list[Attempt]) -> str:
    """The attempts as one Environment value: the latest ones that fit SageMaker's limit."""
    rows = [attempt.row() for attempt in attempts]
    while rows and len(json.dumps(rows, separators=(",", ":"))) > ENVIRONMENT_VALUE_LIMIT:
        rows.pop(0)
    return json.dumps(rows, separators=(",", ":"))


def attempt_spec(spec: JobSpec, candidate: Candidate, attempts: list[Attempt]) -> JobSpec:
    environment = {**spec.environment, PRICE_ENV: f"{candidate.cost.price.per_hour:g}",
                   PRICE_SOURCE_ENV: candidate.cost.price.source}  # fmt: skip
    if attempts:
        environment[ATTEMPTS_ENV] = encode(attempts)
    return replace(spec, instance_type=candidate.instance.name, spot=candidate.spot,
                   image=candidate.image_uri, environment=environment)  # fmt: skip


def all_failed(attempts: list[Attempt]) -> UserError:
    return UserError(
        f"no candidate got capacity ({'; '.join(a.line() for a in attempts)}): add types to "
        "INSTANCE (or INSTANCE=auto), SPOT=auto to fall back to on-demand, a longer "
        "CAPACITY_WAIT, or a quota increase (`make check` lists your quotas); the same command "
        "again resumes from the checkpoints"
    )


def launch(kind: JobKind, plan: Plan, spec: JobSpec, session: boto3.Session,
           clock=time) -> tuple[str, JobEnd | None]:  # fmt: skip
    """Submits the job (a training job: each candidate in turn, until one gets capacity) and,
    unless detached, follows it to its end. Returns its name and how it ended (None: detached)."""
    request = plan.request
    if kind is not TRAINING_JOB:  # SageMaker tries a tuning job's candidates itself
        name = submit(kind, spec, session, request)
        return name, None if request.detach else follow_job(kind, session, name, request, clock)
    attempts: list[Attempt] = []
    for number, candidate in enumerate(plan.candidates, 1):
        last = number == len(plan.candidates)
        if len(plan.candidates) > 1:
            print(f"attempt {number}/{len(plan.candidates)}: {candidate.label}", flush=True)
        try:
            name = submit(kind, attempt_spec(spec, candidate, attempts), session, request)
        except NoCapacity as refusal:
            attempts.append(Attempt(candidate.instance.name, candidate.spot, "", 0, 0, 0,
                                    "ResourceLimitExceeded"))  # fmt: skip
            print(f"  {'moving on' if not last else 'refused'}: {refusal}", flush=True)
            continue
        if request.detach:
            return name, None
        wait = CapacityWait(request.capacity_wait_minutes) if candidate.spot and not last else None
        end = follow_job(kind, session, name, request, clock, give_up=wait)
        shortage = capacity_shortage(end)
        if shortage is None:
            return name, end
        attempts.append(record(end.description, candidate.spot,
                               candidate.cost.price.per_hour, shortage))  # fmt: skip
        print(f"  moving on: {name} got no capacity ({shortage})", flush=True)
    raise all_failed(attempts)


def follow_job(kind: JobKind, session, name: str, request, clock=time, give_up=None) -> JobEnd:
    return follow(kind, session, name, request.poll_seconds,
                  reconnect_minutes=request.reconnect_minutes, reached=True, clock=clock,
                  give_up=give_up)  # fmt: skip


def report_rows(description: dict, price_per_hour: float) -> list[dict]:
    """Every attempt of the run whose job is ``description``: those before it (its Environment)
    and its own, as the report and MLflow list them."""
    environment = description.get("Environment") or {}
    attempts = earlier_attempts(environment)
    spot = bool(description.get("EnableManagedSpotTraining"))
    status = description["TrainingJobStatus"]
    own = record(description, spot, price_per_hour,
                 status if status == "Completed" else f"{status} ({description.get('SecondaryStatus')})")  # fmt: skip
    return [asdict(attempt) for attempt in [*attempts, own]]
