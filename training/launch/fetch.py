"""Fetching what a job left, one verb for every kind of job (``fetch``), into ``runs/``:
- a training job: ``model.tar.gz`` and ``output.tar.gz`` unpacked into ``runs/<job>/`` with its
  report (training/report/results.py), which appears only once all of it succeeded;
- a tuning job: ``runs/<tuning job>/`` with the table, plot and every training job's log
  (training/report/tuning.py), and the best job's results fetched as a training job's are. When
  the best job was stopped before it saved a model, the best completed job's are fetched instead,
  and the table says so.
Each is then recorded in MLflow.
"""

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import boto3
from vgg_transfer.contract import MODEL_ARCHIVE, MODEL_FILE, OUTPUT_ARCHIVE

from training.common import sagemaker
from training.common.aws import split_s3_uri
from training.common.aws_errors import (
    AWS_ERRORS,
    AWS_OR_NETWORK_ERRORS,
    NOT_FOUND,
    aws_error,
    error_code,
)
from training.common.errors import UserError
from training.common.instances import lookup
from training.common.paths import RUNS_DIR
from training.common.sagemaker import TERMINAL, TRAINING_JOB, TUNING_JOB, JobKind
from training.launch.capacity import Price, table_price
from training.launch.experiments import available, from_hyperparameter, load
from training.launch.failover import report_rows
from training.launch.follow import JobEnd, LogFollower, explain_failure, training_jobs
from training.launch.outage import RECONNECT_MINUTES, Outage
from training.launch.staging import COMMIT_ENV, EXPERIMENT_ENV, PRICE_ENV, PRICE_SOURCE_ENV
from training.report import tracking, tuning
from training.report.results import RunInfo, unpack_artifacts, write_report


# --- a training job ------------------------------------------------------------------------------
def artifact_keys(description: dict) -> tuple[str, list[str]]:
    """(bucket, [model.tar.gz key, output.tar.gz key]) where the job wrote its artifacts."""
    job = description["TrainingJobName"]
    model_uri = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not model_uri:
        output_path = description["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        model_uri = f"{output_path}/{job}/output/{MODEL_ARCHIVE}"
    bucket, model_key = split_s3_uri(model_uri)
    return bucket, [model_key, model_key.rsplit("/", 1)[0] + f"/{OUTPUT_ARCHIVE}"]


KEPT = ".downloads"  # under the runs folder: archives of a fetch that did not finish, by job


def download_artifacts(session: boto3.Session, description: dict, target: Path, kept: Path) -> None:
    """model.tar.gz and output.tar.gz into ``target``. Each archive is downloaded into ``kept``
    first (whole, or not at all), with its ETag beside it, so a fetch cut off part-way downloads
    only what it lacks when it is re-run."""
    bucket, keys = artifact_keys(description)
    s3 = session.client("s3")
    etags, missing = {}, []
    for key in keys:
        try:
            etags[key] = s3.head_object(Bucket=bucket, Key=key)["ETag"]
        except AWS_ERRORS as error:
            if error_code(error) not in NOT_FOUND:
                raise aws_error(error, f"looking for s3://{bucket}/{key}") from error
            missing.append(f"s3://{bucket}/{key}")
    if missing:
        raise UserError(
            f"training job {description['TrainingJobName']} ended, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing (deleted, "
            "or removed by a lifecycle rule?); nothing was written under runs/"
        )
    kept.mkdir(parents=True, exist_ok=True)
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        archive, etag_file = kept / name, kept / f"{name}.etag"
        if archive.exists() and etag_file.exists() and etag_file.read_text() == etags[key]:
            print(f"[results] {name}: downloaded by an earlier try, not again")
        else:
            etag_file.unlink(missing_ok=True)
            try:  # s3transfer writes a temporary file and renames it when it is whole
                s3.download_file(bucket, key, str(archive))
            except AWS_OR_NETWORK_ERRORS as error:
                raise aws_error(error, f"downloading s3://{bucket}/{key}") from error
            etag_file.write_text(etags[key])
        shutil.copyfile(archive, target / name)


def launch_price(description: dict) -> Price:
    """The on-demand price preflight showed for the job (its description's Environment), or, for
    a job launched before prices were recorded there, the table's."""
    environment = description.get("Environment") or {}
    if PRICE_ENV in environment:
        return Price(float(environment[PRICE_ENV]), environment.get(PRICE_SOURCE_ENV, "?"))
    instance = lookup(description["ResourceConfig"]["InstanceType"])
    return table_price(instance, "the job recorded no price when it was launched")


def run_info(description: dict) -> RunInfo:
    job = description["TrainingJobName"]
    resources = description["ResourceConfig"]
    environment = description.get("Environment", {})
    billable = description.get("BillableTimeInSeconds")
    price = launch_price(description)
    attempts = report_rows(description, price.per_hour)  # this job's own row last
    experiment = environment.get(EXPERIMENT_ENV) or sagemaker.experiment_of(job)
    digest = description.get("HyperParameters", {}).get("dataset_digest", "")
    status = description["TrainingJobStatus"]
    if status != "Completed":
        status += f" ({description.get('SecondaryStatus')})"
    return RunInfo(
        job_name=job,
        mode="cloud",
        status=status,
        experiment=experiment,
        seed_reference=load(experiment).seed_reference if experiment in available() else None,
        instance_type=resources["InstanceType"],
        instance_count=resources["InstanceCount"],
        image_uri=description["AlgorithmSpecification"].get("TrainingImage", ""),
        git_commit=environment.get(COMMIT_ENV, "unknown"),
        dataset_digest=from_hyperparameter(digest),
        training_seconds=description.get("TrainingTimeInSeconds"),
        billable_seconds=billable,
        # Billable seconds already net out the spot saving; the rate is the on-demand one.
        cost_usd=None if billable is None else attempts[-1]["cost_usd"],
        extra={
            "job_arn": description.get("TrainingJobArn"),
            "price": vars(price),
            "attempts": attempts,
        },
    )


STOP_REMEDIES = {
    "MaxRuntimeExceeded": "raise its max runtime (MAX_RUNTIME_MINUTES=…, or max_runtime_minutes in "
    "the experiment file) and run the same command again: it resumes from the job's checkpoints",
    "MaxWaitTimeExceeded": "spot capacity did not come in time: raise max_wait_minutes in the "
    "experiment file, or try another INSTANCE or region, and run the same command again",
}


def explain_stop(description: dict) -> UserError:
    """A stopped job that saved no model, in one line."""
    job, reason = description["TrainingJobName"], description.get("SecondaryStatus", "Stopped")
    message = next(
        (t.get("StatusMessage") for t in reversed(description.get("SecondaryStatusTransitions")
                                                 or []) if t.get("Status") == reason),
        None,
    )  # fmt: skip
    seconds = description.get("TrainingTimeInSeconds")
    remedy = STOP_REMEDIES.get(
        reason, "it was stopped (StopTrainingJob, or a tuning job's early stopping)"
    )
    return UserError(
        f"training job {job} Stopped: {reason}"
        + (f" ({message})" if message else "")
        + (f" after {seconds} s" if seconds is not None else "")
        + f", before it saved a model; {remedy}"
    )


def fetch_training(
    session, job: str, runs_dir: Path, end: JobEnd | None = None, outage=None
) -> Path:
    """Downloads model.tar.gz and output.tar.gz, unpacks them and writes the report into
    ``runs/<job>/``, which appears only once all of it succeeded. A stopped job's results are
    fetched when it saved a model before the stop, as SageMaker keeps what the job wrote."""
    end = end or JobEnd(TRAINING_JOB, TRAINING_JOB.describe(session.client("sagemaker"), job))
    status = end.description["TrainingJobStatus"]
    if status == "Failed":
        raise explain_failure(end.description, end.log_tail)
    if status not in TERMINAL:
        raise UserError(f"training job {job} is still {status}; try again when it has finished")
    runs_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{job}.", dir=runs_dir))
    kept = runs_dir / KEPT / job
    try:
        download_artifacts(session, end.description, partial, kept)
        unpack_artifacts(partial)
        if status == "Stopped" and not (partial / "model" / MODEL_FILE).exists():
            raise explain_stop(end.description)
        write_report(partial, run_info(end.description))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    run_dir = runs_dir / job
    if run_dir.exists():
        shutil.rmtree(run_dir)
    partial.rename(run_dir)  # the report links its plots by relative names
    shutil.rmtree(kept, ignore_errors=True)
    with contextlib.suppress(OSError):
        kept.parent.rmdir()  # when no other fetch left archives there
    tracking.record_run(run_dir)
    return run_dir / "report.md"


# --- a tuning job ---------------------------------------------------------------------------------
def job_log(session: boto3.Session, job: str, outage: Outage) -> list[str]:
    """Every log line a training job wrote, stream by stream (hosts, restarts). Throttling and
    lost connections are ridden out (``outage``): CloudWatch Logs allows a few reads a second per
    account, and a tuning job's logs are read back to back."""
    follower = LogFollower(session, job, keep=0)
    lines = []
    for stream in outage.run(follower.streams):
        events: list = []
        outage.run(lambda stream=stream, events=events: follower.read(stream, events))
        lines += [f"=== {stream} ===", *(line for _, line in events)]
    return lines


def instance_types(session: boto3.Session, end: JobEnd, outage: Outage) -> dict[str, str]:
    """The type each training job ran on (with InstanceConfigs, the first with capacity)."""
    sm = session.client("sagemaker")
    types = {}
    for job in end.children:
        name = job["TrainingJobName"]
        described = outage.run(lambda name=name: TRAINING_JOB.describe(sm, name, ride_out=True))
        types[name] = described.get("ResourceConfig", {}).get("InstanceType")
    return types


def fetch_best(session: boto3.Session, summary: dict, runs_dir: Path):
    """The best job's results, or, when it was stopped before it saved a model, the best
    completed job's. Returns (its report, or None; the job fetched; a note for the table)."""
    rows = summary["training_jobs"]  # best objective first
    best = summary["best_training_job"]
    candidates = [best] if best else []
    candidates += [r["training_job"] for r in rows if r["status"] == "Completed" and
                   r["training_job"] != best and r["objective"] is not None]  # fmt: skip
    passed_over = []
    for job in candidates:
        try:
            report = fetch_training(session, job, runs_dir)
        except UserError as error:
            if job != best:
                raise
            passed_over.append(f"the best job {job} saved no model ({error})")
            continue
        note = (
            f"{'; '.join(passed_over)}; fetched the best completed job, {job}"
            if passed_over
            else ""
        )
        return json.loads(report.with_suffix(".json").read_text()), job, note
    note = "; ".join(passed_over) or "no training job reported the objective"
    return None, None, f"{note}: no model was fetched"


def fetch_tuning(
    session, name: str, runs_dir: Path, end: JobEnd | None = None, outage=None
) -> Path:
    """The table and plot of every training job, their logs, and the best job's results."""
    if end is None:
        sm = session.client("sagemaker")
        end = JobEnd(TUNING_JOB, TUNING_JOB.describe(sm, name), training_jobs(sm, name))
    outage = outage or Outage(name, TUNING_JOB.results_command(name), reached=True)
    summary = tuning.table(end.description, end.children, instance_types(session, end, outage))
    best_report, fetched, note = fetch_best(session, summary, runs_dir)
    summary.update(fetched_training_job=fetched, note=note)
    logs = {job["TrainingJobName"]: job_log(session, job["TrainingJobName"], outage)
            for job in end.children}  # fmt: skip
    path = tuning.write_results(runs_dir / name, summary, best_report, logs)
    tracking.record_tuning(runs_dir / name)
    if note:
        print(f"note: {note}")
    print(f"each training job's log: {runs_dir / name / 'logs'}/<training job>.log")
    if fetched:
        print(
            f"best model: make predict RUN={runs_dir / fetched} "
            "IMAGES=<a folder, an image, a zip, or kaggle for the competition's test.zip>"
        )
    return path


FETCHES = {TRAINING_JOB: fetch_training, TUNING_JOB: fetch_tuning}


def fetch(
    kind: JobKind,
    session: boto3.Session,
    name: str,
    runs_dir: Path = RUNS_DIR,
    end: JobEnd | None = None,
    reconnect_minutes: float = RECONNECT_MINUTES,
) -> Path:
    """What the job of ``kind`` left, under ``runs_dir``; returns its report (report.md, or the
    tuning job's tuning.md). ``end``: how following saw it end (else it is described now)."""
    outage = Outage(name, kind.results_command(name), reconnect_minutes, reached=True)
    return FETCHES[kind](session, name, runs_dir, end, outage)
