"""Every run in MLflow, recorded on the workstation from the files the run wrote, so that runs can be
compared where ML engineers compare them: curves overlaid, runs filtered by a hyperparameter, a
tuning job's trials side by side.

Which runs: ``make train-local``, ``make results``/``train-cloud``, ``make rehearse``, and every
training job of ``make tune``/``tune-results`` as a child of its tuning job's run; ``make track``
records whatever under runs/ is not recorded yet. One MLflow experiment per project experiment
(``smoke``, ``small``, ``full``). The job in the container knows nothing of MLflow.

Where: ``MLFLOW_TRACKING_URI`` when set (any MLflow server, or a SageMaker managed MLflow tracking
server's ARN, through the sagemaker-mlflow plugin), else the project's SQLite store
(``runs/mlflow.db``, artifacts in ``runs/mlartifacts``) whatever ``--runs`` a command was given,
so that one ``make ui`` on 127.0.0.1 shows them all. A run fetched from an AWS_ENDPOINT_URL
(``make rehearse``'s emulator) carries that endpoint as a tag.

A run is keyed by its job name: recording it again updates the same MLflow run, never a second
one. Nothing is lost when tracking fails: one line says so, the run's files are complete, and
``make track`` records them later.
"""

import argparse
import contextlib
import csv
import hashlib
import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

from vgg_transfer import contract
from vgg_transfer.contract import PHASES

from training.common.errors import UserError, cli
from training.common.paths import RUNS_DIR
from training.report.mlflow_server import (
    ARTIFACTS,
    UI_PORT,
    artifact_location,
    client_for,
    lacks_logged_models,
    quiet_mlflow,
    run_link,
    serve_ui,
    tracking_uri,
)

JOB_TAG = "vgg.job_name"  # what makes recording idempotent
FINGERPRINT_TAG = "vgg.fingerprint"  # the files' digest: unchanged files need no new record
MODEL_NAME = "vgg16-dogs-cats"  # the Model Registry's name for models logged with --log-model
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


# --- what a run's files say ----------------------------------------------------------------------
def read_history(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def epoch_metrics(history: list[dict]) -> list[tuple[str, float, int]]:
    """(metric, value, step) for every epoch of both phases on one step axis: fine-tuning
    continues the frozen phase's epochs, as in accuracy.png."""
    points, offset = [], 0
    for phase in PHASES:
        rows = [row for row in history if row["phase"] == phase]
        for row in rows:
            step = offset + int(float(row["epoch"]))
            points += [(name, float(row[name]), step) for name in CURVES if row.get(name) != ""]
        offset += len(rows)
    return points


def summary_metrics(report: dict) -> dict[str, float]:
    """Test loss and accuracy per phase, the seed's figure and the difference, seconds, cost."""
    metrics = {}
    for phase, row in report["phases"].items():
        metrics[f"{phase}.test_accuracy"] = row["test_accuracy"]
        metrics[f"{phase}.test_loss"] = row["test_loss"]
        metrics[f"{phase}.best_val_accuracy"] = row["best_val_accuracy"]
        if row.get("seed"):
            metrics[f"{phase}.seed_test_accuracy"] = row["seed"]["test_accuracy"]
            metrics[f"{phase}.test_accuracy_minus_seed"] = row["test_accuracy_minus_seed"]
    for key in ("training_seconds", "billable_seconds", "cost_usd"):
        if report.get(key) is not None:
            metrics[key] = report[key]
    return metrics


def run_params(report: dict) -> dict[str, str]:
    params = {key: str(value) for key, value in (report.get("config") or {}).items()}
    versions = report.get("versions") or {}
    params.update(
        instance_type=str(report["instance_type"]),
        instance_count=str(report["instance_count"]),
        image_uri=str(report["image_uri"]),
        dataset_digest=str(report["dataset_digest"]),
        git_commit=str(report["git_commit"]),
        tensorflow=str(versions.get("tensorflow")),
        keras=str(versions.get("keras")),
    )
    if report.get("attempts"):  # capacity failover (training/launch/failover.py)
        params["capacity_attempts"] = str(len(report["attempts"]))
    return params


def run_tags(report: dict) -> dict[str, str]:
    """The job's name, its SageMaker ARN (or "local"), status and console link."""
    from training.common.aws_errors import endpoint_override
    from training.common.sagemaker import TRAINING_JOB

    job, arn = report["job_name"], report.get("job_arn")
    tags = {JOB_TAG: job, "status": str(report.get("status", "Completed")), "mode": report["mode"],
            "sagemaker.arn": arn or "local"}  # fmt: skip
    for number, attempt in enumerate(report.get("attempts") or [], 1):
        tags[f"capacity.attempt_{number}"] = (
            f"{attempt['instance_type']} {'spot' if attempt['spot'] else 'on-demand'}: "
            f"{attempt['ended']}; waited {attempt['waited_seconds'] / 60:.1f} min, billed "
            f"{attempt['billable_seconds']:.0f} s, ${attempt['cost_usd']:.2f}"
        )
    if arn:
        tags["sagemaker.console"] = TRAINING_JOB.console_url(arn.split(":")[3], job)
        endpoint = endpoint_override("sagemaker")
        if endpoint:  # not AWS: make rehearse's emulator, or another stand-in
            tags["aws.endpoint_url"] = endpoint
    return tags


def fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# --- MLflow ---------------------------------------------------------------------------------------
# MLflow 3's UI opens an experiment without this tag as a GenAI one (traces, sessions); ours
# are model training runs, shown as a runs table and metric charts.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(
            name, artifact_location=artifact_location(), tags=EXPERIMENT_KIND
        )
    for key, value in EXPERIMENT_KIND.items():
        if key not in found.tags:  # recorded before the tag was set
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def existing_run(client, experiment: str, job: str):
    found = client.search_runs([experiment], filter_string=f"tags.`{JOB_TAG}` = '{job}'")
    return found[0] if found else None


def fresh_run(client, experiment: str, job: str, parent: str | None = None, start_ms=None):
    """The MLflow run of ``job``, made anew: an older record of it goes to MLflow's bin, so the
    job keeps one run whatever happened to its files since. ``start_ms``: when the job began
    (default: now, when it is recorded)."""
    old = existing_run(client, experiment, job)
    if old is not None:
        client.delete_run(old.info.run_id)
    tags = {JOB_TAG: job}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return client.create_run(experiment, start_time=start_ms, run_name=job, tags=tags)


def up_to_date(client, experiment: str, job: str, digest: str) -> str | None:
    """The run id when ``job`` is recorded, whole, from these very files: the fingerprint is the
    last thing a record writes, so a record cut short has none and is made again."""
    old = existing_run(client, experiment, job)
    if old is not None and old.data.tags.get(FINGERPRINT_TAG) == digest:
        return old.info.run_id
    return None


@contextmanager
def completing(client, run_id: str, digest: str, status: str, end_ms=None):
    """A record's body, then its fingerprint and end: a record that fails part-way is ended
    FAILED, without a fingerprint, so the next `make track` (or fetch) makes it again."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the store may be what failed
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_tag(run_id, FINGERPRINT_TAG, digest)
    client.set_terminated(run_id, status, end_time=end_ms)


def log_all(client, run_id: str, params: dict, metrics: list, tags: dict) -> None:
    """Params, metrics (name, value, step) and tags, in batches of the sizes MLflow takes."""
    from mlflow.entities import Metric, Param, RunTag

    stamp = int(time.time() * 1000)
    param_list = [Param(key, str(value)[:6000]) for key, value in params.items()]
    metric_list = [Metric(key, float(value), stamp, step) for key, value, step in metrics]
    for start in range(0, len(param_list), 100):
        client.log_batch(run_id, params=param_list[start : start + 100])
    for start in range(0, len(metric_list), 1000):
        client.log_batch(run_id, metrics=metric_list[start : start + 1000])
    client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def record_run(run_dir: Path, parent: str | None = None, log_model: bool = False,
               print_line=print) -> str | None:  # fmt: skip
    """Records ``runs/<job>`` (report.json, history.csv, plots) in MLflow; returns the run id, or
    None when tracking failed (one line says so; the files are untouched)."""
    recorded = record(run_dir, parent, log_model, print_line)
    return recorded and recorded[0]


def record(run_dir: Path, parent: str | None = None, log_model: bool = False,
           print_line=print) -> tuple[str, bool] | None:  # fmt: skip
    """record_run's (run id, whether it was recorded now rather than found whole), or None."""
    run_dir = Path(run_dir)
    report_path = run_dir / "report.json"
    history_path = run_dir / "output" / contract.HISTORY_FILE
    if not report_path.exists():
        raise UserError(f"{run_dir} has no report.json: not a finished run of this project")
    report = json.loads(report_path.read_text())
    job = report["job_name"]
    try:
        with quiet_mlflow():
            log_model = log_model and models_taken(print_line)
            (run_id, fresh), experiment = _record(run_dir, report, history_path, parent, log_model)
    except Exception as error:  # MLflow and its stores raise many kinds
        print_line(tracking_failed(job, error))
        return None
    if fresh:
        print_line(
            f"[mlflow] {job}: run {run_id} in experiment {report['experiment']!r} of "
            f"{tracking_uri()} ({run_link(tracking_uri(), experiment, run_id)})"
        )
    return run_id, fresh


_SAID: set[str] = set()


def models_taken(print_line=print) -> bool:
    """Whether the store takes logged models; when not, one line says so, once per process."""
    lacking = lacks_logged_models(tracking_uri())
    if lacking and lacking not in _SAID:
        _SAID.add(lacking)
        print_line(f"tracking: {lacking}")
    return lacking is None


def _record(run_dir, report, history_path, parent, log_model) -> tuple[tuple[str, bool], str]:
    """((run id, recorded now), experiment id)."""
    client = client_for()
    experiment = experiment_id(client, report["experiment"])
    digest = fingerprint(run_dir / "report.json", history_path)
    current = up_to_date(client, experiment, report["job_name"], digest)
    if current and not log_model:
        if parent:  # recorded alone first (make track), now known as a tuning job's member
            client.set_tag(current, "mlflow.parentRunId", parent)
        return (current, False), experiment
    start_ms, end_ms = run_times(report)
    run_id = fresh_run(client, experiment, report["job_name"], parent, start_ms).info.run_id
    status = "FINISHED" if report.get("status", "Completed") == "Completed" else "KILLED"
    with completing(client, run_id, digest, status, end_ms):
        metrics = epoch_metrics(read_history(history_path))
        metrics += [(key, value, 0) for key, value in summary_metrics(report).items()]
        log_all(client, run_id, run_params(report), metrics, run_tags(report))
        for path in run_files(run_dir, report):
            client.log_artifact(run_id, str(path))
        if log_model:
            log_keras_model(run_id, run_dir / "model" / contract.MODEL_FILE)
    return (run_id, True), experiment


def run_files(run_dir: Path, report: dict) -> list[Path]:
    """What a run's record carries: its report, plots and resolved config."""
    names = ["report.md", "report.json", *report.get("plots", []), f"output/{contract.CONFIG_FILE}"]
    return [run_dir / name for name in names if (run_dir / name).exists()]


def run_times(report: dict) -> tuple:
    """(start, end) in ms for MLflow: the launch time in the job's name and the training seconds
    the job reported, so the UI's duration is the job's, not the recording's; (None, None) when
    the name carries no time."""
    from training.common.sagemaker import named_at

    started = named_at(report["job_name"])
    if started is None:
        return None, None
    return int(started * 1000), int((started + (report.get("training_seconds") or 0)) * 1000)


def log_keras_model(run_id: str, path: Path) -> None:
    """The model in MLflow's Keras flavour, registered in the Model Registry."""
    import mlflow
    from vgg_transfer import model as vgg

    mlflow.set_tracking_uri(tracking_uri())  # the fluent API's own default is ./mlruns
    with mlflow.start_run(run_id=run_id):
        mlflow.keras.log_model(vgg.load_model(str(path)), name="model",
                               registered_model_name=MODEL_NAME)  # fmt: skip


# What a failed artifact upload usually means, for the person who has to act on it.
UPLOAD_HINTS = {
    "NoSuchBucket": "create the bucket the MLflow server's artifact root names",
    "AccessDenied": "the stack's mlflowArtifactUri setting grants the launcher the server's "
    "artifact location (README: MLflow where your team keeps it)",
}


def tracking_failed(job: str, error: Exception) -> str:
    """One line: what failed, AWS's own words when S3 refused an upload, and the remedy."""
    reason = " ".join(str(error).split())
    if "An error occurred (" in reason:  # boto3's upload error wraps the S3 answer in paths
        reason = reason[reason.index("An error occurred (") :]
    hint = next((text for code, text in UPLOAD_HINTS.items() if f"({code})" in reason), None)
    return (
        f"tracking: {job} was not recorded in MLflow at {tracking_uri()} ({reason[:200]}"
        f"{'; ' + hint if hint else ''}); its files are complete: `make track` records it later"
    )


# --- tuning ---------------------------------------------------------------------------------------
EPOCH = re.compile(r"\[epoch\] phase=(\w+) epoch=(\d+)/\d+ (.*)")
TEST = re.compile(r"\[test\] phase=(\w+) (.*)")
FIELD = re.compile(r"(\w+)=([-+0-9.eE]+|nan)")


def log_metrics(lines: list[str]) -> list[tuple[str, float, int]]:
    """A training job's curves and test figures from its log lines (contract.EPOCH_LINE,
    TEST_LINE), on the one step axis of epoch_metrics; a restarted epoch counts once."""
    epochs: dict[tuple[str, int], dict] = {}
    tests: dict[str, dict] = {}
    for line in lines:
        if match := EPOCH.search(line):
            epochs[(match.group(1), int(match.group(2)))] = dict(FIELD.findall(match.group(3)))
        elif match := TEST.search(line):
            tests[match.group(1)] = dict(FIELD.findall(match.group(2)))
    history = [
        {"phase": phase, "epoch": str(epoch), **{name: fields.get(name, "") for name in CURVES}}
        for (phase, epoch), fields in sorted(epochs.items(), key=lambda item: (
            PHASES.index(item[0][0]) if item[0][0] in PHASES else 9, item[0][1]))
    ]  # fmt: skip
    points = epoch_metrics(history)
    for phase, fields in tests.items():
        points += [(f"{phase}.{name}", float(value), 0) for name, value in fields.items()]
    return points


def record_tuning(tuning_dir: Path, print_line=print) -> tuple[str, bool] | None:
    """The tuning job as a parent run (its table, plot and settings), and each of its training
    jobs as a child run (tuned values, status, objective, curves from its log); the fetched best
    job's full record is a child too. Returns (the parent run id, whether it was recorded now),
    or None (one line says why)."""
    tuning_dir = Path(tuning_dir)
    summary = json.loads((tuning_dir / "tuning.json").read_text())
    try:
        with quiet_mlflow():
            return _record_tuning(tuning_dir, summary)
    except Exception as error:  # MLflow and its stores raise many kinds
        print_line(tracking_failed(summary["tuning_job"], error))
        return None


def _record_tuning(tuning_dir: Path, summary: dict) -> tuple[str, bool]:
    from training.common.sagemaker import experiment_of

    client = client_for()
    name = summary["tuning_job"]
    experiment = experiment_id(client, experiment_of(name))
    files = [tuning_dir / "tuning.json", *sorted((tuning_dir / "logs").glob("*.log"))]
    digest = fingerprint(*files)
    current = up_to_date(client, experiment, name, digest)
    if current:
        return current, False
    parent = fresh_run(client, experiment, name).info.run_id
    with completing(client, parent, digest, "FINISHED"):
        log_all(client, parent, {"objective": summary["objective"],
                                 "tuned": ",".join(summary["tuned"])},
                [], {JOB_TAG: name, "status": summary["status"],
                     "best_training_job": summary.get("best_training_job") or ""})  # fmt: skip
        for artifact in ("tuning.md", "tuning.json", "tuning.png"):
            client.log_artifact(parent, str(tuning_dir / artifact))
        for row in summary["training_jobs"]:
            _record_member(client, experiment, parent, tuning_dir, summary, row)
    return parent, True


def _record_member(client, experiment: str, parent: str, tuning_dir: Path, summary: dict,
                   row: dict) -> None:  # fmt: skip
    """A tuning job's training job as a child run: the fetched best job's full record, the
    others' from their row and log."""
    job, runs_dir = row["training_job"], tuning_dir.parent
    report = runs_dir / job / "report.json"
    if job == summary.get("fetched_training_job") and report.exists():
        (best, _), _ = _record(runs_dir / job, json.loads(report.read_text()),
                          runs_dir / job / "output" / contract.HISTORY_FILE, parent, False)  # fmt: skip
        if row.get("objective") is not None:
            client.log_metric(best, summary["objective"], row["objective"])
        return
    child = fresh_run(client, experiment, job, parent).info.run_id
    log = tuning_dir / "logs" / f"{job}.log"
    metrics = log_metrics(log.read_text().splitlines() if log.exists() else [])
    if row.get("objective") is not None:
        metrics.append((summary["objective"], row["objective"], 0))
    params = {key: str(row[key]) for key in summary["tuned"]}
    log_all(client, child, params, metrics, {JOB_TAG: job, "status": str(row["status"]),
            "failure_reason": str(row.get("failure_reason") or "")})  # fmt: skip
    if log.exists():
        client.log_artifact(child, str(log))
    client.set_terminated(child, "FINISHED" if row["status"] == "Completed" else "FAILED")


def tuning_record(name: str, objective: str) -> tuple[str, dict[str, float | None]] | None:
    """How a tuning job reads back from MLflow: its parent run's id and, for each child run's
    training job, the objective recorded; None when it is not recorded."""
    from training.common.sagemaker import experiment_of

    with quiet_mlflow():
        client = client_for()
        experiment = client.get_experiment_by_name(experiment_of(name))
        parent = experiment and existing_run(client, experiment.experiment_id, name)
        if not parent:
            return None
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        )
    return parent.info.run_id, {
        child.data.tags[JOB_TAG]: child.data.metrics.get(objective) for child in children
    }


# --- make track -----------------------------------------------------------------------------------
def folders_with(runs_dir: Path, name: str) -> list[Path]:
    """The folders under ``runs_dir`` holding a ``name`` the runs wrote: not MLflow's own copies
    (mlartifacts), the stand-in's work folders, or a fetch under way (hidden folders)."""
    found = []
    for path in sorted(Path(runs_dir).rglob(name)):
        parts = path.relative_to(runs_dir).parts[:-1]
        if ARTIFACTS in parts or "standin" in parts or any(p.startswith(".") for p in parts):
            continue
        found.append(path.parent)
    return found


def record_all(runs_dir: Path, log_model: bool = False) -> tuple[int, int, int]:
    """Every finished run and tuning job under ``runs_dir``: (recorded now, already recorded
    whole, failed)."""
    results = [
        record(folder, log_model=log_model) for folder in folders_with(runs_dir, "report.json")
    ]
    results += [record_tuning(folder) for folder in folders_with(runs_dir, "tuning.json")]
    done = [result for result in results if result]
    fresh = sum(new for _, new in done)
    return fresh, len(done) - fresh, len(results) - len(done)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="record runs in MLflow (make track), or serve it")
    parser.add_argument("runs", type=Path, nargs="?", default=RUNS_DIR)
    parser.add_argument("--log-model", action="store_true", help="and each model, registered")
    parser.add_argument("--ui", action="store_true", help="serve the MLflow UI (make ui)")
    parser.add_argument("--port", type=int, default=UI_PORT)
    args = parser.parse_args(argv)
    if args.ui:
        return serve_ui(args.port)
    if not args.runs.is_dir():
        raise UserError(f"no runs folder at {args.runs}: run `make train-local` first")
    fresh, whole, failed = record_all(args.runs, args.log_model)
    print(f"tracking: {fresh} run(s) under {args.runs} recorded in {tracking_uri()}, {whole} "
          f"already recorded" + (f", {failed} not recorded (see above)" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
