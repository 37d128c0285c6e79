"""make infra-*: the pulumi CLI bootstrapped from a release host (a local stand-in serving a
release archive and its checksums), then the stack driven through the Automation API with the
bootstrapped stand-in binary (tests/infra/standin_pulumi.py)."""

import hashlib
import io
import json
import os
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from file_host import send_file

from infra import cli as infra_cli
from infra import pulumi_cli
from training.common.errors import UserError
from training.common.infra_outputs import OUTPUT_KEYS
from training.common.repo import REPO

VERSION = "3.272.0"
STANDIN = Path(__file__).with_name("standin_pulumi.py")


def release_archive(filler_bytes: int = 3 << 20) -> bytes:
    """A release archive laid out as Pulumi's (pulumi/pulumi, pulumi/pulumi-language-python),
    whose pulumi is the stand-in CLI; a filler makes it big enough to cut mid-download."""
    script = f"#!{sys.executable}\n" + STANDIN.read_text()
    files = {
        "pulumi/pulumi": script.encode(),
        "pulumi/pulumi-language-python": b"#!/bin/sh\nexit 0\n",
        "pulumi/filler": os.urandom(filler_bytes),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ReleaseHost(ThreadingHTTPServer):
    """Serves files by name on 127.0.0.1, honouring Range requests; ``cut_after`` bytes into the
    next archive response it drops the connection (once)."""

    def __init__(self, files: dict):
        super().__init__(("127.0.0.1", 0), ReleaseHandler)
        self.files, self.requests, self.cut_after = files, [], None


class ReleaseHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        self.server.requests.append((name, self.headers.get("Range")))
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        cut = None
        if name.endswith(".tar.gz"):  # the archive is cut once, when asked
            cut, self.server.cut_after = self.server.cut_after, None
        send_file(self, body, cut)

    def log_message(self, *args):
        pass


@pytest.fixture
def release(monkeypatch):
    archive = release_archive()
    name = pulumi_cli.archive_name(VERSION)
    digest = hashlib.sha256(archive).hexdigest()
    files = {
        name: archive,
        pulumi_cli.checksums_name(
            VERSION
        ): f"{'0' * 64}  other.tar.gz\n{digest}  {name}\n".encode(),
    }
    host = ReleaseHost(files)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PULUMI_RELEASES_URL", f"http://127.0.0.1:{host.server_port}/v{{version}}")
    yield host
    host.shutdown()
    host.server_close()


def test_the_cli_is_bootstrapped_from_a_checked_archive_once(release, tmp_path):
    root = pulumi_cli.bootstrap(VERSION, tmp_path / "tools")
    assert root == tmp_path / "tools" / VERSION
    binary = root / "bin" / "pulumi"
    assert binary.exists() and os.access(binary, os.X_OK)
    assert not (tmp_path / "tools" / ".downloads").exists()  # the archive is not kept
    fetched = len(release.requests)
    assert pulumi_cli.bootstrap(VERSION, tmp_path / "tools") == root
    assert len(release.requests) == fetched, "an installed CLI was downloaded again"


def test_an_archive_that_does_not_match_the_published_checksum_is_refused(release, tmp_path):
    name = pulumi_cli.archive_name(VERSION)
    release.files[name] = release_archive(filler_bytes=1000)  # not what the checksum says
    with pytest.raises(UserError, match="does not match the SHA-256 Pulumi published"):
        pulumi_cli.bootstrap(VERSION, tmp_path / "tools")
    assert not (tmp_path / "tools" / VERSION).exists(), "a refused archive was installed"
    assert not (tmp_path / "tools" / ".downloads" / name).exists()


def test_a_cut_download_is_one_line_and_the_rerun_resumes_it(release, tmp_path):
    release.cut_after = 1 << 20
    with pytest.raises(UserError, match="next try resumes it") as cut:
        pulumi_cli.bootstrap(VERSION, tmp_path / "tools")
    assert "\n" not in str(cut.value)
    assert not (tmp_path / "tools" / VERSION).exists()
    root = pulumi_cli.bootstrap(VERSION, tmp_path / "tools")
    assert (root / "bin" / "pulumi").exists()
    archive_requests = [r for r in release.requests if r[0].endswith(".tar.gz")]
    assert archive_requests[-1][1] == f"bytes={1 << 20}-", "the rerun did not resume"


def test_no_release_for_this_platform_names_the_remedy():
    with pytest.raises(UserError, match="install the pulumi CLI"):
        pulumi_cli.archive_name(VERSION, "Windows", "AMD64")


def test_an_unreachable_release_host_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PULUMI_RELEASES_URL", "http://127.0.0.1:9/v{version}")  # discard port
    with pytest.raises(UserError, match="No network") as error:
        pulumi_cli.bootstrap(VERSION, tmp_path / "tools")
    assert "\n" not in str(error.value)


# --- the stack through the Automation API, with the bootstrapped stand-in binary ---------------
@pytest.fixture
def no_pulumi_on_path(monkeypatch, tmp_path):
    """A user with no pulumi CLI, no login and no passphrase: HOME is empty."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                if not (Path(p) / "pulumi").exists()))  # fmt: skip
    for name in ("PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE",
                 "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_HOME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "cli-calls.jsonl"
    monkeypatch.setenv("STANDIN_PULUMI_LOG", str(log))
    monkeypatch.chdir(tmp_path)  # .infra/<stack>.json lands here
    return log


def calls(log: Path) -> list[dict]:
    """What the CLI was asked, less the global --non-interactive flag."""
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    for call in seen:
        call["argv"] = [arg for arg in call["argv"] if arg != "--non-interactive"]
    return seen


def test_make_infra_up_from_nothing_bootstraps_and_writes_the_outputs(
    release, no_pulumi_on_path, tmp_path, monkeypatch, capsys
):
    outputs = {key: f"{key}-value" for key in OUTPUT_KEYS}  # what the program exports
    monkeypatch.setenv("STANDIN_PULUMI_OUTPUTS", json.dumps(outputs))
    assert infra_cli.main(["preview", "--stack", "dev"]) == 0
    assert infra_cli.main(["up", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "[pulumi] no pulumi CLI on PATH: bootstrapping v3.272.0" in out
    assert "Updating (dev):" in out, "Pulumi's own progress was not streamed"
    state = tmp_path / ".pulumi-state"
    passphrase = tmp_path / "home" / ".config" / "vgg-dogs-cats" / "pulumi-passphrase"
    assert f"state in {state} (project-local; to share it, move it to S3" in out
    assert f"a passphrase generated in {passphrase}" in out
    assert oct(passphrase.stat().st_mode & 0o777) == "0o600"
    saved = json.loads((tmp_path / ".infra" / "dev.json").read_text())
    assert {k: saved[k] for k in outputs} == outputs
    seen = calls(no_pulumi_on_path)
    init = [c for c in seen if c["argv"][:2] == ["stack", "init"]]
    assert init and init[0]["argv"][2:] == ["dev", "--secrets-provider", "passphrase"]
    for call in seen:  # every stack command has the backend and the passphrase
        if call["argv"] == ["version"]:
            continue
        assert call["env"]["PULUMI_BACKEND_URL"] == f"file://{state}"
        assert call["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
    ups = [c for c in seen if c["argv"][0] == "up"]
    assert ups[0]["env"]["VIRTUAL_ENV"] == sys.prefix  # the program runs with the project's venv
    assert Path(ups[0]["cwd"]) == REPO  # where Pulumi.yaml is
    # a second run keeps the passphrase and the stack
    assert infra_cli.main(["preview", "--stack", "dev"]) == 0
    assert "a passphrase kept in" in capsys.readouterr().out
    assert len([c for c in calls(no_pulumi_on_path) if c["argv"][:2] == ["stack", "init"]]) == 1


def test_what_the_user_has_wins(release, no_pulumi_on_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'theirs'}")
    (tmp_path / "theirs").mkdir()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "their-own")
    assert infra_cli.main(["preview", "--stack", "team"]) == 0
    out = capsys.readouterr().out
    assert f"state in file://{tmp_path / 'theirs'} (PULUMI_BACKEND_URL)" in out
    assert "the passphrase in PULUMI_CONFIG_PASSPHRASE" in out
    assert not (tmp_path / ".pulumi-state").exists()
    assert not (tmp_path / "home" / ".config").exists(), "a passphrase was generated anyway"
    # their own CLI on PATH wins over a bootstrap
    own = tmp_path / "own-bin"
    root = pulumi_cli.bootstrap(VERSION, tmp_path / "elsewhere")
    own.symlink_to(root / "bin")
    monkeypatch.setenv("PATH", f"{own}{os.pathsep}{os.environ['PATH']}")
    assert pulumi_cli.command_root() is None


def test_a_failing_pulumi_command_is_one_line(release, no_pulumi_on_path, monkeypatch, capsys):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://not-a-file-backend")  # the stand-in refuses
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    assert infra_cli.main(["up", "--stack", "dev"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: selecting stack dev failed: error: the stand-in CLI keeps state in a file:// "
        "backend only\n"
    )
