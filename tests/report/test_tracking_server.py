"""Runs recorded in a team's MLflow: a real ``mlflow server`` on 127.0.0.1 whose artifacts live in
S3 (the stand-in's, IAM enforced), written by the launcher with its own credentials under the
stack's mlflowArtifactUri grant; records that fail part-way and are repaired by ``make track``;
a server of MLflow 2, which has no logged models."""

import http.server
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from accounts import STACK, emulated_account
from botocore.exceptions import ClientError
from tiny import TINY

from training.report import tracking
from training.report.mlflow_server import (
    TRACKING_ENV,
    client_for,
    server_version,
    start_server,
    stop_server,
    wait_until_up,
)
from training.standin.account import StackNames, admin_keys, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
NOISE = ("resolving request headers", "View run", "Traceback")


@pytest.fixture
def account(tmp_path, monkeypatch):
    """The emulated account, IAM enforced, the launcher's keys in the environment; yields an S3
    client of the account's administrator, who creates buckets as a team's admin would."""
    admin = {}

    def keep_admin_keys(iam, outputs) -> None:
        admin.update(admin_keys(STACK))

    with emulated_account(tmp_path, monkeypatch, change=keep_admin_keys):
        # boto3's default session keeps the first credentials it read (the admin's, as the
        # stack was made); MLflow's S3 client in this process signs with the launcher's.
        boto3.setup_default_session()
        yield boto3.client("s3", aws_access_key_id=admin["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=admin["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


@pytest.fixture
def server(tmp_path, account):
    """`mlflow server --no-serve-artifacts`: clients write artifacts to S3 themselves, in the
    stack's MLflow artifact location, whose bucket does not exist yet."""
    port = free_port()
    process = start_server(f"sqlite:///{tmp_path / 'server.db'}", port,
                           StackNames(STACK).mlflow_artifacts, serve_artifacts=False,
                           log=(tmp_path / "server.log").open("w"))  # fmt: skip
    try:
        yield wait_until_up(process, port)
    finally:
        stop_server(process)


def make(*args: str, **settings) -> subprocess.CompletedProcess:
    words = [f"{name}={value}" for name, value in settings.items()]
    return subprocess.run(["make", "--no-print-directory", *args, *words], cwd=REPO, text=True,
                          capture_output=True, timeout=600)  # fmt: skip


def runs_of(job: str) -> list:
    """The job's active runs in the store MLFLOW_TRACKING_URI names."""
    client = client_for()
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{tracking.JOB_TAG}` = '{job}'",
    )


def test_a_record_that_fails_at_the_upload_is_repaired_by_make_track(
    account, server, tiny_splits, tmp_path, monkeypatch
):
    monkeypatch.setenv(TRACKING_ENV, server)
    runs = tmp_path / "runs"
    trained = make("train-local", HP=" ".join(TINY), SPLITS=tiny_splits, RUNS=runs)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    assert (run_dir / "report.md").exists() and (run_dir / "report.json").exists()
    said = trained.stdout + trained.stderr
    assert f"tracking: {run_dir.name} was not recorded in MLflow at {server}" in said
    assert "NoSuchBucket" in said and "`make track` records it later" in said
    assert not [noise for noise in NOISE if noise in said], said
    (cut_short,) = runs_of(run_dir.name)
    assert cut_short.info.status == "FAILED" and tracking.FINGERPRINT_TAG not in cut_short.data.tags

    bucket, prefix = StackNames(STACK).mlflow_artifacts.removeprefix("s3://").split("/", 1)
    account.create_bucket(Bucket=bucket)
    tracked = make("track", RUNS=runs)
    said = tracked.stdout + tracked.stderr
    assert tracked.returncode == 0, said
    assert "1 run(s) under" in said and not [noise for noise in NOISE if noise in said], said
    (repaired,) = runs_of(run_dir.name)
    assert repaired.info.status == "FINISHED" and tracking.FINGERPRINT_TAG in repaired.data.tags
    assert repaired.info.artifact_uri.startswith(f"s3://{bucket}/{prefix}/")
    # Read back as the launcher (this process holds its keys): listing is granted too.
    artifacts = {a.path for a in client_for().list_artifacts(repaired.info.run_id)}
    assert {"report.md", "report.json", "accuracy.png", "loss.png"} <= artifacts

    again = make("track", RUNS=runs)
    assert "0 run(s) under" in again.stdout and "1 already recorded" in again.stdout
    assert len(runs_of(run_dir.name)) == 1


def test_the_launcher_may_write_the_mlflow_artifact_location_and_nothing_beside_it(account):
    bucket, prefix = StackNames(STACK).mlflow_artifacts.removeprefix("s3://").split("/", 1)
    account.create_bucket(Bucket=bucket)
    s3 = boto3.client("s3")  # the launcher's keys, IAM enforced
    s3.put_object(Bucket=bucket, Key=f"{prefix}/1/run/artifacts/report.md", Body=b"# report")
    assert s3.get_object(Bucket=bucket, Key=f"{prefix}/1/run/artifacts/report.md")["Body"].read()
    for key in ("elsewhere/report.md", f"{prefix}-other/report.md"):
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"# report")


class MlflowTwo(http.server.BaseHTTPRequestHandler):
    """A server of MLflow 2 as the client meets it: /version says 2.19.0 and the logged-model
    endpoints (MLflow 3's) are not there; everything else is the real server behind it."""

    upstream = ""

    def do_GET(self):  # noqa: N802  (http.server's names)
        self.forward()

    def do_POST(self):  # noqa: N802
        self.forward()

    def do_PATCH(self):  # noqa: N802
        self.forward()

    def forward(self) -> None:
        if self.path.startswith("/version"):
            return self.answer(200, b"2.19.0")
        if "/logged-models" in self.path:
            return self.answer(404, b"Not Found")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return self.answer(response.status, response.read())
        except urllib.error.HTTPError as error:
            return self.answer(error.code, error.read())

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mlflow_two(tmp_path):
    port = free_port()
    process = start_server(f"sqlite:///{tmp_path / 'server.db'}", port,
                           (tmp_path / "artifacts").as_uri())  # fmt: skip
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MlflowTwo)
    MlflowTwo.upstream = wait_until_up(process, port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        stop_server(process)


def test_a_server_of_mlflow_2_records_the_run_and_says_in_one_line_why_not_its_model(
    mlflow_two, tiny_run, tmp_path, monkeypatch
):
    import shutil

    monkeypatch.setenv(TRACKING_ENV, mlflow_two)
    assert server_version(mlflow_two) == "2.19.0"
    run_dir = Path(shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name))
    lines = []
    run_id, fresh = tracking.record(run_dir, log_model=True, print_line=lines.append)
    assert fresh and len(lines) == 2, lines
    assert lines[0] == (
        f"tracking: the MLflow server at {mlflow_two} runs MLflow 2.19.0, which has no logged "
        "models (MLflow 3): models are not logged; params, metrics, report and plots are recorded"
    )
    (recorded,) = runs_of(run_dir.name)
    assert recorded.info.run_id == run_id and recorded.info.status == "FINISHED"
    assert recorded.data.params and recorded.data.metrics
