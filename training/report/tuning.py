"""A tuning job's results as people read them: ``tuning.json`` (every training job's settings,
status, objective and failure reason), ``tuning.md`` (the table, best job first, with the fetched
job's test figures beside the seed's) and ``tuning.png`` (the objective against each tuned
setting), written whatever state the jobs ended in, with each training job's log in
``logs/<training job>.log``. The folder appears only when complete."""

import json
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from vgg_transfer.contract import TUNING_OBJECTIVE  # noqa: E402

from training.report import seed  # noqa: E402


def objective_of(job: dict) -> float | None:
    """A training job's objective as the tuning job reported it, if it did."""
    value = job.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
    return None if value is None else float(value)


def reason_line(reason: str, limit: int = 200) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(
    description: dict, jobs: list[dict], instance_types: dict[str, str] | None = None
) -> dict:
    """tuning.json's content: the tuned settings and every training job's values, objective and
    the instance type it ran on (``instance_types``, by job; the summaries do not carry it)."""
    ranges = description.get("HyperParameterTuningJobConfig", {}).get("ParameterRanges", {})
    tuned = sorted(r["Name"] for kind in ranges.values() for r in kind)
    rows = []
    for job in jobs:
        values = job.get("TunedHyperParameters", {})
        rows.append(
            {
                "training_job": job["TrainingJobName"],
                "instance_type": (instance_types or {}).get(job["TrainingJobName"]),
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
        "objective": TUNING_OBJECTIVE,
        "tuned": tuned,
        "best_training_job": best,
        "fetched_training_job": None,  # whose model and report were fetched (see fetch)
        "note": "",
        "training_jobs": rows,
    }


def plot(summary: dict, path: Path) -> None:
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
        "| training job | instance | status | objective | "
        + " | ".join(names)
        + " | failure reason |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in summary["training_jobs"]:
        objective = "—" if row["objective"] is None else f"{row['objective']:.4f}"
        mark = " **(best)**" if row["training_job"] == summary["best_training_job"] else ""
        cells = " | ".join(str(row[name]) for name in names)
        reason = reason_line(row.get("failure_reason") or "", 120).replace("|", "\\|")
        lines.append(
            f"| {row['training_job']}{mark} | {row.get('instance_type') or '?'} | {row['status']} "
            f"| {objective} | {cells} | {reason} |"
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
