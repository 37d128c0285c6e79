"""Entry point of the SageMaker training job: the seed's two-phase VGG16 transfer-learning recipe.

SageMaker runs ``python train.py --key value ...`` with the channels in SM_CHANNEL_* and writes
back what lands in SM_MODEL_DIR and SM_OUTPUT_DATA_DIR; ``make train-local`` runs it the same way
on a workstation. It reads top to bottom as the experiment:
setup → data → model → phase "frozen" → phase "fine_tuned" → outputs.

Log lines (matched by the launcher's SageMaker metric definitions, see docs/job-contract.md):
  [epoch] phase=<p> epoch=<i>/<n> loss=.. accuracy=.. val_loss=.. val_accuracy=.. seconds=..
  [test] phase=<p> test_loss=.. test_accuracy=..
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

from vgg_transfer import config, data, distribute, phases
from vgg_transfer import model as vgg


def fail(message: str, code: int = 2) -> int:
    """One clear line for the log, and SageMaker's failure file (it becomes FailureReason)."""
    print("ERROR: " + message, file=sys.stderr, flush=True)
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    if output_dir and os.path.isdir(output_dir):
        with open(os.path.join(output_dir, "failure"), "w") as handle:
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
    strategy: tf.distribute.Strategy
    is_chief: bool
    description: str
    workers: int = 1
    worker_index: int = 0

    def compile(self, model, optimizer=None, extra_metrics=()) -> None:
        with self.strategy.scope():
            vgg.compile_model(model, optimizer, self.hp.xla, extra_metrics)

    @property
    def replicas(self) -> int:
        """How many pieces the strategy cuts each batch into (all workers' replicas)."""
        return int(self.strategy.num_replicas_in_sync)

    def phase_directory(self, phase: str) -> str:
        return phases.phase_directory(self.paths.checkpoint_dir, phase, self.is_chief)


def train_phase(
    runtime: Runtime,
    name: str,
    *,
    model,
    fit_model,
    make_optimizer: Callable,
    train_data,
    validation_data,
    epochs: int,
    patience: int = 0,
    setup_seconds: float = 0.0,
    callbacks: tuple = (),
) -> phases.PhaseState:
    """compile → restore (after an interruption) → fit → keep the best epoch's weights.

    ``fit_model`` is what trains (``model`` behind the augmentation, or the head alone on cached
    features); ``model``'s weights are what is checkpointed. ``setup_seconds`` (feature caching)
    count towards the phase's time."""
    directory = runtime.phase_directory(name)
    state = phases.load_state(directory, name, epochs)
    state.extra_seconds += setup_seconds
    if state.finished:
        print(
            f"[phase] {name}: finished in an earlier run ({state.epochs_done} epochs); reusing its best weights",
            flush=True,
        )
        phases.load_best(model, directory, state)
        return state
    with runtime.strategy.scope():  # the optimizer's variables belong to the strategy
        runtime.compile(fit_model, make_optimizer())
    phases.restore(model, directory, state)
    if state.epochs_done:
        print(f"[phase] {name}: resuming after epoch {state.epochs_done}/{epochs}", flush=True)
    if state.epochs_done < epochs and not state.stopped_early:
        with runtime.strategy.scope():
            fit_model.fit(
                train_data,
                validation_data=validation_data,
                epochs=epochs,
                initial_epoch=state.epochs_done,
                callbacks=[phases.PhaseCheckpoint(state, directory, model, patience), *callbacks],
                shuffle=False,  # the tf.data pipeline shuffles
                verbose=0,
            )
    phases.finish(directory, state)
    phases.load_best(model, directory, state)
    return state


def phase_finished(runtime: Runtime, name: str, epochs: int) -> bool:
    return phases.load_state(runtime.phase_directory(name), name, epochs).finished


def cached_feature_datasets(runtime: Runtime, model, plain_train, validation_data, splits):
    """The frozen conv base run once over train and validation; returns the head-only model
    (sharing the full model's head layers) and datasets of the cached features."""
    hp = runtime.hp
    extractor = vgg.feature_extractor(model)
    train_features = extractor.predict(plain_train, verbose=0)
    validation_features = extractor.predict(validation_data, verbose=0)
    with runtime.strategy.scope():
        head = vgg.head_model(model, train_features.shape[1:])
    train_labels = data.labels_array(splits["train"])
    validation_labels = data.labels_array(splits["validation"])
    # Batched as the image datasets of the same splits were, which passed the same checks.
    train = data.batch_images(
        tf.data.Dataset.from_tensor_slices((train_features, train_labels)).shuffle(
            len(train_labels), seed=hp.seed
        ),
        len(train_labels),
        hp.batch_size,
        training=True,
        replicas=runtime.replicas,
    ).prefetch(tf.data.AUTOTUNE)
    validation = data.batch_images(
        tf.data.Dataset.from_tensor_slices((validation_features, validation_labels)),
        len(validation_labels),
        hp.batch_size,
        training=False,
        replicas=runtime.replicas,
    ).prefetch(tf.data.AUTOTUNE)
    return head, train, validation


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
    print(phases.TEST_LINE.format(phase=phase, **metrics), flush=True)
    # Every worker evaluates the whole split (data.make_dataset), so the strategy's sums count
    # each image once per worker; loss and accuracy are ratios and need no correction.
    counts = {
        key: int(round(float(result[key]) / runtime.workers)) for key in ("tn", "fp", "fn", "tp")
    }
    metrics["confusion_matrix"] = {
        "labels": ["cat", "dog"],
        "rows_true_columns_predicted": [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]],
    }
    return metrics


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


def versions() -> dict[str, str]:

    return {
        "tensorflow": tf.__version__,
        "keras": vgg.keras_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def save_outputs(model, paths: config.Paths, hp, metrics: dict, states) -> None:
    """Model to SM_MODEL_DIR; metrics, history and resolved config to SM_OUTPUT_DATA_DIR."""
    vgg.save_model(model, paths.model_dir)
    os.makedirs(paths.output_data_dir, exist_ok=True)
    with open(os.path.join(paths.output_data_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(paths.output_data_dir, "config.json"), "w") as handle:
        handle.write(config.to_json(hp, paths))
    with open(os.path.join(paths.output_data_dir, "history.csv"), "w", newline="") as handle:
        columns = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for state in states:
            for row in state.history:
                writer.writerow(dict(row, phase=state.phase))


def setup(argv: Optional[list]):
    """Settings, channel checks and the distribution strategy; (runtime, splits) or a failure
    line's exit code. Channels are checked in seconds, before any GPU time is spent."""
    try:
        parsed = config.parse(argv)
    except config.ConfigError as error:
        return fail(f"bad hyperparameters: {error}")
    hp, paths = parsed.hp, parsed.paths
    for note in parsed.notes:
        print(f"[setup] {note}", flush=True)
    try:
        splits = data.read_channels(
            {"train": paths.train, "validation": paths.validation, "test": paths.test}
        )
    except data.ChannelError as error:
        return fail(str(error))
    install_sigterm_handler()
    try:
        strategy, is_chief, description = distribute.choose_strategy(hp.distribution)
    except ValueError as error:
        return fail(str(error))
    if hp.cache_features and description.startswith("multi_worker"):
        return fail("cache_features=true runs on one host only; set it false for multi-host jobs")
    xla_problem = config.xla_problem(
        hp.xla, strategy.num_replicas_in_sync, distribute.keras_major()
    )
    if xla_problem:
        return fail(xla_problem)
    # After the strategy: multi-worker collectives must be configured before any TF op runs.
    started = time.time()
    try:
        data.check_decodes(splits)
    except data.ChannelError as error:
        return fail(str(error))
    print(f"[setup] every image decodes ({time.time() - started:.1f} s)", flush=True)
    workers, worker_index = distribute.worker_shard()
    runtime = Runtime(hp, paths, strategy, is_chief, description, workers, worker_index)
    return runtime, splits


def main(argv: Optional[list] = None) -> int:
    # --- setup ---------------------------------------------------------------------------------
    ready = setup(argv)
    if isinstance(ready, int):
        return ready
    runtime, splits = ready
    hp, paths, strategy = runtime.hp, runtime.paths, runtime.strategy
    keras.utils.set_random_seed(hp.seed)
    policy = vgg.set_precision(hp.mixed_precision, on_gpu=vgg.gpu_count() > 0)
    print(
        f"[setup] {runtime.description} replicas={strategy.num_replicas_in_sync} precision={policy} tensorflow={tf.__version__} images={data.split_summary(splits)}",
        flush=True,
    )

    # --- data: each split decoded once into a uint8 cache; epochs shuffle indices into it ------
    caches = {}
    for name, split in splits.items():
        started = time.time()
        caches[name] = data.build_cache(split, hp.image_size, paths.cache_dir)
        print(f"[cache] {caches[name].describe()} ({time.time() - started:.1f} s)", flush=True)
    # The seed's augmentation runs as the training step's first op, on the accelerator. XLA
    # cannot compile its warp, so with xla=true the input pipeline warps the batches instead.
    augment_in_pipeline = hp.augment and hp.xla

    def dataset(name: str, training: bool = False, augment: bool = False):
        return data.make_dataset(
            caches[name],
            hp.batch_size,
            training,
            hp.seed,
            num_shards=runtime.workers,
            shard_index=runtime.worker_index,
            augment=augment,
            replicas=runtime.replicas,
        )

    try:
        train_data = dataset("train", training=True, augment=augment_in_pipeline)
        validation_data = dataset("validation")
        test_data = dataset("test")
        # In order and whole, for cache_features' one pass of the conv base over it.
        plain_train = dataset("train") if hp.cache_features else None
    except data.BatchingError as error:
        return fail(str(error))

    # --- model: VGG16 conv base + the seed's head; preprocessing inside, augmentation in front --
    try:
        with strategy.scope():
            model = vgg.build_model(hp.image_size, hp.preprocessing, hp.weights, hp.dropout)
            # What fit() trains: the model behind the augmentation (the saved model has none).
            fit_model = model
            if hp.augment and not augment_in_pipeline:
                fit_model = vgg.with_augmentation(model, data.SeedAugmentation(name="augment"))
    except vgg.WeightsError as error:
        return fail(str(error))

    # With several workers, a line per epoch shows what Keras' "input ran out of data" warning
    # does not: every worker trained its whole share (data.InputCount).
    input_count = ()
    if runtime.workers > 1:
        share = data.training_share(
            len(caches["train"]), hp.batch_size, runtime.workers, runtime.replicas
        )
        input_count = (
            data.InputCount(caches["train"], share, runtime.worker_index, runtime.workers),
        )

    # --- phase "frozen": freeze the conv base, train the head ----------------------------------
    vgg.freeze_conv_base(model)
    frozen_fit_model, frozen_train, frozen_validation = fit_model, train_data, validation_data
    cache_seconds = 0.0
    if hp.cache_features and not phase_finished(runtime, "frozen", hp.epochs_frozen):
        # One forward pass per image instead of one per epoch. Cached features cannot be
        # augmented, so this phase then trains without augmentation (recorded in metrics.json).
        started = time.time()
        frozen_fit_model, frozen_train, frozen_validation = cached_feature_datasets(
            runtime, model, plain_train, validation_data, splits
        )
        cache_seconds = time.time() - started
    frozen = train_phase(
        runtime,
        "frozen",
        model=model,
        fit_model=frozen_fit_model,
        make_optimizer=lambda: keras.optimizers.Adam(learning_rate=hp.learning_rate_frozen),
        train_data=frozen_train,
        validation_data=frozen_validation,
        epochs=hp.epochs_frozen,
        setup_seconds=cache_seconds,
        callbacks=() if frozen_train is not train_data else input_count,
    )
    frozen_test = evaluate(runtime, model, test_data, "frozen")

    # --- phase "fine_tuned": unfreeze the top blocks, recompile at a low rate, train -----------
    vgg.unfreeze_from(model, hp.unfreeze_from)
    fine_tuned = train_phase(
        runtime,
        "fine_tuned",
        model=model,
        fit_model=fit_model,
        make_optimizer=lambda: keras.optimizers.RMSprop(learning_rate=hp.learning_rate_fine_tuned),
        train_data=train_data,
        validation_data=validation_data,
        epochs=hp.epochs_fine_tuned,
        patience=hp.early_stopping_patience,
        callbacks=input_count,
    )
    fine_tuned_test = evaluate(runtime, model, test_data, "fine_tuned")

    # --- outputs (the chief alone writes them) -------------------------------------------------
    train_images = len(splits["train"])
    metrics = {
        "phases": {
            "frozen": phase_summary(frozen, train_images, frozen_test),
            "fine_tuned": phase_summary(fine_tuned, train_images, fine_tuned_test),
        },
        "frozen_phase_augmented": bool(hp.augment and not hp.cache_features),
        "images": data.split_summary(splits),
        "dataset_digest": hp.dataset_digest,
        "distribution": runtime.description,
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": distribute.device_names(),
        "precision_policy": policy,
        "config": dataclasses.asdict(hp),
        "versions": versions(),
    }
    if runtime.is_chief:
        save_outputs(model, paths, hp, metrics, [frozen, fine_tuned])
        print(f"[done] model in {paths.model_dir}; metrics in {paths.output_data_dir}")
        if config.tuning_job_member():
            # Nothing resumes a finished tuning job's training job, and every later one would
            # restore this folder from the shared checkpoint location (SageMaker mirrors the
            # delete to S3).
            shutil.rmtree(paths.checkpoint_dir, ignore_errors=True)
            print(f"[done] checkpoints removed from {paths.checkpoint_dir}", flush=True)
    distribute.finish_together(runtime.workers)  # several hosts: the process ends there
    return 0


if __name__ == "__main__":
    sys.exit(main())
