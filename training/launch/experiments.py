"""Named experiments (training/experiments/<name>.yaml) and per-run overrides.

Every hyperparameter goes through the training job's own parser (training/job/vgg_transfer/
config.py) once, here, at the command line: an experiment file's values and ``HP=key=value``
overrides become the job's typed ``Hyperparameters``, exactly as train.py will parse what it is
sent. So ``5e-5``, ``5E-05`` and ``0.00005`` are one value everywhere after this point, and a bad
key or value fails here, before anything runs, with the message the job would give.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from vgg_transfer import config as job_config
from vgg_transfer.config import Hyperparameters

from training.common.errors import UserError

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"
SETTINGS = (
    "description",
    "train_split",
    "seed_reference",
    "instance_type",
    "instance_count",
    "spot",
    "max_runtime_minutes",
    "max_wait_minutes",
    "hyperparameters",
    "tuning",
)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    train_split: str
    seed_reference: str | None
    instance_type: str
    instance_count: int
    spot: bool
    max_runtime_minutes: float
    max_wait_minutes: float
    hp: Hyperparameters = field(default_factory=Hyperparameters)  # parsed by the job's parser
    tuning: dict = field(default_factory=dict)  # make tune's ranges; none: DEFAULT_RANGES

    @property
    def channels(self) -> dict[str, str]:
        """Channel name → the prepared split it reads."""
        return {"train": self.train_split, "validation": "validation", "test": "test"}

    @property
    def max_runtime_seconds(self) -> int:
        """SageMaker's MaxRuntimeInSeconds: whole seconds, at least one."""
        return max(1, round(self.max_runtime_minutes * 60))

    @property
    def max_wait_seconds(self) -> int:
        return max(1, round(self.max_wait_minutes * 60))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``key=value`` items as the strings the job's parser takes (no YAML: it would read
    ``5e-5`` as a string and ``1e5`` as one too)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r} is not key=value (e.g. epochs_fine_tuned=10)")
        overrides[key.strip()] = value.strip()
    return overrides


def to_argument(value) -> str:
    """A value as the job's command line takes it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_hyperparameters(values: dict, base: Hyperparameters | None = None) -> Hyperparameters:
    """``values`` (key → value or its text) over ``base`` (default: the job's defaults), each
    through the job's own parser; raises UserError naming a bad key or value."""
    known = {f.name for f in dataclasses.fields(job_config.Hyperparameters)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    merged = {**dataclasses.asdict(base or job_config.Hyperparameters()), **values}
    argv = [item for key, value in merged.items() for item in (f"--{key}", to_argument(value))]
    try:
        return job_config.parse(argv, environ={}).hp
    except job_config.ConfigError as error:
        raise UserError(f"bad hyperparameter: {error}") from error


def _json_decodes(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def to_hyperparameter(value, decodes: int = 2) -> str:
    """A value as CreateTrainingJob must carry it so that train.py receives ``to_argument``.

    The container JSON-decodes each hyperparameter on its way to the command line and re-encodes
    what decoded as JSON: "1e5" would arrive as "100000.0". A ModelTrainer job decodes twice (the
    SDK's scripts/environment.py, then common/utils.hyperparameters_to_cli_args); a tuning job's
    training jobs run the image's own toolkit, which decodes once. A string that would decode is
    JSON-encoded that many times, so each decode peels one layer off."""
    text = to_argument(value)
    if isinstance(value, str) and _json_decodes(text):
        for _ in range(decodes):
            text = json.dumps(text)
    return text


def from_hyperparameter(text: str) -> str:
    """The inverse of ``to_hyperparameter`` for a string value (e.g. to show a job's digest)."""
    for _ in range(2):
        if text.startswith('"'):
            text = json.loads(text)
    return text


def load(name: str, overrides: list[str] | None = None) -> Experiment:
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(available())}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    values = {**(data.pop("hyperparameters", None) or {}), **parse_overrides(overrides or [])}
    try:
        return Experiment(name=name, hp=parse_hyperparameters(values), **data)
    except TypeError as error:
        raise UserError(f"{path}: {error}") from error


DEFAULT_RANGES = {
    "learning_rate_fine_tuned": {"min": 1e-6, "max": 1e-4, "scale": "Logarithmic"},
    "unfreeze_from": ["block3_conv1", "block4_conv1", "block5_conv1"],
    "learning_rate_frozen": {"min": 1e-4, "max": 1e-2, "scale": "Logarithmic"},
}


def tuning_ranges(experiment: Experiment) -> dict:
    """The experiment's ranges (or the defaults), each checked against the job's own parser."""
    ranges = experiment.tuning or DEFAULT_RANGES
    for name, spec in ranges.items():
        values = spec if isinstance(spec, list) else [spec.get("min"), spec.get("max")]
        if not isinstance(spec, list) and (
            None in values or spec.get("scale", "Auto") not in ("Auto", "Linear", "Logarithmic")
        ):
            raise UserError(
                f"tuning range {name}: give {{min: .., max: .., scale: Linear|Logarithmic}} or a "
                f"list of values, not {spec!r}"
            )
        for value in values:
            parse_hyperparameters({name: value})
    return ranges
