"""Which MLflow the runs are recorded in, and what it can take: the tracking URI, a client for it
with only the plugins that apply to it, the server's MLflow version; and an MLflow server of our
own on 127.0.0.1 (``make ui``, ``make rehearse TRACK=server``).

- ``MLFLOW_TRACKING_URI`` unset: the project's SQLite store, ``runs/mlflow.db``, artifacts beside it
  in ``runs/mlartifacts``.
- ``http(s)://…``: a team's ``mlflow server``. Its artifacts go where the server says: through the
  server (``--serve-artifacts``, MLflow's default) or straight to its S3 location with the caller's
  AWS credentials (``--no-serve-artifacts``), which the stack's ``mlflowArtifactUri`` grants the
  launcher (infra/role.py).
- ``arn:aws:sagemaker:…:mlflow-tracking-server/<name>``: SageMaker's managed MLflow, through the
  sagemaker-mlflow plugin, which signs requests with the caller's AWS credentials and uploads
  artifacts to the server's S3 location with them (the same grant).
"""

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from training.common.errors import UserError
from training.common.paths import RUNS_DIR

TRACKING_ENV = "MLFLOW_TRACKING_URI"
STORE = "mlflow.db"  # under the runs folder
ARTIFACTS = "mlartifacts"
LOGGED_MODELS_SINCE = 3  # MLflow major version whose servers have the logged-model endpoints


def tracking_uri() -> str:
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{(RUNS_DIR / STORE).resolve()}"


def is_sagemaker_arn(uri: str) -> bool:
    return uri.startswith("arn:")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_location() -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store (MLflow's own default
    would be ./mlruns wherever the command ran), or wherever a tracking server keeps them."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS).resolve().as_uri()


@contextmanager
def quiet_mlflow():
    """MLflow's own start-up chatter (database migrations, alembic) stays out of the output."""
    import mlflow  # noqa: F401  (it sets its loggers' levels when imported)

    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# A tracking server that does not answer must not hold a finished run for minutes (MLflow's own
# defaults retry 7 times with growing waits); MLflow's "View run at" lines would repeat what our
# own line says. A user's own settings win.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# sagemaker-mlflow registers a request-header provider that MLflow asks before every request,
# whatever the URI; for anything but a SageMaker ARN it fails ("list index out of range") and MLflow
# logs a warning per request (110 in one `make track` of 10 runs). It is set aside while the URI is
# not an ARN: MLflow has no public call to unregister a plugin, so this edits its registry's list.
_SET_ASIDE: list = []


def fit_plugins(uri: str) -> None:
    """Only the request-header providers that apply to ``uri`` stay in MLflow's registry."""
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    providers = _request_header_provider_registry._registry
    if is_sagemaker_arn(uri):
        providers.extend(_SET_ASIDE)
        _SET_ASIDE.clear()
        return
    for provider in [p for p in providers if type(p).__module__.startswith("sagemaker_mlflow")]:
        providers.remove(provider)
        _SET_ASIDE.append(provider)


def client_for():
    from mlflow.tracking import MlflowClient

    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = tracking_uri()
    if not os.environ.get(TRACKING_ENV):
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
    fit_plugins(uri)
    return MlflowClient(tracking_uri=uri)


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person opens the run: the server's own page, or `make ui` for the local store."""
    if is_server(uri):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return "make ui to compare runs"


# --- the server's version ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def server_version(uri: str) -> str | None:
    """The MLflow version the store at ``uri`` runs: a server's /version, a managed server's
    MlflowVersion, this client's own for a local store; None when the server does not say."""
    import mlflow

    if is_server(uri):
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        # MLflow's own request: the server's credentials settings (token, basic auth) apply.
        try:
            answer = http_request(get_default_host_creds(uri), "/version", "GET", max_retries=1,
                                  timeout=10, raise_on_status=False)  # fmt: skip
        except Exception:  # noqa: BLE001  (any failure to answer means: not known)
            return None
        text = answer.text.strip()
        return text if answer.ok and text[:1].isdigit() else None
    if is_sagemaker_arn(uri):
        return _managed_version(uri)
    return mlflow.__version__


def _managed_version(arn: str) -> str | None:
    from training.common import aws
    from training.common.aws_errors import AWS_OR_NETWORK_ERRORS

    name, region = arn.rsplit("/", 1)[-1], arn.split(":")[3]
    try:
        sagemaker = aws.session(region).client("sagemaker")
        return sagemaker.describe_mlflow_tracking_server(TrackingServerName=name)["MlflowVersion"]
    except (*AWS_OR_NETWORK_ERRORS, KeyError):
        return None


def lacks_logged_models(uri: str) -> str | None:
    """Why the store at ``uri`` cannot take logged models (MLflow 3's endpoints), or None."""
    version = server_version(uri)
    if version is None:
        return None  # not known: try, and a failure is one line like any other
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else LOGGED_MODELS_SINCE
    if major >= LOGGED_MODELS_SINCE:
        return None
    return (
        f"the MLflow server at {uri} runs MLflow {version}, which has no logged models "
        f"(MLflow {LOGGED_MODELS_SINCE}): models are not logged; params, metrics, report and plots "
        "are recorded"
    )


# --- a server of our own -------------------------------------------------------------------------
# One web worker and none of MLflow 3's job runners (GenAI jobs this project never schedules), so
# it answers in seconds on two cores; warnings about MLflow's own deprecations are not the user's
# to act on.
SERVER_ENVIRONMENT = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning,"
    "ignore:starlette.middleware.wsgi is deprecated",
}
STOP_SECONDS = 10
START_SECONDS = 120


def start_server(store: str, port: int, artifacts: str, serve_artifacts: bool = True,
                 log=None) -> subprocess.Popen:  # fmt: skip
    """``mlflow server`` on 127.0.0.1:``port`` over ``store``, in a process group of its own so
    that stop_server stops everything it started. ``artifacts``: where new experiments keep their
    artifacts; ``serve_artifacts=False``: clients write them there themselves."""
    executable = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [executable, "server", "--backend-store-uri", store, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    command += ["--default-artifact-root", artifacts]
    if not serve_artifacts:
        command.append("--no-serve-artifacts")
    return subprocess.Popen(command, env={**os.environ, **SERVER_ENVIRONMENT}, stdout=log,
                            stderr=subprocess.STDOUT if log else None, start_new_session=True)  # fmt: skip


def wait_until_up(server: subprocess.Popen, port: int, seconds: float = START_SECONDS) -> str:
    """The server's URI once it answers /health; UserError when it exits or stays silent."""
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            raise UserError(f"mlflow server exited ({server.returncode}) before answering on {uri}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{uri}/health", timeout=2) as up:
            if up.status == 200:
                return uri
        time.sleep(0.5)
    stop_server(server)
    raise UserError(f"mlflow server did not answer on {uri} within {seconds:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group, then, after a grace period, SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.time() + STOP_SECONDS
        while time.time() < deadline:
            os.killpg(server.pid, 0)  # raises once no process of the group is left
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=STOP_SECONDS)


# --- make ui --------------------------------------------------------------------------------------
UI_PORT = 5000


def presigned_url(arn: str) -> str:
    """A SageMaker managed MLflow tracking server's UI, through a presigned URL."""
    from training.common import aws
    from training.common.aws_errors import AWS_OR_NETWORK_ERRORS, aws_error

    name, region = arn.rsplit("/", 1)[-1], arn.split(":")[3]
    try:
        sm = aws.session(region).client("sagemaker")
        answer = sm.create_presigned_mlflow_tracking_server_url(TrackingServerName=name)
    except AWS_OR_NETWORK_ERRORS as error:
        raise aws_error(
            error, f"asking for the UI address of MLflow tracking server {name}"
        ) from error
    return answer["AuthorizedUrl"]


def serve_ui(port: int = UI_PORT) -> int:
    """``make ui``: the MLflow UI over the project's store on 127.0.0.1 until Ctrl-C or
    ``kill <pid>``, which stop every process it started; for a remote tracking server, where to
    open its own UI."""
    uri = tracking_uri()
    if is_sagemaker_arn(uri):
        print(f"MLflow UI of {uri}: {presigned_url(uri)}")
        return 0
    if not uri.startswith("sqlite:"):
        print(f"MLflow UI: {uri} (MLFLOW_TRACKING_URI's own server)")
        return 0
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    server = start_server(uri, port, artifact_location())
    print(f"MLflow UI: http://127.0.0.1:{port} (runs recorded in {uri}; Ctrl-C or kill "
          f"{os.getpid()} stops it)", flush=True)  # fmt: skip
    stopped = []

    def stop(signum, frame) -> None:
        stopped.append(signum)
        stop_server(server)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    try:
        code = server.wait()
    finally:
        stop_server(server)
    return 0 if stopped else code
