"""The sequences of commands people run, each against an emulated account of its own (the
stand-in kept up as a service, training/standin/service.py), with what each must show.

- ``run``: ``make train-cloud`` (``TUNE=1``: ``make tune``), as one command;
- ``detach``: ``make train-cloud DETACH=1``, then ``make results JOB=…``;
- ``max-runtime``: a run stopped by ``MaxRuntimeExceeded``, then the same command again, which
  resumes and finishes;
- ``tune-detach``: ``make tune DETACH=1``, then ``make tune-results TUNING_JOB=…``;
- ``ctrl-c``: Ctrl-C while following, "y" to stop the job, then the same command again, which
  resumes and finishes.

Across the commands of a sequence no epoch is trained twice: a job that resumes trains only
what the one before it left unfinished.
"""

import contextlib
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training.common.errors import UserError
from training.rehearse import checks, records
from training.rehearse.shell import REPO, Ctrl_C, Ran, Shell
from training.report.mlflow_server import TRACKING_ENV

STACK = "rehearse"  # each scenario's account has the stack's resources under this name
POLL_SECONDS = 1  # the emulator is on this machine: no rate limit to spare a poll
CAPACITY_WAIT_MINUTES = 0.1  # a spot job's wait for capacity (the stand-in's never ends)


@dataclass
class Rehearsal:
    """What ``make rehearse`` was asked for; the defaults are the plain smoke rehearsal."""

    experiment: str = "smoke"
    overrides: list[str] = field(default_factory=list)
    interrupt: str | None = None  # "checkpoint" or "early" (the service's spot reclaim)
    instance_count: int = 1
    tune: bool = False
    max_jobs: int = 3
    parallel: int = 2
    max_runtime_minutes: float | None = None
    splits: Path = Path("data/splits")
    runs: Path = Path("runs/rehearse")
    stack: str = STACK
    pace: float = 1.0  # AWS's request rates times this (tests throttle sooner)
    track: str | None = None  # "server": record in a team's MLflow server (records.py)
    instance: str | None = None  # INSTANCE: the candidates (default: the experiment's type)
    spot: str | None = None  # SPOT
    capacity_fail: tuple[str, ...] = ()  # CAPACITY_FAIL: types the stand-in has no capacity for
    capacity_wait_minutes: float = CAPACITY_WAIT_MINUTES

    def settings(self, **extra) -> dict:
        """The make settings every command of a scenario takes, and ``extra``."""
        settings = {
            "EXPERIMENT": self.experiment,
            "HP": " ".join(self.overrides) or None,
            "SPLITS": self.splits.resolve(),
            "RUNS": self.runs.resolve(),
            "POLL_SECONDS": POLL_SECONDS,
            "INSTANCE_COUNT": self.instance_count if self.instance_count > 1 else None,
            "INSTANCE": self.instance,
            "SPOT": self.spot,
        }
        return {**settings, **extra}

    def training(self, **extra) -> dict:
        """make train-cloud's settings: a spot job's wait for capacity too."""
        return self.settings(CAPACITY_WAIT=self.capacity_wait_minutes, **extra)

    def tuning(self, **extra) -> dict:
        return self.settings(MAX_JOBS=self.max_jobs, PARALLEL=self.parallel, **extra)


# --- the scenarios ---------------------------------------------------------------------------------
def run(shell: Shell, plan: Rehearsal) -> str:
    if plan.tune:
        ran = checks.succeeded(
            shell.make("tune", **plan.tuning(MAX_RUNTIME_MINUTES=plan.max_runtime_minutes)),
            "make tune",
        )
        name = ran.submitted()
        return f"{name}: " + checks.tuning_results(shell.env, plan.runs, name, plan.splits,
                                                   recorded=not plan.track)  # fmt: skip
    ran = shell.make("train-cloud", **plan.training(MAX_RUNTIME_MINUTES=plan.max_runtime_minutes))
    checks.succeeded(ran, "make train-cloud")
    job = ran.submitted()
    if plan.interrupt:
        if not ran.says("] Interrupted: "):
            raise UserError(f"{job} was not interrupted: the spot reclaim never came")
        if plan.interrupt == "checkpoint":  # "early" may train its epoch again, as on AWS
            checks.epochs_once(*_split_at_restart(ran))
    report = checks.report_of(plan.runs, job)
    attempts = report.get("attempts") or []
    where = f" on {report['instance_type']}" + (
        f" (attempt {len(attempts)}: {'; '.join(a['instance_type'] + ' ' + a['ended'] for a in attempts[:-1])})"
        if len(attempts) > 1 else "")  # fmt: skip
    return f"{job}: {report['status']}{where}, " + checks.cost_line(report)


def _split_at_restart(ran: Ran) -> list[Ran]:
    """One command's output, cut where the spot restart began: the attempts before and after."""
    marker = ran.output.find("] Interrupted: ")
    return [Ran(f"{ran.command} (before the reclaim)", ran.code, ran.output[:marker]),
            Ran(f"{ran.command} (after the restart)", ran.code, ran.output[marker:])]  # fmt: skip


def detach(shell: Shell, plan: Rehearsal) -> str:
    submitted = checks.succeeded(shell.make("train-cloud", **plan.training(DETACH=1)), "DETACH=1")
    job = submitted.submitted()
    if submitted.epochs():
        raise UserError(f"make train-cloud DETACH=1 followed {job} instead of returning")
    fetched = checks.succeeded(shell.make("results", JOB=job, **plan.settings()), "make results")
    report = checks.report_of(plan.runs, job)
    return (f"DETACH=1 submitted {job}; make results followed it to {report['status']} "
            f"({len(fetched.epochs())} epoch lines) and wrote its report")  # fmt: skip


FIRST_LIMIT_MINUTES = 0.5  # a first guess at a limit that stops the job after an epoch
LIMIT_STEP_MINUTES = 0.1  # shorter than the epochs after the first (smoke's, or a test's)
LIMIT_TRIES = 8


def max_runtime(shell: Shell, plan: Rehearsal) -> str:
    """The job is stopped past its limit once it finished an epoch; the same command without
    the limit then resumes it. The limit starts at ``MAX_RUNTIME_MINUTES`` (or a first guess)
    and grows by a step while the job is stopped before its first epoch (this machine's start-up
    is not known in advance)."""
    limit, stopped = plan.max_runtime_minutes or FIRST_LIMIT_MINUTES, []
    for _ in range(LIMIT_TRIES):
        ran = shell.make("train-cloud", **plan.training(MAX_RUNTIME_MINUTES=round(limit, 3)))
        if ran.code == 0:
            raise UserError(f"the job finished within MAX_RUNTIME_MINUTES={limit:g}: lower it")
        if not ran.says("] MaxRuntimeExceeded: "):
            raise UserError(f"`{ran.command}` failed without MaxRuntimeExceeded; see above")
        stopped.append(ran)
        if ran.epochs():
            break
        limit += LIMIT_STEP_MINUTES
    else:
        raise UserError(f"no job finished an epoch within {limit:g} min: raise MAX_RUNTIME_MINUTES")
    again = checks.succeeded(shell.make("train-cloud", **plan.training()), "the same command again")
    if not again.says("resuming the unfinished run"):
        raise UserError("the same command again did not resume the stopped run")
    checks.epochs_once(*stopped, again)
    job = again.submitted()
    done = len(stopped[-1].epochs())
    return (f"{stopped[-1].submitted()} stopped by MaxRuntimeExceeded at "
            f"MAX_RUNTIME_MINUTES={limit:g} after {done} epoch(s); the same command again: {job} "
            f"resumed, trained {len(again.epochs())} more, {checks.report_of(plan.runs, job)['status']}")  # fmt: skip


def tune_detach(shell: Shell, plan: Rehearsal) -> str:
    submitted = checks.succeeded(shell.make("tune", **plan.tuning(DETACH=1)), "make tune DETACH=1")
    name = submitted.submitted()
    checks.succeeded(shell.make("tune-results", TUNING_JOB=name, **plan.settings()),
                     "make tune-results")  # fmt: skip
    return f"make tune DETACH=1 submitted {name}; make tune-results: " + checks.tuning_results(
        shell.env, plan.runs, name, plan.splits, recorded=not plan.track
    )


def ctrl_c(shell: Shell, plan: Rehearsal) -> str:
    pressed = shell.make("train-cloud", ctrl_c=Ctrl_C(after="[epoch] phase="), **plan.settings())
    job = pressed.submitted()
    if not pressed.says(f"stop requested for {job}"):
        raise UserError(f"Ctrl-C and 'y' did not stop {job}; see above")
    again = checks.succeeded(shell.make("train-cloud", **plan.training()), "the same command again")
    if not again.says("resuming the unfinished run"):
        raise UserError("the same command again did not resume the stopped run")
    checks.epochs_once(pressed, again)
    resumed = again.submitted()
    return (
        f"Ctrl-C after {len(pressed.epochs())} epoch line(s), 'y' stopped {job}; the same "
        f"command again: {resumed} resumed, {checks.report_of(plan.runs, resumed)['status']}"
    )


SCENARIOS: dict[str, Callable[[Shell, Rehearsal], str]] = {
    "run": run,
    "detach": detach,
    "max-runtime": max_runtime,
    "tune-detach": tune_detach,
    "ctrl-c": ctrl_c,
}
ALL = "all"


# --- one emulated account per scenario -------------------------------------------------------------
def shell_variables(env_file: Path) -> dict[str, str]:
    """The variables ``source .standin/env`` exports."""
    variables = {}
    for line in env_file.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            variables[name] = value
    return variables


class LogTail(threading.Thread):
    """Shows the stand-in's own lines (a spot reclaim, a tuning job's start) as they come."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        super().__init__(daemon=True, name="standin-log")
        self.path, self.echo, self.done = path, echo, threading.Event()
        self.offset = path.stat().st_size if path.exists() else 0

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.flush()

    def flush(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as handle:
            handle.seek(self.offset)
            text = handle.read()
            self.offset = handle.tell()
        for line in text.splitlines():
            if line.startswith("[stand-in]") and " up on " not in line:
                self.echo(line)


def rehearse(name: str, plan: Rehearsal, echo: Callable[[str], None] = print) -> str:
    """Runs one scenario against a stand-in of its own; returns its summary line."""
    from training.standin import service
    from training.standin.account import command_environment

    files = service.Files(state=(plan.runs / ".standin" / name).resolve(), infra=REPO / ".infra")
    shutil.rmtree(files.state, ignore_errors=True)
    record = service.up(plan.stack, files, plan.interrupt, plan.pace, plan.capacity_fail)
    echo(f"[rehearse {name}] stand-in on {record['endpoint']}, stack {plan.stack}")
    tail = LogTail(files.log, echo)
    tail.start()
    shell = Shell(command_environment(shell_variables(files.env)), echo=echo)
    started = time.time()
    try:
        with contextlib.ExitStack() as stack:
            if plan.track:
                uri = stack.enter_context(records.team_server(files.state, plan.stack, echo))
                shell.env[TRACKING_ENV] = uri
            before = records.run_folders(plan.runs)
            summary = SCENARIOS[name](shell, plan)
            if plan.track:
                summary += "; " + records.repaired(shell, plan.runs, before, record["admin"],
                                                   plan.stack, echo)  # fmt: skip
    finally:
        said = service.down(files)
        tail.done.set()
        tail.join()
        tail.flush()  # the stand-in's last lines: what it stopped, what it throttled
        echo(f"[rehearse {name}] {said}")
    return f"{summary} ({time.time() - started:.0f} s)"
