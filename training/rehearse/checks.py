"""What a rehearsal checks after the commands ran, from what they left: the run folders, the jobs
as SageMaker describes them, their artifacts in S3 and their records in MLflow. Every check that
fails raises UserError naming the job and what was wrong."""

import csv
import io
import json
import os
import tarfile
from contextlib import contextmanager
from pathlib import Path

import boto3
from vgg_transfer.contract import (
    FINE_TUNED,
    HISTORY_FILE,
    MODEL_ARCHIVE,
    MODEL_FILE,
    OUTPUT_ARCHIVE,
)

from training.common import aws
from training.common.aws import split_s3_uri
from training.common.errors import UserError
from training.rehearse.shell import Ran
from training.report import tracking
from training.report.mlflow_server import TRACKING_ENV, tracking_uri


@contextmanager
def signed_as_launcher(env: dict[str, str]):
    """This process's AWS requests go to the stand-in as the launcher user, and its MLflow
    client to the commands' MLflow, meanwhile."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_") or k == TRACKING_ENV})
    boto3.setup_default_session()  # MLflow's S3 client signs with the default session's keys
    try:
        yield aws.session()  # the project's retries: the stand-in throttles as AWS does
    finally:
        os.environ.clear()
        os.environ.update(saved)
        boto3.setup_default_session()


def succeeded(ran: Ran, what: str) -> Ran:
    if ran.code != 0:
        raise UserError(f"{what}: `{ran.command}` exited {ran.code}; see its output above")
    return ran


def epochs_once(*outputs: Ran) -> None:
    """No epoch of a phase is printed by two commands: each job trains only what the ones before
    it left unfinished."""
    seen: dict[tuple, str] = {}
    for ran in outputs:
        for epoch in set(ran.epochs()):
            if epoch in seen:
                raise UserError(
                    f"{epoch[0]} epoch {epoch[1]} was trained by `{seen[epoch]}` and again by "
                    f"`{ran.command}`"
                )
            seen[epoch] = ran.command


def report_of(runs: Path, job: str) -> dict:
    path = runs / job / "report.json"
    if not path.exists():
        raise UserError(f"no report for {job}: {path} is missing")
    return json.loads(path.read_text())


def cost_line(report: dict) -> str:
    return (
        f"on AWS it would have billed {report['billable_seconds']} s of "
        f"{report['instance_count']}x {report['instance_type']} ≈ ${report['cost_usd']:.4f} at the "
        "on-demand rate"
    )


# --- tuning --------------------------------------------------------------------------------------
def artifacts_of(session: boto3.Session, job: str) -> tuple[list[str], list[dict]]:
    """(the files in a training job's model.tar.gz, the rows of its history.csv), from S3."""
    description = session.client("sagemaker").describe_training_job(TrainingJobName=job)
    bucket, key = split_s3_uri(description["ModelArtifacts"]["S3ModelArtifacts"])
    s3 = session.client("s3")

    def archive(name: str) -> tarfile.TarFile:
        body = s3.get_object(Bucket=bucket, Key=key.rsplit("/", 1)[0] + f"/{name}")["Body"]
        return tarfile.open(fileobj=io.BytesIO(body.read()))

    with archive(MODEL_ARCHIVE) as model, archive(OUTPUT_ARCHIVE) as output:
        files = model.getnames()
        history = output.extractfile(HISTORY_FILE).read().decode()
    return files, list(csv.DictReader(io.StringIO(history)))


def toolkit_lines(log: Path) -> list[str]:
    """AWS's toolkit's own lines that show it ran train.py: the command and the verdict."""
    lines = log.read_text().splitlines()
    shown = []
    for index, line in enumerate(lines):
        if "Invoking script with the following command" in line:
            shown += lines[index : index + 2]  # the command follows on the next line
        elif "sagemaker-training-toolkit" in line and "Reporting training" in line:
            shown.append(line)
    return shown


def tuning_jobs(session: boto3.Session, summary: dict, logs: Path, write=print) -> None:
    """Job by job: AWS's toolkit ran train.py, model.tar.gz holds the model, and the objective is
    the best fine-tuned val_accuracy of the job's own history.csv."""
    write("the rehearsal checks each training job:")
    problems = []
    for row in summary["training_jobs"]:
        job, objective = row["training_job"], row["objective"]
        for line in toolkit_lines(logs / f"{job}.log"):
            write(f"  {job} | {line[:160]}")
        if row["status"] != "Completed":
            write(f"  {job}: {row['status']}, not checked")
            continue
        files, history = artifacts_of(session, job)
        best = max(float(r["val_accuracy"]) for r in history if r["phase"] == FINE_TUNED)
        same = objective is not None and abs(objective - best) < 1e-6
        write(
            f"  {job}: {MODEL_ARCHIVE} holds {', '.join(files)}; objective "
            f"{'—' if objective is None else f'{objective:.6f}'}, best fine-tuned val_accuracy "
            f"in history.csv {best:.6f} {'✓' if same else '✗'}"
        )
        if MODEL_FILE not in files or not same:
            problems.append(job)
    if problems:
        raise UserError(f"the rehearsal found wrong artifacts or objectives: {', '.join(problems)}")


def tuning_record(summary: dict, write=print) -> None:
    """The tuning job in MLflow: a parent run, and a child run per training job holding the
    objective tuning.json has for it."""
    name, objective = summary["tuning_job"], summary["objective"]
    recorded = tracking.tuning_record(name, objective)
    if recorded is None:
        raise UserError(f"tuning job {name} is not recorded in MLflow at {tracking_uri()}")
    parent, children = recorded
    write(f"MLflow ({tracking_uri()}): tuning job {name} is run {parent}, its children:")
    problems = []
    for row in summary["training_jobs"]:
        job, expected = row["training_job"], row["objective"]
        found = children.get(job, "no child run")
        same = found == expected or (
            isinstance(found, float) and expected is not None and abs(found - expected) < 1e-9
        )
        write(f"  {job}: {objective} {found} {'✓' if same else f'✗ (tuning.json: {expected})'}")
        if not same:
            problems.append(job)
    if problems or len(children) != len(summary["training_jobs"]):
        raise UserError(f"MLflow's record of {name} differs from tuning.json: {problems}")


def tuning_results(env: dict, runs: Path, name: str, splits: Path, write=print,
                   recorded: bool = True) -> str:  # fmt: skip
    """Every check of a tuning job's results (``recorded=False``: but its MLflow record, which
    a TRACK=server rehearsal checks once it is repaired); returns a summary line."""
    folder = runs / name
    summary = json.loads((folder / "tuning.json").read_text())
    with signed_as_launcher(env) as session:
        tuning_jobs(session, summary, folder / "logs", write)
        billed = sum(
            session.client("sagemaker")
            .describe_training_job(TrainingJobName=row["training_job"])
            .get("BillableTimeInSeconds") or 0
            for row in summary["training_jobs"]
        )  # fmt: skip
        if recorded:
            tuning_record(summary, write)
    fetched = summary.get("fetched_training_job")
    if fetched:
        write(f"next: make predict RUN={runs / fetched} IMAGES={splits / 'test'}   "
              "(the best job's model on the rehearsal's test images)")  # fmt: skip
    jobs = len(summary["training_jobs"])
    return f"{jobs} training jobs checked, {billed} s billed in all, best {fetched}"
