"""The infra → launcher contract: ``.infra/<stack>.json``, written by ``make infra-up``.

The file is ``pulumi stack output --json`` verbatim, so its keys are the names the Pulumi program
exports (infra/__main__.py); both sides' tests share the names below.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from training.common.errors import UserError

INFRA_DIR = Path(".infra")
OUTPUT_KEYS = (
    "bucket_name",
    "role_arn",
    "region",
    "data_prefix",
    "code_prefix",
    "weights_prefix",
    "outputs_prefix",
    "checkpoints_prefix",
    "launcher_policy_arn",
)


@dataclass(frozen=True)
class InfraOutputs:
    bucket_name: str
    role_arn: str
    region: str
    data_prefix: str
    code_prefix: str
    weights_prefix: str
    outputs_prefix: str
    checkpoints_prefix: str
    launcher_policy_arn: str

    @property
    def bucket(self) -> str:
        return self.bucket_name


def outputs_path(stack: str, directory: Path = INFRA_DIR) -> Path:
    return directory / f"{stack}.json"


def parse_outputs(data: dict, source: str) -> InfraOutputs:
    missing = [key for key in OUTPUT_KEYS if not data.get(key)]
    if missing:
        raise UserError(
            f"{source} lacks {', '.join(missing)}; re-run `make infra-up` to refresh it"
        )
    return InfraOutputs(**{key: str(data[key]) for key in OUTPUT_KEYS})


def load_outputs(stack: str, directory: Path = INFRA_DIR) -> InfraOutputs:
    path = outputs_path(stack, directory)
    if not path.exists():
        raise UserError(
            f"no infra outputs in {path}: run `make infra-up STACK={stack}` first "
            "(it provisions the bucket and role and writes this file)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); re-run `make infra-up`") from error
    return parse_outputs(data, str(path))


def save_outputs(data: dict, stack: str, directory: Path = INFRA_DIR) -> Path:
    parse_outputs(data, "pulumi stack output")  # refuse to write a file the launcher rejects
    path = outputs_path(stack, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
