"""``make tune``: SageMaker automatic model tuning of the recipe's sensitive settings, and its results.

The tuner is SDK v3's ``HyperparameterTuner`` over the very ``ModelTrainer`` that ``make
train-cloud`` builds (same image, channels, spot, checkpoints, tags), after the same preflight.
The tuning API takes no container entrypoint, so on AWS each training job runs through the
image's own toolkits (sagemaker-training and sagemaker-tensorflow-training), which fetch the code
from ``sagemaker_submit_directory``; the job saves its model in SM_MODEL_DIR whatever ``model_dir``
the toolkit passes, and checkpoints into a folder of its own under the shared checkpoint location.

The objective is the fine-tuned phase's best validation accuracy so far, which every epoch line
carries (``fine_tuned:best_val_accuracy``; never the test set): SageMaker takes the latest value
the regex matches, so a job is ranked by the weights it keeps, not by its last epoch. Ranges come
from the experiment file's ``tuning:`` section, or experiments.DEFAULT_RANGES:

    tuning:
      learning_rate_fine_tuned: {min: 1.0e-6, max: 1.0e-4, scale: Logarithmic}
      unfreeze_from: [block3_conv1, block4_conv1, block5_conv1]

Results: ``runs/<tuning job>/tuning.json``, ``tuning.md`` (every training job's settings,
status, objective and failure reason) and ``tuning.png`` (the objective against each tuned
setting), each training job's log in ``logs/<training job>.log``, and the best job's model and
report fetched as ``make results`` fetches them. They are written whatever state the jobs ended
in; when the best job was stopped before it saved a model, the best completed job's are fetched
instead, and the table says so.
"""

import fnmatch
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import boto3
from vgg_transfer import contract

from training.common import aws, sagemaker
from training.common.aws_errors import AWS_OR_NETWORK_ERRORS, aws_error, is_transient
from training.common.errors import UserError
from training.common.sagemaker import TERMINAL, TUNING_JOB
from training.launch import common, results, submit
from training.launch.experiments import tuning_ranges
from training.launch.follow import stopped_following
from training.launch.outage import RECONNECT_MINUTES, Outage
from training.launch.spec import JobSpec
from training.report import seed, tracking

OBJECTIVE = contract.TUNING_OBJECTIVE


def sdk_ranges(ranges: dict) -> dict:
    from sagemaker.core.parameter import (
        CategoricalParameter,
        ContinuousParameter,
        IntegerParameter,
    )

    converted = {}
    for name, spec in ranges.items():
        if isinstance(spec, list):
            converted[name] = CategoricalParameter(spec)
            continue
        kind = IntegerParameter if isinstance(spec["min"], int) else ContinuousParameter
        converted[name] = kind(spec["min"], spec["max"], scaling_type=spec.get("scale", "Auto"))
    return converted


def upload_code(session: boto3.Session, spec: JobSpec, name: str) -> str:
    """The job folder as sourcedir.tar.gz under the stack's code/ prefix; returns its S3 URI.

    The tuning API takes no container entrypoint, so the image's own toolkit fetches the code from
    the ``sagemaker_submit_directory`` hyperparameter. Left to itself the SDK would upload that
    tarball outside code/, where the execution role may not read, with __pycache__ inside."""
    key = f"{spec.code_prefix}/{name}/sourcedir.tar.gz"
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "sourcedir.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(common.JOB_DIR.rglob("*")):
                relative = path.relative_to(common.JOB_DIR)
                if path.is_file() and not any(
                    fnmatch.fnmatch(part, pattern)
                    for part in relative.parts
                    for pattern in submit.CODE_IGNORE
                ):
                    tar.add(path, arcname=str(relative))
        try:
            session.client("s3").upload_file(str(archive), spec.code_bucket, key)
        except AWS_OR_NETWORK_ERRORS as error:
            where = f"s3://{spec.code_bucket}/{key}"
            raise aws_error(error, f"uploading the job's code to {where}") from error
    return f"s3://{spec.code_bucket}/{key}"


def launch(spec: JobSpec, session: boto3.Session, max_jobs: int, parallel: int) -> str:
    """Creates the tuning job over the spec's trainer; returns its name."""
    from sagemaker.train.tuner import HyperparameterTuner

    ranges = tuning_ranges(spec.experiment)
    name = sagemaker.job_name(spec.experiment.name, TUNING_JOB)
    code = upload_code(session, spec, name)
    with submit.sdk_errors("the tuning job"):
        trainer, channels = submit.build_trainer(
            spec, session, source_dir=code, hyperparameter_decodes=1
        )
        tuner = HyperparameterTuner(
            model_trainer=trainer,
            objective_metric_name=OBJECTIVE,
            hyperparameter_ranges=sdk_ranges(ranges),
            metric_definitions=contract.metric_definitions(),
            strategy="Bayesian",
            objective_type="Maximize",
            max_jobs=max_jobs,
            max_parallel_jobs=parallel,
            early_stopping_type="Auto",
            tags=[{"Key": k, "Value": v} for k, v in spec.tags.items()],
        )
        with submit.sdk_role_check_off():
            tuner.tune(inputs=channels, job_name=name, wait=False)
    print(
        f"submitted tuning job {name}: up to {max_jobs} training jobs, {parallel} at once, "
        f"objective {OBJECTIVE}, tuning {', '.join(ranges)}"
    )
    return name


# --- following -----------------------------------------------------------------------------------
def training_jobs(sm, name: str, ride_out: bool = False) -> list[dict]:
    """Every training job the tuning job started, with its hyperparameters and objective.
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


def objective_of(job: dict) -> float | None:
    value = job.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
    return None if value is None else float(value)


POLL_SECONDS = 30.0  # how often a tuning job is asked for news; --poll-seconds changes it


def follow(
    session: boto3.Session,
    name: str,
    poll_seconds: float | None = None,
    write=print,
    reconnect_minutes: float = RECONNECT_MINUTES,
    reached: bool = False,
):
    """Prints each training job's status and objective as it lands, until the tuning ends.
    Returns (description, training jobs). A lost connection is ridden out for
    ``reconnect_minutes`` (outage.py; ``reached``: AWS answered this run already); Ctrl-C offers
    to stop the tuning job."""
    sm = session.client("sagemaker", config=aws.FOLLOWING)
    seen: dict[str, tuple] = {}
    resume = TUNING_JOB.results_command(name)
    outage = Outage(name, resume, reconnect_minutes, write, reached=reached)
    try:
        while True:
            description = outage.run(lambda: TUNING_JOB.describe(sm, name, ride_out=True))
            jobs = outage.run(lambda: training_jobs(sm, name, ride_out=True))
            for job in jobs:
                state = (job.get("TrainingJobStatus"), objective_of(job), job.get("FailureReason"))
                if seen.get(job["TrainingJobName"]) != state:
                    seen[job["TrainingJobName"]] = state
                    objective = "—" if state[1] is None else f"{state[1]:.4f}"
                    write(
                        f"[{name}] {job['TrainingJobName']}: {state[0]}, {OBJECTIVE} {objective}"
                        + (f" — {one_line_reason(state[2])}" if state[2] else "")
                    )
            if description[TUNING_JOB.status_key] in TERMINAL:
                write(f"[{name}] {description['HyperParameterTuningJobStatus']}")
                return description, jobs
            time.sleep(poll_seconds or POLL_SECONDS)
    except KeyboardInterrupt:
        raise stopped_following(sm, TUNING_JOB, name) from None


def one_line_reason(reason: str, limit: int = 200) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- results -------------------------------------------------------------------------------------
def table(description: dict, jobs: list[dict]) -> dict:
    """tuning.json's content: the tuned settings and every training job's values and objective."""
    ranges = description.get("HyperParameterTuningJobConfig", {}).get("ParameterRanges", {})
    tuned = sorted(r["Name"] for kind in ranges.values() for r in kind)
    rows = []
    for job in jobs:
        values = job.get("TunedHyperParameters", {})
        rows.append(
            {
                "training_job": job["TrainingJobName"],
                "status": job.get("TrainingJobStatus"),
                "objective": objective_of(job),
                "failure_reason": job.get("FailureReason"),
                **{name: values.get(name) for name in tuned},
            }
        )
    rows.sort(key=lambda row: (row["objective"] is None, -(row["objective"] or 0.0)))
    best = description.get("BestTrainingJob", {}).get("TrainingJobName")
    return {
        "tuning_job": description["HyperParameterTuningJobName"],
        "status": description["HyperParameterTuningJobStatus"],
        "objective": OBJECTIVE,
        "tuned": tuned,
        "best_training_job": best,
        "fetched_training_job": None,  # whose model and report were fetched (see fetch)
        "note": "",
        "training_jobs": rows,
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tuned = summary["tuned"]
    fig, axes = plt.subplots(1, len(tuned), figsize=(4.5 * len(tuned), 3.6), squeeze=False)
    done = [row for row in summary["training_jobs"] if row["objective"] is not None]
    for axis, name in zip(axes[0], tuned, strict=True):
        values = [row[name] for row in done]
        objectives = [row["objective"] for row in done]
        numeric = all(_is_number(v) for v in values)
        xs = [float(v) for v in values] if numeric else values
        axis.scatter(xs, objectives, color="tab:blue")
        best = [row for row in done if row["training_job"] == summary["best_training_job"]]
        if best:
            x = float(best[0][name]) if numeric else best[0][name]
            axis.scatter([x], [best[0]["objective"]], color="tab:red", label="best")
            axis.legend(loc="best")
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(summary["objective"])
        axis.margins(0.15)
        axis.grid(alpha=0.3)
    fig.suptitle(f"{summary['tuning_job']}: objective against each tuned setting")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def markdown(summary: dict, best_report: dict | None) -> str:
    names = summary["tuned"]
    lines = [
        f"# Tuning job {summary['tuning_job']} ({summary['status']})",
        "",
        f"Objective: `{summary['objective']}` (the fine-tuned phase's best validation accuracy, "
        "the epoch whose weights the job keeps; the test set plays no part). Best job first. "
        "Each training job's log is in [logs/](logs/).",
        "",
        "| training job | status | objective | " + " | ".join(names) + " | failure reason |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in summary["training_jobs"]:
        objective = "—" if row["objective"] is None else f"{row['objective']:.4f}"
        mark = " **(best)**" if row["training_job"] == summary["best_training_job"] else ""
        cells = " | ".join(str(row[name]) for name in names)
        reason = one_line_reason(row.get("failure_reason") or "", 120).replace("|", "\\|")
        lines.append(
            f"| {row['training_job']}{mark} | {row['status']} | {objective} | {cells} | {reason} |"
        )
    lines += ["", "![objective against each tuned setting](tuning.png)", ""]
    if summary.get("note"):
        lines += [f"**{summary['note']}**", ""]
    if best_report:
        lines.append(f"## Fetched: {summary['fetched_training_job']}")
        lines.append("")
        lines.append("| phase | test accuracy | the seed's |")
        lines.append("|---|---|---|")
        for phase, row in best_report["phases"].items():
            reference = (row.get("seed") or {}).get("test_accuracy")
            ours = f"{row['test_accuracy']:.4f}"
            lines.append(f"| {phase} | {ours} | {'—' if reference is None else reference} |")
        fetched = summary["fetched_training_job"]
        lines += ["", f"Its report: [../{fetched}/report.md](../{fetched}/report.md) "
                  f"({seed.SOURCE})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_results(
    run_dir: Path,
    summary: dict,
    best_report: dict | None,
    logs: dict[str, list[str]],
) -> Path:
    """tuning.json, tuning.md, tuning.png and logs/<job>.log in ``run_dir``, which appears only
    when complete."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        (partial / "tuning.json").write_text(json.dumps(summary, indent=2))
        plot(summary, partial / "tuning.png")
        (partial / "tuning.md").write_text(markdown(summary, best_report))
        (partial / "logs").mkdir()
        for job, lines in logs.items():
            (partial / "logs" / f"{job}.log").write_text("".join(f"{line}\n" for line in lines))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if run_dir.exists():
        shutil.rmtree(run_dir)
    partial.rename(run_dir)
    return run_dir / "tuning.md"


def job_log(session: boto3.Session, job: str, outage: Outage) -> list[str]:
    """Every log line a training job wrote, stream by stream (hosts, restarts). Throttling and
    lost connections are ridden out (``outage``): CloudWatch Logs allows a few reads a second per
    account, and a tuning job's logs are read back to back."""
    from training.launch.follow import LogFollower

    follower = LogFollower(session, job, keep=0)
    lines = []
    for stream in outage.run(follower.streams):
        events: list = []
        outage.run(lambda stream=stream, events=events: follower.read(stream, events))
        lines += [f"=== {stream} ===", *(line for _, line in events)]
    return lines


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
            report = results.fetch_results(session, job, runs_dir)
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


def fetch(session: boto3.Session, name: str, runs_dir: Path, description=None, jobs=None,
          reconnect_minutes: float = RECONNECT_MINUTES) -> Path:  # fmt: skip
    """The table and plot of every training job, their logs, and the best job's results."""
    if description is None or jobs is None:
        sm = session.client("sagemaker")
        description = description or TUNING_JOB.describe(sm, name)
        jobs = jobs if jobs is not None else training_jobs(sm, name)
    summary = table(description, jobs)
    best_report, fetched, note = fetch_best(session, summary, runs_dir)
    summary.update(fetched_training_job=fetched, note=note)
    outage = Outage(name, TUNING_JOB.results_command(name), reconnect_minutes, reached=True)
    logs = {
        job["TrainingJobName"]: job_log(session, job["TrainingJobName"], outage) for job in jobs
    }
    path = write_results(runs_dir / name, summary, best_report, logs)
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
