"""make data / make predict IMAGES=kaggle: Kaggle's own client against a local stand-in of
Kaggle's API and file host (tests/data/kaggle_standin.py), reached through HTTPS_PROXY."""

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from kaggle_helpers import write_kaggle_zip
from kaggle_standin import KEY, USER, KaggleStandin, stand_in_ca

from training.data import kaggle_download
from training.data import prepare as prep
from training.predict import __main__ as predict

REPO = Path(__file__).resolve().parents[2]


def jpeg(rgb: tuple) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 48), rgb).save(buffer, "JPEG")
    return buffer.getvalue()


TEST_IMAGES = {"1.jpg": jpeg((200, 120, 60)), "2.jpg": jpeg((60, 110, 200))}  # as Kaggle names them


@pytest.fixture
def kaggle_user(monkeypatch, tmp_path):
    """A user with a legacy Kaggle key in the environment and nothing else: an empty HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # data/kaggle/ lands here
    return tmp_path


@pytest.fixture
def standin(kaggle_user, monkeypatch):
    train = kaggle_user / "train.zip"
    write_kaggle_zip(train, per_class=20)
    test = kaggle_user / "test.zip"
    with zipfile.ZipFile(test, "w") as archive:  # 2 MB of bulk, so a cut lands mid-file
        for name, body in TEST_IMAGES.items():
            archive.writestr(f"test/{name}", body)
        archive.writestr("test/bulk.bin", os.urandom(2 << 20))
    ca, certificate, key = stand_in_ca(kaggle_user)
    files = {"train.zip": train.read_bytes(), "test.zip": test.read_bytes()}
    with KaggleStandin(files, certificate, key) as host:
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{host.server_port}")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        yield host


def file_requests(host) -> list:
    return [r for r in host.requests if r[0].startswith("/files/")]


def test_make_data_downloads_checks_and_prepares_then_works_offline(standin, capsys):
    out = Path("data/splits")
    assert prep.main(["--out", str(out), "--per-class", "20"]) == 0
    archive = Path("data/kaggle/train.zip")
    assert archive.read_bytes() == standin.files["train.zip"]
    assert "archive checked" in capsys.readouterr().out
    assert (out / "manifest.json").exists()
    seen = len(standin.requests)
    standin.shutdown()  # offline from here: the finished download is used as it is
    assert prep.main(["--out", str(out), "--per-class", "20"]) == 0
    assert len(standin.requests) == seen


def test_a_cut_download_is_resumed_with_a_range_request(standin):
    standin.cut_after = 1_500_000
    path = kaggle_download.download("test.zip")
    assert path.read_bytes() == standin.files["test.zip"]
    ranges = [r[1] for r in file_requests(standin)]
    assert ranges == [None, f"bytes={1 << 20}-"], ranges  # the client writes whole MiB chunks


def test_a_download_stopped_by_the_user_resumes_on_the_next_run(standin, kaggle_user):
    standin.trickle_seconds = 0.05
    command = [sys.executable, "-m", "training.data.kaggle_download", "test.zip"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen(command, env=env, cwd=kaggle_user, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    partial = kaggle_user / "data" / "kaggle" / "test.zip"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 1):
        time.sleep(0.05)
    time.sleep(0.3)
    first.kill()  # Ctrl-C, a closed laptop
    first.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(standin.files["test.zip"])
    standin.trickle_seconds = 0.0
    second = subprocess.run(command, env=env, cwd=kaggle_user, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr[-2000:]
    assert partial.read_bytes() == standin.files["test.zip"]
    assert file_requests(standin)[-1][1] == f"bytes={kept}-", "the second run started over"


def test_rules_not_accepted_is_one_line_naming_the_rules_page(standin, capsys):
    standin.rules_accepted = False
    assert prep.main(["--out", "data/splits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"accept the competition's rules at {kaggle_download.RULES_URL} first" in err


def test_no_credentials_is_one_line_naming_where_to_make_a_token(kaggle_user, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert prep.main(["--out", "data/splits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and kaggle_download.TOKEN_URL in err
    assert "make data DATA=path/to/train.zip" in err
    # make predict IMAGES=kaggle fetches test.zip the same way, and says the same
    Path("runs/any/model").mkdir(parents=True)
    Path("runs/any/model/model.h5").write_bytes(b"not read: the images come first")
    assert predict.main(["--run", "runs/any", "--images", "kaggle"]) == 2
    err = capsys.readouterr().err
    assert kaggle_download.TOKEN_URL in err and "make predict IMAGES=path/to/test.zip" in err


@pytest.mark.slow
def test_make_predict_images_kaggle_downloads_test_zip(standin, tmp_path, capsys):
    """The download is real, and so is the model (an untrained one: what it says is not this
    test's subject)."""
    from vgg_transfer import model as vgg

    vgg.save_model(vgg.build_model(32, "rescale", "none"), str(tmp_path / "run" / "model"))
    out = tmp_path / "submission.csv"
    assert predict.main(["--run", str(tmp_path / "run"), "--images", "kaggle", "--out",
                         str(out)]) == 0  # fmt: skip
    assert Path("data/kaggle/test.zip").read_bytes() == standin.files["test.zip"]
    assert out.read_text().splitlines()[0] == "id,label"
    assert len(out.read_text().splitlines()) == 1 + len(TEST_IMAGES)
    assert f"{len(TEST_IMAGES)} images classified" in capsys.readouterr().out


def test_no_network_is_one_line(kaggle_user, monkeypatch, capsys):
    for name in ("HTTPS_PROXY", "https_proxy"):  # nothing listens there
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert kaggle_download.main(["train.zip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach Kaggle" in err


def test_a_disk_too_small_is_refused_before_downloading(standin, capsys):
    standin.reported_sizes["train.zip"] = 10**15  # a petabyte: more than any test disk has
    assert kaggle_download.main(["train.zip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "free some space" in err
    assert not file_requests(standin), "it downloaded anyway"


def flipped_byte_in_a_member(standin) -> bytes:
    """train.zip with one byte of one image flipped: the archive opens, its CRC does not match."""
    archive = bytearray(standin.files["train.zip"])
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as zipped:
        member = zipped.getinfo("train/cat.3.jpg")
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    archive[start + member.file_size // 2] ^= 0xFF
    return bytes(archive)


def test_a_member_whose_crc_does_not_match_is_refused_and_never_reused(standin, capsys):
    standin.files["train.zip"] = flipped_byte_in_a_member(standin)
    assert prep.main(["--out", "data/splits"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error")]
    assert "is damaged" in line and "cat.3.jpg" in line and "Traceback" not in err
    assert not Path("data/kaggle/train.zip").exists(), "the damaged archive was kept"
    assert not Path("data/splits/manifest.json").exists()


def test_a_damaged_archive_is_deleted_with_one_line(standin, capsys):
    standin.files["train.zip"] = b"PK\x03\x04" + b"\0" * 5000  # a zip's magic, then rubbish
    assert kaggle_download.main(["train.zip"]) == 2
    assert "is damaged" in capsys.readouterr().err
    assert not Path("data/kaggle/train.zip").exists()
