"""One training phase that survives a spot interruption.

Keras' ModelCheckpoint/EarlyStopping/BackupAndRestore keep their best value and patience counter in
memory, so after a restart they would forget the best epoch and stop at a different epoch than an
uninterrupted run. This callback keeps all of it — last and best weights, early-stopping counter,
per-epoch history — in the checkpoint folder, written so that a kill at any moment leaves a
consistent state. (Optimizer moments are not saved: a resumed phase restarts them.)

SageMaker uploads the checkpoint folder to S3 asynchronously and in no set order, so after an
interruption the restored folder can hold a ``state.json`` whose weights file never arrived, or
arrived cut short. Hence the previous weights files stay until the next ones exist, and
``load_state`` resumes from the newest epoch whose files are complete, trimming the history to it.
"""

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from typing import Optional

import numpy as np
from tensorflow import keras

from vgg_transfer import config, contract


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
    config: dict = dataclasses.field(default_factory=dict)  # the recipe that wrote it

    @property
    def seconds(self) -> float:
        return self.extra_seconds + sum(row["seconds"] for row in self.history)


def _state_path(directory: str) -> str:
    return os.path.join(directory, contract.STATE_FILE)


class ForeignCheckpoint(contract.JobError):
    """A checkpoint another recipe wrote: resuming from it would mix two experiments."""


def load_state(
    directory: str, phase: str, epochs: int, recipe: Optional[dict] = None
) -> PhaseState:
    """The phase's state as its files allow: what state.json says when the weights it names are
    complete, else the newest epoch that is (see the module docstring).

    ``recipe`` (config.recipe): kept in the state, and a state written by a different recipe is
    refused (ForeignCheckpoint), as nanoGPT refuses a checkpoint of another model shape."""
    path = _state_path(directory)
    fresh = PhaseState(phase=phase, epochs=epochs, config=dict(recipe or {}))
    if not os.path.exists(path):
        return fresh
    try:
        with open(path) as handle:
            state = PhaseState(**json.load(handle))
    except (ValueError, TypeError) as error:
        print(f"[resume] phase {phase}: {path} is unreadable ({error}); starting the phase over")
        return fresh
    if recipe is not None:
        differences = config.recipe_differences(state.config, recipe) if state.config else []
        if differences:
            raise ForeignCheckpoint(
                f"the checkpoints in {directory} were written with other settings "
                f"({'; '.join(differences)}): start over in a new checkpoint folder (FRESH=1), "
                "or run with the settings they were written with"
            )
        state.config = dict(recipe)
    if _complete(directory, state.best_weights) and (
        state.finished or _complete(directory, state.last_weights)
    ):
        return state
    return _recover(directory, state)


def _complete(directory: str, name: str) -> bool:
    """True when the weights file exists and every array in it reads back (CRC-checked)."""
    if not name:
        return True
    try:
        with np.load(os.path.join(directory, name)) as arrays:
            for key in arrays.files:
                arrays[key]
        return True
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def _epoch_files(directory: str, kind: str) -> dict[int, str]:
    """{epoch: file name} of the complete ``<kind>-epoch<N>.npz`` files in the folder."""
    pattern = re.compile(kind + r"-epoch(\d+)\.npz$")
    found = {}
    for name in os.listdir(directory):
        match = pattern.match(name)
        if match and _complete(directory, name):
            found[int(match.group(1))] = name
    return found


def _recover(directory: str, state: PhaseState) -> PhaseState:
    named = state.best_weights if state.finished else state.last_weights
    lasts, bests = _epoch_files(directory, "last"), _epoch_files(directory, "best")
    for epoch in sorted((e for e in lasts if e <= state.epochs_done), reverse=True):
        history = state.history[:epoch]
        best_row = max(history, key=lambda row: row["val_accuracy"])  # first of equals
        best_epoch = history.index(best_row) + 1
        best_file = bests.get(best_epoch) or (lasts[epoch] if best_epoch == epoch else None)
        if best_file is None:
            continue
        recovered = dataclasses.replace(
            state,
            epochs_done=epoch,
            history=history,
            best_val_accuracy=best_row["val_accuracy"],
            best_epoch=best_epoch,
            wait=epoch - best_epoch,
            stopped_early=False,
            finished=False,
            last_weights=lasts[epoch],
            best_weights=best_file,
        )
        print(
            f"[resume] phase {state.phase}: {named} is missing or incomplete (its upload did "
            f"not finish before the interruption); resuming after epoch {epoch} instead of "
            f"{state.epochs_done}",
            flush=True,
        )
        save_state(directory, recovered)
        return recovered
    print(
        f"[resume] phase {state.phase}: no complete weights file for the {state.epochs_done} "
        "recorded epochs; starting the phase over",
        flush=True,
    )
    return PhaseState(
        phase=state.phase,
        epochs=state.epochs,
        extra_seconds=state.extra_seconds,
        config=state.config,
    )


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


def _prune(directory: str, kind: str, keep: int = 2) -> None:
    """Removes all but the ``keep`` newest ``<kind>-epoch<N>.npz``: the previous file stays
    until the newest has certainly reached S3 (the next epoch's save replaces it)."""
    pattern = re.compile(kind + r"-epoch(\d+)\.npz$")
    epochs = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(directory)
        for m in [pattern.match(name)]
        if m
    )
    for _, name in epochs[:-keep]:
        os.remove(os.path.join(directory, name))


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
        _prune(self.directory, "last")
        _prune(self.directory, "best")
        print(
            contract.EPOCH_LINE.format(
                phase=state.phase,
                epochs=state.epochs,
                best_val_accuracy=state.best_val_accuracy,
                **row,
            ),
            flush=True,
        )


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
    shared = contract.phase_folder(checkpoint_dir, phase)
    if is_chief:
        return shared
    if not _PRIVATE_ROOT:
        _PRIVATE_ROOT.append(tempfile.mkdtemp(prefix="vgg-worker-checkpoints-"))
    private = os.path.join(_PRIVATE_ROOT[0], phase)
    if os.path.isdir(shared) and not os.path.isdir(private):
        shutil.copytree(shared, private)
    return private
