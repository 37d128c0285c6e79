"""``make infra-preview|infra-up|infra-down``: the stack, driven through Pulumi's Automation API.

    python -m infra.cli up --stack dev

No manual steps: the CLI, the state backend and the secrets passphrase are set up by
``infra/pulumi_cli.py`` (what the user already has wins). Pulumi's own progress streams as it
runs. ``up`` writes the stack's outputs to ``.infra/<stack>.json``, the file the launcher reads
(training/common/infra_outputs.py).
"""

import argparse
import os
import sys
from pathlib import Path

from pulumi import automation as auto

from infra import pulumi_cli
from training.common.errors import UserError, cli
from training.common.infra_outputs import save_outputs

REPO = Path(__file__).resolve().parent.parent  # where Pulumi.yaml is


def program_env() -> dict[str, str]:
    """The program runs with this project's .venv, so the CLI finds pulumi_aws without setup."""
    venv = Path(sys.prefix)
    return {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def open_stack(name: str) -> auto.Stack:
    root = pulumi_cli.command_root()
    try:
        command = auto.PulumiCommand(root=root)
    except Exception as error:  # the CLI would not run, or is older than this SDK supports
        where = f" in {root}" if root else " on PATH"
        raise UserError(f"the pulumi CLI{where} does not run: {error}") from error
    backend = pulumi_cli.backend()
    print(f"[pulumi] {command.command} {command.version}; {backend.description}", flush=True)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(REPO),
        pulumi_command=command,
        env_vars={**program_env(), **backend.env},
        secrets_provider=backend.secrets_provider,
    )
    return run_step(
        f"selecting stack {name}",
        lambda: auto.create_or_select_stack(name, work_dir=str(REPO), opts=options),
    )


def run_step(what: str, step):
    """One Automation API call; its failure is one line (Pulumi printed the details above)."""
    try:
        return step()
    except auto.CommandError as error:
        raise UserError(f"{what} failed: {last_error_line(str(error))}") from error


def last_error_line(text: str) -> str:
    """The CLI's own error line out of a CommandError's dump of the whole command."""
    lines = []
    for line in text.splitlines():
        for label in ("stderr:", "stdout:"):  # CommandError's own labels
            line = line.strip().removeprefix(label).strip()
        if line:
            lines.append(line)
    errors = [line for line in lines if line.lower().startswith("error:")]
    return (errors or lines or ["see the output above"])[-1]


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["preview", "up", "down"])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    stack = open_stack(args.stack)
    if args.action == "preview":
        run_step("pulumi preview", lambda: stack.preview(on_output=print))
    elif args.action == "up":
        result = run_step("pulumi up", lambda: stack.up(on_output=print))
        outputs = {key: output.value for key, output in result.outputs.items()}
        path = save_outputs(outputs, args.stack)
        print(f"wrote {path}; the launcher reads it (make train-cloud STACK={args.stack})")
    else:
        print(
            "the bucket must be empty unless forceDestroy is true: `aws s3 rm --recursive "
            "s3://<bucket>` and delete its object versions, or set vgg-dogs-cats:forceDestroy"
        )
        run_step("pulumi destroy", lambda: stack.destroy(on_output=print))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
