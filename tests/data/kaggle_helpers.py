"""Generated Kaggle-format inputs for the data tests."""

import io
import zipfile

from PIL import Image


def tiny_jpeg(colour=(200, 100, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_kaggle_zip(path, per_class: int = 12500, extra: dict | None = None, skip=()) -> None:
    """A zip shaped like Kaggle's train.zip: train/cat.<i>.jpg and train/dog.<i>.jpg."""
    cat, dog = tiny_jpeg((200, 100, 50)), tiny_jpeg((50, 100, 200))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("train/", "")
        for i in range(per_class):
            for animal, data in (("cat", cat), ("dog", dog)):
                name = f"{animal}.{i}.jpg"
                if name not in skip:
                    archive.writestr(f"train/{name}", data)
        for name, data in (extra or {}).items():
            archive.writestr(f"train/{name}", data)
