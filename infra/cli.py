"""``make infra-preview|infra-up|infra-down``: the pulumi CLI, run with this project's venv.

    python -m infra.cli up --stack dev

``up`` writes ``pulumi stack output --json`` to ``.infra/<stack>.json``, the file the launcher
reads (training/launch/infra_outputs.py).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from training.common.errors import UserError, cli
from training.common.infra_outputs import save_outputs

REPO = Path(__file__).resolve().parent.parent
INSTALL_HINT = (
    "the pulumi CLI is not installed (or not on PATH). Install it as described on "
    "pulumi.com/docs/install (for example `curl -fsSL https://get.pulumi.com | sh`), then log in "
    "to a state backend: `pulumi login --local` keeps state in ~/.pulumi on this machine, or "
    "`pulumi login s3://<state-bucket>` shares it; then re-run this command"
)


def pulumi_binary() -> str:
    binary = shutil.which("pulumi")
    if not binary:
        raise UserError(INSTALL_HINT)
    return binary


def pulumi_env() -> dict[str, str]:
    """The program runs with this project's .venv, so pulumi finds pulumi_aws without setup."""
    venv = Path(sys.prefix)
    env = dict(os.environ, VIRTUAL_ENV=str(venv))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args: list[str], capture: bool = False) -> str:
    result = subprocess.run(
        [pulumi_binary(), *args],
        cwd=REPO,
        env=pulumi_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    if result.returncode != 0:
        raise UserError(f"`pulumi {' '.join(args)}` failed (exit {result.returncode}); see above")
    return result.stdout or ""


def select_stack(stack: str) -> None:
    run(["stack", "select", "--create", stack])


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["preview", "up", "down"])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    pulumi_binary()
    select_stack(args.stack)
    if args.action == "preview":
        run(["preview", "--stack", args.stack])
    elif args.action == "up":
        run(["up", "--stack", args.stack])
        outputs = json.loads(
            run(["stack", "output", "--json", "--stack", args.stack], capture=True)
        )
        path = save_outputs(outputs, args.stack)
        print(f"wrote {path}; the launcher reads it (make train-cloud STACK={args.stack})")
    else:
        print(
            "the bucket must be empty unless forceDestroy is true: `aws s3 rm --recursive "
            "s3://<bucket>` and delete its object versions, or set vgg-dogs-cats:forceDestroy"
        )
        run(["destroy", "--stack", args.stack])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
