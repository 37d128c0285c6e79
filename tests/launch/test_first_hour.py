"""What a new user meets first: make check, make cost on every GPU type (with HP=), data that is
incomplete refused before anything is staged, make ui that stops clean."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tiny import TINY

from training.common.errors import UserError
from training.data import splits
from training.data.prepare import main as prepare_main
from training.data.prepare import prepare
from training.data.sample import generate
from training.launch.__main__ import main as launch

REPO = Path(__file__).resolve().parents[2]


def incomplete_splits(root: Path, drop) -> Path:
    """The sample generator's 20 per class, prepared after ``drop(path)`` files were deleted."""
    raw = generate(root / "raw", per_class=20)
    for path in sorted(raw.iterdir()):
        if drop(path.name):
            path.unlink()
    return prepare(raw, root / "splits", per_class=20).out


@pytest.mark.parametrize(
    ("drop", "said"),
    [
        (
            lambda name: name.startswith("cat.") and int(name.split(".")[1]) >= 2,
            "train_full has 0 of 17 cats",
        ),  # a class missing from the training split
        (lambda name: name == "dog.9.jpg", "train_full has 16 of 17 dogs"),  # one image short
        (lambda name: int(name.split(".")[1]) < 2, "validation has 0 of 2 cats and 0 of 2 dogs"),
    ],  # fmt: skip
)
def test_incomplete_data_is_refused_before_any_aws_call(tmp_path, capsys, drop, said):
    data = incomplete_splits(tmp_path, drop)
    # No AWS fixture: a call would fail on missing credentials, not with this message.
    assert launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--splits", str(data),
                   "--stack", "test"]) == 2  # fmt: skip
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert f"the data in {data} is incomplete" in line and said in line and "make data" in line


def test_a_seed_experiment_on_other_than_the_seeds_images_is_refused(tiny_splits, capsys):
    assert launch(["cloud", "--experiment", "small", "--splits", str(tiny_splits), "--stack",
                   "test"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "train_small in" in err and "but the experiment trains on 4000 (the seed's)" in err
    with pytest.raises(UserError, match="no prepared data"):
        splits.require(tiny_splits / "nope", ["validation"])


def test_make_data_on_a_folder_that_is_not_kaggles_layout_says_so(tmp_path, capsys):
    raw = generate(tmp_path / "photos", per_class=30)  # 60 photos: far fewer than Kaggle's
    assert prepare_main([str(raw), "--out", str(tmp_path / "splits")]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert "is not Kaggle's whole train.zip" in line and "train_small has 0 of 2000 cats" in line


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_make_cost_takes_hp_and_prices_every_current_gpu_type(tmp_path):
    default = make("cost", "EXPERIMENT=small", "INSTANCE=ml.g4dn.xlarge", f"SPLITS={tmp_path}")
    shorter = make("cost", "EXPERIMENT=small", "INSTANCE=ml.g4dn.xlarge", f"SPLITS={tmp_path}",
                   "HP=epochs_fine_tuned=10")  # fmt: skip
    assert default.returncode == 0 and shorter.returncode == 0, shorter.stderr
    assert "30+50 epochs" in default.stdout and "30+10 epochs" in shorter.stdout

    def expected(out: str) -> float:
        line = next(line for line in out.splitlines() if line.startswith("cost:"))
        return float(line.split("expected ")[1].split(" min")[0])

    assert expected(shorter.stdout) < expected(default.stdout)
    assert "estimated: the seed's K80 epochs scaled" in default.stdout
    for instance in ("ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge", "ml.p3.2xlarge",
                     "ml.p2.xlarge"):  # fmt: skip
        assert f"| 1x {instance} |" in default.stdout, instance


def test_make_cost_with_instance_auto_prices_a_seed_experiment_on_the_seeds_counts(tiny_splits):
    """The sample set in SPLITS is not the seed's data: small is priced on the seed's 4,000."""
    auto = make("cost", "EXPERIMENT=small", "INSTANCE=auto", f"SPLITS={tiny_splits}")
    assert auto.returncode == 0, auto.stderr
    assert f"4000 training images (the seed's; {tiny_splits} holds 6, not Kaggle's" in auto.stdout
    assert "INSTANCE=auto: at launch, the cheapest type below" in auto.stdout
    assert "| 1x ml.g4dn.xlarge | T4 |" in auto.stdout


@pytest.mark.slow
def test_make_ui_answers_and_stops_with_every_process_it_started(tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}  # fmt: skip
    ui = subprocess.Popen([sys.executable, "-m", "training.report.tracking", "--ui", "--port",
                           str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        answered = wait_for(f"http://127.0.0.1:{port}/", seconds=120)
        group = server_group(ui.pid)
        assert answered and group, "make ui never answered"
        ui.send_signal(signal.SIGTERM)  # kill <pid>, as its first line says
        assert ui.wait(timeout=30) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
    out = ui.stdout.read()
    assert f"kill {ui.pid} stops it" in out
    assert "Warning" not in out, out
    deadline = time.time() + 10
    while time.time() < deadline and alive(group):
        time.sleep(0.2)
    assert not alive(group), "make ui left processes behind"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def server_group(parent: int) -> int | None:
    """The process group of the server make ui started (a child of ``parent``)."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:  # ppid
            return int(fields[2])  # pgrp
    return None


def alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_check_against_an_account_shows_every_line(aws, tiny_splits, capsys):
    from training.launch.check import check

    code = check("test", tiny_splits)
    out = capsys.readouterr().out
    for line in ("✓ AWS identity: arn:aws:sts::123456789012:user/moto", "✓ AWS region: us-east-1",
                 "✓ stack outputs: .infra/test.json", "✓ bucket and role:",
                 "✓ quota ml.g4dn.xlarge (T4): spot 2, on-demand 2 (AWS default)",
                 f"✓ data: {tiny_splits}", "– data staged: not yet", "✓ disk:"):  # fmt: skip
        assert line in out, line
    assert code == (1 if "✗" in out else 0)
    assert shutil.which("make")  # the README's `make check` runs this same function


def test_make_check_without_credentials_or_stack_still_shows_every_line(
    tmp_path, monkeypatch, capsys
):
    """A clean clone: no credentials, no stack, no data; each check a line, those that cannot
    run yet say what they wait for."""
    from training.launch.check import check

    monkeypatch.chdir(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "KAGGLE_API_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    assert check("dev", tmp_path / "splits") == 1
    out = capsys.readouterr().out
    marks = {
        line.split(":")[0][2:]: line[0] for line in out.splitlines() if line and line[0] in "✓✗–"
    }
    assert marks == {"uv": marks["uv"], "Pulumi": marks["Pulumi"], "AWS identity": "✗",
                     "AWS region": "✗", "stack outputs": "✗", "bucket and role": "–",
                     "GPU quotas (spot and on-demand, every current type)": "–",
                     "Kaggle token": "✗", "data": "✗", "data staged": "–", "disk": "✓"}, out  # fmt: skip
    assert "no AWS credentials: run `aws configure`" in out and "(nothing was spent)" in out
