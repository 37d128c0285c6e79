"""Hyperparameters and paths of the training job, parsed from ``--key value`` arguments.

Each key is the same word in the experiment files, the launcher and here. SageMaker passes
hyperparameters as strings, so every value is parsed explicitly (booleans included).
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Optional

from vgg_transfer import contract

# Layer names of keras.applications.VGG16 without its top; ``unfreeze_from`` must be one of them.
VGG16_LAYERS = [
    "block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1", "block2_conv2", "block2_pool",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool",
]  # fmt: skip
PREPROCESSING_CHOICES = ("rescale", "vgg16")
DISTRIBUTION_CHOICES = ("auto", "cpu", "gpu", "mirrored", "multi_worker")


class ConfigError(contract.JobError, ValueError):
    """A hyperparameter or path the job cannot use; the message says what to change."""


@dataclasses.dataclass
class Hyperparameters:
    # Defaults reproduce the seed study (docs/seed-study.md); every other behaviour is an option.
    image_size: int = 150  # pixels per side fed to VGG16
    batch_size: int = 64  # global batch, split evenly across replicas
    preprocessing: str = "rescale"  # "rescale": x/255 (the seed) | "vgg16": preprocess_input
    augment: bool = True  # the seed's random affine + horizontal flip, training images only
    dropout: float = 0.0  # dropout before the output layer; the seed had none
    weights: str = "imagenet"  # "imagenet" (download) | "none" (random) | path to a no-top .h5
    # phase "frozen": the conv base is frozen, only the head trains
    epochs_frozen: int = 30
    learning_rate_frozen: float = 0.001  # Adam's Keras default
    cache_features: bool = False  # run the conv base once per image; frozen phase unaugmented
    # phase "fine_tuned": layers from unfreeze_from on train too
    epochs_fine_tuned: int = 50
    learning_rate_fine_tuned: float = 1e-5  # RMSprop
    unfreeze_from: str = "block4_conv1"
    early_stopping_patience: int = 0  # epochs without val_accuracy gain; 0 = off (full: 10)
    # speed and reproducibility
    mixed_precision: bool = False  # float16 on GPUs, bfloat16 on CPUs
    xla: bool = False  # compile train and eval steps with XLA
    seed: int = 1
    distribution: str = "auto"  # auto | cpu | gpu | mirrored | multi_worker
    dataset_digest: str = ""  # recorded in metrics.json so a result is tied to its data


@dataclasses.dataclass
class Paths:
    train: str
    validation: str
    test: str
    model_dir: str
    output_data_dir: str
    checkpoint_dir: str
    cache_dir: str  # where a split's image cache goes when it does not fit in memory


def _env(name: str, fallback: str) -> str:
    return os.environ.get(name, fallback)


def default_paths() -> dict[str, str]:
    """SageMaker's SM_* variables, or a local tree under ./opt_ml when they are absent."""
    local = os.path.join(os.getcwd(), "opt_ml")
    model_dir = _env("SM_MODEL_DIR", os.path.join(local, "model"))
    return {
        "train": _env("SM_CHANNEL_TRAIN", os.path.join(local, "input/data/train")),
        "validation": _env("SM_CHANNEL_VALIDATION", os.path.join(local, "input/data/validation")),
        "test": _env("SM_CHANNEL_TEST", os.path.join(local, "input/data/test")),
        "model_dir": model_dir,
        "output_data_dir": _env("SM_OUTPUT_DATA_DIR", os.path.join(local, "output/data")),
        # SageMaker syncs this folder with the job's CheckpointConfig S3 URI.
        "checkpoint_dir": contract.OptMl().checkpoints
        if os.environ.get("SM_MODEL_DIR")
        else os.path.join(local, "checkpoints"),
        # On the instance's storage volume beside the channels (/opt/ml/input), never in the
        # synced checkpoint folder or the packed outputs.
        "cache_dir": os.path.join(os.path.dirname(model_dir), "input", "cache"),
    }


def parse_bool(value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 with usage; we want one clear line
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__, allow_abbrev=False)
    for field in dataclasses.fields(Hyperparameters):
        kind = {"int": int, "float": float, "bool": parse_bool, "str": str}[
            field.type if isinstance(field.type, str) else field.type.__name__
        ]
        parser.add_argument("--" + field.name, type=kind, default=field.default)
    for name, default in default_paths().items():
        parser.add_argument("--" + name, default=default)
    return parser


def _drop_reserved(argv: list) -> tuple:
    """argv without SageMaker's reserved ``--<name> [value]`` pairs, and a note per one dropped."""
    kept, notes, index = [], [], 0
    while index < len(argv):
        item = str(argv[index])
        name = item[2:].split("=", 1)[0] if item.startswith("--") else ""
        if not name.startswith(contract.RESERVED_PREFIXES):
            kept.append(argv[index])
            index += 1
            continue
        has_value = "=" not in item and index + 1 < len(argv)
        has_value = has_value and not str(argv[index + 1]).startswith("--")
        notes.append(f"ignoring {name}: a name SageMaker reserves, not a hyperparameter of the job")
        index += 2 if has_value else 1
    return kept, notes


@dataclasses.dataclass
class Parsed:
    hp: Hyperparameters
    paths: Paths
    notes: list  # what the job was given and set aside, one line each, for its log


def parse(argv: Optional[list] = None, environ: Optional[dict] = None) -> Parsed:
    """The job's settings from its command line and SageMaker's environment; raises ConfigError
    naming a bad key or value.

    Two things the platform decides win over the command line, each with a note:
    - the model goes to ``SM_MODEL_DIR``, the folder SageMaker packs into model.tar.gz, whatever
      ``--model_dir`` says (AWS's TensorFlow toolkit passes ``--model_dir <s3 path>/<job>/model``
      to a tuning job's training jobs, or ``None/<job>/model`` when no such path was sent);
    - a tuning job's training jobs share one CheckpointConfig, so each checkpoints into a folder
      of its own, ``<checkpoint_dir>/<training job name>``, which its spot restarts find again.
    """
    environ = os.environ if environ is None else environ
    argv, notes = _drop_reserved(list(sys.argv[1:] if argv is None else argv))
    namespace, unknown = build_parser().parse_known_args(argv)
    if unknown:
        known = ", ".join(f.name for f in dataclasses.fields(Hyperparameters))
        raise ConfigError(
            "unknown hyperparameter(s) {}; known keys: {}".format(" ".join(unknown), known)
        )
    values = vars(namespace)
    hp = Hyperparameters(**{f.name: values[f.name] for f in dataclasses.fields(Hyperparameters)})
    paths = Paths(**{f.name: values[f.name] for f in dataclasses.fields(Paths)})
    validate(hp)
    platform_model_dir = environ.get("SM_MODEL_DIR")
    if platform_model_dir and paths.model_dir != platform_model_dir:
        notes.append(
            f"model_dir={paths.model_dir} from the command line is set aside: the model goes to "
            f"SM_MODEL_DIR={platform_model_dir}, which SageMaker uploads as model.tar.gz"
        )
        paths.model_dir = platform_model_dir
    member = contract.tuning_job_member(environ)
    if member:
        paths.checkpoint_dir = os.path.join(paths.checkpoint_dir, member)
        notes.append(
            f"started by a tuning job: checkpoints in {paths.checkpoint_dir}, this training "
            "job's own folder under the tuning job's shared checkpoint location"
        )
    return Parsed(hp, paths, notes)


def parse_args(argv: Optional[list] = None):
    """Returns (Hyperparameters, Paths); raises ConfigError naming the bad key or value."""
    parsed = parse(argv)
    return parsed.hp, parsed.paths


def validate(hp: Hyperparameters) -> None:
    problems = []
    if hp.image_size < 32:
        problems.append(f"image_size={hp.image_size} is below VGG16's minimum of 32")
    if hp.batch_size < 1:
        problems.append(f"batch_size={hp.batch_size} must be at least 1")
    if hp.preprocessing not in PREPROCESSING_CHOICES:
        problems.append(
            f"preprocessing={hp.preprocessing!r}: choose one of {PREPROCESSING_CHOICES}"
        )
    if hp.distribution not in DISTRIBUTION_CHOICES:
        problems.append(f"distribution={hp.distribution!r}: choose one of {DISTRIBUTION_CHOICES}")
    if hp.unfreeze_from not in VGG16_LAYERS:
        problems.append(
            "unfreeze_from={!r} is not a VGG16 layer; use one of {}".format(
                hp.unfreeze_from, ", ".join(VGG16_LAYERS)
            )
        )
    if not 0.0 <= hp.dropout < 1.0:
        problems.append(f"dropout={hp.dropout} must be in [0, 1)")
    for name in ("epochs_frozen", "epochs_fine_tuned", "early_stopping_patience"):
        if getattr(hp, name) < 0:
            problems.append(f"{name}={getattr(hp, name)} must not be negative")
    for name in ("learning_rate_frozen", "learning_rate_fine_tuned"):
        if getattr(hp, name) <= 0:
            problems.append(f"{name}={getattr(hp, name)} must be positive")
    if problems:
        raise ConfigError("; ".join(problems))


# Settings that change how fast a run goes, not what it learns: a checkpoint written with other
# values of these resumes. Every other hyperparameter defines the recipe.
SPEED_SETTINGS = ("mixed_precision", "xla", "distribution")


def recipe(hp: Hyperparameters) -> dict:
    """The settings that define what a run learns (kept in its checkpoints)."""
    return {k: v for k, v in dataclasses.asdict(hp).items() if k not in SPEED_SETTINGS}


def recipe_differences(stored: dict, current: dict) -> list:
    """ "key: stored → current" for each recipe setting that differs. A setting the stored
    recipe lacks, added to the job since, counts as its default, so adding a hyperparameter
    with a default leaves every checkpoint resumable."""
    defaults = dataclasses.asdict(Hyperparameters())
    differences = []
    for key, value in current.items():
        before = stored.get(key, defaults.get(key))
        if before != value:
            differences.append(f"{key}: {before!r} → {value!r}")
    return differences


def xla_problem(xla: bool, replicas: int, keras_major: int) -> Optional[str]:
    """XLA with several replicas fails under Keras 2 (TF 2.11-2.15: keras-team/keras#17187,
    tensorflow#58787); the launcher and the job both refuse it up front."""
    if xla and replicas > 1 and keras_major < 3:
        return (
            f"xla=true with {replicas} replicas fails under Keras 2 (TensorFlow before 2.16); "
            "set xla=false, or train on one GPU"
        )
    return None


def batch_problem(batch_size: int, replicas: int) -> Optional[str]:
    """The strategy cuts each batch into one piece per replica; Keras 2 and 3 both fail mid-epoch
    on uneven pieces (docs/job-contract.md). The launcher and the job both refuse it up front."""
    if batch_size % replicas:
        return (
            f"batch_size={batch_size} does not split evenly over {replicas} replicas: "
            f"use a multiple of {replicas}"
        )
    return None


def to_json(hp: Hyperparameters, paths: Paths) -> str:
    return json.dumps(
        {"hyperparameters": dataclasses.asdict(hp), "paths": dataclasses.asdict(paths)}, indent=2
    )
