"""``make rehearse TRACK=server``: the runs recorded in a team's MLflow server, as teams keep one.

An ``mlflow server`` on 127.0.0.1 with ``--no-serve-artifacts`` and its artifact root in the emulated
account's S3 (the stack's mlflowArtifactUri): the commands record through it with the launcher's
keys alone, IAM enforced, so every artifact upload is checked against the launcher policy's grant.
The artifact bucket is created only after the scenario: its records fail at the first upload (one
line each, the commands still succeed), then the account's administrator creates the bucket, and
``make track`` must repair every record to one whole run per job.
"""

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3

from training.common.aws import split_s3_uri
from training.common.errors import UserError
from training.rehearse import checks
from training.rehearse.shell import Shell
from training.report import tracking
from training.report.mlflow_server import (
    TRACKING_ENV,
    client_for,
    start_server,
    stop_server,
    wait_until_up,
)
from training.standin.account import StackNames, free_port

TRACK_CHOICES = ("server",)


@contextlib.contextmanager
def team_server(state: Path, stack: str, echo: Callable[[str], None]) -> Iterator[str]:
    """The MLflow server for one scenario; yields its URI."""
    port = free_port()
    artifacts = StackNames(stack).mlflow_artifacts
    with (state / "mlflow-server.log").open("w") as log:
        process = start_server(f"sqlite:///{state / 'mlflow.db'}", port, artifacts,
                               serve_artifacts=False, log=log)  # fmt: skip
        try:
            uri = wait_until_up(process, port)
            echo(f"[rehearse] MLflow server on {uri}, artifacts in {artifacts}, whose bucket does "
                 "not exist yet: the scenario's records must fail at the upload")  # fmt: skip
            yield uri
        finally:
            stop_server(process)


def run_folders(runs: Path) -> set[Path]:
    return {
        *tracking.folders_with(runs, "report.json"),
        *tracking.folders_with(runs, "tuning.json"),
    }


def job_of(folder: Path) -> str:
    for name, key in (("report.json", "job_name"), ("tuning.json", "tuning_job")):
        if (folder / name).exists():
            return json.loads((folder / name).read_text())[key]
    raise UserError(f"{folder} holds neither report.json nor tuning.json")


def records_of(client, job: str) -> list:
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{tracking.JOB_TAG}` = '{job}'",
    )


def cut_short(env: dict, folders: list[Path], write=print) -> int:
    """How many of the scenario's jobs have no whole record: each is ended FAILED without a
    fingerprint (the upload failed), or was never begun (a tuning job's member, when the
    tuning job's own record failed first)."""
    with checks.signed_as_launcher(env):
        client = client_for()
        for folder in folders:
            job = job_of(folder)
            records = records_of(client, job)
            whole = [r for r in records if tracking.FINGERPRINT_TAG in r.data.tags]
            if whole or any(r.info.status != "FAILED" for r in records):
                raise UserError(
                    f"{job}: expected no record, or one ended FAILED at the upload (the artifact "
                    f"bucket is missing); found {[r.info.status for r in records]}, "
                    f"{len(whole)} whole"
                )
            write(f"  {job}: " + ("recorded FAILED, no fingerprint" if records else
                                  "not recorded (its tuning job's record failed first)") + " ✓")  # fmt: skip
    return len(folders)


def whole_records(env: dict, folders: list[Path], write=print) -> None:
    """One run per job, ended as its job ended, with its fingerprint and its files as artifacts
    in S3, read back as the launcher; a tuning job's children as tuning.json has them."""
    with checks.signed_as_launcher(env):
        client = client_for()
        for folder in folders:
            job = job_of(folder)
            records = records_of(client, job)
            if len(records) != 1:
                raise UserError(f"{job}: {len(records)} runs in MLflow after make track, not one")
            (run,) = records
            files = {item.path for item in client.list_artifacts(run.info.run_id)}
            expected = "tuning.md" if (folder / "tuning.json").exists() else "report.md"
            if tracking.FINGERPRINT_TAG not in run.data.tags or expected not in files:
                raise UserError(
                    f"{job}: its record is not whole after make track ({sorted(files)})"
                )
            write(f"  {job}: {run.info.status}, {len(files)} artifacts in "
                  f"{run.info.artifact_uri} ✓")  # fmt: skip
            if (folder / "tuning.json").exists():
                checks.tuning_record(json.loads((folder / "tuning.json").read_text()), write)


def repaired(shell: Shell, runs: Path, before: set[Path], admin: dict, stack: str,
             write=print) -> str:  # fmt: skip
    """After a scenario: its records failed at the upload; the bucket is created; make track
    repairs them. Returns a summary line."""
    folders = sorted(run_folders(runs) - before)
    if not folders:
        raise UserError(f"the scenario left no run folder under {runs} to record")
    write(f"MLflow ({shell.env[TRACKING_ENV]}), before the artifact bucket exists:")
    failed = cut_short(shell.env, folders, write)
    bucket, _ = split_s3_uri(StackNames(stack).mlflow_artifacts)
    boto3.client("s3", endpoint_url=shell.env["AWS_ENDPOINT_URL"],
                 region_name=shell.env["AWS_DEFAULT_REGION"],
                 aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)  # fmt: skip
    write(f"the account's administrator created bucket {bucket}; make track:")
    checks.succeeded(shell.make("track", RUNS=runs.resolve()), "make track")
    whole_records(shell.env, folders, write)
    return (f"{failed} record(s) failed at the upload while the bucket was missing; make track "
            "repaired each to one whole run, artifacts written with the launcher's keys")  # fmt: skip
