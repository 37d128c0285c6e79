"""Named experiments (training/experiments/<name>.yaml) and per-run overrides.

Hyperparameter keys and values are validated by the training job's own parser
(training/job/vgg_transfer/config.py), so a bad key or value fails here, before anything runs,
with the same message the job would give.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from vgg_transfer import config as job_config

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


@dataclass
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
    hyperparameters: dict = field(default_factory=dict)
    tuning: dict = field(
        default_factory=dict
    )  # make tune's ranges; none: training/launch/tune.py's

    @property
    def max_runtime_seconds(self) -> int:
        """SageMaker's MaxRuntimeInSeconds: whole seconds, at least one."""
        return max(1, round(self.max_runtime_minutes * 60))

    @property
    def max_wait_seconds(self) -> int:
        return max(1, round(self.max_wait_minutes * 60))

    @property
    def hp(self) -> job_config.Hyperparameters:
        """The job's own settings object, resolved: what train.py will parse."""
        return job_config.Hyperparameters(**self.resolved_hyperparameters())

    def resolved_hyperparameters(self) -> dict:
        """Every job hyperparameter: the job's defaults overlaid with this experiment's values."""
        values = dataclasses.asdict(job_config.Hyperparameters())
        values.update(self.hyperparameters)
        return values

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["hyperparameters"] = self.resolved_hyperparameters()
        return data


def available() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def parse_value(text: str):
    """YAML scalars, so that `10`, `1e-5`, `true` and `imagenet` mean what they say."""
    return yaml.safe_load(text) if text != "" else ""


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not key=value (e.g. epochs_fine_tuned=10)")
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def validate_hyperparameters(values: dict) -> None:
    """Runs the job's parser over the values, as the job will receive them."""
    known = {f.name for f in dataclasses.fields(job_config.Hyperparameters)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    args = []
    for key, value in values.items():
        args += [f"--{key}", to_argument(value)]
    try:
        job_config.parse_args(args)
    except job_config.ConfigError as error:
        raise UserError(f"bad hyperparameter: {error}") from error


def to_argument(value) -> str:
    """A value as the job's command line takes it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
    hyperparameters = dict(data.get("hyperparameters") or {})
    hyperparameters.update(parse_overrides(overrides or []))
    validate_hyperparameters(hyperparameters)
    try:
        experiment = Experiment(name=name, **{k: v for k, v in data.items() if k in SETTINGS})
    except TypeError as error:
        raise UserError(f"{path}: {error}") from error
    experiment.hyperparameters = hyperparameters
    return experiment


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
            validate_hyperparameters({name: value})
    return ranges
