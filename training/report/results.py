"""From a finished job's artifacts to ``runs/<job>/report.md``, ``report.json`` and plots.

Artifacts arrive as SageMaker packs them, ``model.tar.gz`` and ``output.tar.gz``, whether they
were downloaded from S3 (cloud) or packed by local mode; both are unpacked the same way.
"""

import csv
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from vgg_transfer.contract import (  # noqa: E402
    FINE_TUNED,
    FROZEN,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_ARCHIVE,
    OUTPUT_ARCHIVE,
    PHASES,
)

from training.common.errors import UserError  # noqa: E402
from training.report import seed  # noqa: E402


@dataclass
class RunInfo:
    """What the launcher knows about a run beyond what the job wrote."""

    job_name: str
    mode: str  # "local" | "cloud"
    experiment: str
    seed_reference: str | None
    instance_type: str
    instance_count: int
    image_uri: str
    git_commit: str
    dataset_digest: str
    training_seconds: float | None = None
    billable_seconds: float | None = None
    cost_usd: float | None = None
    status: str = "Completed"  # a stopped job's results are kept too, and say so
    extra: dict = field(default_factory=dict)


def unpack(archive: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():  # refuse paths that would escape the run folder
            if member.name.startswith("/") or ".." in Path(member.name).parts:
                raise UserError(f"{archive} holds an unsafe path {member.name!r}")
        tar.extractall(target)


def unpack_artifacts(run_dir: Path) -> None:
    """model.tar.gz into model/ and output.tar.gz into output/; the archives, SageMaker's way of
    carrying them (and still in S3 for a cloud run), go: a run keeps one copy of its model."""
    for name, folder in ((MODEL_ARCHIVE, "model"), (OUTPUT_ARCHIVE, "output")):
        archive = run_dir / name
        if not archive.exists():
            raise UserError(f"{archive} is missing: the job wrote no {name}")
        unpack(archive, run_dir / folder)
        archive.unlink()


def read_history(path: Path) -> list[dict]:
    with path.open() as handle:
        return [
            {k: (v if k == "phase" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def load_metrics(run_dir: Path) -> dict:
    path = run_dir / "output" / METRICS_FILE
    if not path.exists():
        raise UserError(f"{path} is missing: the job did not finish writing its metrics")
    return json.loads(path.read_text())


def build_report(run_dir: Path, info: RunInfo) -> dict:
    metrics = load_metrics(run_dir)
    reference = seed.RESULTS.get(info.seed_reference or "")
    phases = {}
    for phase in PHASES:
        ours = metrics["phases"][phase]
        row = {
            key: ours[key]
            for key in (
                "test_accuracy",
                "test_loss",
                "best_val_accuracy",
                "best_epoch",
                "epochs_run",
                "stopped_early",
                "seconds",
                "images_per_second",
                "confusion_matrix",
            )
        }
        if reference:
            row["seed"] = reference[phase]
            row["test_accuracy_minus_seed"] = round(
                ours["test_accuracy"] - reference[phase]["test_accuracy"], 4
            )
        phases[phase] = row
    return {
        "job_name": info.job_name,
        "mode": info.mode,
        "status": info.status,
        "experiment": info.experiment,
        "seed_reference": info.seed_reference,
        "seed_source": seed.SOURCE if reference else None,
        "dataset_digest": info.dataset_digest or metrics.get("dataset_digest", ""),
        "image_uri": info.image_uri,
        "instance_type": info.instance_type,
        "instance_count": info.instance_count,
        "git_commit": info.git_commit,
        "training_seconds": info.training_seconds,
        "billable_seconds": info.billable_seconds,
        "cost_usd": info.cost_usd,
        "images": metrics["images"],
        "phases": phases,
        "frozen_phase_augmented": metrics.get("frozen_phase_augmented"),
        "distribution": metrics.get("distribution"),
        "devices": metrics.get("devices"),
        "precision_policy": metrics.get("precision_policy"),
        "versions": metrics.get("versions"),
        "config": metrics.get("config"),
        **info.extra,
    }


def plot_history(history: list[dict], run_dir: Path) -> list[str]:
    """accuracy.png and loss.png: train and validation per epoch, both phases in sequence."""
    files = []
    for metric in ("accuracy", "loss"):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        offset = 0
        for phase, colour in zip(PHASES, ("tab:blue", "tab:orange"), strict=True):
            rows = [r for r in history if r["phase"] == phase]
            if not rows:
                continue
            if offset:
                ax.axvline(offset + 0.5, color="grey", linewidth=0.8)  # phase boundary
            x = [offset + r["epoch"] for r in rows]
            ax.plot(x, [r[metric] for r in rows], "o--", color=colour, label=f"{phase} train")
            ax.plot(x, [r[f"val_{metric}"] for r in rows], "o-", color=colour, label=f"{phase} val")
            offset = x[-1]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (fine-tuning continues after the frozen phase)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"{metric}.png"
        fig.savefig(run_dir / name, dpi=100)
        plt.close(fig)
        files.append(name)
    return files


def plot_confusion(matrix: list[list[int]], run_dir: Path, title: str) -> str:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["cat", "dog"])
    ax.set_yticks([0, 1], ["cat", "dog"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=100)
    plt.close(fig)
    return "confusion.png"


def fmt(value, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def phase_rows(report: dict) -> list[str]:
    """The run's headline: a row per phase beside the seed's figures."""
    lines = [
        f"# Run {report['job_name']}",
        "",
        f"Experiment **{report['experiment']}** ({report['mode']}), "
        f"{report['instance_count']}× {report['instance_type']}, dataset `{report['dataset_digest']}`, "
        f"commit `{report['git_commit']}`.",
        "",
        *(
            [f"**The job ended {report['status']}**: these are the results it saved before.", ""]
            if report.get("status", "Completed") != "Completed"
            else []
        ),
        "| phase | test accuracy | seed | Δ vs seed | test loss | best val acc (epoch) "
        "| seed best val (epoch) | epochs run | seconds | images/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, row in report["phases"].items():
        ref = row.get("seed")
        lines.append(
            f"| {phase} | {fmt(row['test_accuracy'])} | {fmt(ref and ref['test_accuracy'])} "
            f"| {fmt(row.get('test_accuracy_minus_seed'), '+.4f')} | {fmt(row['test_loss'])} "
            f"| {fmt(row['best_val_accuracy'])} ({row['best_epoch']}) "
            f"| {fmt(ref and ref['best_val_accuracy'])} ({ref['best_epoch'] if ref else '—'}) "
            f"| {row['epochs_run']}{' (early stop)' if row['stopped_early'] else ''} "
            f"| {row['seconds']:.0f} | {row['images_per_second']:.1f} |"
        )
    return lines


def seed_rows(report: dict) -> list[str]:
    """Where the seed's figures come from; with no seed row for the experiment, its table."""
    if report["seed_reference"]:
        return ["", f"Seed figures: {report['seed_source']}."]
    lines = [
        "",
        f"No seed row matches this experiment. For reference, {seed.SOURCE}:",
        "",
        "| seed experiment | train images | frozen test acc | fine-tuned test acc |",
        "|---|---|---|---|",
    ]
    return lines + [
        f"| {name} | {ref['train_images']} | {ref[FROZEN]['test_accuracy']:.4f} "
        f"| {ref[FINE_TUNED]['test_accuracy']:.4f} |"
        for name, ref in seed.RESULTS.items()
    ]


def run_rows(report: dict) -> list[str]:
    """What ran: images, seconds and cost, image, distribution and versions."""
    images = ", ".join(f"{name} {c['total']}" for name, c in report["images"].items())
    cost = report["cost_usd"]
    price = report.get("price")
    priced = (
        f" at ${price['per_hour']:g}/h ({price['source']})" if price and cost is not None else ""
    )
    return [
        "",
        "## Run",
        "",
        f"- images: {images}",
        f"- training seconds: {fmt(report['training_seconds'], '.0f')}, billable seconds: "
        f"{fmt(report['billable_seconds'], '.0f')}, cost: "
        f"{'—' if cost is None else f'${cost:.2f}'}{priced}",
        f"- image: `{report['image_uri']}`",
        f"- distribution: {report['distribution']}; device(s): "
        f"{', '.join(report['devices'] or ['?'])}; precision: {report['precision_policy']}, "
        f"frozen phase augmented: {report['frozen_phase_augmented']}",
        f"- versions: {report['versions']}",
    ]


def attempt_rows(report: dict) -> list[str]:
    """Where the run looked for capacity, when it took more than one attempt (failover.py)."""
    attempts = report.get("attempts") or []
    if len(attempts) < 2:
        return []
    lines = ["", "## Capacity attempts", "",
             "| # | instance | capacity | job | waited (min) | billed (s) | cost | ended |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for number, a in enumerate(attempts, 1):
        lines.append(
            f"| {number} | {a['instance_type']} | {'spot' if a['spot'] else 'on-demand'} | "
            f"{a['job'] or '— (not created)'} | {a['waited_seconds'] / 60:.1f} | "
            f"{a['billable_seconds']:.0f} | ${a['cost_usd']:.2f} | {a['ended']} |"
        )
    return lines


def render_markdown(report: dict, plots: list[str]) -> str:
    lines = phase_rows(report) + seed_rows(report) + run_rows(report) + attempt_rows(report)
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots)]
    lines += ["", "## Resolved config", "", "```json", json.dumps(report["config"], indent=2),
              "```", ""]  # fmt: skip
    return "\n".join(lines)


def write_report(run_dir: Path, info: RunInfo) -> Path:
    """report.json, report.md and the plots, from the unpacked artifacts in ``run_dir``."""
    report = build_report(run_dir, info)
    history = read_history(run_dir / "output" / HISTORY_FILE)
    plots = plot_history(history, run_dir)
    matrix = report["phases"][FINE_TUNED]["confusion_matrix"]["rows_true_columns_predicted"]
    plots.append(plot_confusion(matrix, run_dir, "test set after fine-tuning"))
    report["plots"] = plots
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    path = run_dir / "report.md"
    path.write_text(render_markdown(report, plots))
    return path


def summary_line(report_path: Path) -> str:
    report = json.loads(report_path.with_suffix(".json").read_text())
    parts = []
    for phase, row in report["phases"].items():
        seed_part = f" (seed {row['seed']['test_accuracy']:.4f})" if row.get("seed") else ""
        parts.append(f"{phase} {row['test_accuracy']:.4f}{seed_part}")
    return "test accuracy: " + ", ".join(parts) + f" — report: {report_path}"
