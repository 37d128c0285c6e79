"""Kaggle's Dogs-vs-Cats ``train.zip`` → the seed's splits, with a manifest.

    python -m training.data.prepare [path/to/train.zip] --out data/splits

Without a path, Kaggle's train.zip is downloaded with the user's Kaggle token (kaggle_download.py).

Splits by file index exactly as the seed study did (docs/seed-study.md), into
``<out>/<split>/{cats,dogs}/``. The zip is extracted once into ``<out>/source/``; the splits are
hard links into that copy. Every image is decoded once; corrupt, empty, non-image or unexpectedly
named files are listed in the manifest and left out. A second run with the same input does nothing.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from training.common.errors import UserError, cli
from training.common.progress import track
from training.data import kaggle_download

PER_CLASS = 12500  # images per class in Kaggle's train.zip
# The seed's split: [first, last) file index per class, the same for cats and dogs.
SEED_RANGES = {
    "validation": (0, 1000),
    "test": (1000, 2000),
    "train_small": (2000, 4000),
    "train_full": (2000, 12500),
}
CLASS_FOLDERS = {"cat": "cats", "dog": "dogs"}
NAME_PATTERN = re.compile(r"^(cat|dog)\.(\d+)\.jpg$")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def scaled_ranges(per_class: int) -> dict[str, tuple[int, int]]:
    """The seed's ranges scaled to a data set of ``per_class`` images per class."""
    if per_class == PER_CLASS:
        return dict(SEED_RANGES)
    scale = per_class / PER_CLASS
    return {name: (round(a * scale), round(b * scale)) for name, (a, b) in SEED_RANGES.items()}


@dataclass
class Result:
    out: Path
    manifest: dict
    did_work: bool

    @property
    def excluded(self) -> list[dict]:
        return self.manifest["excluded"]


def fingerprint(source: Path) -> dict:
    """Cheap identity of the input: a changed zip or folder means the splits are rebuilt."""
    if source.is_file():
        stat = source.stat()
        return {"path": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entries = sorted(p for p in source.rglob("*") if p.is_file())
    return {
        "path": str(source.resolve()),
        "files": len(entries),
        "size": sum(p.stat().st_size for p in entries),
        "mtime_ns": max((p.stat().st_mtime_ns for p in entries), default=0),
    }


def extract(source: Path, out: Path) -> Path:
    """One extracted copy of the input (a folder input is used where it is)."""
    if source.is_dir():
        return source
    target = out / "source"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with zipfile.ZipFile(source) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for member in track(members, len(members), "extract", "file"):
            name = Path(member.filename).name
            if not name or name.startswith("."):
                continue
            with archive.open(member) as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def inspect_file(path: str) -> tuple[str, str, int, str]:
    """(name, sha256, size, problem) — decodes the whole image, so truncation is caught."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    problem = ""
    if not data:
        problem = "empty file"
    else:
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as error:  # PIL raises several types for bad data
            problem = f"not a readable image ({type(error).__name__}: {error})"
    return Path(path).name, digest, len(data), problem


def list_candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy instead
        shutil.copy2(src, dst)


def digest_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def load_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_up_to_date(out: Path, manifest: dict | None, stamp: dict, ranges: dict) -> bool:
    if not manifest or manifest.get("version") != MANIFEST_VERSION:
        return False
    if manifest.get("source") != stamp or manifest.get("index_ranges") != _ranges_json(ranges):
        return False
    for split, info in manifest["splits"].items():
        for cls, count in info["counts"].items():
            folder = out / split / cls
            if not folder.is_dir() or sum(1 for _ in folder.iterdir()) != count:
                return False
    return True


def _ranges_json(ranges: dict) -> dict:
    return {name: list(bounds) for name, bounds in ranges.items()}


def check_source(source: Path) -> None:
    if not source.exists():
        raise UserError(
            f"input {source} does not exist; download train.zip from Kaggle's Dogs vs. Cats "
            "(Redux) competition and pass its path (make data DATA=path/to/train.zip), or run "
            "make data-sample for the synthetic set"
        )
    if not source.is_dir() and not zipfile.is_zipfile(source):
        raise UserError(f"{source} is neither a zip file nor a folder; pass Kaggle's train.zip")


def inspect_all(named: list[Path], workers: int) -> tuple[dict, list[dict]]:
    """Decodes every image once, in parallel: ({name: sha256 and size}, [excluded files]); a bad
    file is recorded, never a crash halfway."""
    files: dict[str, dict] = {}
    excluded = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(inspect_file, [str(p) for p in named], chunksize=64)
        for name, sha, size, problem in track(results, len(named), "check", "img"):
            if problem:
                excluded.append({"file": name, "reason": problem})
            else:
                files[name] = {"sha256": sha, "size": size}
    return files, excluded


def link_splits(out: Path, ranges: dict, files: dict, by_path: dict) -> dict:
    """Each split's folders of hard links, by the seed's index ranges; returns each split's
    counts and digest."""
    for split in SEED_RANGES:
        if (out / split).exists():
            shutil.rmtree(out / split)
    present = indices_present(files)
    splits: dict[str, dict] = {}
    for split, (first, last) in ranges.items():
        counts, lines = {}, []
        for animal, folder_name in CLASS_FOLDERS.items():
            chosen = [f"{animal}.{i}.jpg" for i in range(first, last) if i in present[animal]]
            for name in chosen:
                link(by_path[name], out / split / folder_name / name)
                lines.append(f"{folder_name}/{name} {files[name]['sha256']}")
            counts[folder_name] = len(chosen)
        splits[split] = {"counts": counts, "digest": digest_lines(lines)}
    return splits


def indices_present(files: dict) -> dict[str, set[int]]:
    present: dict[str, set[int]] = {"cat": set(), "dog": set()}
    for name in files:
        animal, index = NAME_PATTERN.match(name).groups()
        present[animal].add(int(index))
    return present


def prepare(source: Path, out: Path, per_class: int = PER_CLASS, workers: int = 0) -> Result:
    """Builds (or confirms) the splits under ``out``; returns the manifest."""
    source, out = Path(source), Path(out)
    check_source(source)
    ranges = scaled_ranges(per_class)
    stamp = fingerprint(source)
    manifest = load_manifest(out)
    if is_up_to_date(out, manifest, stamp, ranges):
        print(f"{out}: splits are up to date with {source} (dataset {manifest['dataset_digest']})")
        return Result(out, manifest, did_work=False)

    out.mkdir(parents=True, exist_ok=True)
    candidates = list_candidates(extract(source, out))
    named = [p for p in candidates if NAME_PATTERN.match(p.name)]
    if not named:
        raise UserError(
            f"{source} holds no files named cat.<i>.jpg or dog.<i>.jpg; is it Kaggle's train.zip?"
        )
    files, excluded = inspect_all(named, workers)
    excluded += [
        {"file": p.name, "reason": "unexpected name (expected cat.<i>.jpg or dog.<i>.jpg)"}
        for p in candidates
        if not NAME_PATTERN.match(p.name)
    ]
    splits = link_splits(out, ranges, files, {p.name: p for p in named})
    manifest = build_manifest(stamp, ranges, splits, files, excluded)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / MANIFEST)
    report(out, manifest)
    return Result(out, manifest, did_work=True)


def build_manifest(stamp: dict, ranges: dict, splits: dict, files: dict, excluded: list) -> dict:
    used_limit = max(last for _, last in ranges.values())
    for name in files:
        if int(NAME_PATTERN.match(name).group(2)) >= used_limit:
            excluded.append(
                {"file": name, "reason": f"index outside every split (>= {used_limit})"}
            )
    present = indices_present(files)
    missing = {
        animal: [i for i in range(used_limit) if i not in present[animal]] for animal in present
    }
    return {
        "version": MANIFEST_VERSION,
        "dataset_digest": digest_lines([f"{s} {info['digest']}" for s, info in splits.items()])[
            :16
        ],
        "source": stamp,
        "index_ranges": _ranges_json(ranges),
        "splits": splits,
        "excluded": sorted(excluded, key=lambda e: e["file"]),
        "missing_indices": missing,
        "files": dict(sorted(files.items())),
    }


def report(out: Path, manifest: dict) -> None:
    print(f"dataset {manifest['dataset_digest']} in {out}:")
    for split, info in manifest["splits"].items():
        counts = ", ".join(f"{n} {c}" for c, n in info["counts"].items())
        print(f"  {split:<12} {counts}")
    if manifest["excluded"]:
        print(f"  excluded {len(manifest['excluded'])} file(s):")
        for entry in manifest["excluded"][:20]:
            print(f"    {entry['file']}: {entry['reason']}")
        if len(manifest["excluded"]) > 20:
            print(f"    … and {len(manifest['excluded']) - 20} more (see {out / MANIFEST})")
    for animal, indices in manifest["missing_indices"].items():
        if indices:
            shown = ", ".join(map(str, indices[:10])) + (" …" if len(indices) > 10 else "")
            print(f"  missing {animal} indices ({len(indices)}): {shown}")


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, help="train.zip or its unzipped folder")
    parser.add_argument("--out", type=Path, default=Path("data/splits"))
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.source is None:  # Kaggle's train.zip: an earlier download, else downloaded now
        args.source = kaggle_download.fetch("train.zip")
    manifest = prepare(args.source, args.out, per_class=args.per_class).manifest
    lacking = shortfalls(manifest)
    if lacking:
        raise UserError(
            f"{args.source} is not Kaggle's whole train.zip (12,500 cat.<i>.jpg and dog.<i>.jpg): "
            f"{'; '.join(lacking)}; runs that read those splits are refused. Prepare the "
            "competition's train.zip (`make data`, or DATA=path/to/train.zip)"
        )
    return 0


def shortfalls(manifest: dict, splits: list[str] | None = None) -> list[str]:
    """What each split (or each of ``splits``) lacks against its index range, class by class:
    Kaggle's layout has every index of both classes. One phrase per split that lacks any."""
    found = []
    for split in splits or list(manifest["index_ranges"]):
        first, last = manifest["index_ranges"][split]
        counts = manifest["splits"][split]["counts"]
        lacking = [f"{counts.get(cls, 0)} of {last - first} {cls}"
                   for cls in CLASS_FOLDERS.values() if counts.get(cls, 0) < last - first]  # fmt: skip
        if lacking:
            found.append(f"{split} has {' and '.join(lacking)} (indices {first}–{last - 1})")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
