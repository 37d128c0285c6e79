"""One training phase that survives a spot interruption.

Keras' ModelCheckpoint/EarlyStopping/BackupAndRestore keep their best value and patience counter in
memory, so after a restart they would forget the best epoch and stop at a different epoch than an
uninterrupted run. This callback keeps all of it — last and best weights, early-stopping counter,
per-epoch history — in the checkpoint folder, written so that a kill at any moment leaves a
consistent state. (Optimizer moments are not saved: a resumed phase restarts them.)
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Optional

import numpy as np
from tensorflow import keras

EPOCH_LINE = (
    "[epoch] phase={phase} epoch={epoch}/{epochs} loss={loss:.6f} accuracy={accuracy:.6f} "
    "val_loss={val_loss:.6f} val_accuracy={val_accuracy:.6f} seconds={seconds:.1f}"
)
TEST_LINE = "[test] phase={phase} test_loss={test_loss:.6f} test_accuracy={test_accuracy:.6f}"


@dataclasses.dataclass
class PhaseState:
    phase: str
    epochs: int  # planned epochs
    epochs_done: int = 0
    best_val_accuracy: float = -1.0
    best_epoch: int = 0  # 1-based; 0 = none yet
    wait: int = 0  # epochs since the best one
    stopped_early: bool = False
    finished: bool = False
    last_weights: str = ""
    best_weights: str = ""
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    extra_seconds: float = 0.0  # e.g. the one forward pass that caches features

    @property
    def seconds(self) -> float:
        return self.extra_seconds + sum(row["seconds"] for row in self.history)


def _state_path(directory: str) -> str:
    return os.path.join(directory, "state.json")


def load_state(directory: str, phase: str, epochs: int) -> PhaseState:
    path = _state_path(directory)
    if not os.path.exists(path):
        return PhaseState(phase=phase, epochs=epochs)
    with open(path) as handle:
        data = json.load(handle)
    return PhaseState(**data)


def save_state(directory: str, state: PhaseState) -> None:
    os.makedirs(directory, exist_ok=True)
    tmp = _state_path(directory) + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(dataclasses.asdict(state), handle, indent=2)
    os.replace(tmp, _state_path(directory))  # atomic: a kill leaves the old or the new state


def _save_weights(model: keras.Model, directory: str, name: str) -> str:
    # Plain arrays, not a Keras weights file: Keras 2.12 reads "*.weights.h5" with a loader that
    # breaks under MultiWorkerMirroredStrategy, and set_weights() works under every strategy.
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "tmp-" + name)
    with open(tmp, "wb") as handle:
        np.savez(handle, *model.get_weights())
    os.replace(tmp, os.path.join(directory, name))  # a kill leaves the old file or the new one
    return name


def load_weights(model: keras.Model, path: str) -> None:
    with np.load(path) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def _remove_unless(directory: str, name: str, keep: list[str]) -> None:
    if name and name not in keep:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)


class PhaseCheckpoint(keras.callbacks.Callback):
    """Best-weights keeping, early stopping and per-epoch state on disk, for one phase."""

    def __init__(
        self,
        state: PhaseState,
        directory: str,
        full_model: keras.Model,
        patience: int,
    ) -> None:
        super().__init__()
        self.state = state
        self.directory = directory
        self.full_model = full_model  # the head-only model trains on cached features
        self.patience = patience
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._started = time.time()

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = dict(logs or {})
        state = self.state
        row = {key: float(logs.get(key, float("nan"))) for key in METRIC_KEYS}
        row["epoch"] = epoch + 1
        row["seconds"] = time.time() - self._started
        state.history.append(row)
        state.epochs_done = epoch + 1
        old_last, old_best = state.last_weights, state.best_weights
        if row["val_accuracy"] > state.best_val_accuracy:
            state.best_val_accuracy = row["val_accuracy"]
            state.best_epoch = epoch + 1
            state.wait = 0
            state.best_weights = _save_weights(
                self.full_model, self.directory, f"best-epoch{epoch + 1}.npz"
            )
        else:
            state.wait += 1
        if self.patience and state.wait >= self.patience:
            state.stopped_early = True
            self.model.stop_training = True
        state.last_weights = _save_weights(
            self.full_model, self.directory, f"last-epoch{epoch + 1}.npz"
        )
        save_state(self.directory, state)
        keep = [state.last_weights, state.best_weights]
        _remove_unless(self.directory, old_last, keep)
        _remove_unless(self.directory, old_best, keep)
        print(EPOCH_LINE.format(phase=state.phase, epochs=state.epochs, **row), flush=True)


METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def restore(model: keras.Model, directory: str, state: PhaseState) -> None:
    """Loads the weights a restarted phase continues from (nothing for a fresh phase)."""
    name = state.best_weights if state.finished else state.last_weights
    if name:
        load_weights(model, os.path.join(directory, name))


def load_best(model: keras.Model, directory: str, state: PhaseState) -> None:
    if state.best_weights:
        load_weights(model, os.path.join(directory, state.best_weights))


def finish(directory: str, state: PhaseState) -> None:
    state.finished = True
    save_state(directory, state)


_PRIVATE_ROOT = []  # one fresh folder per process for a non-chief worker's checkpoints


def phase_directory(checkpoint_dir: str, phase: str, is_chief: bool) -> str:
    """The chief checkpoints into ``checkpoint_dir`` (SageMaker syncs it to S3); other workers
    into a fresh private folder seeded from it, so hosts never overwrite each other's files."""
    shared = os.path.join(checkpoint_dir, phase)
    if is_chief:
        return shared
    if not _PRIVATE_ROOT:
        _PRIVATE_ROOT.append(tempfile.mkdtemp(prefix="vgg-worker-checkpoints-"))
    private = os.path.join(_PRIVATE_ROOT[0], phase)
    if os.path.isdir(shared) and not os.path.isdir(private):
        shutil.copytree(shared, private)
    return private
