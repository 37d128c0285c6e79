"""Stages prepared splits to S3 under a prefix that carries the dataset digest.

    python -m training.data.upload --splits data/splits --stack dev

Keys are ``datasets/<digest>/<split>/<cats|dogs>/<file>``; the manifest goes last, to
``datasets/<digest>/manifest.json``, and marks the staging complete. What is already there (same
key, same size) is skipped, so an interrupted upload resumes and a repeated one makes no PUT.
Listing is paginated (1,000 keys per request) and uploads run concurrently through s3transfer.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from training.common import aws
from training.common.aws_errors import aws_error, error_code
from training.common.errors import UserError, cli
from training.common.progress import progress
from training.data.prepare import MANIFEST, load_manifest

DATASETS_PREFIX = "datasets"  # the stack's data_prefix output unless told otherwise
CONCURRENCY = 32  # parallel PUTs; small JPEGs are latency-bound, not bandwidth-bound


@dataclass
class UploadStats:
    prefix: str
    uploaded: int
    skipped: int
    bytes_uploaded: int


def dataset_prefix(digest: str, data_prefix: str = DATASETS_PREFIX) -> str:
    return f"{data_prefix}/{digest}"


def s3_client(region: str | None = None, concurrency: int = CONCURRENCY, session=None):
    """S3 with the project's retries (training/common/aws.py) and a connection per concurrent
    transfer: a smaller pool would serialise them."""
    session = session or aws.session(region)
    return session.client("s3", config=Config(max_pool_connections=concurrency + 4))


def explain(error: Exception, bucket: str) -> UserError:
    if error_code(error) in ("NoSuchBucket", "404"):
        return UserError(f"bucket {bucket} does not exist: run `make infra-up` (or pass --bucket)")
    return aws_error(error, f"using bucket {bucket}")


def existing_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """Key → size of everything already under ``prefix`` (one request per 1,000 keys)."""
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/"
    ):
        for item in page.get("Contents", []):
            sizes[item["Key"]] = item["Size"]
    return sizes


def planned_files(splits_dir: Path, splits: list[str]) -> list[tuple[Path, str]]:
    files = []
    for split in splits:
        folder = splits_dir / split
        if not folder.is_dir():
            raise UserError(f"split {split} is missing under {splits_dir}: run `make data` first")
        for path in sorted(folder.rglob("*.jpg")):
            files.append((path, f"{split}/{path.relative_to(folder).as_posix()}"))
    return files


class _Progress(BaseSubscriber):
    """Feeds one tqdm bar: bytes as the bar, finished files as its postfix."""

    def __init__(self, bar, total_files: int) -> None:
        self.bar = bar
        self.total_files = total_files
        self.files_done = 0

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.bar.update(bytes_transferred)

    def on_done(self, future, **kwargs) -> None:
        self.files_done += 1
        self.bar.set_postfix_str(f"{self.files_done}/{self.total_files} files", refresh=False)


def upload_splits(
    splits_dir: Path,
    bucket: str,
    splits: list[str] | None = None,
    client=None,
    concurrency: int = CONCURRENCY,
    data_prefix: str = DATASETS_PREFIX,
) -> UploadStats:
    """Uploads what is missing; returns counts. Raises UserError with the remedy on failure."""
    splits_dir = Path(splits_dir)
    manifest = load_manifest(splits_dir)
    if manifest is None:
        raise UserError(
            f"no {MANIFEST} in {splits_dir}: run `make data DATA=train.zip` or `make data-sample`"
        )
    splits = splits or list(manifest["splits"])
    prefix = dataset_prefix(manifest["dataset_digest"], data_prefix)
    client = client or s3_client(concurrency=concurrency)
    try:
        present: dict[str, int] = {}
        for split in splits:  # `small` must not list the 21,000 keys of train_full
            present.update(existing_objects(client, bucket, f"{prefix}/{split}"))
        planned = planned_files(splits_dir, splits)
        todo = [
            (path, f"{prefix}/{rel}")
            for path, rel in planned
            if present.get(f"{prefix}/{rel}") != path.stat().st_size
        ]
        skipped = len(planned) - len(todo)
        total_bytes = sum(path.stat().st_size for path, _ in todo)
        if todo:
            config = TransferConfig(max_concurrency=concurrency, use_threads=True)
            with progress(total_bytes, "upload", unit="B", unit_scale=True) as bar:
                subscriber = _Progress(bar, len(todo))
                with TransferManager(client, config) as manager:
                    futures = [
                        manager.upload(str(path), bucket, key, subscribers=[subscriber])
                        for path, key in todo
                    ]
                    for future in futures:
                        future.result()
        if todo or not is_staged(client, bucket, prefix):
            client.upload_file(str(splits_dir / MANIFEST), bucket, f"{prefix}/{MANIFEST}")
    except ClientError as error:
        raise explain(error, bucket) from error
    except (NoCredentialsError, NoRegionError) as error:
        raise aws_error(error, f"using bucket {bucket}") from error
    except (BotoCoreError, ConnectionError, OSError) as error:
        raise UserError(
            f"upload to s3://{bucket}/{prefix} interrupted ({error}); re-run to upload the rest "
            "(files already there are skipped)"
        ) from error
    print(f"s3://{bucket}/{prefix}: {len(todo)} uploaded, {skipped} already there")
    return UploadStats(prefix, len(todo), skipped, total_bytes)


def is_staged(client, bucket: str, prefix: str) -> bool:
    """The manifest is written last, so its presence under ``prefix`` (``dataset_prefix``) means
    the whole data set is there."""
    try:
        client.head_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")
        return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


@cli
def main(argv: list[str] | None = None) -> int:
    from training.common.infra_outputs import load_outputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=Path, default=Path("data/splits"))
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--bucket", help="defaults to the stack's bucket (.infra/<stack>.json)")
    parser.add_argument("--only", nargs="*", help="split names to upload (default: all)")
    args = parser.parse_args(argv)
    bucket, region, data_prefix = args.bucket, None, DATASETS_PREFIX
    if not bucket:
        outputs = load_outputs(args.stack)
        bucket, region, data_prefix = outputs.bucket, outputs.region, outputs.data_prefix
    upload_splits(args.splits, bucket, args.only, client=s3_client(region), data_prefix=data_prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
