"""``make rehearse``: the whole ``make train-cloud`` path, offline, before money is spent.

    python -m training.rehearse [--experiment smoke] [--interrupt] [--hp key=value ...]

Starts an AWS emulator (moto) on 127.0.0.1 in this process, creates the stack's bucket, execution
role and launcher policy from the Pulumi program's own policy documents, and lets the SageMaker
stand-in (training/standin.py) run whatever training job arrives. Then it runs the unchanged
``make train-cloud`` path against it: preflight, staging, submission, following with streamed logs,
fetching the results and the report. IAM is enforced (training/standin_iam.py): the launcher signs
as a user holding only the launcher policy, the stand-in acts as the execution role. ``--interrupt`` adds a spot interruption after the first
fine-tuning epoch. At the end it prints what the run would have cost on AWS.
"""

import argparse
import json
import logging
import os
import socket
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import boto3

from training.errors import UserError, cli
from training.infra_outputs import INFRA_DIR, save_outputs

STACK = "rehearse"
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


def what_it_would_cost(report: Path) -> str:
    data = json.loads(report.with_suffix(".json").read_text())
    cost = data.get("cost_usd")
    billable = data.get("billable_seconds")
    return f"on AWS this run would have billed {billable} s of {data['instance_type']}" + (
        f" ≈ ${cost:.4f} at the on-demand rate" if cost is not None else ""
    )


def rehearse(
    experiment: str,
    overrides: list[str],
    splits: Path,
    runs: Path,
    interrupt: bool = False,
    infra_dir: Path = INFRA_DIR,
    instance_count: int = 1,
) -> Path:
    from training.data.sample import ensure_sample
    from training.launch.__main__ import main as launch
    from training.launch.experiments import load
    from training.standin import Interruption, StandIn, check_can_run
    from training.standin_iam import enforced

    load(experiment, overrides)  # a bad name or setting is one line, before anything starts
    try:
        check_can_run()
    except RuntimeError as error:
        raise UserError(str(error)) from error
    if experiment == "smoke":
        ensure_sample(splits)
    with emulator() as endpoint:
        create_stack(infra_dir)
        act_as_launcher()
        interruption = Interruption("[epoch] phase=fine_tuned epoch=1/") if interrupt else None
        stand_in = StandIn(endpoint, runs / "standin", interruption=interruption).start()
        args = ["cloud", "--experiment", experiment, "--stack", STACK, "--splits", str(splits),
                "--runs", str(runs)]  # fmt: skip
        if instance_count > 1:
            args += ["--instance-count", str(instance_count)]
        if overrides:
            args += ["--hp", *overrides]
        try:
            with enforced():  # from here every request is checked against its caller's policies
                code = launch(args)
        finally:
            stand_in.stop()
        if code != 0:
            raise UserError(f"the rehearsal of {experiment} failed (exit {code}); see above")
        (run,) = stand_in.finished.values()
        report = runs / run.name / "report.md"
        print(what_it_would_cost(report))
        return report


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--interrupt", action="store_true", help="a spot interruption mid-phase")
    parser.add_argument("--instance-count", type=int, default=1, help="instances (algo-1…N)")
    parser.add_argument("--splits", type=Path, default=Path("data/splits"))
    parser.add_argument("--runs", type=Path, default=Path("runs/rehearse"))
    args = parser.parse_args(argv)
    rehearse(
        args.experiment,
        args.hp,
        args.splits,
        args.runs,
        args.interrupt,
        instance_count=args.instance_count,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
