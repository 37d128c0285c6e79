"""``make rehearse``: each scenario is a sequence of real commands (``make train-cloud``, ``make
results``, ``make tune``, ``make tune-results``) run from a shell pointed at a stand-in of its own.

    python -m training.rehearse [--scenario run|detach|max-runtime|tune-detach|ctrl-c|all]
                                [--experiment smoke] [--hp key=value ...] [--interrupt [early]]
                                [--instance-count N] [--tune [--max-jobs 3] [--parallel 2]]
                                [--max-runtime-minutes M] [--track server]
                                [--instance a,b] [--spot auto] [--capacity-fail a]
                                [--capacity-wait-minutes M]

``run`` (the default) is one ``make train-cloud`` (``--tune``: ``make tune``); ``all`` runs every
scenario and ends with one line each. ``--track server``: the commands record in a team's MLflow
server on 127.0.0.1 whose artifacts live in the stand-in's S3 (records.py).
"""

import argparse
from pathlib import Path

from training.common.errors import UserError, cli
from training.rehearse.records import TRACK_CHOICES
from training.rehearse.scenarios import (
    ALL,
    CAPACITY_WAIT_MINUTES,
    SCENARIOS,
    Rehearsal,
    rehearse,
)
from training.standin.service import add_interrupt_option, instance_types


def positive_int(text: str) -> int:
    from training.launch.__main__ import positive_int as parse

    return parse(text)


def positive_minutes(text: str) -> float:
    from training.launch.__main__ import positive_minutes as parse

    return parse(text)


def parse_args(argv: list[str] | None) -> tuple[str, Rehearsal]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, ALL], default="run")
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
    add_interrupt_option(parser)
    parser.add_argument("--instance-count", type=positive_int, default=1, help="algo-1…N")
    parser.add_argument("--tune", action="store_true", help="scenario run: make tune instead")
    parser.add_argument("--max-jobs", type=positive_int, default=3)
    parser.add_argument("--parallel", type=positive_int, default=2)
    parser.add_argument("--max-runtime-minutes", type=positive_minutes)
    parser.add_argument("--splits", type=Path, default=Path("data/splits"))
    parser.add_argument("--runs", type=Path, default=Path("runs/rehearse"))
    parser.add_argument("--track", choices=TRACK_CHOICES,
                        help="record in a team's MLflow server on 127.0.0.1, artifacts in S3")  # fmt: skip
    parser.add_argument("--instance", help="INSTANCE: the candidate types, tried in order")
    parser.add_argument("--spot", help="SPOT: auto (spot, then on-demand), true or false")
    parser.add_argument("--capacity-fail", type=instance_types, default=(),
                        help="types the stand-in has no capacity for (CAPACITY_FAIL)")  # fmt: skip
    parser.add_argument("--capacity-wait-minutes", type=positive_minutes,
                        default=CAPACITY_WAIT_MINUTES,
                        help="a spot job's wait for capacity before the next candidate")  # fmt: skip
    args = parser.parse_args(argv)
    plan = Rehearsal(
        experiment=args.experiment,
        overrides=args.hp,
        interrupt=args.interrupt,
        instance_count=args.instance_count,
        tune=args.tune,
        max_jobs=args.max_jobs,
        parallel=args.parallel,
        max_runtime_minutes=args.max_runtime_minutes,
        splits=args.splits,
        runs=args.runs,
        track=args.track,
        instance=args.instance,
        spot=args.spot,
        capacity_fail=args.capacity_fail,
        capacity_wait_minutes=args.capacity_wait_minutes,
    )
    return args.scenario, plan


def check(plan: Rehearsal) -> None:
    """Settings a scenario cannot use, before any stand-in starts."""
    from training.launch.experiments import load

    load(plan.experiment, plan.overrides)  # a bad name or setting: one line, before anything
    if plan.tune and plan.instance_count > 1:
        raise UserError("a tuning rehearsal runs its training jobs on one instance each")


@cli
def main(argv: list[str] | None = None) -> int:
    scenario, plan = parse_args(argv)
    check(plan)
    names = list(SCENARIOS) if scenario == ALL else [scenario]
    summaries, failed = [], []
    for name in names:
        try:
            summaries.append(f"✓ {name}: {rehearse(name, plan)}")
        except UserError as error:
            if len(names) == 1:
                raise
            summaries.append(f"✗ {name}: {error}")
            failed.append(name)
    print("\nrehearsal:" if len(names) > 1 else "")
    for line in summaries:
        print(line)
    if failed:
        raise UserError(f"{len(failed)} of {len(names)} scenarios failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
