"""How long an epoch of the recipe takes on an instance type: measured (``make bench --device gpu``
on that type, runs/bench/bench.json), else estimated from the recipe's work and the GPU's
throughput, calibrated on the seed study's measured K80 epochs.

The estimate, phase by phase:
- work: multiply-adds per image through VGG16's convolutions at the recipe's image size (counted
  from the architecture below): forward only for the frozen phase and for validation; forward plus
  a backward pass (about twice the forward) through the unfrozen blocks for fine-tuning;
- the K80's achieved rate: the seed's small experiment (4,000 training and 2,000 validation
  images at 150 px, block4 unfrozen) over its measured epoch seconds (docs/seed-study.md);
- another GPU's rate: the K80's, scaled by their peak float32 throughput (the vendors' data
  sheets, ``PEAK_FP32_TFLOPS``) and the instance's GPUs (data parallel).
It is an estimate: a newer GPU rarely reaches the same share of its peak on a model this small,
and mixed precision (tensor cores) is not modelled; ``make bench --device gpu`` measures instead.
"""

import json
from pathlib import Path

from vgg_transfer.config import VGG16_LAYERS, Hyperparameters
from vgg_transfer.contract import FINE_TUNED, FROZEN

from training.common.instances import Instance
from training.report import seed

BENCH_FILE = Path("runs/bench/bench.json")
SEED_SIZE, SEED_UNFROZEN = 150, "block4_conv1"  # the seed's recipe, which its timings are of
VALIDATION_IMAGES = 2000  # the seed's validation split, evaluated every epoch

# Peak float32 TFLOPS of one GPU (NVIDIA's data sheets; the K80 figure is one of its two GK210
# dies, which is what an ml.p2.xlarge gets).
PEAK_FP32_TFLOPS = {
    "K80": 4.37,
    "T4": 8.1,
    "A10G": 31.2,
    "L4": 30.3,
    "L40S": 91.6,
    "V100": 15.7,
    "A100": 19.5,
    "H100": 67.0,
}
# VGG16's convolution blocks: (convolutions, output channels); each block halves the size.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def conv_macs(image_size: int) -> dict[str, int]:
    """Multiply-adds per image of each convolution layer of VGG16 (3×3, 'same' padding)."""
    macs, size, channels = {}, image_size, 3
    for block, (convs, out) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            macs[f"block{block}_conv{conv}"] = size * size * channels * out * 9
            channels = out
        size //= 2  # the block's max pooling
    return macs


def work_per_image(image_size: int, unfreeze_from: str) -> dict[str, float]:
    """Multiply-adds per image: a frozen-phase or validation image (forward), and a fine-tuning
    image (forward, and backward through the layers from ``unfreeze_from`` on)."""
    macs = conv_macs(image_size)
    forward = sum(macs.values())
    unfrozen = VGG16_LAYERS[VGG16_LAYERS.index(unfreeze_from) :]
    backward = 2 * sum(macs[name] for name in unfrozen if name in macs)
    return {FROZEN: forward, FINE_TUNED: forward + backward, "validation": forward}


def k80_rates() -> dict[str, float]:
    """Multiply-adds per second the seed's K80 achieved in each phase (its small experiment)."""
    work = work_per_image(SEED_SIZE, SEED_UNFROZEN)
    train = seed.RESULTS["small"]["train_images"]
    seconds = seed.K80_EPOCH_SECONDS["small"]
    return {
        phase: (train * work[phase] + VALIDATION_IMAGES * work["validation"]) / seconds[phase]
        for phase in (FROZEN, FINE_TUNED)
    }


def accelerator(instance: Instance) -> str | None:
    """The GPU model of the type (its table entry says "4x A10G" for four), if it has one."""
    name = instance.accelerator.split("x ")[-1]
    return name if instance.gpus and name in PEAK_FP32_TFLOPS else None


def estimated(instance: Instance, hp: Hyperparameters, train_images: int, validation: int):
    """(frozen, fine_tuned) epoch seconds from the work and the GPU's peak, or None (no GPU)."""
    gpu = accelerator(instance)
    if gpu is None:
        return None
    speedup = PEAK_FP32_TFLOPS[gpu] / PEAK_FP32_TFLOPS["K80"] * instance.gpus
    work = work_per_image(hp.image_size, hp.unfreeze_from)
    rates = k80_rates()
    return tuple(
        (train_images * work[phase] + validation * work["validation"]) / (rates[phase] * speedup)
        for phase in (FROZEN, FINE_TUNED)
    )


def measured(instance: Instance, train_images: int, validation: int, bench_file: Path):
    """(frozen, fine_tuned) epoch seconds from make bench on this type, or None."""
    if not bench_file.exists():
        return None
    rates = json.loads(bench_file.read_text()).get("epoch_seconds_by_instance", {})
    per_image = rates.get(instance.name)  # seconds per image: training steps, validation
    if not per_image:
        return None
    validation_seconds = validation * per_image["validation"]
    return tuple(
        per_image[phase] * train_images + validation_seconds for phase in (FROZEN, FINE_TUNED)
    )


def epoch_seconds(instance: Instance, hp: Hyperparameters, train_images: int,
                  validation: int = VALIDATION_IMAGES, bench_file: Path = BENCH_FILE):  # fmt: skip
    """(frozen, fine_tuned) seconds per epoch, and where they come from; (None, None, why) for a
    type with no GPU this knows."""
    seconds = measured(instance, train_images, validation, bench_file)
    if seconds:
        return (*seconds, f"measured by make bench ({bench_file})")
    seconds = estimated(instance, hp, train_images, validation)
    if seconds is None:
        return None, None, f"no estimate for {instance.accelerator}"
    gpu = accelerator(instance)
    source = "the seed's K80 epochs" if gpu == "K80" and instance.gpus == 1 else (
        f"estimated: the seed's K80 epochs scaled by the recipe's work and peak float32 "
        f"throughput ({instance.gpus}x {gpu} {PEAK_FP32_TFLOPS[gpu]:g} vs K80 "
        f"{PEAK_FP32_TFLOPS['K80']:g} TFLOPS)")  # fmt: skip
    return (*seconds, source)
