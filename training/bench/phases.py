"""Rows 2-4: the model's phases (frozen with and without feature caching; fine-tuning variants),
which bounds training, the smoke experiment end to end, and the seed's epochs at measured rates."""

import json
import time
from pathlib import Path

import numpy as np
from vgg_transfer import augmentation
from vgg_transfer import model as vgg
from vgg_transfer.contract import FINE_TUNED, FROZEN, METRICS_FILE

from training.bench import Sizes, median_rate, timed
from training.launch.timing import VALIDATION_IMAGES
from training.report import seed


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


def feature_caching(model, dataset, sizes: Sizes, epochs_frozen: int) -> tuple:
    """(seconds to run the conv base once, seconds to train the head every epoch on the cached
    features), each repeat."""
    import tensorflow as tf

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
    return extract_s, head_s


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

    extract_s, head_s = feature_caching(model, dataset, sizes, epochs_frozen)
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
    """`make train-local`, timed (the launcher's own request and runner)."""
    from training.data.sample import ensure_sample
    from training.launch.__main__ import build_parser
    from training.launch.local import run_local
    from training.launch.request import from_args

    splits = Path("data/splits")
    ensure_sample(splits)
    started = time.perf_counter()
    args = ["local", "--splits", str(splits), "--runs", str(out / "smoke")]
    report = run_local(from_args(build_parser().parse_args(args)))
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
