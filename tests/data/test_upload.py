"""Staging to S3 (moto): digest-keyed, deduplicated, resumable, with actionable errors."""

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from training.common.errors import UserError
from training.data import upload
from training.data.prepare import prepare
from training.data.sample import generate

BUCKET = "vgg-test-bucket"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return prepare(generate(root / "raw", per_class=50), root / "splits", per_class=50).out


def counting_client():
    client = upload.s3_client(concurrency=8)
    puts = []
    client.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda **kw: puts.append(kw["params"]["Key"])
    )
    return client, puts


def test_keys_carry_the_dataset_digest_and_a_rerun_makes_no_put(aws, splits):
    client, puts = counting_client()
    stats = upload.upload_splits(splits, BUCKET, client=client)
    digest = upload.load_manifest(splits)["dataset_digest"]
    assert stats.prefix == f"datasets/{digest}"
    files = sum(1 for _ in splits.glob("*/*/*.jpg"))
    assert stats.uploaded == files and len(puts) == files + 1  # + the manifest, last
    assert puts[-1] == f"datasets/{digest}/manifest.json"
    assert all(key.startswith(f"datasets/{digest}/") for key in puts)
    assert f"datasets/{digest}/validation/cats/cat.0.jpg" in puts
    assert upload.is_staged(client, BUCKET, f"datasets/{digest}")

    puts.clear()
    again = upload.upload_splits(splits, BUCKET, client=client)
    assert again.uploaded == 0 and again.skipped == files
    assert puts == [], "a re-run with nothing changed made PUT requests"


def test_an_interrupted_upload_resumes_with_only_the_rest(aws, splits):
    client, puts = counting_client()
    done = []

    def fail_after_three(**kwargs):
        if len(done) >= 3:
            raise ConnectionError("network dropped")
        done.append(kwargs["params"]["Key"])

    client.meta.events.register("before-parameter-build.s3.PutObject", fail_after_three)
    with pytest.raises(UserError, match="interrupted.*re-run"):
        upload.upload_splits(splits, BUCKET, ["validation"], client=client, concurrency=1)
    digest = upload.load_manifest(splits)["dataset_digest"]
    assert not upload.is_staged(client, BUCKET, f"datasets/{digest}"), (
        "manifest written before all files"
    )

    resumed, resumed_puts = counting_client()
    stats = upload.upload_splits(splits, BUCKET, ["validation"], client=resumed)
    total = sum(1 for _ in (splits / "validation").glob("*/*.jpg"))
    assert stats.skipped == len(done) and stats.uploaded == total - len(done)
    assert not set(done) & set(resumed_puts), "re-uploaded files that were already there"


def test_missing_bucket_and_missing_data_say_what_to_do(aws, splits, tmp_path):
    with pytest.raises(UserError, match="does not exist: run `make infra-up`"):
        upload.upload_splits(splits, "no-such-bucket", client=upload.s3_client())
    with pytest.raises(UserError, match="make data"):
        upload.upload_splits(tmp_path, BUCKET, client=upload.s3_client())


def test_access_denied_and_no_credentials_are_explained():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")
    assert "launcher policy" in str(upload.explain(denied, BUCKET))
    from botocore.exceptions import NoCredentialsError

    assert "aws configure" in str(upload.explain(NoCredentialsError(), BUCKET))
