"""``make standin-up`` / ``make standin-down``: the SageMaker stand-in kept up as a service on
127.0.0.1, one emulated account that every command meets, in any order, from any shell.

    python -m training.standin.service up [--stack standin] [--interrupt [early]]
    python -m training.standin.service down

``up`` starts a background process that holds a moto server and the stand-in (training/standin/)
with IAM enforced (iam.py) and AWS's request rates (throttle.py), creates the stack's bucket,
execution role, launcher policy and launcher user from the Pulumi program's own policy
documents (account.py), and writes:
- ``.infra/<stack>.json``, the stack's outputs, as ``make infra-up`` writes them;
- ``.standin/env``, shell ``export`` lines: the endpoint, the launcher user's keys, the region and
  ``STACK``; after ``source .standin/env`` every make target runs unchanged against the account.

Jobs, logs, checkpoints and artifacts live as long as the service (its job volumes under
``.standin/jobs/``, its own output in ``.standin/service.log``). ``down`` stops the jobs that
still run, as StopTrainingJob would, then the service, and removes the two files above.
"""

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from training.common.errors import UserError, cli
from training.common.infra_outputs import INFRA_DIR, outputs_path

STATE_DIR = Path(".standin")
STACK = "standin"
START_SECONDS = 120  # moto's import and the stack's creation take a few seconds
STOP_SECONDS = 180  # each running job gets SIGTERM and a grace period, as on SageMaker


@dataclass(frozen=True)
class Files:
    """Where a service keeps its state: ``state`` (default .standin/) and the infra outputs."""

    state: Path = STATE_DIR
    infra: Path = INFRA_DIR

    @property
    def env(self) -> Path:
        return self.state / "env"

    @property
    def record(self) -> Path:  # pid, endpoint, stack: written once the service is ready
        return self.state / "service.json"

    @property
    def log(self) -> Path:
        return self.state / "service.log"

    @property
    def jobs(self) -> Path:
        return self.state / "jobs"


def running(files: Files) -> dict | None:
    """The running service's record, or None (a record whose process is gone is removed)."""
    try:
        record = json.loads(files.record.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(record["pid"], 0)
    except (ProcessLookupError, PermissionError, KeyError, TypeError):
        files.record.unlink(missing_ok=True)
        return None
    return record


def env_lines(shell: dict[str, str], record: dict) -> str:
    from training.standin.account import FOREIGN_SETTINGS

    lines = [
        f"# The SageMaker stand-in on {record['endpoint']} (pid {record['pid']}), stack "
        f"{record['stack']}: `source {Files().env}`, then any make target. make standin-down "
        "stops it.",
        f"unset {' '.join(FOREIGN_SETTINGS)}",
        *(f"export {name}={shlex.quote(value)}" for name, value in shell.items()),
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


# --- the service process ------------------------------------------------------------------------
def serve(stack: str, files: Files, interrupt: str | None, port: int, pace: float = 1.0,
          capacity_fail: tuple[str, ...] = ()) -> int:  # fmt: skip
    """Holds the account until SIGTERM or SIGINT (``down``, or Ctrl-C on a foreground serve)."""
    from training.standin import Interruption, StandIn
    from training.standin.account import (
        FOREIGN_SETTINGS,
        admin_environment,
        admin_keys,
        create_stack,
        launcher_keys,
        shell_environment,
        start_emulator,
    )
    from training.standin.iam import enforced
    from training.standin.throttle import Throttle

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = start_emulator(port)
    endpoint = f"http://127.0.0.1:{port}"
    for name in FOREIGN_SETTINGS:  # this process is the service's alone: it acts as the admin
        os.environ.pop(name, None)
    os.environ.update(admin_environment(endpoint))
    create_stack(stack, files.infra)
    shell = shell_environment(endpoint, launcher_keys(stack), stack)
    interruption = Interruption(interrupt) if interrupt else None
    throttle = Throttle(scale=pace)
    stand_in = StandIn(endpoint, files.jobs, interruption=interruption, throttle=throttle,
                       capacity_fail=frozenset(capacity_fail)).start()  # fmt: skip
    # The administrator's keys stay in the record (not in env): a rehearsal acts as a team's
    # admin with them, where a person would (creating an MLflow artifact bucket).
    record = {"pid": os.getpid(), "endpoint": endpoint, "stack": stack, "started": time.time(),
              "admin": admin_keys(stack)}  # fmt: skip
    try:
        with enforced():  # from here every request is checked against its caller's policies
            write_atomically(files.env, env_lines(shell, record))
            write_atomically(files.record, json.dumps(record))
            print(f"[stand-in] up on {endpoint}, stack {stack}", flush=True)
            stop.wait()
            print("[stand-in] stopping: every job that still runs is stopped", flush=True)
            stand_in.halt()
            print(f"[stand-in] {throttle.summary()}", flush=True)
    finally:
        stand_in.stop()
        for path in (files.record, files.env, outputs_path(stack, files.infra)):
            path.unlink(missing_ok=True)
        server.stop()
    print("[stand-in] down", flush=True)
    return 0


# --- up and down --------------------------------------------------------------------------------
def up(stack: str, files: Files, interrupt: str | None = None, pace: float = 1.0,
       capacity_fail: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Starts the service in the background unless one runs; returns its record.
    ``capacity_fail``: instance types with no capacity (CAPACITY_FAIL): an on-demand job fails
    at start, a spot job waits until it is stopped or its max wait runs out."""
    from training.standin.account import free_port
    from training.standin.containers import check_can_run

    record = running(files)
    if record:
        if record["stack"] != stack:
            raise UserError(
                f"a stand-in for stack {record['stack']} already runs on {record['endpoint']} "
                f"(pid {record['pid']}): make standin-down first"
            )
        print(f"a stand-in already runs on {record['endpoint']} (pid {record['pid']}), stack "
              f"{stack}: `source {files.env}` to use it (make standin-down stops it)")  # fmt: skip
        return record
    try:
        check_can_run()
    except RuntimeError as error:
        raise UserError(str(error)) from error
    files.state.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "training.standin.service", "serve", "--stack", stack,
               "--state", str(files.state), "--infra", str(files.infra),
               "--port", str(free_port())]  # fmt: skip
    if interrupt:
        command += ["--interrupt", interrupt]
    if pace != 1.0:
        command += ["--pace", str(pace)]
    if capacity_fail:
        command += ["--capacity-fail", ",".join(capacity_fail)]
    with files.log.open("a") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + START_SECONDS
    while time.time() < deadline:
        record = running(files)
        if record and record["pid"] == process.pid:
            return record
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    tail = files.log.read_text().strip().splitlines()[-5:]
    raise UserError(
        f"the stand-in did not start (see {files.log}): " + " | ".join(tail or ["no output"])
    )


def describe(record: dict, files: Files) -> str:
    from training.standin.account import StackNames

    names = StackNames(record["stack"])
    return f"""stand-in up on {record["endpoint"]} (pid {record["pid"]}; its log: {files.log})
  one emulated account, IAM enforced, AWS's request rates: bucket {names.bucket}, execution role
  {names.role}, launcher user {names.launcher} holding the launcher policy alone; the stack's
  outputs are in {outputs_path(record["stack"], files.infra)}
use it from any shell:
  source {files.env}          # endpoint, the launcher's keys, region, STACK={record["stack"]}
  make train-cloud EXPERIMENT=smoke DETACH=1; make results JOB=<the job it names>
  make tune EXPERIMENT=smoke DETACH=1; make tune-results TUNING_JOB=<…>; make report; make track
not emulated: your quotas and the Price List (the launcher says so), spot prices, the images
themselves (.venv and .venv-compat play them); see the README's "Rehearse before you pay".
make standin-down stops it, with every job, log and checkpoint it holds."""


def down(files: Files) -> str:
    record = running(files)
    if record is None:
        return "no stand-in runs: nothing to stop"
    os.kill(record["pid"], signal.SIGTERM)
    deadline = time.time() + STOP_SECONDS
    while time.time() < deadline:
        if running(files) is None and not _alive(record["pid"]):
            return f"stand-in on {record['endpoint']} stopped, with every job it held"
        time.sleep(0.2)
    os.kill(record["pid"], signal.SIGKILL)
    files.record.unlink(missing_ok=True)
    files.env.unlink(missing_ok=True)
    return (f"stand-in (pid {record['pid']}) did not stop within {STOP_SECONDS} s and was killed; "
            f"see {files.log}")  # fmt: skip


def _alive(pid: int) -> bool:
    try:  # a service this process started (make rehearse) is its child: reap it once it ends
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def add_interrupt_option(parser: argparse.ArgumentParser) -> None:
    """INTERRUPT=1 (or early): the stand-in's one spot reclaim (jobs.Interruption)."""
    parser.add_argument(
        "--interrupt",
        nargs="?",
        const="checkpoint",
        choices=["checkpoint", "early"],
        help="reclaim the first spot job once a fine-tuning epoch is in S3 (early: before)",
    )


def instance_types(text: str) -> tuple[str, ...]:
    """CAPACITY_FAIL=ml.g5.xlarge,…: each a type of the instance table."""
    from training.common.instances import lookup, names

    try:
        return tuple(lookup(name).name for name in names(text))
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "serve", "down"):
        sub = commands.add_parser(name)
        sub.add_argument("--state", type=Path, default=STATE_DIR)
        sub.add_argument("--infra", type=Path, default=INFRA_DIR)
        if name != "down":
            sub.add_argument("--stack", default=STACK)
            add_interrupt_option(sub)
            sub.add_argument(
                "--pace",
                type=float,
                default=1.0,
                help="AWS's request rates times this (below 1: throttles sooner, for tests)",
            )
            sub.add_argument(
                "--capacity-fail",
                type=instance_types,
                default=(),
                help="instance types without capacity: on-demand jobs fail, spot jobs wait",
            )
    commands.choices["serve"].add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    files = Files(args.state, args.infra)
    if args.command == "serve":
        return serve(args.stack, files, args.interrupt, args.port, args.pace, args.capacity_fail)
    if args.command == "up":
        print(describe(up(args.stack, files, args.interrupt, args.pace, args.capacity_fail), files))
        return 0
    print(down(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
