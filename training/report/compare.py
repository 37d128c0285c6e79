"""``make report``: one table of every run under runs/ beside the seed's results.

python -m training.report.compare runs
"""

import argparse
import json
from pathlib import Path

from vgg_transfer.contract import FINE_TUNED, FROZEN

from training.common.errors import UserError, cli
from training.data.sample import EXPERIMENT as SAMPLE_EXPERIMENT
from training.report import seed


def rows(runs_dir: Path) -> list[dict]:
    reports = sorted(runs_dir.glob("*/report.json"))
    return [json.loads(p.read_text()) for p in reports]


def render(reports: list[dict]) -> str:
    lines = [
        "| run | experiment | mode | train images | frozen test acc | fine-tuned test acc "
        "| Δ vs seed | epochs (frozen/fine) | minutes | cost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ref in seed.RESULTS.items():
        lines.append(
            f"| seed study | {name} | K80 | {ref['train_images']} "
            f"| {ref[FROZEN]['test_accuracy']:.4f} | {ref[FINE_TUNED]['test_accuracy']:.4f} "
            "| — | — | — | — |"
        )
    for report in reports:
        phases = report["phases"]
        delta = phases[FINE_TUNED].get("test_accuracy_minus_seed")
        seconds = report.get("training_seconds") or sum(p["seconds"] for p in phases.values())
        cost = report.get("cost_usd")
        experiment = report["experiment"]
        if experiment == SAMPLE_EXPERIMENT:  # its accuracy is of warm and cool scenes
            experiment += " (synthetic sample, not photos)"
        lines.append(
            f"| {report['job_name']} | {experiment} | {report['mode']} "
            f"| {report['images']['train']['total']} | {phases[FROZEN]['test_accuracy']:.4f} "
            f"| {phases[FINE_TUNED]['test_accuracy']:.4f} "
            f"| {'—' if delta is None else f'{delta:+.4f}'} "
            f"| {phases[FROZEN]['epochs_run']}/{phases[FINE_TUNED]['epochs_run']} "
            f"| {seconds / 60:.1f} | {'—' if cost is None else f'${cost:.2f}'} |"
        )
    return "\n".join(lines)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="?", default=Path("runs"))
    args = parser.parse_args(argv)
    reports = rows(args.runs)
    if not reports:
        raise UserError(
            f"no runs with a report.json under {args.runs}: run `make train-local` first"
        )
    table = render(reports)
    (args.runs / "report.md").write_text("# All runs beside the seed study\n\n" + table + "\n")
    print(table)
    print(f"\nwritten to {args.runs / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
