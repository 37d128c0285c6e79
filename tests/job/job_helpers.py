"""Helpers for the job's tests: tiny generated channels, VGG16 weight files, script runs.

These tests run twice: in .venv (TF 2.21/Keras 3) and in .venv-compat (TF 2.12/Keras 2), so
they use only numpy, TensorFlow, h5py (a TensorFlow dependency) and the job package.
"""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[2]
JOB_DIR = REPO / "training" / "job"
TRAIN_SCRIPT = JOB_DIR / "train.py"


def write_image(path: Path, rgb, size: int, rng: np.random.Generator) -> None:
    """A noisy image whose mean colour tells its class: easy to learn, but not constant."""
    base = np.array(rgb, dtype=np.float32)[None, None, :]
    noise = rng.normal(0, 25, size=(size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.write_bytes(tf.io.encode_jpeg(pixels).numpy())


def make_channels(root: Path, per_class=None, size: int = 32, seed: int = 0) -> dict:
    """train/validation/test channels with cats/ (warm) and dogs/ (cool) JPEGs."""
    per_class = per_class or {"train": 12, "validation": 6, "test": 6}
    rng = np.random.default_rng(seed)
    colours = {"cats": (200, 120, 60), "dogs": (60, 110, 200)}
    dirs = {}
    for split, count in per_class.items():
        for cls, rgb in colours.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_image(folder / f"{cls[:-1]}.{i}.jpg", rgb, size, rng)
        dirs[split] = root / split
    return dirs


def write_legacy_weights(model: tf.keras.Model, path: Path) -> None:
    """Writes weights in the Keras 2 HDF5 layout of the published ImageNet files, which
    keras.applications.VGG16(weights=path) reads under Keras 2 and Keras 3 alike."""
    with h5py.File(str(path), "w") as handle:
        layers = [layer for layer in model.layers if layer.weights]
        handle.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            group = handle.create_group(layer.name)
            names = [
                "{}/{}:0".format(layer.name, w.name.split("/")[-1].split(":")[0])
                for w in layer.weights
            ]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, layer.get_weights(), strict=False):
                group.create_dataset(name, data=value)


def run_script(args, env=None, **kwargs) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    full_env.pop("SM_MODEL_DIR", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT)] + [str(a) for a in args],
        env=full_env,
        capture_output=True,
        text=True,
        **kwargs,
    )
