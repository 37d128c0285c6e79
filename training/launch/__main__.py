"""The launcher's command line (the Makefile's train-local, train-cloud, tune, results,
tune-results and cost).

python -m training.launch local  [--experiment smoke] [--hp key=value ...]
python -m training.launch cloud  [--experiment small] [--instance ml.p2.xlarge|auto] [--detach] [--fresh]
python -m training.launch tune   [--experiment small] [--max-jobs 10] [--parallel 2] [--detach]
python -m training.launch results --job <name>
python -m training.launch tune-results --tuning-job <name>
python -m training.launch cost   [--experiment small] [--instance ml.g4dn.xlarge]
python -m training.launch check  [--stack dev]

``cloud`` and ``tune`` take one path, whatever the kind of job they create: preflight → stage →
submit → follow → fetch; ``results`` and ``tune-results`` pick a job up at follow.
"""

import argparse
from pathlib import Path

from training.common import aws
from training.common.errors import UserError, cli
from training.common.infra_outputs import INFRA_DIR, load_outputs
from training.common.paths import RUNS_DIR
from training.common.sagemaker import TRAINING_JOB, TUNING_JOB, JobKind
from training.data import splits
from training.data.sample import EXPERIMENT as SAMPLE_EXPERIMENT
from training.data.sample import ensure_sample
from training.launch.capacity import cost_table, estimate
from training.launch.outage import RECONNECT_MINUTES
from training.launch.request import DEFAULT_EXPERIMENT, RunRequest, from_args
from training.launch.timing import VALIDATION_IMAGES
from training.report.results import summary_line

# results and tune-results: the kind of job each follows, and the option naming it.
FOLLOWED = {"results": (TRAINING_JOB, "--job"), "tune-results": (TUNING_JOB, "--tuning-job")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.launch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("local", "cloud", "tune", "cost"):  # each builds a RunRequest (request.py)
        sub = commands.add_parser(name)
        sub.add_argument("--experiment", help=f"default: {DEFAULT_EXPERIMENT[name]}")
        sub.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
        sub.add_argument(
            "--instance", help="SageMaker instance type(s) to try in order (a,b,c), or auto"
        )
        if name != "tune":  # a tuning job's training jobs run on one instance each
            sub.add_argument("--instance-count", type=positive_int)
        sub.add_argument("--splits", type=Path, default=Path("data/splits"))
        sub.add_argument("--stack", default="dev")
        sub.add_argument(
            "--weights-file", type=Path, help="VGG16 no-top .h5 for the weights channel"
        )
        sub.add_argument("--runs", type=Path, default=RUNS_DIR)
        if name != "local":
            sub.add_argument(
                "--max-runtime-minutes", type=positive_minutes, help="default: the experiment's"
            )
        if name in ("cloud", "tune"):
            sub.add_argument("--detach", action="store_true", help="submit and return at once")
            add_capacity_options(sub, waits=name == "cloud")
            add_following_options(sub)
    add_local_options(commands.choices["local"])
    cloud = commands.choices["cloud"]
    cloud.add_argument("--network-isolation", action="store_true")
    cloud.add_argument(
        "--fresh", action="store_true", help="new checkpoint folder: start over, don't resume"
    )
    tune = commands.choices["tune"]
    tune.add_argument("--max-jobs", type=positive_int, default=10, help="training jobs in all")
    tune.add_argument("--parallel", type=positive_int, default=2, help="training jobs at once")
    check = commands.add_parser("check", help="every prerequisite of the cloud path (make check)")
    check.add_argument("--stack", default="dev")
    check.add_argument("--splits", type=Path, default=Path("data/splits"))
    for name, (_, option) in FOLLOWED.items():
        sub = commands.add_parser(name)
        sub.add_argument(option, dest="name")
        add_following_options(sub)
        sub.add_argument("--stack", default="dev")
        sub.add_argument("--runs", type=Path, default=RUNS_DIR)
    return parser


def add_local_options(local: argparse.ArgumentParser) -> None:
    local.add_argument(
        "--mode",
        choices=["process", "docker"],
        default="process",
        help="docker: the SageMaker SDK's local-container mode with the real TF image",
    )
    local.add_argument(
        "--keep-checkpoints", action="store_true", help="keep a finished run's checkpoints"
    )


def add_capacity_options(command: argparse.ArgumentParser, waits: bool) -> None:
    """SPOT, and (training jobs: the launcher fails over itself) CAPACITY_WAIT."""
    command.add_argument(
        "--spot", help="auto (spot, then on-demand), true or false; default: the experiment's"
    )
    if waits:
        command.add_argument(
            "--capacity-wait-minutes",
            type=positive_minutes,
            help="how long a spot job may wait for capacity before the next candidate (default 30)",
        )


def add_following_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--poll-seconds",
        type=float,
        help="how often to ask SageMaker how a job is doing (default: 15 s, a tuning job 30 s)",
    )
    command.add_argument(
        "--reconnect-minutes",
        type=positive_minutes,
        default=RECONNECT_MINUTES,
        help=f"how long following rides out a lost connection (default {RECONNECT_MINUTES:g})",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value * 60 >= 1:  # SageMaker's MaxRuntimeInSeconds is at least 1
        raise argparse.ArgumentTypeError(f"expected minutes, at least 1/60, got {text!r}")
    return value


def run_local(request: RunRequest) -> int:
    from training.launch.local import run_local as run

    print(summary_line(run(request)))
    return 0


def run_cloud(request: RunRequest) -> int:
    """make train-cloud and make tune: one path, whatever the kind of job."""
    from training.launch import failover, preflight, staging

    outputs = load_outputs(request.stack, INFRA_DIR)
    session = aws.session(outputs.region)
    plan = preflight.preflight(request, outputs, session)
    kind = request.kind
    name, end = failover.launch(kind, plan, staging.stage(plan, session), session)
    if end is None:
        print(f"detached; follow it later with `{kind.results_command(name)}`")
        return 0
    return fetch_and_say(kind, session, name, request.runs, end, request.reconnect_minutes)


def fetch_and_say(kind: JobKind, session, name: str, runs: Path, end,
                  reconnect_minutes: float) -> int:  # fmt: skip
    from training.launch.fetch import fetch

    report = fetch(kind, session, name, runs, end, reconnect_minutes)
    print(summary_line(report) if kind is TRAINING_JOB else f"results: {report}")
    return 0


def run_followed(args) -> int:
    """make results and make tune-results: a job submitted earlier, followed and fetched."""
    kind, _ = FOLLOWED[args.command]
    if not args.name:
        raise UserError(
            f"which {kind.noun}? {kind.results_command(f'<{kind.noun} name>')} (the launch "
            f"printed it: `submitted <name>`; `{kind.list_command}` lists them)"
        )
    from training.launch.follow import follow

    session = aws.session(load_outputs(args.stack, INFRA_DIR).region)
    end = follow(kind, session, args.name, args.poll_seconds,
                 reconnect_minutes=args.reconnect_minutes)  # fmt: skip
    return fetch_and_say(kind, session, args.name, args.runs, end, args.reconnect_minutes)


def run_cost(request: RunRequest) -> int:
    """make cost: the experiment's time and cost on the type asked for, and on every current GPU
    type; nothing runs and nothing is spent."""
    from training.report.seed import RESULTS

    experiment = request.experiment
    manifest = request.manifest
    reference = RESULTS.get(experiment.seed_reference or "")
    here = None
    if manifest and experiment.train_split in manifest["splits"]:
        here = splits.images(manifest, experiment.train_split)
    if here is not None and (not reference or here == reference["train_images"]):
        images, validation = here, splits.images(manifest, "validation")
        counted = f"in {request.splits}"
    elif reference:  # a seed experiment runs on the seed's counts (preflight refuses others)
        images, validation, counted = reference["train_images"], VALIDATION_IMAGES, "the seed's"
        if here is not None:
            counted += f"; {request.splits} holds {here}, not Kaggle's split: `make data`"
    else:
        raise UserError(
            f"no prepared data in {request.splits} to count {experiment.train_split}: run "
            f"`make data-sample` (the synthetic set {experiment.name} trains on) or `make data`"
        )
    hp = request.hp
    print(f"{experiment.name}: {images} training images ({counted}), "
          f"{hp.epochs_frozen}+{hp.epochs_fine_tuned} epochs at {hp.image_size} px")  # fmt: skip
    if request.instance is None:  # INSTANCE=auto: the type is chosen against quotas at launch
        print("INSTANCE=auto: at launch, the cheapest type below that your account has quota "
              "for (make check lists your quotas)")  # fmt: skip
    else:
        print(estimate(experiment, images, request.instance, request.instance_count, None,
                       validation).line())  # fmt: skip
    print(f"\nevery current GPU type ({request.instance_count} instance(s); times are estimates "
          "unless measured by make bench on the type):")  # fmt: skip
    print(cost_table(experiment, images, request.instance_count, validation))
    return 0


REQUESTS = {"local": run_local, "cloud": run_cloud, "tune": run_cloud, "cost": run_cost}


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from training.launch.check import check

        return check(args.stack, args.splits)
    if args.command in FOLLOWED:
        return run_followed(args)
    experiment = args.experiment or DEFAULT_EXPERIMENT[args.command]
    if args.command != "cost" and experiment == SAMPLE_EXPERIMENT:
        ensure_sample(args.splits)  # the smoke experiment's data, made on first use
    return REQUESTS[args.command](from_args(args))


if __name__ == "__main__":
    raise SystemExit(main())
