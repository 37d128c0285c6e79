"""Entry point of the SageMaker training job: the seed's two-phase VGG16 transfer-learning recipe.

SageMaker runs ``python train.py --key value ...`` with the channels in SM_CHANNEL_* and writes
back what lands in SM_MODEL_DIR and SM_OUTPUT_DATA_DIR; ``make train-local`` runs it the same way
on a workstation. ``main`` reads top to bottom as the experiment:
setup → data → model → phase "frozen" → phase "fine_tuned" → outputs.

Log lines, matched by the launcher's SageMaker metric definitions (vgg_transfer/contract.py,
docs/job-contract.md):
  [epoch] phase=<p> epoch=<i>/<n> loss=.. accuracy=.. val_loss=.. val_accuracy=..
          best_val_accuracy=.. seconds=..
  [test] phase=<p> test_loss=.. test_accuracy=..
A problem the job can name (a bad setting, a channel, the weights) is one ``ERROR:`` line and
SageMaker's failure file, written once, here in ``main``.
"""

import csv
import dataclasses
import json
import os
import platform
import shutil
import signal
import sys
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from tensorflow import keras

from vgg_transfer import augmentation, batching, config, contract, distribute, phases
from vgg_transfer import cache as job_cache
from vgg_transfer import channels as job_channels
from vgg_transfer import model as vgg
from vgg_transfer.contract import FINE_TUNED, FROZEN


def fail(message: str, code: int = 2) -> int:
    """One clear line for the log, and SageMaker's failure file (it becomes FailureReason)."""
    print("ERROR: " + message, file=sys.stderr, flush=True)
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    if output_dir and os.path.isdir(output_dir):
        with open(os.path.join(output_dir, contract.FAILURE_FILE), "w") as handle:
            handle.write(message[:1000])
    return code


def install_sigterm_handler() -> None:
    # A spot interruption sends SIGTERM to the container's process 1. Under ModelTrainer that is
    # the SDK's driver shell, not this script, so this handler may never run: correctness rests
    # on the checkpoint files alone, which are replaced atomically after every epoch. The handler
    # only makes a local Ctrl-C/kill leave at once with a clear line.
    def stop(signum, frame):
        print("[signal] SIGTERM received: stopping; finished epochs are checkpointed", flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@dataclasses.dataclass
class Runtime:
    """The plumbing the recipe does not care about: settings, paths, the distribution strategy,
    whether this process is the chief, and its share of the input."""

    hp: config.Hyperparameters
    paths: config.Paths
    splits: dict  # channel → job_channels.Split
    strategy: tf.distribute.Strategy
    is_chief: bool
    description: str
    workers: int = 1
    worker_index: int = 0

    def compile(self, model, optimizer=None, extra_metrics=()) -> None:
        with self.strategy.scope():
            vgg.compile_model(model, optimizer, self.hp.xla, extra_metrics)

    @property
    def sharding(self) -> batching.Sharding:
        """This worker's share of the input, and how many pieces each batch is cut into."""
        replicas = int(self.strategy.num_replicas_in_sync)
        return batching.Sharding(self.workers, self.worker_index, replicas)

    def phase_directory(self, phase: str) -> str:
        return phases.phase_directory(self.paths.checkpoint_dir, phase, self.is_chief)


@dataclasses.dataclass
class Phase:
    """One phase of the recipe: how long it trains, and with what optimizer."""

    name: str
    epochs: int
    make_optimizer: Callable
    patience: int = 0  # early stopping; 0 = off


def frozen_phase(hp: config.Hyperparameters) -> Phase:
    return Phase(FROZEN, hp.epochs_frozen, lambda: keras.optimizers.Adam(hp.learning_rate_frozen))


def fine_tuned_phase(hp: config.Hyperparameters) -> Phase:
    return Phase(
        FINE_TUNED,
        hp.epochs_fine_tuned,
        lambda: keras.optimizers.RMSprop(learning_rate=hp.learning_rate_fine_tuned),
        hp.early_stopping_patience,
    )


@dataclasses.dataclass
class Fit:
    """What a phase trains: ``fit_model`` (the model behind the augmentation, or the head alone
    on cached features) on ``train``; ``model``'s weights are what is checkpointed."""

    model: keras.Model
    fit_model: keras.Model
    train: tf.data.Dataset
    validation: tf.data.Dataset
    setup_seconds: float = 0.0  # work done for the phase before fit(), e.g. feature caching
    callbacks: tuple = ()


@dataclasses.dataclass
class Datasets:
    caches: dict  # split → job_cache.ImageCache
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    input_count: tuple = ()  # several workers: a line per epoch of what each one read


# --- setup ---------------------------------------------------------------------------------------
def setup(argv: Optional[list]) -> Runtime:
    """Settings, channel checks and the distribution strategy. Channels are checked in seconds,
    before any GPU time is spent."""
    try:
        parsed = config.parse(argv)
    except config.ConfigError as error:
        raise config.ConfigError(f"bad hyperparameters: {error}") from None
    hp, paths = parsed.hp, parsed.paths
    for note in parsed.notes:
        print(f"[setup] {note}", flush=True)
    splits = job_channels.read_channels(
        {"train": paths.train, "validation": paths.validation, "test": paths.test}
    )
    install_sigterm_handler()
    strategy, is_chief, description = distribute.choose_strategy(hp.distribution)
    if hp.cache_features and description.startswith("multi_worker"):
        raise config.ConfigError(
            "cache_features=true runs on one host only; set it false for multi-host jobs"
        )
    problem = config.xla_problem(hp.xla, strategy.num_replicas_in_sync, distribute.keras_major())
    if problem:
        raise config.ConfigError(problem)
    # After the strategy: multi-worker collectives must be configured before any TF op runs.
    started = time.time()
    job_channels.check_decodes(splits)
    print(f"[setup] every image decodes ({time.time() - started:.1f} s)", flush=True)
    workers, worker_index = distribute.worker_shard()
    runtime = Runtime(hp, paths, splits, strategy, is_chief, description, workers, worker_index)
    keras.utils.set_random_seed(hp.seed)
    policy = vgg.set_precision(hp.mixed_precision, on_gpu=vgg.gpu_count() > 0)
    print(
        f"[setup] {description} replicas={runtime.sharding.replicas} precision={policy} "
        f"tensorflow={tf.__version__} images={job_channels.split_summary(splits)}",
        flush=True,
    )
    return runtime


# --- data: each split decoded once into a uint8 cache; epochs shuffle indices into it -------------
def make_datasets(runtime: Runtime) -> Datasets:
    hp, sharding = runtime.hp, runtime.sharding
    caches = {}
    for name, split in runtime.splits.items():
        started = time.time()
        caches[name] = job_cache.build_cache(split, hp.image_size, runtime.paths.cache_dir)
        print(f"[cache] {caches[name].describe()} ({time.time() - started:.1f} s)", flush=True)
    datasets = Datasets(
        caches,
        train=batching.make_dataset(caches["train"], hp, True, sharding),
        validation=batching.make_dataset(caches["validation"], hp, False, sharding),
        test=batching.make_dataset(caches["test"], hp, False, sharding),
    )
    if sharding.workers > 1:
        share = batching.training_share(len(caches["train"]), hp.batch_size, sharding)
        datasets.input_count = (batching.InputCount(caches["train"], share, sharding),)
    return datasets


# --- model: VGG16 conv base + the seed's head; preprocessing inside, augmentation in front -------
def build_model(runtime: Runtime) -> tuple:
    """(the model that is saved, the model fit() trains: the former behind the augmentation)."""
    hp = runtime.hp
    with runtime.strategy.scope():
        model = vgg.build_model(hp.image_size, hp.preprocessing, hp.weights, hp.dropout)
        fit_model = model
        if hp.augment:  # the training step's first op, whatever the flags
            fit_model = vgg.with_augmentation(model, seed_augmentation(hp))
    return model, fit_model


def seed_augmentation(hp: config.Hyperparameters) -> augmentation.SeedAugmentation:
    """With xla=true the augmentation compiles with the step. Without, on a CPU it is compiled on
    its own (draws, matrices and warp: measured faster there, make bench row 1e); on GPUs its ops
    run as TensorFlow's kernels, as the rest of the step does."""
    compiled = not hp.xla and vgg.gpu_count() == 0
    return augmentation.SeedAugmentation(compiled=compiled, name="augment")


# --- a phase -----------------------------------------------------------------------------------------
def train_phase(runtime: Runtime, phase: Phase, fit: Fit) -> phases.PhaseState:
    """compile → restore (after an interruption) → fit → keep the best epoch's weights."""
    directory = runtime.phase_directory(phase.name)
    state = phases.load_state(directory, phase.name, phase.epochs, config.recipe(runtime.hp))
    state.extra_seconds += fit.setup_seconds
    if state.finished:
        print(
            f"[phase] {phase.name}: finished in an earlier run ({state.epochs_done} epochs); "
            "reusing its best weights",
            flush=True,
        )
        phases.load_best(fit.model, directory, state)
        return state
    with runtime.strategy.scope():  # the optimizer's variables belong to the strategy
        runtime.compile(fit.fit_model, phase.make_optimizer())
    phases.restore(fit.model, directory, state)
    if state.epochs_done:
        print(f"[phase] {phase.name}: resuming after epoch {state.epochs_done}/{phase.epochs}",
              flush=True)  # fmt: skip
    if state.epochs_done < phase.epochs and not state.stopped_early:
        checkpoint = phases.PhaseCheckpoint(state, directory, fit.model, phase.patience)
        with runtime.strategy.scope():
            fit.fit_model.fit(
                fit.train,
                validation_data=fit.validation,
                epochs=phase.epochs,
                initial_epoch=state.epochs_done,
                callbacks=[checkpoint, *fit.callbacks],
                shuffle=False,  # the tf.data pipeline shuffles
                verbose=0,
            )
    phases.finish(directory, state)
    phases.load_best(fit.model, directory, state)
    return state


def frozen_fit(runtime: Runtime, model, fit_model, datasets: Datasets) -> Fit:
    """What the frozen phase trains: the augmenting model on images, or, with cache_features,
    the head alone on the conv base's features, computed once per image instead of once per
    epoch. Cached features cannot be augmented: that phase then trains without augmentation
    (recorded in metrics.json)."""
    hp = runtime.hp
    images = Fit(model, fit_model, datasets.train, datasets.validation,
                 callbacks=datasets.input_count)  # fmt: skip
    frozen = phases.load_state(runtime.phase_directory(FROZEN), FROZEN, hp.epochs_frozen)
    if not hp.cache_features or frozen.finished:
        return images
    started = time.time()
    in_order = batching.make_dataset(datasets.caches["train"], hp, False, runtime.sharding)
    extractor = vgg.feature_extractor(model)
    features = {
        "train": extractor.predict(in_order, verbose=0),
        "validation": extractor.predict(datasets.validation, verbose=0),
    }
    with runtime.strategy.scope():
        head = vgg.head_model(model, features["train"].shape[1:])
    feature_sets = {}
    for split, training in (("train", True), ("validation", False)):
        labels = job_channels.labels_array(runtime.splits[split])
        slices = tf.data.Dataset.from_tensor_slices((features[split], labels))
        if training:
            slices = slices.shuffle(len(labels), seed=hp.seed)
        # Batched as the image datasets of the same splits were, which passed the same checks.
        feature_sets[split] = batching.batch_images(
            slices, len(labels), hp.batch_size, training, runtime.sharding.replicas
        ).prefetch(tf.data.AUTOTUNE)
    return Fit(model, head, feature_sets["train"], feature_sets["validation"],
               setup_seconds=time.time() - started)  # fmt: skip


# --- evaluate ------------------------------------------------------------------------------------------
def evaluate(runtime: Runtime, model, test_data, phase: str) -> dict:
    """Test loss, accuracy and confusion matrix, with the phase's best weights loaded."""
    with runtime.strategy.scope():  # metrics hold variables: created in the strategy's scope
        confusion = [
            tf.keras.metrics.TrueNegatives(name="tn"),
            tf.keras.metrics.FalsePositives(name="fp"),
            tf.keras.metrics.FalseNegatives(name="fn"),
            tf.keras.metrics.TruePositives(name="tp"),
        ]
        runtime.compile(model, extra_metrics=confusion)
    result = model.evaluate(test_data, return_dict=True, verbose=0)
    metrics = {"test_loss": float(result["loss"]), "test_accuracy": float(result["accuracy"])}
    print(contract.TEST_LINE.format(phase=phase, **metrics), flush=True)
    # Every worker evaluates the whole split (batching.make_dataset), so the strategy's sums count
    # each image once per worker; loss and accuracy are ratios and need no correction.
    counts = {
        key: int(round(float(result[key]) / runtime.workers)) for key in ("tn", "fp", "fn", "tp")
    }
    metrics["confusion_matrix"] = {
        "labels": ["cat", "dog"],
        "rows_true_columns_predicted": [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]],
    }
    return metrics


# --- save ----------------------------------------------------------------------------------------------
def phase_summary(state: phases.PhaseState, train_images: int, test: dict) -> dict:
    seconds = state.seconds
    return dict(
        test,
        best_val_accuracy=state.best_val_accuracy,
        best_epoch=state.best_epoch,
        epochs_run=state.epochs_done,
        epochs_planned=state.epochs,
        stopped_early=state.stopped_early,
        seconds=round(seconds, 3),
        images_per_second=round(train_images * state.epochs_done / seconds, 2) if seconds else 0.0,
    )


def versions() -> dict:
    return {
        "tensorflow": tf.__version__,
        "keras": vgg.keras_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def metrics_of(runtime: Runtime, results: dict) -> dict:
    """metrics.json: per phase its test results and training summary, and the run's facts.
    ``results``: phase → (PhaseState, test metrics)."""
    hp, splits = runtime.hp, runtime.splits
    train_images = len(splits["train"])
    return {
        "phases": {
            name: phase_summary(state, train_images, test)
            for name, (state, test) in results.items()
        },
        "frozen_phase_augmented": bool(hp.augment and not hp.cache_features),
        "images": job_channels.split_summary(splits),
        "dataset_digest": hp.dataset_digest,
        "distribution": runtime.description,
        "replicas": runtime.sharding.replicas,
        "devices": distribute.device_names(),
        "precision_policy": keras.mixed_precision.global_policy().name,
        "config": dataclasses.asdict(hp),
        "versions": versions(),
    }


def save_outputs(runtime: Runtime, model, results: dict) -> None:
    """Model to SM_MODEL_DIR; metrics, history and resolved config to SM_OUTPUT_DATA_DIR. A
    tuning job's training job then removes its checkpoints: nothing resumes a finished one, and
    every later training job would restore them from the shared location (SageMaker mirrors the
    delete to S3)."""
    paths = runtime.paths
    vgg.save_model(model, paths.model_dir)
    os.makedirs(paths.output_data_dir, exist_ok=True)
    with open(os.path.join(paths.output_data_dir, contract.METRICS_FILE), "w") as handle:
        json.dump(metrics_of(runtime, results), handle, indent=2)
    with open(os.path.join(paths.output_data_dir, contract.CONFIG_FILE), "w") as handle:
        handle.write(config.to_json(runtime.hp, paths))
    history = os.path.join(paths.output_data_dir, contract.HISTORY_FILE)
    with open(history, "w", newline="") as handle:
        columns = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for state, _ in results.values():
            for row in state.history:
                writer.writerow(dict(row, phase=state.phase))
    print(f"[done] model in {paths.model_dir}; metrics in {paths.output_data_dir}", flush=True)
    if contract.tuning_job_member():
        shutil.rmtree(paths.checkpoint_dir, ignore_errors=True)
        print(f"[done] checkpoints removed from {paths.checkpoint_dir}", flush=True)


# --- the experiment -----------------------------------------------------------------------------------
def main(argv: Optional[list] = None) -> int:
    try:
        runtime = setup(argv)
        hp = runtime.hp
        datasets = make_datasets(runtime)
        model, fit_model = build_model(runtime)

        # Phase "frozen": freeze the conv base, train the head.
        vgg.freeze_conv_base(model)
        frozen = train_phase(runtime, frozen_phase(hp), frozen_fit(runtime, model, fit_model,
                                                                   datasets))  # fmt: skip
        frozen_test = evaluate(runtime, model, datasets.test, FROZEN)

        # Phase "fine_tuned": unfreeze the top blocks, recompile at a low rate, train.
        vgg.unfreeze_from(model, hp.unfreeze_from)
        fine_tuned = train_phase(runtime, fine_tuned_phase(hp), Fit(
            model, fit_model, datasets.train, datasets.validation,
            callbacks=datasets.input_count))  # fmt: skip
        fine_tuned_test = evaluate(runtime, model, datasets.test, FINE_TUNED)

        # Outputs: the chief alone writes them.
        if runtime.is_chief:
            save_outputs(runtime, model, {FROZEN: (frozen, frozen_test),
                                          FINE_TUNED: (fine_tuned, fine_tuned_test)})  # fmt: skip
    except contract.JobError as error:
        return fail(str(error))
    distribute.finish_together(runtime.workers, runtime.is_chief)  # several hosts: ends here
    return 0


if __name__ == "__main__":
    sys.exit(main())
