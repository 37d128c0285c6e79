"""Splitting Kaggle's train.zip exactly as the seed did."""

import pytest
from kaggle_helpers import tiny_jpeg, write_kaggle_zip

from training.common.errors import UserError
from training.data import prepare as prep


def indices(folder, animal: str) -> list[int]:
    return sorted(int(p.name.split(".")[1]) for p in folder.iterdir() if p.name.startswith(animal))


@pytest.mark.slow
def test_full_zip_gives_the_seeds_exact_splits_and_a_second_run_does_nothing(full_zip, tmp_path):
    out = tmp_path / "splits"
    result = prep.prepare(full_zip, out)
    assert result.did_work and not result.excluded
    expected = {"validation": (0, 1000), "test": (1000, 2000), "train_small": (2000, 4000),
                "train_full": (2000, 12500)}  # fmt: skip
    for split, (first, last) in expected.items():
        for animal, folder in (("cat", "cats"), ("dog", "dogs")):
            assert indices(out / split / folder, animal) == list(range(first, last)), split
        assert sorted(p.name for p in (out / split).iterdir()) == ["cats", "dogs"]
    manifest = result.manifest
    assert manifest["splits"]["train_full"]["counts"] == {"cats": 10500, "dogs": 10500}
    assert len(manifest["files"]) == 25000 and len(manifest["dataset_digest"]) == 16
    # the splits are links into one extracted copy, not four extractions
    linked = out / "train_small" / "cats" / "cat.2000.jpg"
    assert linked.stat().st_ino == (out / "train_full" / "cats" / "cat.2000.jpg").stat().st_ino

    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = prep.prepare(full_zip, out)
    assert not again.did_work
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert again.manifest["dataset_digest"] == manifest["dataset_digest"]


def test_bad_files_are_reported_and_excluded(tmp_path, capsys):
    source = tmp_path / "train.zip"
    write_kaggle_zip(
        source,
        per_class=250,
        skip={"cat.3.jpg", "dog.7.jpg"},
        extra={
            "cat.250.jpg": b"",  # zero bytes, and outside the scaled ranges anyway
            "dog.7.jpg": b"this is not a jpeg",
            "readme.txt": b"hello",
        },
    )
    result = prep.prepare(source, tmp_path / "splits", per_class=250)
    reasons = {entry["file"]: entry["reason"] for entry in result.excluded}
    assert "not a readable image" in reasons["dog.7.jpg"]
    assert reasons["cat.250.jpg"] == "empty file"
    assert "unexpected name" in reasons["readme.txt"]
    assert result.manifest["missing_indices"]["cat"] == [3]
    assert not (tmp_path / "splits" / "validation" / "dogs" / "dog.7.jpg").exists()
    assert result.manifest["splits"]["validation"]["counts"] == {"cats": 19, "dogs": 19}
    printed = capsys.readouterr().out
    assert "dog.7.jpg" in printed and "missing cat indices (1): 3" in printed


def test_a_folder_input_works_and_a_changed_input_is_redone(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(250):
        (folder / f"cat.{i}.jpg").write_bytes(tiny_jpeg())
        (folder / f"dog.{i}.jpg").write_bytes(tiny_jpeg((0, 0, 255)))
    first = prep.prepare(folder, tmp_path / "splits", per_class=250)
    assert first.manifest["splits"]["train_full"]["counts"] == {"cats": 210, "dogs": 210}
    (folder / "cat.5.jpg").write_bytes(tiny_jpeg((1, 2, 3)))
    assert prep.prepare(folder, tmp_path / "splits", per_class=250).did_work


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: p / "nope.zip", "does not exist"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "neither a zip"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no files named cat"),
    ],
)
def test_bad_inputs_say_what_to_do(tmp_path, make_input, message):
    with pytest.raises(UserError, match=message):
        prep.prepare(make_input(tmp_path), tmp_path / "splits")


def test_command_line_errors_exit_2_without_a_traceback(tmp_path, capsys):
    assert prep.main([str(tmp_path / "missing.zip"), "--out", str(tmp_path / "s")]) == 2
    assert prep.main(["--out", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "make data DATA=" in err
