"""The pulumi CLI, its state backend and its secrets, set up by the project as uv is.

- CLI: the user's own ``pulumi`` on PATH wins; else a pinned release is bootstrapped into
  ``.tools/pulumi/<version>/``: Pulumi's release archive, downloaded (resuming a cut download)
  and checked against the SHA-256 Pulumi publishes beside it before anything is unpacked.
- Backend: ``PULUMI_BACKEND_URL`` (e.g. ``s3://<bucket>``) or an existing ``pulumi login`` wins;
  else the project-local file backend ``.pulumi-state/`` (git-ignored).
- Secrets: with a self-managed backend the passphrase provider, the passphrase from
  ``PULUMI_CONFIG_PASSPHRASE``/``_FILE``, else one generated once into a file outside the
  repository (``~/.config/vgg-dogs-cats/pulumi-passphrase``, mode 600). None is ever committed.
"""

import hashlib
import json
import os
import platform
import secrets
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from training.common.errors import UserError

PULUMI_VERSION = "3.272.0"  # the CLI release matching the pulumi SDK pinned in requirements.lock
RELEASES_URL = "https://github.com/pulumi/pulumi/releases/download/v{version}"
# In the project folder, where make runs, as .infra/ is: the bootstrapped CLI and the local state.
TOOLS = Path(".tools") / "pulumi"
LOCAL_STATE = Path(".pulumi-state")
PASSPHRASE_FILE = Path("~/.config/vgg-dogs-cats/pulumi-passphrase")
CHUNK = 1 << 20


# --- the CLI ------------------------------------------------------------------------------------
def archive_name(version: str, system: str = "", machine: str = "") -> str:
    """The release archive for this machine, as Pulumi names them."""
    system, machine = system or platform.system(), machine or platform.machine()
    os_name = {"Linux": "linux", "Darwin": "darwin"}.get(system)
    arch = {"x86_64": "x64", "AMD64": "x64", "amd64": "x64", "arm64": "arm64", "aarch64": "arm64"}
    if os_name is None or machine not in arch:
        raise UserError(
            f"no Pulumi release to bootstrap for {system}/{machine}: install the pulumi CLI "
            "(pulumi.com/docs/install) so that it is on PATH, and re-run"
        )
    return f"pulumi-v{version}-{os_name}-{arch[machine]}.tar.gz"


def checksums_name(version: str) -> str:
    return f"pulumi-{version}-checksums.txt"


def releases_url(version: str) -> str:
    """Where the release lives; ``PULUMI_RELEASES_URL`` points at a mirror (or a test stand-in)."""
    return os.environ.get("PULUMI_RELEASES_URL", RELEASES_URL).format(version=version).rstrip("/")


def fetch(url: str, target: Path, what: str) -> None:
    """Downloads ``url`` to ``target``, resuming from ``target.part`` when an earlier download
    was cut (an HTTP range request; a server that ignores it sends the whole file again)."""
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and response.status == 206
            expected = int(response.headers.get("Content-Length", -1))
            with open(partial, "ab" if resumed else "wb") as out:
                start = out.tell()
                shutil.copyfileobj(response, out, CHUNK)
                received = out.tell() - start
            if 0 <= received < expected:  # the connection closed early, with no error raised
                raise ConnectionError(f"connection closed after {received} of {expected} bytes")
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the part is already whole
            partial.rename(target)
            return
        raise UserError(
            f"downloading {what} from {url} failed: HTTP {error.code} {error.reason}; check "
            "PULUMI_RELEASES_URL, or install the pulumi CLI yourself (pulumi.com/docs/install)"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        kept = partial.exists() and partial.stat().st_size > 0
        progress = (
            f"what arrived is kept in {partial} and the next try resumes it"
            if kept
            else "nothing arrived"
        )
        raise UserError(
            f"downloading {what} from {url} failed ({reason}); {progress}. No network? Re-run "
            "when online, or install the pulumi CLI yourself (pulumi.com/docs/install)"
        ) from error
    partial.rename(target)


def published_sha256(checksums: Path, archive: str) -> str:
    for line in checksums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == archive:
            return parts[0].lower()
    raise UserError(f"{checksums.name} lists no checksum for {archive}; not installing it")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(archive: Path, root: Path) -> None:
    """The archive's ``pulumi/`` folder becomes ``root/bin`` (PulumiCommand's layout), swapped
    in whole so that a cut unpack leaves no half-installed CLI."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root.parent))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("pulumi/")]
            for member in members:
                if ".." in Path(member.name).parts or member.issym() or member.islnk():
                    raise UserError(f"{archive.name} holds an unsafe path {member.name!r}")
            tar.extractall(staging, members=members)  # noqa: S202 (checked above)
        (staging / "pulumi").rename(staging / "bin")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def bootstrap(version: str = PULUMI_VERSION, tools: Path | None = None) -> Path:
    """The pinned CLI in ``tools/<version>`` (default .tools/pulumi), downloaded and checked
    first if it is not there."""
    tools = (tools or TOOLS).resolve()
    root = tools / version
    binary = root / "bin" / "pulumi"
    if binary.exists():
        return root
    tools.mkdir(parents=True, exist_ok=True)
    archive = archive_name(version)
    base = releases_url(version)
    downloads = tools / ".downloads"
    downloads.mkdir(exist_ok=True)
    print(f"[pulumi] no pulumi CLI on PATH: bootstrapping v{version} into {root}", flush=True)
    checksums = downloads / checksums_name(version)
    fetch(f"{base}/{checksums_name(version)}", checksums, "Pulumi's published checksums")
    target = downloads / archive
    fetch(f"{base}/{archive}", target, f"the pulumi CLI ({archive})")
    expected, actual = published_sha256(checksums, archive), sha256(target)
    if actual != expected:
        target.unlink()
        raise UserError(
            f"{archive} does not match the SHA-256 Pulumi published ({actual[:12]}… ≠ "
            f"{expected[:12]}…); it was deleted, nothing was installed. Re-run to download it "
            "again; if it fails again, the download is being tampered with"
        )
    unpack(target, root)
    shutil.rmtree(downloads, ignore_errors=True)
    print(f"[pulumi] installed {binary} (SHA-256 checked)", flush=True)
    return root


def command_root() -> str | None:
    """None for the user's own CLI on PATH, else the bootstrapped one's root."""
    if shutil.which("pulumi"):
        return None
    return str(bootstrap())


# --- backend and secrets ------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """Where the stack's state lives, and the environment the CLI needs for it."""

    env: dict
    secrets_provider: str | None
    description: str


def logged_in(home: Path | None = None) -> str | None:
    """The backend of an existing ``pulumi login`` (~/.pulumi/credentials.json), if any."""
    home = home or Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))
    try:
        return json.loads((home / "credentials.json").read_text()).get("current") or None
    except (OSError, ValueError):
        return None


def passphrase_env(passphrase_file: Path = PASSPHRASE_FILE) -> tuple[dict, str]:
    """The passphrase the CLI reads: the user's (PULUMI_CONFIG_PASSPHRASE[_FILE]) or one generated
    once into a file outside the repository."""
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        if name in os.environ:
            return {}, f"the passphrase in {name}"
    path = passphrase_file.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        made = "generated"
    else:
        made = "kept"
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}, (
        f"a passphrase {made} in {path} (outside the repository; back it up, the stack's "
        "secrets need it, or set PULUMI_CONFIG_PASSPHRASE)"
    )


def backend(state_dir: Path | None = None) -> Backend:
    """The user's backend if they chose one, else the project-local file backend."""
    state_dir = (state_dir or LOCAL_STATE).resolve()
    chosen = os.environ.get("PULUMI_BACKEND_URL")
    login = None if chosen else logged_in()
    if os.environ.get("PULUMI_ACCESS_TOKEN") and not chosen:
        return Backend({}, None, "Pulumi Cloud (PULUMI_ACCESS_TOKEN)")
    if login and not login.startswith(("file://", "s3://", "gs://", "azblob://")):
        return Backend({}, None, f"your pulumi login ({login})")
    url = chosen or login
    where = f"{url} ({'PULUMI_BACKEND_URL' if chosen else 'your pulumi login'})"
    if url is None:
        state_dir.mkdir(exist_ok=True)
        url = f"file://{state_dir}"
        where = (
            f"{state_dir} (project-local; to share it, move it to S3: "
            "PULUMI_BACKEND_URL=s3://<bucket> after `pulumi stack export | pulumi stack import`)"
        )
    env, secret = passphrase_env()
    return Backend(
        {"PULUMI_BACKEND_URL": url, **env},
        "passphrase",
        f"state in {where}; secrets encrypted with {secret}",
    )
