"""The launcher's command line (the Makefile's train-local, train-cloud, results and cost).

python -m training.launch local  [--experiment smoke] [--hp key=value ...]
python -m training.launch cloud  [--experiment small] [--instance ml.p2.xlarge|auto] [--detach] [--fresh]
python -m training.launch results --job <name>
python -m training.launch tune   [--experiment small] [--max-jobs 10] [--parallel 2] [--detach]
python -m training.launch tune-results --tuning-job <name>
python -m training.launch cost   [--experiment small] [--instance ml.g4dn.xlarge]
"""

import argparse
import dataclasses
from pathlib import Path

from training.data.prepare import load_manifest
from training.data.sample import ensure_sample
from training.errors import UserError, cli
from training.infra_outputs import INFRA_DIR, load_outputs
from training.launch import common, experiments
from training.launch.costs import estimate
from training.launch.instances import AUTO
from training.report.results import summary_line

DEFAULT_EXPERIMENT = {"local": "smoke", "cloud": "small", "cost": "small"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.launch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("local", "cloud", "cost"):
        sub = commands.add_parser(name)
        sub.add_argument("--experiment", help=f"default: {DEFAULT_EXPERIMENT[name]}")
        sub.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
        sub.add_argument("--instance", help="SageMaker instance type, or auto (cloud)")
        sub.add_argument("--instance-count", type=positive_int)
        sub.add_argument("--splits", type=Path, default=Path("data/splits"))
        sub.add_argument("--stack", default="dev")
        sub.add_argument(
            "--weights-file", type=Path, help="VGG16 no-top .h5 for the weights channel"
        )
        sub.add_argument("--runs", type=Path, default=common.RUNS_DIR)
    for name in ("cloud", "cost"):
        commands.choices[name].add_argument(
            "--max-runtime-minutes", type=positive_minutes, help="default: the experiment's"
        )
    commands.choices["local"].add_argument(
        "--mode",
        choices=["process", "docker"],
        default="process",
        help="docker: the SageMaker SDK's local-container mode with the real TF image",
    )
    cloud = commands.choices["cloud"]
    cloud.add_argument("--detach", action="store_true", help="submit and return at once")
    cloud.add_argument("--network-isolation", action="store_true")
    cloud.add_argument(
        "--fresh", action="store_true", help="new checkpoint folder: start over, don't resume"
    )
    tune = commands.add_parser("tune")
    tune.add_argument("--experiment", help="default: small")
    tune.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
    tune.add_argument("--instance", help="SageMaker instance type, or auto")
    tune.add_argument("--splits", type=Path, default=Path("data/splits"))
    tune.add_argument("--stack", default="dev")
    tune.add_argument("--weights-file", type=Path)
    tune.add_argument("--runs", type=Path, default=common.RUNS_DIR)
    tune.add_argument("--max-jobs", type=positive_int, default=10, help="training jobs in all")
    tune.add_argument("--parallel", type=positive_int, default=2, help="training jobs at once")
    tune.add_argument("--detach", action="store_true", help="submit and return at once")
    tune.add_argument("--max-runtime-minutes", type=positive_minutes, help="per training job")
    tune_results = commands.add_parser("tune-results")
    tune_results.add_argument("--tuning-job")
    tune_results.add_argument("--stack", default="dev")
    tune_results.add_argument("--runs", type=Path, default=common.RUNS_DIR)
    results = commands.add_parser("results")
    results.add_argument("--job")
    results.add_argument("--stack", default="dev")
    results.add_argument("--runs", type=Path, default=common.RUNS_DIR)
    return parser


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


def load_experiment(args, default: str) -> experiments.Experiment:
    """The experiment with the command line's overrides (hyperparameters, max runtime)."""
    experiment = experiments.load(args.experiment or default, args.hp)
    minutes = getattr(args, "max_runtime_minutes", None)
    if minutes is not None:
        experiment = dataclasses.replace(experiment, max_runtime_minutes=minutes)
    return experiment


def run_local(args) -> int:
    from training.launch.local import run_local as run

    experiment = experiments.load(args.experiment or "smoke", args.hp)
    if experiment.name == "smoke":
        ensure_sample(args.splits)
    report = run(experiment, args.splits, args.runs, args.weights_file, mode=args.mode)
    print(summary_line(report))
    return 0


def run_cloud(args) -> int:
    from training.launch import preflight, staging, submit

    experiment = load_experiment(args, "small")
    instance_type = args.instance or experiment.instance_type
    count = args.instance_count or experiment.instance_count
    # Settings first: a mistake costs nothing to find before any file is read or AWS called.
    preflight.validate_request(
        experiment, instance_type, count, args.weights_file, args.network_isolation
    )
    outputs = load_outputs(args.stack, INFRA_DIR)
    session = common.boto_session(outputs.region)
    plan = preflight.preflight(
        experiment,
        outputs,
        args.splits,
        session,
        args.instance,
        args.instance_count,
        args.weights_file,
        args.network_isolation,
        args.fresh,
    )
    spec = staging.stage(plan, args.splits, session)
    job = submit.submit(spec, session)
    if args.detach:
        print(f"detached; follow it later with `make results JOB={job}`")
        return 0
    return follow_and_fetch(session, job, args.runs)


def follow_and_fetch(session, job: str, runs: Path) -> int:
    from training.launch import follow, results

    end = follow.follow(session, job)
    print(summary_line(results.fetch_results(session, job, runs, end)))
    return 0


def run_results(args) -> int:
    if not args.job:
        raise UserError("which job? make results JOB=<training job name>")
    outputs = load_outputs(args.stack, INFRA_DIR)
    return follow_and_fetch(common.boto_session(outputs.region), args.job, args.runs)


def run_tune(args) -> int:
    from training.launch import preflight, staging, tune

    experiment = load_experiment(args, "small")
    if args.parallel > args.max_jobs:
        raise UserError(f"PARALLEL={args.parallel} exceeds MAX_JOBS={args.max_jobs}")
    tune.tuning_ranges(experiment)  # a bad range is refused before anything else
    instance_type = args.instance or experiment.instance_type
    preflight.validate_request(experiment, instance_type, 1, args.weights_file, False)
    outputs = load_outputs(args.stack, INFRA_DIR)
    session = common.boto_session(outputs.region)
    # Each training job gets its own checkpoint folder under a fresh one (no resuming here).
    plan = preflight.preflight(
        experiment,
        outputs,
        args.splits,
        session,
        args.instance,
        1,
        args.weights_file,
        fresh=True,
        concurrent=args.parallel,
    )
    cost = plan.cost
    expected = cost.expected()
    print(
        f"  tuning: up to {args.max_jobs} jobs, {args.parallel} at once: "
        + (f"expected ≈ ${expected * args.max_jobs:.2f}, " if expected is not None else "")
        + f"ceiling ≈ ${cost.ceiling() * args.max_jobs:.2f} (each job's ceiling × MAX_JOBS)"
    )
    spec = staging.stage(plan, args.splits, session)
    name = tune.launch(spec, session, args.max_jobs, args.parallel)
    if args.detach:
        print(f"detached; follow it later with `make tune-results TUNING_JOB={name}`")
        return 0
    description, jobs = tune.follow(session, name)
    print(f"results: {tune.fetch(session, name, args.runs, description, jobs)}")
    return 0


def run_tune_results(args) -> int:
    from training.launch import tune

    if not args.tuning_job:
        raise UserError("which tuning job? make tune-results TUNING_JOB=<tuning job name>")
    outputs = load_outputs(args.stack, INFRA_DIR)
    session = common.boto_session(outputs.region)
    description, jobs = tune.follow(session, args.tuning_job)
    print(f"results: {tune.fetch(session, args.tuning_job, args.runs, description, jobs)}")
    return 0


def run_cost(args) -> int:
    experiment = load_experiment(args, "small")
    if args.instance == AUTO:
        raise UserError(
            "INSTANCE=auto is resolved against your account's quotas when a job is launched; "
            "name a type here (e.g. INSTANCE=ml.g4dn.xlarge)"
        )
    manifest = load_manifest(args.splits)
    if manifest and experiment.train_split in manifest["splits"]:
        images = common.train_images(manifest, experiment)
    else:  # no prepared data here: the seed's image counts for its experiments
        from training.report.seed import RESULTS

        reference = RESULTS.get(experiment.seed_reference or "")
        if not reference:
            raise UserError(f"no prepared data in {args.splits} to count {experiment.train_split}")
        images = reference["train_images"]
    cost = estimate(experiment, images, args.instance, args.instance_count)
    hp = experiment.resolved_hyperparameters()
    epochs = f"{hp['epochs_frozen']}+{hp['epochs_fine_tuned']}"
    print(f"{experiment.name}: {images} training images, {epochs} epochs")
    print(cost.line())
    return 0


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "local": run_local,
        "cloud": run_cloud,
        "results": run_results,
        "tune": run_tune,
        "tune-results": run_tune_results,
        "cost": run_cost,
    }
    return handler[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
