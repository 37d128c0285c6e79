"""The decode-once image cache: each split is decoded and resized once per job into uint8 (in
memory, or a memory-mapped file when it does not fit), and every epoch reads it by index."""

import os
import threading
from typing import Optional

import numpy as np
import tensorflow as tf

from vgg_transfer.channels import Split, decode_resized


class ImageCache:
    """Every image of a split, decoded and resized once: uint8 [n, size, size, 3] in memory, or
    in a memory-mapped file when memory is short. Epochs then read arrays, not JPEGs."""

    def __init__(self, split: Split, images: np.ndarray, location: str) -> None:
        self.split = split
        self.images = images
        self.labels = np.array(split.labels, dtype=np.float32)
        self.location = location
        self.served = 0  # images handed to the input pipeline so far
        self._lock = threading.Lock()

    def take(self, indices: np.ndarray):
        """One batch: a fancy-indexing copy (sorting first, for memory-mapped reads, cost more
        than it saved), counted."""
        with self._lock:
            self.served += len(indices)
        return self.images[indices], self.labels[indices]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def describe(self) -> str:
        return f"{self.split.name}: {len(self)} images, {self.nbytes / 1e6:.0f} MB {self.location}"


def available_memory() -> int:
    """Bytes this process can still use (MemAvailable, capped by a cgroup limit)."""
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 << 30  # not Linux: assume a workstation's few GB
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as handle:
                available = min(available, int(handle.read().strip()))
        except (OSError, ValueError):
            continue
    return available


def build_cache(
    split: Split,
    image_size: int,
    cache_dir: str,
    memory_budget: Optional[int] = None,
    threads: int = 0,
) -> ImageCache:
    """Decodes the split once, in parallel, into a uint8 array: in memory when it takes at most
    ``memory_budget`` bytes (default: a third of the memory available), else in
    ``cache_dir/<split>-<size>.npy`` on disk, memory-mapped."""
    shape = (len(split), image_size, image_size, 3)
    nbytes = int(np.prod(shape))
    budget = available_memory() // 3 if memory_budget is None else memory_budget
    if nbytes <= budget:
        images, location = np.empty(shape, dtype=np.uint8), "in memory"
    else:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"{split.name}-{image_size}.npy")
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        location = f"in {path} (memory-mapped: {nbytes >> 20} MiB > {budget >> 20} MiB budget)"
    dataset = tf.data.Dataset.from_tensor_slices(np.array(split.paths)).map(
        lambda path: decode_resized(path, image_size),
        num_parallel_calls=threads or tf.data.AUTOTUNE,
        deterministic=True,
    )
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = threads
        dataset = dataset.with_options(options)
    start = 0
    for batch in dataset.batch(256).prefetch(2):
        images[start : start + len(batch)] = batch.numpy()
        start += len(batch)
    return ImageCache(split, images, location)
