"""The launcher's command line (the Makefile's train-local, train-cloud, results and cost).

python -m training.launch local  [--experiment smoke] [--hp key=value ...]
python -m training.launch cloud  [--experiment small] [--instance ml.p2.xlarge|auto] [--detach] [--fresh]
python -m training.launch results --job <name>
python -m training.launch tune   [--experiment small] [--max-jobs 10] [--parallel 2] [--detach]
python -m training.launch tune-results --tuning-job <name>
python -m training.launch cost   [--experiment small] [--instance ml.g4dn.xlarge]
"""

import argparse
from pathlib import Path

from training.common.errors import UserError, cli
from training.common.infra_outputs import INFRA_DIR, load_outputs
from training.common.sagemaker import TRAINING_JOB, TUNING_JOB
from training.data.prepare import load_manifest
from training.data.sample import ensure_sample
from training.launch import common
from training.launch.capacity import estimate, lookup
from training.launch.outage import RECONNECT_MINUTES
from training.launch.request import DEFAULT_EXPERIMENT, RunRequest, from_args
from training.report.results import summary_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.launch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("local", "cloud", "tune", "cost"):  # each builds a RunRequest (request.py)
        sub = commands.add_parser(name)
        sub.add_argument("--experiment", help=f"default: {DEFAULT_EXPERIMENT[name]}")
        sub.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
        sub.add_argument("--instance", help="SageMaker instance type, or auto (cloud, tune)")
        if name != "tune":  # a tuning job's training jobs run on one instance each
            sub.add_argument("--instance-count", type=positive_int)
        sub.add_argument("--splits", type=Path, default=Path("data/splits"))
        sub.add_argument("--stack", default="dev")
        sub.add_argument(
            "--weights-file", type=Path, help="VGG16 no-top .h5 for the weights channel"
        )
        sub.add_argument("--runs", type=Path, default=common.RUNS_DIR)
        if name != "local":
            sub.add_argument(
                "--max-runtime-minutes", type=positive_minutes, help="default: the experiment's"
            )
        if name in ("cloud", "tune"):
            sub.add_argument("--detach", action="store_true", help="submit and return at once")
            add_following_options(sub)
    commands.choices["local"].add_argument(
        "--mode",
        choices=["process", "docker"],
        default="process",
        help="docker: the SageMaker SDK's local-container mode with the real TF image",
    )
    cloud = commands.choices["cloud"]
    cloud.add_argument("--network-isolation", action="store_true")
    cloud.add_argument(
        "--fresh", action="store_true", help="new checkpoint folder: start over, don't resume"
    )
    tune = commands.choices["tune"]
    tune.add_argument("--max-jobs", type=positive_int, default=10, help="training jobs in all")
    tune.add_argument("--parallel", type=positive_int, default=2, help="training jobs at once")
    for name, option in (("results", "--job"), ("tune-results", "--tuning-job")):
        sub = commands.add_parser(name)
        sub.add_argument(option)
        add_following_options(sub)
        sub.add_argument("--stack", default="dev")
        sub.add_argument("--runs", type=Path, default=common.RUNS_DIR)
    return parser


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
    from training.launch import preflight, staging, submit

    session = session_for(request)
    plan = preflight.preflight(request, load_outputs(request.stack, INFRA_DIR), session)
    job = submit.submit(staging.stage(plan, session), session)
    if request.detach:
        print(f"detached; follow it later with `{TRAINING_JOB.results_command(job)}`")
        return 0
    return follow_and_fetch(
        session, job, request.runs, request.poll_seconds, request.reconnect_minutes, reached=True
    )


def session_for(request: RunRequest):
    return common.boto_session(load_outputs(request.stack, INFRA_DIR).region)


def follow_and_fetch(
    session,
    job: str,
    runs: Path,
    poll_seconds: float | None,
    reconnect_minutes: float,
    reached: bool = False,
) -> int:
    """``reached``: AWS already answered this run (it submitted the job), so an outage from the
    first request on is ridden out; else an endpoint never reached is one line at once."""
    from training.launch import follow, results

    end = follow.follow(
        session, job, poll_seconds, reconnect_minutes=reconnect_minutes, reached=reached
    )
    print(summary_line(results.fetch_results(session, job, runs, end)))
    return 0


def run_results(args) -> int:
    if not args.job:
        raise UserError("which job? make results JOB=<training job name>")
    outputs = load_outputs(args.stack, INFRA_DIR)
    session = common.boto_session(outputs.region)
    return follow_and_fetch(session, args.job, args.runs, args.poll_seconds, args.reconnect_minutes)


def run_tune(request: RunRequest) -> int:
    from training.launch import preflight, staging, tune

    session = session_for(request)
    plan = preflight.preflight(request, load_outputs(request.stack, INFRA_DIR), session)
    cost, jobs = plan.cost, request.max_jobs
    expected = cost.expected()
    print(
        f"  tuning: up to {jobs} jobs, {request.parallel} at once: "
        + (f"expected ≈ ${expected * jobs:.2f}, " if expected is not None else "")
        + f"ceiling ≈ ${cost.ceiling() * jobs:.2f} (each job's ceiling × MAX_JOBS)"
    )
    name = tune.launch(staging.stage(plan, session), session, jobs, request.parallel)
    if request.detach:
        print(f"detached; follow it later with `{TUNING_JOB.results_command(name)}`")
        return 0
    description, training_jobs = tune.follow(
        session,
        name,
        request.poll_seconds,
        reconnect_minutes=request.reconnect_minutes,
        reached=True,
    )
    path = tune.fetch(session, name, request.runs, description, training_jobs,
                      request.reconnect_minutes)  # fmt: skip
    print(f"results: {path}")
    return 0


def run_tune_results(args) -> int:
    from training.launch import tune

    if not args.tuning_job:
        raise UserError("which tuning job? make tune-results TUNING_JOB=<tuning job name>")
    outputs = load_outputs(args.stack, INFRA_DIR)
    session = common.boto_session(outputs.region)
    description, jobs = tune.follow(
        session, args.tuning_job, args.poll_seconds, reconnect_minutes=args.reconnect_minutes
    )
    path = tune.fetch(session, args.tuning_job, args.runs, description, jobs,
                      args.reconnect_minutes)  # fmt: skip
    print(f"results: {path}")
    return 0


def run_cost(request: RunRequest) -> int:
    experiment = request.experiment
    manifest = load_manifest(request.splits)
    if manifest and experiment.train_split in manifest["splits"]:
        images = common.train_images(manifest, experiment)
    else:  # no prepared data here: the seed's image counts for its experiments
        from training.report.seed import RESULTS

        reference = RESULTS.get(experiment.seed_reference or "")
        if not reference:
            raise UserError(
                f"no prepared data in {request.splits} to count {experiment.train_split}"
            )
        images = reference["train_images"]
    cost = estimate(experiment, images, lookup(request.instance_type), request.instance_count)
    hp = request.hp
    print(
        f"{experiment.name}: {images} training images, {hp.epochs_frozen}+{hp.epochs_fine_tuned} epochs"
    )
    print(cost.line())
    return 0


REQUESTS = {"local": run_local, "cloud": run_cloud, "tune": run_tune, "cost": run_cost}
FOLLOWERS = {"results": run_results, "tune-results": run_tune_results}


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in FOLLOWERS:
        return FOLLOWERS[args.command](args)
    if args.command != "cost" and (args.experiment or DEFAULT_EXPERIMENT[args.command]) == "smoke":
        ensure_sample(args.splits)  # the smoke experiment's data, made on first use
    return REQUESTS[args.command](from_args(args))


if __name__ == "__main__":
    raise SystemExit(main())
