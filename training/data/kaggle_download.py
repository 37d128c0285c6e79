"""Kaggle's Dogs vs. Cats Redux files, downloaded with Kaggle's official client and the user's token.

    python -m training.data.kaggle_download train.zip     # into data/kaggle/ (make data does it)

Credentials are the client's own: ``KAGGLE_API_TOKEN`` or ``~/.kaggle/access_token`` (the newer
API token), or ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``~/.kaggle/kaggle.json`` (the legacy key).
The client resumes a cut download (its own retries, and a marker for a later run); the archive is
checked before it is used. Each failure is one line with its remedy.
"""

import argparse
import contextlib
import errno
import io
import shutil
import zipfile
from pathlib import Path

from training.common.errors import UserError, cli

COMPETITION = "dogs-vs-cats-redux-kernels-edition"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings/api"
DOWNLOADS = Path("data/kaggle")
NO_CREDENTIALS = (
    f"no Kaggle credentials: create an API token at {TOKEN_URL} and put it in KAGGLE_API_TOKEN or "
    "~/.kaggle/access_token (or a legacy key in ~/.kaggle/kaggle.json), then re-run; or download "
    f"{{file}} in a browser from https://www.kaggle.com/competitions/{COMPETITION}/data and pass "
    "its path ({setting})"
)
PATH_SETTINGS = {"train.zip": "make data DATA=path/to/train.zip",
                 "test.zip": "make predict IMAGES=path/to/test.zip"}  # fmt: skip


def client(file_name: str = "train.zip"):
    """An authenticated KaggleApi, for downloading ``file_name``. The client prints a page of help and exits when it finds no
    credentials (even on import); that becomes one line here."""
    import requests

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        setting = PATH_SETTINGS.get(file_name, "see make help")
        raise UserError(NO_CREDENTIALS.format(file=file_name, setting=setting)) from None
    except requests.RequestException as error:  # a token is checked with Kaggle on the spot
        raise network_error(error, "checking your Kaggle token") from error
    return api


def network_error(error: Exception, doing: str) -> UserError:
    """The one line for a failed request: what Kaggle said, or that it could not be reached."""
    import requests

    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status == 403:
        return UserError(
            f"Kaggle refused {doing} (403): accept the competition's rules at {RULES_URL} first "
            "(signed in as the token's account), then re-run"
        )
    if status == 401:
        return UserError(
            f"Kaggle did not accept your credentials while {doing} (401): create a new API "
            f"token at {TOKEN_URL}"
        )
    if status is not None:
        return UserError(f"Kaggle answered HTTP {status} while {doing}; try again later")
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return UserError(
            f"cannot reach Kaggle while {doing} (no network?): re-run when online; a download "
            "that was cut resumes where it stopped"
        )
    return UserError(f"{doing} failed: {error}")


def remote_size(api, file_name: str) -> int | None:
    response = api.competition_list_files(COMPETITION, page_size=200)
    sizes = {f.name: f.total_bytes for f in response.files}
    return sizes.get(file_name)


def check_space(folder: Path, file_name: str, needed: int | None) -> None:
    """Refuses up front, in one line, a download the disk cannot hold."""
    if not needed:
        return
    have = sum(p.stat().st_size for p in folder.glob(f"{file_name}*") if p.is_file())
    free = shutil.disk_usage(folder).free
    if needed - have > free:
        raise UserError(
            f"{file_name} needs {(needed - have) / 1e9:.2f} GB more and {folder} has "
            f"{free / 1e9:.2f} GB free: free some space and re-run"
        )


def check_archive(path: Path) -> None:
    """Every member's CRC, before anything is prepared from it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        bad = str(error)
    if bad:
        path.unlink(missing_ok=True)
        raise UserError(f"{path} is damaged ({bad}); it was deleted: re-run to download it again")


def downloaded(file_name: str, folder: Path = DOWNLOADS) -> Path | None:
    """The file from an earlier, finished download (no network needed), if there is one."""
    path = folder / file_name
    partial_marker = path.with_name(path.name + ".kaggle-partial")  # the client's own marker
    return path if path.is_file() and not partial_marker.exists() else None


def download(file_name: str, folder: Path = DOWNLOADS) -> Path:
    """``file_name`` of the competition in ``folder``, downloaded (or resumed) and checked."""
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    api = client(file_name)
    doing = f"downloading {file_name} of {COMPETITION}"
    try:
        check_space(folder, file_name, remote_size(api, file_name))
        api.competition_download_file(COMPETITION, file_name, path=str(folder), quiet=False)
    except requests.RequestException as error:
        raise network_error(error, doing) from error
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise UserError(
                f"the disk filled up while {doing} into {folder}: free some space and re-run; "
                "the download resumes where it stopped"
            ) from error
        raise UserError(f"{doing} into {folder} failed: {error}") from error
    path = folder / file_name
    if not path.exists():
        raise UserError(f"Kaggle's client reported success but {path} is not there")
    check_archive(path)
    print(f"[kaggle] {path}: {path.stat().st_size / 1e6:.0f} MB, archive checked", flush=True)
    return path


def fetch(file_name: str, folder: Path = DOWNLOADS) -> Path:
    """``file_name``: an earlier, finished download (offline), else downloaded now."""
    return downloaded(file_name, folder) or download(file_name, folder)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", choices=["train.zip", "test.zip"])
    parser.add_argument("--out", type=Path, default=DOWNLOADS)
    args = parser.parse_args(argv)
    download(args.file, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
