"""The images to classify, as a stream of (name, bytes): a folder, one image, or a zip such as
Kaggle's test.zip, read lazily so that memory stays flat; and Kaggle's ids from their names."""

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from training.common.errors import UserError

KAGGLE = "kaggle"  # IMAGES=kaggle: the competition's test.zip
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_id(name: str):
    """Kaggle's id: the file name's stem, as a number when it is one (``1234.jpg`` → 1234)."""
    stem = Path(name).name.rsplit(".", 1)[0]
    return int(stem) if re.fullmatch(r"\d+", stem) else stem


def is_image(name: str) -> bool:
    base = Path(name).name
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")


def sources(images: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """(count, stream of (name, bytes)) for a folder, one image, or a zip (Kaggle's test.zip)."""
    if images.is_dir():
        paths = sorted(p for p in images.rglob("*") if p.is_file() and is_image(p.name))
        return len(paths), ((str(p), p.read_bytes()) for p in paths)
    if zipfile.is_zipfile(images):
        archive = zipfile.ZipFile(images)
        members = sorted(
            (m for m in archive.infolist() if not m.is_dir() and is_image(m.filename)),
            key=lambda m: m.filename,
        )

        def read() -> Iterator[tuple[str, bytes]]:
            with archive:
                for member in members:
                    yield member.filename, archive.read(member)

        return len(members), read()
    if images.is_file() and is_image(images.name):
        return 1, iter([(str(images), images.read_bytes())])
    raise UserError(
        f"IMAGES={images}: expected a folder of images, one .jpg/.png image, or a zip of them "
        "(Kaggle's test.zip)"
    )


def batches(stream, size: int) -> Iterator[list]:
    batch = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
