"""Row 1: the input pipeline, ours (the job's stages) against the seed's ImageDataGenerator."""

import statistics
from pathlib import Path

import numpy as np
from PIL import Image
from vgg_transfer import augmentation, batching, channels
from vgg_transfer import config as job_config
from vgg_transfer.cache import build_cache

from training.bench import Sizes, median_rate, timed
from training.bench.warp import bench_warp


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


def seed_epoch(folder: Path):
    """One epoch of the seed's generator over ``folder``, with the very settings our pipeline
    reproduces: decode, resize and warp every image, image by image."""
    import tensorflow as tf

    generator = tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1.0 / 255,
        rotation_range=augmentation.ROTATION_DEGREES,
        width_shift_range=augmentation.WIDTH_SHIFT,
        height_shift_range=augmentation.HEIGHT_SHIFT,
        shear_range=augmentation.SHEAR_DEGREES,
        zoom_range=augmentation.ZOOM,
        horizontal_flip=True,
        fill_mode="nearest",
    )

    def epoch():
        flow = generator.flow_from_directory(
            str(folder), target_size=(150, 150), batch_size=64, class_mode="binary", seed=0
        )
        for index in range(len(flow)):
            flow[index]

    return epoch


def pipeline_seconds(folder: Path, sizes: Sizes) -> tuple:
    """(the cache, then each measurement's seconds, every repeat): the one-time decode on every
    core and on one, a cached epoch with augmentation on every core and on one, the job's own
    training input (the augmentation is the training step's first op), the seed's generator."""
    split = channels.read_split("bench", str(folder))
    cache_dir = str(folder.parent / "cache")

    def build(threads: int = 0):
        return build_cache(split, 150, cache_dir, threads=threads)

    def epoch(cache, threads: int = 0, augment: bool = True):
        hp = job_config.Hyperparameters(batch_size=64, seed=0)
        for _ in pipeline(cache, hp, augment, threads):
            pass

    def repeated(fn) -> list[float]:
        return [timed(fn) for _ in range(sizes.repeats)]

    cache = build()
    epoch(cache)  # warm-up: traces the tf.data functions once
    epoch(cache, augment=False)
    return cache, {
        "decode_seconds": repeated(build),
        "decode_one_thread_seconds": repeated(lambda: build(threads=1)),
        "epoch_seconds": repeated(lambda: epoch(cache)),
        "epoch_one_thread_seconds": repeated(lambda: epoch(cache, threads=1)),
        "unwarped_epoch_seconds": repeated(lambda: epoch(cache, augment=False)),
        "seed_seconds": repeated(seed_epoch(folder)),
    }


def bench_pipeline(folder: Path, sizes: Sizes, epochs: int = 30) -> dict:
    """Our pipeline against the seed's generator, per training epoch.

    Ours decodes each image once into the cache, then every epoch shuffles, gathers and warps
    (here on the CPU, in the pipeline, as the generator does; on a GPU the warp is the training
    step's first op). The one-time decode is timed apart and spread over a phase's ``epochs``."""
    cache, t = pipeline_seconds(folder, sizes)
    n = len(cache)

    def amortised(epoch_seconds: list[float], decode_seconds: list[float]) -> float:
        """Images per second over a phase: every epoch, plus the decode once."""
        per_epoch = statistics.median(epoch_seconds) + statistics.median(decode_seconds) / epochs
        return n / per_epoch

    ours_rate = amortised(t["epoch_seconds"], t["decode_seconds"])
    one_thread_rate = amortised(t["epoch_one_thread_seconds"], t["decode_one_thread_seconds"])
    seed_rate = median_rate(n, t["seed_seconds"])
    return {
        "images": n,
        "epochs_amortised": epochs,
        "cache_bytes": cache.nbytes,
        "cache_bytes_per_image": cache.nbytes // n,
        **t,
        "decode_images_per_second": median_rate(n, t["decode_seconds"]),
        "epoch_images_per_second": median_rate(n, t["epoch_seconds"]),
        "training_input_images_per_second": median_rate(n, t["unwarped_epoch_seconds"]),
        "warp": bench_warp(cache.images, sizes),
        "ours_images_per_second": ours_rate,
        "ours_one_thread_images_per_second": one_thread_rate,
        "seed_images_per_second": seed_rate,  # the generator runs on one thread
        "ratio": ours_rate / seed_rate,
        "ratio_per_thread": one_thread_rate / seed_rate,
    }
