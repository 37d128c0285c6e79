"""Results: a finished job's artifacts pulled back into ``runs/<job>/`` with its report."""

import contextlib
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
from training.common.sagemaker import TERMINAL, TRAINING_JOB
from training.launch import common
from training.launch.capacity import lookup
from training.launch.experiments import available, from_hyperparameter, load
from training.launch.follow import JobEnd, explain_failure
from training.report import tracking
from training.report.results import RunInfo, unpack_artifacts, write_report


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


def run_info(description: dict) -> RunInfo:
    job = description["TrainingJobName"]
    resources = description["ResourceConfig"]
    environment = description.get("Environment", {})
    billable = description.get("BillableTimeInSeconds")
    instance = lookup(resources["InstanceType"])
    experiment = environment.get("VGG_EXPERIMENT") or sagemaker.experiment_of(job)
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
        git_commit=environment.get("VGG_GIT_COMMIT", "unknown"),
        dataset_digest=from_hyperparameter(digest),
        training_seconds=description.get("TrainingTimeInSeconds"),
        billable_seconds=billable,
        # Billable seconds already net out the spot saving; the rate is the on-demand one.
        cost_usd=None
        if billable is None
        else billable / 3600 * instance.price_per_hour * resources["InstanceCount"],
        extra={"job_arn": description.get("TrainingJobArn")},
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


def fetch_results(
    session: boto3.Session,
    job: str,
    runs_dir: Path = common.RUNS_DIR,
    end: JobEnd | None = None,
) -> Path:
    """Downloads model.tar.gz and output.tar.gz, unpacks them and writes the report into
    ``runs/<job>/``, which appears only once all of it succeeded. A stopped job's results are
    fetched when it saved a model before the stop, as SageMaker keeps what the job wrote."""
    end = end or JobEnd(TRAINING_JOB.describe(session.client("sagemaker"), job), [])
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
