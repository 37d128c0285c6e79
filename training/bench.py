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

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from vgg_transfer import augmentation, batching, channels, distribute
from vgg_transfer import config as job_config
from vgg_transfer import model as vgg
from vgg_transfer.cache import build_cache
from vgg_transfer.contract import FINE_TUNED, FROZEN, METRICS_FILE

from training.common.errors import cli
from training.report import seed

VALIDATION_IMAGES = 2000  # the seed's validation set, run once per epoch


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


# --- 1. input pipeline ------------------------------------------------------------------------
def photo_like_images(folder: Path, count: int, seed_value: int = 0) -> Path:
    """JPEGs of Kaggle-photo size (300–500 px a side) with texture, so decoding costs what it
    costs on real photos. Cached between runs."""
    rng = np.random.default_rng(seed_value)
    for i in range(count):
        cls = ("cats", "dogs")[i % 2]
        path = folder / cls / f"{cls[:-1]}.{i}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(300, 501, size=2))
        y, x = np.mgrid[0:h, 0:w]
        base = (
            128
            + 60
            * np.sin(x / rng.uniform(8, 40))[..., None]
            * np.cos(y / rng.uniform(8, 40))[..., None]
        )
        pixels = base + rng.normal(0, 20, size=(h, w, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=85)
    return folder


def pipeline(cache, hp, augment: bool, threads: int = 0):
    """The job's training input (its stages: training/job/vgg_transfer/batching.py), with the
    seed's augmentation in the pipeline, on the CPU, as the seed's generator did it (the job
    augments in the training step instead), on ``threads`` cores (0: all)."""
    import tensorflow as tf

    order, count = batching.reading_order(cache, hp, training=True)
    batches = batching.batch_images(order, count, hp.batch_size, True, 1, cache.split.name)
    # the warp reads the uint8 batch, gathering bytes
    transform = (
        (lambda batch: augmentation.augment_batch(batch, compiled=True)) if augment else None
    )
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = threads
    mapped = batches.map(batching.loader(cache, transform), num_parallel_calls=tf.data.AUTOTUNE)
    return batching.finish(mapped, options=options)


def bench_pipeline(folder: Path, sizes: Sizes, epochs: int = 30) -> dict:
    """Our pipeline against the seed's generator, per training epoch.

    Ours decodes each image once into the cache, then every epoch shuffles, gathers and warps
    (here on the CPU, in the pipeline, as the generator does; on a GPU the warp is the training
    step's first op). The one-time decode is timed apart and spread over a phase's ``epochs``."""
    import tensorflow as tf

    split = channels.read_split("bench", str(folder))
    n = len(split)
    cache_dir = str(folder.parent / "cache")

    def build(threads: int = 0):
        return build_cache(split, 150, cache_dir, threads=threads)

    def epoch(cache, threads: int = 0, augment: bool = True):
        hp = job_config.Hyperparameters(batch_size=64, seed=0)
        for _ in pipeline(cache, hp, augment, threads):
            pass

    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        # the seed's generator, with the very settings our pipeline reproduces
        rescale=1.0 / 255,
        rotation_range=augmentation.ROTATION_DEGREES,
        width_shift_range=augmentation.WIDTH_SHIFT,
        height_shift_range=augmentation.HEIGHT_SHIFT,
        shear_range=augmentation.SHEAR_DEGREES,
        zoom_range=augmentation.ZOOM,
        horizontal_flip=True,
        fill_mode="nearest",
    )

    def seeds():
        flow = generator.flow_from_directory(
            str(folder), target_size=(150, 150), batch_size=64, class_mode="binary", seed=0
        )
        for index in range(len(flow)):
            flow[index]

    cache = build()
    epoch(cache)  # warm-up: traces the tf.data functions once
    decode_s = [timed(build) for _ in range(sizes.repeats)]
    decode_one_s = [timed(lambda: build(threads=1)) for _ in range(sizes.repeats)]
    epoch_s = [timed(lambda: epoch(cache)) for _ in range(sizes.repeats)]
    epoch_one_s = [timed(lambda: epoch(cache, threads=1)) for _ in range(sizes.repeats)]
    # the job's own training input: the augmentation is the training step's first op
    epoch(cache, augment=False)
    unwarped_s = [timed(lambda: epoch(cache, augment=False)) for _ in range(sizes.repeats)]
    seed_s = [timed(seeds) for _ in range(sizes.repeats)]

    def amortised(epoch_seconds: list[float], decode_seconds: list[float]) -> float:
        """Images per second over a phase: every epoch, plus the decode once."""
        per_epoch = statistics.median(epoch_seconds) + statistics.median(decode_seconds) / epochs
        return n / per_epoch

    ours_rate, one_thread_rate = amortised(epoch_s, decode_s), amortised(epoch_one_s, decode_one_s)
    seed_rate = median_rate(n, seed_s)
    return {
        "images": n,
        "epochs_amortised": epochs,
        "cache_bytes": cache.nbytes,
        "cache_bytes_per_image": cache.nbytes // n,
        "decode_seconds": decode_s,
        "decode_one_thread_seconds": decode_one_s,
        "epoch_seconds": epoch_s,
        "epoch_one_thread_seconds": epoch_one_s,
        "seed_seconds": seed_s,
        "decode_images_per_second": median_rate(n, decode_s),
        "epoch_images_per_second": median_rate(n, epoch_s),
        "unwarped_epoch_seconds": unwarped_s,
        "training_input_images_per_second": median_rate(n, unwarped_s),
        "warp": bench_warp(cache.images, sizes),
        "ours_images_per_second": ours_rate,
        "ours_one_thread_images_per_second": one_thread_rate,
        "seed_images_per_second": seed_rate,  # the generator runs on one thread
        "ratio": ours_rate / seed_rate,
        "ratio_per_thread": one_thread_rate / seed_rate,
    }


# --- 1e. the warp alone, design by design -----------------------------------------------------
WARP_BATCH = 64
KEPT_WARP = "draws, matrices and gather warp in one XLA launch (kept)"


def projective_warp(images, transforms, dtype: str = "float32"):
    """The warp before: ImageProjectiveTransformV3 (no XLA kernel) on float32, or on the uint8
    cache, whose output the op truncates to whole levels."""
    import tensorflow as tf

    images = tf.cast(images, dtype)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    return tf.cast(warped, tf.float32)


def bench_warp(cache_images: np.ndarray, sizes: Sizes, batches: int = 6) -> dict:
    """Each warp design on batches of the cache (150 px, 64 images, indices drawn afresh), in
    img/s on every core, and its largest difference from the warp before (ImageProjectiveTransformV3
    on float32, which the tests hold to ImageDataGenerator's transform)."""
    import tensorflow as tf

    cache = tf.constant(cache_images)
    size = cache_images.shape[1]
    rng = np.random.default_rng(0)
    warp_xla = tf.function(augmentation.warp, jit_compile=True)

    def transforms(count):
        params = augmentation.random_parameters(count, size, size)
        return augmentation.affine_transforms(params, size, size)

    designs = {
        "ImageProjectiveTransformV3, float32 (before)": lambda ix, t: projective_warp(
            tf.gather(cache, ix), t
        ),
        "ImageProjectiveTransformV3, uint8": lambda ix, t: projective_warp(
            tf.gather(cache, ix), t, "uint8"
        ),
        "gather warp, op by op": lambda ix, t: augmentation.warp(tf.gather(cache, ix), t),
        "gather warp, XLA-compiled": lambda ix, t: warp_xla(tf.gather(cache, ix), t),
        # the gather and the warp fused: neighbours read from the whole cache, no batch copy
        "gathered straight from the cache, XLA (cache as a tensor)": tf.function(
            lambda ix, t: augmentation.warp_from(cache, ix, t), jit_compile=True
        ),
        # what the job runs on CPUs: it draws its own parameters, so no difference is taken
        KEPT_WARP: lambda ix, t: augmentation.augment_batch(tf.gather(cache, ix), compiled=True),
    }
    check_indices = tf.constant(np.arange(min(8, len(cache_images))), tf.int64)
    check_transforms = transforms(len(check_indices))
    reference = designs["ImageProjectiveTransformV3, float32 (before)"](
        check_indices, check_transforms
    ).numpy()
    rows = {}
    for name, design in designs.items():
        step = tf.function(design)

        def run(step=step):
            for _ in range(batches):
                ix = tf.constant(rng.integers(0, len(cache_images), WARP_BATCH), tf.int64)
                step(ix, transforms(WARP_BATCH)).numpy()

        run()  # warm-up: traces, and compiles the XLA designs
        seconds = [timed(run) for _ in range(sizes.repeats)]
        difference = None
        if name != KEPT_WARP:
            warped = step(check_indices, check_transforms).numpy()
            difference = float(np.abs(warped - reference).max())
        rows[name] = {
            "seconds": seconds,
            "images_per_second": median_rate(batches * WARP_BATCH, seconds),
            "max_difference_from_before": difference,
        }
    before = rows["ImageProjectiveTransformV3, float32 (before)"]["images_per_second"]
    for row in rows.values():
        row["ratio_to_before"] = row["images_per_second"] / before
    return rows


# --- 2./3. model phases -----------------------------------------------------------------------
def in_memory_dataset(sizes: Sizes):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    s = sizes.model_image_size
    images = rng.uniform(0, 255, size=(sizes.model_images, s, s, 3)).astype(np.float32)
    labels = (np.arange(sizes.model_images) % 2).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(sizes.batch_size)
    return dataset.cache().prefetch(tf.data.AUTOTUNE)


def fresh_model(sizes: Sizes, mixed: bool = False):
    import tensorflow as tf

    tf.keras.backend.clear_session()
    vgg.set_precision(mixed, on_gpu=vgg.gpu_count() > 0)
    return vgg.build_model(sizes.model_image_size, "rescale", "none")


def bench_frozen(sizes: Sizes, epochs_frozen: int = 30) -> dict:
    import tensorflow as tf

    dataset = in_memory_dataset(sizes)
    n = sizes.model_images
    model = fresh_model(sizes)
    vgg.freeze_conv_base(model)
    vgg.compile_model(model, tf.keras.optimizers.Adam(), xla=False)
    model.fit(dataset.take(1), epochs=1, shuffle=False, verbose=0)  # warm-up
    seed_way = [
        timed(lambda: model.fit(dataset, epochs=1, shuffle=False, verbose=0))
        for _ in range(sizes.repeats)
    ]

    extractor = vgg.feature_extractor(model)
    extractor.predict(dataset.take(1), verbose=0)
    labels = np.concatenate([y.numpy() for _, y in dataset])
    extract_s, head_s = [], []
    for _ in range(sizes.repeats):
        features = None

        def extract():
            nonlocal features
            features = extractor.predict(dataset, verbose=0)

        extract_s.append(timed(extract))
        head = vgg.head_model(model, features.shape[1:])
        vgg.compile_model(head, tf.keras.optimizers.Adam(), xla=False)
        head_data = (
            tf.data.Dataset.from_tensor_slices((features, labels)).batch(sizes.batch_size).cache()
        )
        head.fit(head_data, epochs=1, shuffle=False, verbose=0)  # warm-up
        head_s.append(
            timed(
                lambda h=head, d=head_data: h.fit(d, epochs=epochs_frozen, shuffle=False, verbose=0)
            )
        )
    seed_rate = median_rate(n, seed_way)
    cached_totals = [e + h for e, h in zip(extract_s, head_s, strict=True)]
    cached_rate = median_rate(n * epochs_frozen, cached_totals)
    return {
        "images": n,
        "image_size": sizes.model_image_size,
        "epochs": epochs_frozen,
        "seed_way_epoch_seconds": seed_way,
        "cached_extract_seconds": extract_s,
        "cached_head_seconds_all_epochs": head_s,
        "seed_way_images_per_second": seed_rate,
        "cached_images_per_second": cached_rate,
        "inference_images_per_second": median_rate(n, extract_s),
        "ratio": cached_rate / seed_rate,
    }


def bench_fine_tuning(sizes: Sizes) -> dict:
    import tensorflow as tf

    dataset = in_memory_dataset(sizes)
    n = sizes.model_images
    variants = {
        "float32": (False, False, False),
        "augmented": (False, False, True),  # the seed's warp as the step's first op
        "mixed_precision": (True, False, False),
        "xla": (False, True, False),
        "xla_augmented": (False, True, True),  # the warp compiled into the step with the model
    }
    results = {}
    for name, (mixed, xla, augmented) in variants.items():
        model = fresh_model(sizes, mixed=mixed)
        vgg.unfreeze_from(model, "block4_conv1")
        if augmented:  # as the job builds it (train.seed_augmentation)
            compiled = not xla and vgg.gpu_count() == 0
            model = vgg.with_augmentation(model, augmentation.SeedAugmentation(compiled=compiled))
        vgg.compile_model(model, tf.keras.optimizers.RMSprop(1e-5), xla=xla)
        model.fit(
            dataset.take(1), epochs=1, shuffle=False, verbose=0
        )  # warm-up (and XLA compilation)
        seconds = [
            timed(lambda m=model: m.fit(dataset, epochs=1, shuffle=False, verbose=0))
            for _ in range(sizes.repeats)
        ]
        results[name] = {
            "policy": tf.keras.mixed_precision.global_policy().name,
            "seconds": seconds,
            "images_per_second": median_rate(n, seconds),
        }
    vgg.set_precision(False, on_gpu=False)
    base = results["float32"]["images_per_second"]
    for row in results.values():
        row["ratio_to_float32"] = row["images_per_second"] / base
    return {"images": n, "image_size": sizes.model_image_size, "variants": results}


def bottleneck(pipeline: dict, fine_tuning: dict) -> dict:
    """Which bounds fine-tuning, with XLA and without: the job's input (gather from the cache;
    the augmentation is in the step) or the step itself (augmentation + model)."""
    input_rate = pipeline["training_input_images_per_second"]
    rows = {}
    for name in ("augmented", "xla_augmented"):
        step_rate = fine_tuning["variants"][name]["images_per_second"]
        rows[name] = {
            "input_images_per_second": input_rate,
            "step_images_per_second": step_rate,
            "slower": "input pipeline" if input_rate < step_rate else "model",
        }
    return rows


# --- 4. smoke end to end ----------------------------------------------------------------------
def bench_smoke(out: Path) -> dict:
    from training.data.sample import ensure_sample
    from training.launch import experiments
    from training.launch.local import run_local
    from training.launch.request import RunRequest

    splits = Path("data/splits")
    ensure_sample(splits)
    started = time.perf_counter()
    smoke = experiments.load("smoke")
    report = run_local(RunRequest("local", smoke, "local", 1, splits=splits, runs=out / "smoke"))
    total = time.perf_counter() - started
    metrics = json.loads((report.parent / "output" / METRICS_FILE).read_text())
    return {
        "run": report.parent.name,
        "total_seconds": total,
        "phase_seconds": {p: m["seconds"] for p, m in metrics["phases"].items()},
        "phase_images_per_second": {
            p: m["images_per_second"] for p, m in metrics["phases"].items()
        },
    }


# --- seed-equivalent epoch times (GPU runs) ---------------------------------------------------
def seed_equivalents(frozen: dict, fine: dict) -> dict:
    """Epoch seconds the seed's experiments would take at the measured rates, beside the K80's."""
    infer = frozen["inference_images_per_second"]
    rows = {}
    for experiment, ref in seed.RESULTS.items():
        train_images = ref["train_images"]
        rows[experiment] = {
            FROZEN: train_images / frozen["seed_way_images_per_second"] + VALIDATION_IMAGES / infer,
            "frozen_cached": train_images / frozen["cached_images_per_second"]
            + VALIDATION_IMAGES / infer,
            FINE_TUNED: train_images / fine["variants"]["augmented"]["images_per_second"]
            + VALIDATION_IMAGES / infer,
            "k80_frozen": seed.K80_EPOCH_SECONDS[experiment][FROZEN],
            "k80_fine_tuned": seed.K80_EPOCH_SECONDS[experiment][FINE_TUNED],
        }
    return rows


def render(result: dict) -> str:
    p, f, t = result["pipeline"], result[FROZEN], result["fine_tuning"]
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cpu_flags'] or 'no listed SIMD flags'}), "
        f"GPUs: {', '.join(m['gpus']) or 'none'}; TensorFlow {m['tensorflow']}, Keras {m['keras']}. "
        f"Medians of {result['repeats']} repeats; raw repeats in bench.json.",
        "",
        "| measurement | ours | seed's way / baseline | ratio |",
        "|---|---|---|---|",
        f"| 1. input pipeline per training epoch, 150×150 + augmentation ({p['images']} JPEGs; "
        f"decode once, spread over {p['epochs_amortised']} epochs) | "
        f"{p['ours_images_per_second']:.0f} img/s | {p['seed_images_per_second']:.0f} img/s "
        f"(ImageDataGenerator, every epoch) | **{p['ratio']:.1f}×** |",
        f"| 1b. the same, ours on one thread (the generator uses one) | "
        f"{p['ours_one_thread_images_per_second']:.0f} img/s | {p['seed_images_per_second']:.0f} img/s "
        f"| **{p['ratio_per_thread']:.1f}×** |",
        f"| 1c. one-time decode into the cache / one cached epoch with augmentation | "
        f"{p['decode_images_per_second']:.0f} img/s / {p['epoch_images_per_second']:.0f} img/s | — | — |",
        f"| 1c'. one cached epoch as the job reads it (augmentation in the training step) | "
        f"{p['training_input_images_per_second']:.0f} img/s | — | — |",
        f"| 1d. cache memory | {p['cache_bytes_per_image']} B per image: "
        f"{p['cache_bytes_per_image'] * 4000 / 1e6:.0f} MB for small's 4,000, "
        f"{p['cache_bytes_per_image'] * 21000 / 1e9:.2f} GB for full's 21,000 | — | — |",
        f"| 2. frozen phase, {f['image_size']} px, {f['epochs']} epochs ({f['images']} images) | "
        f"{f['cached_images_per_second']:.0f} img/s (feature caching) | "
        f"{f['seed_way_images_per_second']:.0f} img/s (conv base every epoch) | **{f['ratio']:.1f}×** |",
    ]
    before = "ImageProjectiveTransformV3, float32 (before)"
    for name, row in p["warp"].items():
        difference = row["max_difference_from_before"]
        compared = (
            "its own draws"
            if difference is None
            else f"differs from before by {difference:.3f} of 255 at most"
        )
        lines.append(
            f"| 1e. the warp alone, {name}, batches of {WARP_BATCH} ({compared}) | "
            f"{row['images_per_second']:.0f} img/s | {p['warp'][before]['images_per_second']:.0f} "
            f"img/s (before) | **{row['ratio_to_before']:.2f}×** |"
        )
    for name in ("augmented", "mixed_precision", "xla", "xla_augmented"):
        row = t["variants"][name]
        lines.append(
            f"| 3. fine-tuning, {t['image_size']} px, {name} ({row['policy']}) | "
            f"{row['images_per_second']:.1f} img/s | "
            f"{t['variants']['float32']['images_per_second']:.1f} img/s (float32) "
            f"| **{row['ratio_to_float32']:.2f}×** |"
        )
    if result.get("smoke"):
        s = result["smoke"]
        lines.append(
            f"| 4. smoke experiment end to end (1 run) | {FROZEN} "
            f"{s['phase_seconds'][FROZEN]:.0f} s, {FINE_TUNED} {s['phase_seconds'][FINE_TUNED]:.0f} "
            f"s, total {s['total_seconds']:.0f} s | — | — |"
        )
    for name, b in result.get("bottleneck", {}).items():
        with_xla = "with XLA" if name.startswith("xla") else "without XLA"
        lines.append(
            f"\nBottleneck {with_xla}: the {b['slower']} (training input "
            f"{b['input_images_per_second']:.0f} img/s vs fine-tuning step with augmentation "
            f"{b['step_images_per_second']:.0f} img/s)."
        )
    if result.get("seed_equivalents"):
        lines += [
            "",
            "| seed experiment | frozen epoch | cached frozen epoch | fine-tuned epoch "
            "| K80 frozen / fine-tuned |",
            "|---|---|---|---|---|",
        ]
        for name, row in result["seed_equivalents"].items():
            lines.append(
                f"| {name} | {row[FROZEN]:.1f} s | {row['frozen_cached']:.1f} s | "
                f"{row[FINE_TUNED]:.1f} s | {row['k80_frozen']} s / {row['k80_fine_tuned']} s |"
            )
    return "\n".join(lines)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument(
        "--device",
        choices=["cpu", "gpu", "quick"],
        default="cpu",
        help="quick: tiny sizes, for testing this script",
    )
    parser.add_argument(
        "--instance-type", help="record GPU results for this SageMaker instance type"
    )
    args = parser.parse_args(argv)
    sizes = {"cpu": CPU, "gpu": GPU, "quick": QUICK}[args.device]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"device": args.device, "repeats": sizes.repeats, "machine": machine()}
    print(f"bench on {result['machine']['cpu']} ({args.device} sizes)", flush=True)
    images = photo_like_images(args.out / f"images-{sizes.pipeline_images}", sizes.pipeline_images)
    result["pipeline"] = bench_pipeline(images, sizes)
    print(f"  1. pipeline ratio {result['pipeline']['ratio']:.1f}x", flush=True)
    result[FROZEN] = bench_frozen(sizes)
    print(f"  2. feature caching ratio {result[FROZEN]['ratio']:.1f}x", flush=True)
    result["fine_tuning"] = bench_fine_tuning(sizes)
    print("  3. fine-tuning variants measured", flush=True)
    if sizes.smoke:
        result["smoke"] = bench_smoke(args.out)
    result["bottleneck"] = bottleneck(result["pipeline"], result["fine_tuning"])
    if args.device == "gpu":
        result["seed_equivalents"] = seed_equivalents(result[FROZEN], result["fine_tuning"])
        if args.instance_type:
            infer = result[FROZEN]["inference_images_per_second"]
            result["epoch_seconds_by_instance"] = {
                args.instance_type: {
                    FROZEN: 1 / result[FROZEN]["seed_way_images_per_second"],
                    FINE_TUNED: 1
                    / result["fine_tuning"]["variants"]["augmented"]["images_per_second"],
                    "validation": 1 / infer,
                }
            }
    result["total_seconds"] = time.perf_counter() - started
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    table = render(result)
    (args.out / "bench.md").write_text(table + "\n")
    print(table)
    print(f"\n{result['total_seconds']:.0f} s; written to {args.out / 'bench.json'} and bench.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
