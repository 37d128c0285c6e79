"""``make rehearse``: the whole ``make train-cloud`` (or ``make tune``) path, offline, before money
is spent.

    python -m training.standin.rehearse [--experiment smoke] [--hp key=value ...] [--interrupt [early]]
                                [--tune [--max-jobs 3] [--parallel 2]] [--max-runtime-minutes M]

Starts an AWS emulator (moto) on 127.0.0.1 in this process, creates the stack's bucket, execution
role and launcher policy from the Pulumi program's own policy documents, and lets the SageMaker
stand-in (training/standin/) run whatever training or tuning job arrives. Then it runs the
unchanged launcher command against it: preflight, staging, submission, following with streamed
logs, fetching the results and the report (with ``--tune``: every training job of the tuning job,
the table, plot and the best job's model). IAM is enforced (training/standin/iam.py): the launcher
signs as a user holding only the launcher policy, the stand-in acts as the execution role.
``--interrupt`` reclaims a spot instance once a fine-tuning epoch's checkpoint is in S3 (``early``:
at the first fine-tuning epoch, before its checkpoint reached S3). At the end it prints what the
run would have cost on AWS.
"""

import argparse
import csv
import io
import json
import logging
import os
import socket
import tarfile
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from vgg_transfer.contract import FINE_TUNED

from training.common.errors import UserError, cli
from training.common.infra_outputs import INFRA_DIR, save_outputs
from training.report import tracking

STACK = "rehearse"
POLL_SECONDS = 1  # the emulator is on this machine: no rate limit to spare
ACCOUNT_REGION = "us-east-1"
BUCKET = "vgg-dogs-cats-rehearse"
ROLE = "sagemaker-execution-rehearse"
LAUNCHER = "launcher-rehearse"  # a user holding the launcher policy and nothing else


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def emulator():
    """A moto server on loopback, and this process's AWS settings pointing at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # The emulator's state lives in this process: start from nothing (moto's public reset).
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    ).close()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="rehearsal",
        AWS_SECRET_ACCESS_KEY="rehearsal",
        AWS_DEFAULT_REGION=ACCOUNT_REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def create_stack(infra_dir: Path) -> dict:
    """The bucket, role and launcher policy, with the Pulumi program's policy documents, and a
    user holding that policy alone (the identity the rehearsal launches as)."""
    from infra.bucket import PREFIXES
    from infra.role import Scope, execution_policy, launcher_policy, trust_policy

    account = boto3.client("sts").get_caller_identity()["Account"]
    scope = Scope(account=account, region=ACCOUNT_REGION, partition="aws")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    iam = boto3.client("iam")
    role = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust_policy(scope))["Role"]
    iam.put_role_policy(
        RoleName=ROLE,
        PolicyName="execution",
        PolicyDocument=execution_policy(bucket_arn, scope),
    )
    launcher = iam.create_policy(
        PolicyName="launcher-rehearse",
        PolicyDocument=launcher_policy(bucket_arn, role["Arn"], scope),
    )["Policy"]
    iam.create_user(UserName=LAUNCHER)
    iam.attach_user_policy(UserName=LAUNCHER, PolicyArn=launcher["Arn"])
    outputs = {
        "bucket_name": BUCKET,
        "role_arn": role["Arn"],
        "region": ACCOUNT_REGION,
        "launcher_policy_arn": launcher["Arn"],
    }
    outputs.update({f"{purpose}_prefix": prefix for purpose, prefix in PREFIXES.items()})
    save_outputs(outputs, STACK, infra_dir)
    return outputs


def act_as_launcher() -> None:
    """From here on this process signs as the launcher user, with the launcher policy only."""
    key = boto3.client("iam").create_access_key(UserName=LAUNCHER)["AccessKey"]
    os.environ.update(
        AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]
    )


def what_it_would_cost(runs: list, instance_type: str) -> str:
    """The billable seconds of the rehearsed training jobs, at the on-demand rate."""
    from training.launch.capacity import lookup

    billable = sum(run.job.billable_time_in_seconds or 0 for run in runs)
    count = sum(int(run.job.resource_config["InstanceCount"]) for run in runs) // len(runs)
    cost = billable / 3600 * lookup(instance_type).price_per_hour * count
    jobs = f" over {len(runs)} training jobs" if len(runs) > 1 else ""
    return (
        f"on AWS this run would have billed {billable} s of {count}x {instance_type}{jobs} "
        f"≈ ${cost:.4f} at the on-demand rate"
    )


@dataclass
class Rehearsal:
    """What ``make rehearse`` runs; the defaults are the plain smoke rehearsal."""

    experiment: str = "smoke"
    overrides: list = field(default_factory=list)
    interrupt: str | None = None  # "checkpoint" or "early" (see the module docstring)
    instance_count: int = 1
    tune: bool = False
    max_jobs: int = 3
    parallel: int = 2
    max_runtime_minutes: float | None = None

    def launcher_arguments(self, splits: Path, runs: Path) -> list[str]:
        """The launcher command a user would run, pointed at the rehearsal's stack."""
        args = ["tune" if self.tune else "cloud", "--experiment", self.experiment,
                "--stack", STACK, "--splits", str(splits), "--runs", str(runs),
                "--poll-seconds", str(POLL_SECONDS)]  # fmt: skip
        if self.tune:
            args += ["--max-jobs", str(self.max_jobs), "--parallel", str(self.parallel)]
        if self.instance_count > 1:
            args += ["--instance-count", str(self.instance_count)]
        if self.max_runtime_minutes is not None:
            args += ["--max-runtime-minutes", str(self.max_runtime_minutes)]
        if self.overrides:
            args += ["--hp", *self.overrides]
        return args


def rehearse(plan: Rehearsal, splits: Path, runs: Path, infra_dir: Path = INFRA_DIR) -> Path:
    """Runs the rehearsal; returns the report (``--tune``: tuning.md)."""
    from training.data.sample import ensure_sample
    from training.launch.__main__ import main as launch
    from training.launch.experiments import load
    from training.standin import Interruption, StandIn, check_can_run
    from training.standin.iam import enforced

    load(plan.experiment, plan.overrides)  # a bad name or setting: one line, before anything
    if plan.tune and plan.instance_count > 1:
        raise UserError("a tuning rehearsal runs its training jobs on one instance each")
    try:
        check_can_run()
    except RuntimeError as error:
        raise UserError(str(error)) from error
    if plan.experiment == "smoke":
        ensure_sample(splits)
    with emulator() as endpoint:
        create_stack(infra_dir)
        act_as_launcher()
        interruption = Interruption(plan.interrupt) if plan.interrupt else None
        stand_in = StandIn(endpoint, runs / "standin", interruption=interruption).start()
        try:
            with enforced():  # from here every request is checked against its caller's policies
                code = launch(plan.launcher_arguments(splits, runs))
        finally:
            stand_in.stop()
        if code != 0:
            raise UserError(f"the rehearsal of {plan.experiment} failed (exit {code}); see above")
        jobs = list(stand_in.runs.values())
        print(what_it_would_cost(jobs, jobs[0].job.resource_config["InstanceType"]))
        if plan.tune:
            return tuning_summary(stand_in, splits, runs)
        (run,) = jobs
        return runs / run.name / "report.md"


def artifacts_of(job: str) -> tuple[list[str], list[dict]]:
    """(the files in a training job's model.tar.gz, the rows of its history.csv), from S3."""
    from training.launch.results import artifact_keys

    session = boto3.Session()  # as the launcher, like everything after act_as_launcher()
    description = session.client("sagemaker").describe_training_job(TrainingJobName=job)
    bucket, (model_key, output_key) = artifact_keys(description)
    s3 = session.client("s3")

    def archive(key: str) -> tarfile.TarFile:
        return tarfile.open(
            fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        )

    with archive(model_key) as model, archive(output_key) as output:
        files = model.getnames()
        history = output.extractfile("history.csv").read().decode()
    return files, list(csv.DictReader(io.StringIO(history)))


def toolkit_lines(log: Path) -> list[str]:
    """AWS's toolkit's own lines that show it ran train.py: the command and the verdict."""
    lines = log.read_text().splitlines()
    shown = []
    for index, line in enumerate(lines):
        if "Invoking script with the following command" in line:
            shown += lines[index : index + 2]  # the command follows on the next line
        elif "sagemaker-training-toolkit" in line and "Reporting training" in line:
            shown.append(line)
    return shown


def check_tuning_jobs(summary: dict, logs: Path) -> None:
    """What a rehearsal of tuning must show, job by job: AWS's toolkit running train.py, a model
    in model.tar.gz, and an objective equal to the best fine-tuned val_accuracy in the job's own
    history.csv."""
    print("the rehearsal checks each training job:")
    problems = []
    for row in summary["training_jobs"]:
        job, objective = row["training_job"], row["objective"]
        for line in toolkit_lines(logs / f"{job}.log"):
            print(f"  {job} | {line[:160]}")
        if row["status"] != "Completed":
            print(f"  {job}: {row['status']}, not checked")
            continue
        files, history = artifacts_of(job)
        best = max(float(r["val_accuracy"]) for r in history if r["phase"] == FINE_TUNED)
        same = objective is not None and abs(objective - best) < 1e-6
        print(
            f"  {job}: model.tar.gz holds {', '.join(files)}; objective "
            f"{'—' if objective is None else f'{objective:.6f}'}, best fine-tuned val_accuracy "
            f"in history.csv {best:.6f} {'✓' if same else '✗'}"
        )
        if "model.h5" not in files or not same:
            problems.append(job)
    if problems:
        raise UserError(f"the rehearsal found wrong artifacts or objectives: {', '.join(problems)}")


def check_tracking(summary: dict) -> None:
    """The tuning job in MLflow: a parent run, and a child run per training job holding the
    objective tuning.json has for it."""
    name, objective = summary["tuning_job"], summary["objective"]
    recorded = tracking.tuning_record(name, objective)
    if recorded is None:
        raise UserError(f"tuning job {name} is not recorded in MLflow at {tracking.tracking_uri()}")
    parent, children = recorded
    print(f"MLflow ({tracking.tracking_uri()}): tuning job {name} is run {parent}, its children:")
    problems = []
    for row in summary["training_jobs"]:
        job, expected = row["training_job"], row["objective"]
        found = children.get(job, "no child run")
        same = found == expected or (
            isinstance(found, float) and expected is not None and abs(found - expected) < 1e-9
        )
        print(f"  {job}: {objective} {found} {'✓' if same else f'✗ (tuning.json: {expected})'}")
        if not same:
            problems.append(job)
    if problems or len(children) != len(summary["training_jobs"]):
        raise UserError(f"MLflow's record of {name} differs from tuning.json: {problems}")


def tuning_summary(stand_in, splits: Path, runs: Path) -> Path:
    """Checks every training job, then says where the tuning job's results and logs are, and
    which command uses its best model."""
    (tuning,) = stand_in.tunings.values()
    folder = runs / tuning.name
    summary = json.loads((folder / "tuning.json").read_text())
    check_tuning_jobs(summary, folder / "logs")
    check_tracking(summary)
    print(f"each training job's log: {folder / 'logs'}/<training job>.log")
    fetched = summary.get("fetched_training_job")
    if fetched:
        print(
            f"next: make predict RUN={runs / fetched} IMAGES={splits / 'test'}   "
            "(the best job's model on the rehearsal's test images)"
        )
    return folder / "tuning.md"


@cli
def main(argv: list[str] | None = None) -> int:
    from training.launch.__main__ import positive_int, positive_minutes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--interrupt",
        nargs="?",
        const="checkpoint",
        choices=["checkpoint", "early"],
        help="a spot reclaim once a fine-tuning epoch is in S3 (early: before it is)",
    )
    parser.add_argument("--instance-count", type=positive_int, default=1, help="algo-1…N")
    parser.add_argument("--tune", action="store_true", help="rehearse make tune instead")
    parser.add_argument("--max-jobs", type=positive_int, default=3)
    parser.add_argument("--parallel", type=positive_int, default=2)
    parser.add_argument("--max-runtime-minutes", type=positive_minutes)
    parser.add_argument("--splits", type=Path, default=Path("data/splits"))
    parser.add_argument("--runs", type=Path, default=Path("runs/rehearse"))
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
    )
    rehearse(plan, args.splits, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
