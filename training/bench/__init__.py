"""``make bench``: measured speed of our job against the seed's way of doing it, on this machine.

    python -m training.bench --out runs/bench             # CPU, sized for 2 cores (< 10 min)
    python -m training.bench --device gpu --instance-type ml.g5.xlarge   # seed sizes on a GPU

Every figure is a median of repeated measurements taken in this run; ``bench.json`` keeps every
raw repeat. Rows:
1. input pipeline alone (decode + resize + the seed's augmentation, 150×150): ours (tf.data) vs
   the seed's ``ImageDataGenerator.flow_from_directory``; then the warp alone, design by design;
2. frozen phase: the seed's way (conv base run every epoch) vs feature caching;
3. fine-tuning: float32 vs the seed's augmentation in the step, mixed precision (bfloat16 on
   CPUs) and XLA (with the augmentation compiled into the step), and which bounds training: the
   input pipeline or the model;
4. the ``smoke`` experiment end to end, seconds per phase (CPU only; one run, it takes minutes).
"""

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sizes:
    """How much work each measurement does; CPU sizes keep `make bench` under 10 minutes."""

    pipeline_images: int
    model_image_size: int
    model_images: int
    batch_size: int
    repeats: int
    smoke: bool


CPU = Sizes(
    pipeline_images=384, model_image_size=64, model_images=96, batch_size=16, repeats=5, smoke=True
)
GPU = Sizes(
    pipeline_images=2048,
    model_image_size=150,
    model_images=1024,
    batch_size=64,
    repeats=5,
    smoke=False,
)
QUICK = Sizes(
    pipeline_images=32, model_image_size=32, model_images=16, batch_size=8, repeats=2, smoke=False
)


def machine() -> dict:
    import tensorflow as tf
    from vgg_transfer import distribute
    from vgg_transfer import model as vgg

    cpu = platform.processor() or platform.machine()
    flags = ""
    if Path("/proc/cpuinfo").exists():
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
        flags = " ".join(
            f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in info
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_flags": flags,
        "gpus": [name for name in distribute.device_names() if name != "CPU"],
        "tensorflow": tf.__version__,
        "keras": vgg.keras_version(),
        "python": platform.python_version(),
    }


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_rate(work: float, seconds: list[float]) -> float:
    return work / statistics.median(seconds)
