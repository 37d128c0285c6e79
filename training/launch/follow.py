"""Following a job in the terminal, one loop for every kind of job, until it ends; Ctrl-C offers
to stop it. What a poll prints is the kind's news (``WATCHES``):
- a training job: its status changes and CloudWatch log lines, in the order they happened;
- a tuning job: each training job's status and objective as it lands.
"""

import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import boto3
from vgg_transfer.contract import TUNING_OBJECTIVE

from training.common import aws
from training.common.aws_errors import (
    AWS_OR_NETWORK_ERRORS,
    aws_error,
    error_code,
    is_transient,
    one_line,
)
from training.common.errors import Interrupted, UserError
from training.common.sagemaker import LOG_GROUP, TERMINAL, TRAINING_JOB, TUNING_JOB, JobKind
from training.launch.outage import RECONNECT_MINUTES, Outage
from training.report.tuning import objective_of, reason_line


@dataclass
class JobEnd:
    """A job that ended: its description, its child jobs (a tuning job's training jobs), and the
    last log lines the follower saw."""

    kind: JobKind
    description: dict
    children: list[dict] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    gave_up: str | None = None  # why the follower stopped it (a spot job waiting too long)


class LogFollower:
    """Streams new CloudWatch log lines of a job's streams; remembers the last ones.

    Its position in each stream (CloudWatch's forward tokens) moves only past lines it holds, so a
    poll that fails part-way loses nothing: the lines read before the failure are handed out by
    the next poll that succeeds, and none twice."""

    def __init__(self, session: boto3.Session, job: str, keep: int = 20) -> None:
        self.logs = session.client("logs", config=aws.FOLLOWING)
        self.job = job
        self.tokens: dict[str, str] = {}
        self.tail: deque[str] = deque(maxlen=keep)
        self._pending: list[tuple[float, str]] = []  # read, not yet handed out

    def streams(self) -> list[str]:
        """The job's log streams, oldest first (one per host and attempt); none while its
        instances have not written yet. A transient failure raises (the caller rides it out)."""
        try:
            streams = self.logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job}/"
            ).get("logStreams", [])
        except AWS_OR_NETWORK_ERRORS as error:
            if error_code(error) != "ResourceNotFoundException":
                raise
            return []
        ordered = sorted(streams, key=lambda stream: stream.get("creationTime", 0))
        return [stream["logStreamName"] for stream in ordered]

    def poll(self) -> list[tuple[float, str]]:
        """The new log lines of every stream, as (timestamp in ms, line). A transient failure
        raises (the follower rides it out): what was read before it comes with the next poll."""
        for stream in self.streams():
            self.read(stream, self._pending)
        events, self._pending = self._pending, []
        return events

    def read(self, stream: str, into: list) -> None:
        """Appends the stream's lines after those already read to ``into``; a failed request
        raises, with every line read before it appended and the position kept."""
        while True:
            kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if stream in self.tokens:
                kwargs["nextToken"] = self.tokens[stream]
            response = self.logs.get_log_events(**kwargs)
            for event in response.get("events", []):
                line = event["message"].rstrip()
                self.tail.append(line)
                into.append((float(event.get("timestamp", 0)), line))
            token = response.get("nextForwardToken")
            if token == self.tokens.get(stream):
                return
            self.tokens[stream] = token


def status_lines(job: str, description: dict, shown: int, last: str | None) -> list[str]:
    """The job's status when it changed (unless its newest secondary status says the same), then
    every secondary-status transition after the first ``shown``, with SageMaker's message. Several
    can pass between two polls (a spot interruption and the restart), and none is skipped."""
    transitions = (description.get("SecondaryStatusTransitions") or [])[shown:]
    status = description["TrainingJobStatus"]
    newest = transitions[-1]["Status"] if transitions else description.get("SecondaryStatus")
    lines = [f"[{job}] {status}"] if status not in (last, newest) else []
    for transition in transitions:
        message = transition.get("StatusMessage")
        lines.append(f"[{job}] {transition['Status']}" + (f": {message}" if message else ""))
    return lines


class StatusTracker:
    """What of a job's status is new since the last poll, each line once, with its time."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.shown = 0  # transitions printed
        self.last: str | None = None  # the job's status at the last poll

    def events(self, description: dict) -> list[tuple[float, str]]:
        transitions = (description.get("SecondaryStatusTransitions") or [])[self.shown :]
        lines = status_lines(self.job, description, self.shown, self.last)
        status = description["TrainingJobStatus"]
        own = len(lines) - len(transitions)  # the job's own status line, when it changed
        # It opens a poll's lines, or closes them once the job has ended.
        when = math.inf if status in TERMINAL else -math.inf
        events = [(when, line) for line in lines[:own]]
        events += [
            (_milliseconds(t.get("StartTime")), line)
            for t, line in zip(transitions, lines[own:], strict=True)
        ]
        self.shown += len(transitions)
        self.last = status
        return events


def _milliseconds(moment) -> float:
    if isinstance(moment, datetime):
        return moment.timestamp() * 1000
    return -math.inf  # no time given: before the poll's log lines


class TrainingWatch:
    """A training job's news: its status transitions and log lines, each once."""

    poll_seconds = 15.0  # how often a training job is asked for news; --poll-seconds changes it

    def __init__(self, session: boto3.Session, name: str) -> None:
        self.tracker = StatusTracker(name)
        self.logs = LogFollower(session, name)
        self.children: list[dict] = []

    def news(self, sm, description: dict, outage: Outage) -> list[tuple[float, str]]:
        # The log is read after the job's status, so every line it wrote comes before its final
        # status.
        events = outage.run(self.logs.poll)
        return self.tracker.events(description) + events

    @property
    def tail(self) -> list[str]:
        return list(self.logs.tail)


def training_jobs(sm, name: str, ride_out: bool = False) -> list[dict]:
    """Every training job a tuning job started, with its hyperparameters and objective.
    ``ride_out``: a transient failure is raised as it is (see JobKind.describe)."""
    jobs = []
    try:
        paginator = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
        for page in paginator.paginate(HyperParameterTuningJobName=name):
            jobs.extend(page.get("TrainingJobSummaries", []))
    except AWS_OR_NETWORK_ERRORS as error:
        if ride_out and is_transient(error):
            raise
        raise aws_error(error, f"listing the training jobs of {name}") from error
    return sorted(jobs, key=lambda job: job.get("TrainingJobName", ""))


class TuningWatch:
    """A tuning job's news: each training job's status and objective when it changes, and the
    tuning job's own status once it has ended."""

    poll_seconds = 30.0  # how often a tuning job is asked for news; --poll-seconds changes it

    def __init__(self, session: boto3.Session, name: str) -> None:
        self.name = name
        self.seen: dict[str, tuple] = {}
        self.children: list[dict] = []
        self.tail: list[str] = []

    def news(self, sm, description: dict, outage: Outage) -> list[tuple[float, str]]:
        self.children = outage.run(lambda: training_jobs(sm, self.name, ride_out=True))
        lines = []
        for job in self.children:
            state = (job.get("TrainingJobStatus"), objective_of(job), job.get("FailureReason"))
            if self.seen.get(job["TrainingJobName"]) != state:
                self.seen[job["TrainingJobName"]] = state
                objective = "—" if state[1] is None else f"{state[1]:.4f}"
                lines.append(
                    f"[{self.name}] {job['TrainingJobName']}: {state[0]}, {TUNING_OBJECTIVE} "
                    f"{objective}" + (f" — {reason_line(state[2])}" if state[2] else "")
                )
        status = description[TUNING_JOB.status_key]
        if status in TERMINAL:
            lines.append(f"[{self.name}] {status}")
        return [(-math.inf, line) for line in lines]


WATCHES = {TRAINING_JOB: TrainingWatch, TUNING_JOB: TuningWatch}


def follow(
    kind: JobKind,
    session: boto3.Session,
    name: str,
    poll_seconds: float | None = None,
    write=print,
    reconnect_minutes: float = RECONNECT_MINUTES,
    reached: bool = False,
    clock=time,
    give_up=None,
) -> JobEnd:
    """Prints the job's news in the order it happened until the job ends. A lost connection is
    ridden out for ``reconnect_minutes`` (outage.py); ``reached``: AWS answered this run already
    (it submitted the job); ``clock``: what it waits with between polls; ``give_up``: given the
    job's description, why to stop it now (failover.py's capacity wait), or None.

    Ctrl-C asks whether to stop the job (it would otherwise keep running and billing)."""
    sm = session.client("sagemaker", config=aws.FOLLOWING)
    watch = WATCHES[kind](session, name)
    outage = Outage(name, kind.results_command(name), reconnect_minutes, write, reached=reached)
    gave_up = None
    try:
        while True:
            description = outage.run(lambda: kind.describe(sm, name, ride_out=True))
            for _, line in sorted(watch.news(sm, description, outage), key=lambda e: e[0]):
                write(line)
            if description[kind.status_key] in TERMINAL:
                return JobEnd(kind, description, watch.children, watch.tail, gave_up)
            if give_up and gave_up is None:
                gave_up = give_up(description)
                if gave_up:
                    write(f"[{name}] {gave_up}: stopping it")
                    stop_quietly(sm, kind, name)
            clock.sleep(poll_seconds or watch.poll_seconds)
    except KeyboardInterrupt:
        raise stopped_following(sm, kind, name) from None


def stop_quietly(sm, kind: JobKind, name: str) -> None:
    """Stops the job; one that has ended meanwhile needs no stop."""
    try:
        kind.stop(sm, name)
    except AWS_OR_NETWORK_ERRORS as error:
        if error_code(error) != "ValidationException":
            raise aws_error(error, f"stopping {name}") from error


def offer_stop(sm, kind: JobKind, name: str) -> None:
    """After Ctrl-C: ask whether to stop the job (it keeps running and billing otherwise).
    Every outcome is one line: no terminal, no answer, a refusal, or a stop that fails."""
    keeps_running = f"{name} keeps running; stop it with `{kind.stop_command(name)}`"
    if not sys.stdin.isatty():
        print(f"\n{keeps_running}")
        return
    prompt = f"\nStop {kind.noun} {name}? It keeps running (and billing) otherwise [y/N] "
    try:
        answer = input(prompt)
    except (EOFError, KeyboardInterrupt):
        print(f"\n{keeps_running}")
        return
    if answer.strip().lower() not in ("y", "yes"):
        print(keeps_running)
        return
    try:
        kind.stop(sm, name)
    except AWS_OR_NETWORK_ERRORS as error:
        if error_code(error) == "ValidationException":
            print(f"{name} could not be stopped: {one_line(error)} (it may have ended already)")
        else:
            print(f"{name} could not be stopped: {aws_error(error, 'stopping it')}")
        return
    print(f"stop requested for {name}")


def stopped_following(sm, kind: JobKind, name: str) -> Interrupted:
    """Ctrl-C while following: offer to stop the job, then say how to pick it up again."""
    offer_stop(sm, kind, name)
    command = kind.results_command(name)
    return Interrupted(f"stopped following {name}; pick it up again with `{command}`")


def explain_failure(description: dict, log_tail: list[str]) -> UserError:
    job = description["TrainingJobName"]
    status = description["TrainingJobStatus"]
    reason = description.get("FailureReason") or "no FailureReason given"
    tail = "\n".join("    " + line for line in log_tail[-10:])
    return UserError(
        f"training job {job} {status}: {reason}"
        + (f"\n  last log lines:\n{tail}" if tail else "\n  (no log lines were found)")
    )
