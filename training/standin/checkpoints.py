"""SageMaker's checkpoint sync, as the stand-in runs it: ``CheckpointConfig.S3Uri`` is restored
into ``/opt/ml/checkpoints`` before the container starts, and while it runs new and changed files
go up in the background, in no set order, and deleted files are deleted in S3 too."""

import io
import json
import random
import threading
from pathlib import Path

from training.common.aws import split_s3_uri

SYNC_SECONDS = 0.5


class CheckpointSync:
    """Uploads what changes in ``folder`` to ``uri`` every SYNC_SECONDS; a round can also be run
    at once (sync_once), e.g. before a spot reclaim."""

    def __init__(self, s3, uri: str | None, folder: Path) -> None:
        self.s3 = s3
        self.uri = uri
        self.folder = folder
        self._round = threading.Lock()
        self.uploaded: dict[str, float] = {p: self._mtime(p) for p in self._files()}  # restored
        self.states: dict[str, dict] = {}  # each state.json as it went up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="checkpoint-sync")

    def _files(self) -> list[str]:
        return [
            str(path.relative_to(self.folder)) for path in self.folder.rglob("*") if path.is_file()
        ]

    def _mtime(self, relative: str) -> float:
        return (self.folder / relative).stat().st_mtime

    def start(self) -> None:
        if self.uri:
            self._thread.start()

    def stop(self, flush: bool) -> None:
        """Ends the background sync; ``flush``: one last round (not after a reclaim, where what
        was not uploaded is lost)."""
        if not self.uri:
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        if flush:
            self.sync_once(shuffle=False)

    def _loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            self.sync_once(shuffle=True)

    def sync_once(self, shuffle: bool) -> None:
        if self.uri:
            with self._round:
                self._sync(shuffle)

    def _sync(self, shuffle: bool) -> None:
        bucket, prefix = split_s3_uri(self.uri)
        present = self._files()
        changed = []
        for relative in present:
            try:
                mtime = self._mtime(relative)
            except FileNotFoundError:
                continue
            if self.uploaded.get(relative) != mtime:
                changed.append((relative, mtime))
        if shuffle:
            random.shuffle(changed)
        for relative, mtime in changed:
            try:
                # One read, then the upload: a file the job rewrites meanwhile may go up torn, as
                # it could on SageMaker, but never with a checksum of other bytes than it holds
                # (S3 would refuse that upload; moto stores it and the restore then fails).
                body = (self.folder / relative).read_bytes()
            except OSError:
                continue  # replaced meanwhile: the next round takes the new one
            self.s3.upload_fileobj(io.BytesIO(body), bucket, prefix + relative)
            self.uploaded[relative] = mtime
            if Path(relative).name == "state.json":
                try:
                    self.states[relative] = json.loads(body)
                except ValueError:
                    self.states.pop(relative, None)
        for relative in set(self.uploaded) - set(present):
            self.s3.delete_object(Bucket=bucket, Key=prefix + relative)
            del self.uploaded[relative]
            self.states.pop(relative, None)

    def epochs_in_s3(self, phase: str) -> int:
        """The newest epoch of ``phase`` whose state and weights have both reached S3."""
        newest = 0
        for relative, state in self.states.items():
            folder = Path(relative).parent
            weights = state.get("last_weights") or ""
            if folder.name == phase and weights and str(folder / weights) in self.uploaded:
                newest = max(newest, int(state.get("epochs_done", 0)))
        return newest
