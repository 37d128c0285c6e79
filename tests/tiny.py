"""The tiny experiment the launcher's and the rehearsal's tests run: the smoke recipe at 32 px, one
epoch per phase, on the sample generator's 20 images per class (2/1/3/17 per class and split)."""

from pathlib import Path

TINY = ["image_size=32", "batch_size=8", "epochs_frozen=1", "epochs_fine_tuned=1"]


def tiny_splits(root: Path) -> Path:
    from training.data.prepare import prepare
    from training.data.sample import generate

    return prepare(generate(root / "raw", per_class=20), root / "splits", per_class=20).out


def archives(run_dir: Path) -> dict[str, bytes]:
    """model.tar.gz and output.tar.gz of a finished run, as SageMaker packs them (each folder's
    contents at the archive's top): a run keeps its model and outputs unpacked only."""
    import io
    import tarfile

    packed = {}
    for name, folder in (("model.tar.gz", "model"), ("output.tar.gz", "output")):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for item in sorted((run_dir / folder).iterdir()):
                tar.add(item, arcname=item.name)
        packed[name] = buffer.getvalue()
    return packed
