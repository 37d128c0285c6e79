"""The job's input channels: each split's folder of cats/ and dogs/ images, checked (every file
decodes) before training, and images decoded and resized as flow_from_directory did.
Images stay in [0, 255]; rescaling or VGG16 preprocessing lives inside the model, so the saved
model takes raw images."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from vgg_transfer import contract

CLASSES = ("cats", "dogs")  # label 0 = cat, 1 = dog: the order flow_from_directory used
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ChannelError(contract.JobError, ValueError):
    """A channel the job cannot train on; the message names the channel and the files."""


class Split:
    """The image paths and labels of one channel."""

    def __init__(self, name: str, paths: list[str], labels: list[int]) -> None:
        self.name = name
        self.paths = paths
        self.labels = labels

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        return {c: self.labels.count(i) for i, c in enumerate(CLASSES)}


def _looks_like_image(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)


def read_split(name: str, directory: str) -> Split:
    """Lists a channel and checks every file's header: seconds, not a decode of every image."""
    if not directory or not os.path.isdir(directory):
        raise ChannelError(
            f"channel {name!r}: directory {directory!r} does not exist; pass --{name} or stage the data "
            "(make data / make data-sample)"
        )
    paths, labels, bad = [], [], []
    for label, cls in enumerate(CLASSES):
        class_dir = os.path.join(directory, cls)
        if not os.path.isdir(class_dir):
            raise ChannelError(
                f"channel {name!r}: class folder {class_dir!r} is missing; expected {directory}/cats and {directory}/dogs"
            )
        for entry in sorted(os.listdir(class_dir)):
            path = os.path.join(class_dir, entry)
            if not entry.lower().endswith(IMAGE_SUFFIXES) or not os.path.isfile(path):
                continue
            try:
                ok = os.path.getsize(path) > 0 and _looks_like_image(path)
            except OSError:
                ok = False
            if not ok:
                bad.append(path)
                continue
            paths.append(path)
            labels.append(label)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ChannelError(
            f"channel {name!r}: {len(bad)} unreadable, empty or non-image file(s): {shown}; remove them or re-run "
            "make data, which excludes them"
        )
    split = Split(name, paths, labels)
    empty = [c for c, n in split.class_counts().items() if n == 0]
    if empty:
        raise ChannelError(
            "channel {!r}: no images in class folder(s) {} under {!r}".format(
                name, ", ".join(empty), directory
            )
        )
    return split


def read_channels(directories: dict[str, str]) -> dict[str, Split]:
    return {name: read_split(name, path) for name, path in directories.items()}


def _decode_problem(path: str) -> str:
    """Why the image does not decode ("" when it does). JPEGs decode at 1/8 scale: libjpeg still
    reads every byte of the compressed data, so truncation and corruption show, at a fraction of
    the cost of a full decode."""
    try:
        data = tf.io.read_file(path)
        if tf.io.is_jpeg(data):
            tf.io.decode_jpeg(data, channels=3, ratio=8)
        else:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        return ""
    except (tf.errors.OpError, ValueError) as error:
        return str(getattr(error, "message", error)).strip().splitlines()[0][:120]


def check_decodes(splits: dict[str, Split], threads: int = 0) -> None:
    """Refuses, naming the files, images whose header is fine but whose data does not decode:
    before training, not as a TensorFlow traceback mid-epoch after GPU time was spent."""
    bad = []
    with ThreadPoolExecutor(max_workers=threads or min(32, (os.cpu_count() or 1) * 2)) as pool:
        for split in splits.values():
            for path, problem in zip(split.paths, pool.map(_decode_problem, split.paths)):
                if problem:
                    bad.append(f"{split.name}: {path} ({problem})")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ChannelError(
            f"{len(bad)} image(s) do not decode: {shown}. Remove them, or re-run make data, "
            "which excludes them"
        )


def decode(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes a JPEG at the smallest DCT scale (1, 1/2, 1/4, 1/8) that still covers
    ``image_size``: libjpeg skips most of the inverse DCT, the input pipeline's main cost, and
    the downscale averages pixels like an area filter. Other formats decode in full."""

    def jpeg_at(ratio: int):
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=ratio)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        short_side = tf.minimum(shape[0], shape[1])
        branches = [jpeg_at(1), jpeg_at(2), jpeg_at(4), jpeg_at(8)]
        index = tf.reduce_sum(
            tf.cast(short_side >= image_size * tf.constant([2, 4, 8]), tf.int32)
        )  # how many halvings keep the short side >= image_size
        return tf.switch_case(index, branches)

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def decode_resized(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """One image file as the model sees it before augmentation (see image_from_bytes)."""
    return image_from_bytes(tf.io.read_file(path), image_size)


def image_from_bytes(data, image_size: int) -> tf.Tensor:
    """Encoded image bytes as the model sees them before augmentation: uint8, ``image_size``
    square (bilinear resize of the decode), as flow_from_directory resized on load. Training,
    evaluation and ``make predict`` all go through here."""
    image = decode(tf.convert_to_tensor(data, dtype=tf.string), image_size)
    image = tf.image.resize(image, (image_size, image_size))
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    image.set_shape((image_size, image_size, 3))
    return image


def labels_array(split: Split) -> np.ndarray:
    return np.array(split.labels, dtype=np.int64)


def split_summary(splits: dict[str, Split]) -> dict[str, dict[str, int]]:
    return {name: dict(split.class_counts(), total=len(split)) for name, split in splits.items()}
