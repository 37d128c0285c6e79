"""What a first real run on AWS would hit: every failure one actionable line, a non-zero exit and
nothing half-written; settings checked before anything is spent."""

import dataclasses
import json
import sys
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from launch_helpers import BUCKET, REGION, TINY, create_job, request
from vgg_transfer import config as job_config

from training.common.aws import split_s3_uri
from training.common.infra_outputs import load_outputs
from training.common.instances import lookup
from training.common.sagemaker import TRAINING_JOB
from training.launch import follow, spec
from training.launch.__main__ import main as launch
from training.launch.experiments import load, to_argument, to_hyperparameter


def launch_smoke(tiny_splits, *extra: str) -> int:
    return launch(["cloud", "--experiment", "smoke", "--hp", *TINY, "--splits", str(tiny_splits),
                   "--stack", "test", "--detach", *extra])  # fmt: skip


def smoke_checkpoint_uri(tiny_splits) -> str:
    """Where launch_smoke's job checkpoints."""
    digest = json.loads((tiny_splits / "manifest.json").read_text())["dataset_digest"]
    settings = dataclasses.replace(load("smoke", TINY).hp, dataset_digest=digest)
    return spec.checkpoint_uri(load_outputs("test"), settings, "smoke")


def training_jobs() -> list[dict]:
    sm = boto3.client("sagemaker", region_name=REGION)
    return sm.list_training_jobs()["TrainingJobSummaries"]


def test_a_finished_experiment_is_not_silently_reused(aws, tiny_splits, capsys):
    uri = smoke_checkpoint_uri(tiny_splits)
    bucket, prefix = split_s3_uri(uri)
    state = {"phase": "fine_tuned", "epochs": 1, "epochs_done": 1, "finished": True}
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=bucket, Key=f"{prefix}fine_tuned/state.json", Body=json.dumps(state)
    )
    assert launch_smoke(tiny_splits) == 2
    err = capsys.readouterr().err
    assert "would reuse them and train nothing" in err and "FRESH=1" in err
    assert training_jobs() == []

    assert launch_smoke(tiny_splits, "--fresh") == 0, capsys.readouterr().err
    described = boto3.client("sagemaker", region_name=REGION).describe_training_job(
        TrainingJobName=training_jobs()[0]["TrainingJobName"]
    )
    fresh_uri = described["CheckpointConfig"]["S3Uri"]
    assert fresh_uri.startswith(uri.rstrip("/") + "-fresh-"), fresh_uri


def test_an_unfinished_run_is_resumed_and_says_so(aws, tiny_splits, capsys):
    bucket, prefix = split_s3_uri(smoke_checkpoint_uri(tiny_splits))
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=bucket, Key=f"{prefix}frozen/state.json", Body=b"{}"
    )
    assert launch_smoke(tiny_splits) == 0
    assert "resuming the unfinished run" in capsys.readouterr().out


def test_xla_on_several_k80s_is_refused_before_any_aws_call(tiny_splits, tmp_path, capsys):
    # No AWS fixture: a call would fail on missing credentials, not with this message.
    assert launch(["cloud", "--experiment", "smoke", "--instance", "ml.p2.8xlarge", "--hp",
                   "xla=true", "--splits", str(tiny_splits), "--stack", "test"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "xla=true with 8 replicas fails under Keras 2" in err and "ml.p2.8xlarge" in err
    # Keras 3 (the g5's TF 2.19 image) takes XLA on several replicas.
    dataclasses.replace(request("small", "xla=true"), instances=(lookup("ml.g5.12xlarge"),),
                        instance_count=2).check()  # fmt: skip


def test_a_batch_size_the_replicas_cannot_share_is_refused_before_any_aws_call(tiny_splits, capsys):
    assert launch(["cloud", "--experiment", "smoke", "--instance", "ml.g5.12xlarge", "--hp",
                   "batch_size=30", "--splits", str(tiny_splits), "--stack", "test"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "batch_size=30 does not split evenly over 4 replicas: use a multiple of 4" in err
    dataclasses.replace(
        request("smoke", "batch_size=32"), instances=(lookup("ml.g5.12xlarge"),)
    ).check()


@pytest.mark.parametrize("digest", ["12e4", "1234", "0012", "true", "null", "3.5", "9ab8"])
def test_a_digest_that_looks_like_json_reaches_train_py_unchanged(digest):
    """Runs the SDK's own container-driver steps: hyperparameters.json → environment.py's
    decode → SM_HPS → basic_script_driver's hyperparameters_to_cli_args → train.py's parser."""
    import importlib.util

    import sagemaker.train.container_drivers as drivers

    scripts = Path(drivers.__file__).parent / "scripts" / "environment.py"
    spec = importlib.util.spec_from_file_location("sm_environment", scripts)
    environment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(environment)  # it puts the drivers' folder on sys.path itself
    from common.utils import hyperparameters_to_cli_args

    sent = {"dataset_digest": to_hyperparameter(digest), "image_size": to_hyperparameter(150),
            "augment": to_hyperparameter(True), "learning_rate_fine_tuned": to_hyperparameter(1e-5),
            "weights": to_hyperparameter("imagenet")}  # fmt: skip
    sm_hps = json.loads(json.dumps(environment.deserialize_hyperparameters(sent)))
    hp, _ = job_config.parse_args(hyperparameters_to_cli_args(sm_hps))
    assert hp.dataset_digest == digest
    assert (hp.image_size, hp.augment, hp.learning_rate_fine_tuned) == (150, True, 1e-5)
    assert hp.weights == "imagenet"
    assert to_argument(digest) == digest
    # a tuning job's training jobs run the image's own toolkit, which decodes once
    from common.utils import safe_deserialize, safe_serialize

    assert safe_serialize(safe_deserialize(to_hyperparameter(digest, decodes=1))) == digest


def test_results_without_artifacts_say_what_is_missing_and_write_nothing(aws, tmp_path, capsys):
    create_job("vgg-small-20260101-000000", aws["role_arn"], "ml.g4dn.xlarge")
    runs = tmp_path / "runs"
    code = launch(["results", "--job", "vgg-small-20260101-000000", "--stack", "test", "--runs",
                   str(runs)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"s3://{BUCKET}/outputs/vgg-small-20260101-000000/output/model.tar.gz" in err
    assert "missing" in err and "404" not in err
    assert list(runs.iterdir()) == [], "a half-written run folder was left behind"


def test_results_for_an_unknown_job_is_one_line(aws, capsys):
    assert launch(["results", "--job", "vgg-nope-1", "--stack", "test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no training job named vgg-nope-1 in us-east-1")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_results_without_credentials_is_one_line(aws, monkeypatch, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert launch(["results", "--job", "vgg-small-1", "--stack", "test"]) == 2
    assert "no AWS credentials" in capsys.readouterr().err


def test_an_unreachable_endpoint_is_one_line(tiny_splits, tmp_path, monkeypatch, capsys):
    """No emulator: the endpoint refuses connections, as a wrong AWS_ENDPOINT_URL or no network."""
    outputs = {"bucket_name": BUCKET, "role_arn": "arn:aws:iam::123456789012:role/r",
               "region": REGION, "data_prefix": "datasets", "code_prefix": "code",
               "weights_prefix": "weights", "outputs_prefix": "outputs",
               "checkpoints_prefix": "checkpoints",
               "launcher_policy_arn": "arn:aws:iam::123456789012:policy/p"}  # fmt: skip
    (tmp_path / ".infra").mkdir()
    (tmp_path / ".infra" / "test.json").write_text(json.dumps(outputs))
    monkeypatch.chdir(tmp_path)
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert launch(["cloud", "--experiment", "smoke", "--splits", str(tiny_splits), "--stack",
                   "test"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach AWS while checking your AWS identity")
    assert "AWS_ENDPOINT_URL" in err and "Traceback" not in err
    assert launch(["results", "--job", "vgg-small-1", "--stack", "test"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot reach AWS while following vgg-small-1")


def test_bad_settings_are_refused_before_anything_is_spent(aws, tiny_splits, capsys):
    code = launch_smoke(tiny_splits, "--weights-file", "nope/vgg16.h5")
    assert code == 2 and "WEIGHTS=nope/vgg16.h5: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own one-line error, exit 2
        launch_smoke(tiny_splits, "--instance-count", "0")
    assert "expected a whole number of at least 1" in capsys.readouterr().err
    code = launch_smoke(tiny_splits, "--instance", "ml.nope")
    assert code == 2 and "unknown instance type 'ml.nope'" in capsys.readouterr().err
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    assert listed["KeyCount"] == 0 and training_jobs() == []


class FakeSageMaker:
    def __init__(self, error: ClientError | None = None) -> None:
        self.error = error
        self.stopped = []

    def stop_training_job(self, TrainingJobName: str) -> None:  # noqa: N803 (boto3's name)
        if self.error:
            raise self.error
        self.stopped.append(TrainingJobName)


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "StopTrainingJob")


@pytest.mark.parametrize(
    ("answer", "error", "expected"),
    [
        (EOFError, None, "vgg-small-1 keeps running; stop it with `aws sagemaker"),
        ("y", None, "stop requested for vgg-small-1"),
        ("y", client_error("ValidationException", "The job is Completed"), "may have ended"),
        ("y", client_error("AccessDenied", "no"), "access denied while stopping it"),
        ("n", None, "vgg-small-1 keeps running"),
    ],
)
def test_the_ctrl_c_prompt_never_ends_in_a_traceback(monkeypatch, capsys, answer, error, expected):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)

    def respond(prompt):
        if answer is EOFError:
            raise EOFError
        return answer

    monkeypatch.setattr("builtins.input", respond)
    sm = FakeSageMaker(error)
    follow.offer_stop(sm, TRAINING_JOB, "vgg-small-1")
    printed = capsys.readouterr().out.strip()
    assert expected in printed and len(printed.splitlines()) == 1


def test_cost_ceiling_is_the_on_demand_maximum_and_spot_is_only_expected():
    from training.launch.capacity import Price, estimate

    cost = estimate(load("small"), 4000, lookup("ml.p2.xlarge"), 1, Price(1.0, "test price"))
    assert cost.ceiling() == pytest.approx(2.0)  # 120 min at the on-demand $1/h, no discount
    assert cost.expected() == pytest.approx(cost.on_demand(cost.expected_seconds) * 0.3)
    line = cost.line()
    assert "ceiling 120 min ≈ $2.00 (max runtime at the on-demand rate)" in line
    assert "with spot (assumed 70% saving" in line and "price: test price" in line


def pricing_session(answer_with):
    session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    client = session.client("pricing", region_name="us-east-1")
    client.meta.events.register("before-call.pricing.GetProducts", answer_with)
    session.client = lambda *args, **kwargs: client
    return session


def test_the_price_comes_from_the_price_list_api_when_it_answers():
    from launch_helpers import answer

    from training.launch.capacity import on_demand_price

    product = {"product": {"attributes": {"instanceName": "ml.g4dn.xlarge"}},
               "terms": {"OnDemand": {"X.Y": {"priceDimensions": {"X.Y.Z": {
                   "unit": "Hrs", "pricePerUnit": {"USD": "0.7360000000"}}}}}}}  # fmt: skip
    session = pricing_session(
        lambda **kwargs: answer(
            200, {"PriceList": [json.dumps(product)], "FormatVersion": "aws_v1"}
        )
    )
    price = on_demand_price(session, lookup("ml.g4dn.xlarge"), "eu-west-1")
    assert price.per_hour == pytest.approx(0.736)
    assert price.source == "AWS Price List API (eu-west-1, on-demand)"

    refused = pricing_session(
        lambda **kwargs: answer(400, {"Error": {"Code": "AccessDeniedException", "Message": "no"}})
    )
    fallback = on_demand_price(refused, lookup("ml.g4dn.xlarge"), "eu-west-1")
    assert fallback.per_hour == 0.736
    assert "price table" in fallback.source and "Price List API unavailable" in fallback.source


def test_adding_a_hyperparameter_with_a_default_keeps_every_checkpoint_folder(monkeypatch):
    """An unfinished cloud run resumes from its checkpoint folder, found by name: adding a
    setting to the job must not rename it (the job then resumes it, tests/job/test_job_phases)."""
    import dataclasses

    from vgg_transfer import config as job_config

    from training.launch.experiments import available

    def names() -> dict:
        return {name: folder(load(name)) for name in available()}

    def folder(experiment) -> str:
        settings = dataclasses.replace(experiment.hp, dataset_digest="d1g3st")
        return spec.checkpoint_name(settings, experiment.name)

    before = names()
    extended = dataclasses.make_dataclass(
        "Hyperparameters", [("label_smoothing", float, 0.0)], bases=(job_config.Hyperparameters,)
    )
    # Project patch 4 of 4: a future version of the job, with one more setting.
    monkeypatch.setattr(job_config, "Hyperparameters", extended)
    assert load("small").hp.label_smoothing == 0.0  # the launcher knows the new setting
    assert names() == before
    # A setting that changes the recipe is a different folder.
    changed = folder(load("small", ["label_smoothing=0.1"]))
    assert changed != before["small"]


# --- one recipe, however a value is spelled; the launcher and the job compare the same one -------
def container_argv(hyperparameters: dict) -> list[str]:
    """train.py's command line for a request's HyperParameters, as the SDK's own container code
    makes it: scripts/environment.py decodes each value once, then the driver's
    hyperparameters_to_cli_args."""
    from sagemaker.train.container_drivers.common.utils import (
        hyperparameters_to_cli_args,
        safe_deserialize,
    )

    return hyperparameters_to_cli_args({k: safe_deserialize(v) for k, v in hyperparameters.items()})


def submitted(tiny_splits, *hp: str) -> dict:
    """Submits the tiny smoke run with ``hp`` (DETACH=1); returns the job as moto recorded it."""
    assert launch_smoke(tiny_splits, "--hp", *TINY, *hp) == 0
    sm = boto3.client("sagemaker", region_name=REGION)
    names = sorted(job["TrainingJobName"] for job in training_jobs())
    return sm.describe_training_job(TrainingJobName=names[-1])


def plant_state(job: dict, **changed) -> None:
    """The frozen phase's state.json that the job would write after one epoch: its recipe from
    train.py's own parser over the command line the request gives it (``changed`` on top)."""
    parsed = job_config.parse(container_argv(job["HyperParameters"]), environ={})
    recipe = {**job_config.recipe(parsed.hp), **changed}
    state = {"phase": "frozen", "epochs": 1, "epochs_done": 1, "config": recipe}
    bucket, prefix = split_s3_uri(job["CheckpointConfig"]["S3Uri"])
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=bucket, Key=f"{prefix}frozen/state.json", Body=json.dumps(state)
    )


@pytest.mark.parametrize("spellings", [("5e-5", "0.00005"), ("5E-05", ".00005")])
def test_a_value_spelled_two_ways_is_one_recipe_and_its_checkpoints_resume(
    aws, tiny_splits, capsys, spellings
):
    first, second = (
        submitted(tiny_splits, f"learning_rate_fine_tuned={spelling}") for spelling in spellings
    )
    assert first["CheckpointConfig"] == second["CheckpointConfig"]
    assert first["HyperParameters"] == second["HyperParameters"]
    assert first["HyperParameters"]["learning_rate_fine_tuned"] == "5e-05"
    plant_state(first)  # the job stopped after an epoch (a max runtime, Ctrl-C, spot)
    capsys.readouterr()
    again = submitted(tiny_splits, f"learning_rate_fine_tuned={spellings[0]}")
    assert "checkpoints: resuming the unfinished run" in capsys.readouterr().out
    assert again["CheckpointConfig"] == first["CheckpointConfig"]


@pytest.mark.parametrize(
    ("written_with", "said"),
    [
        ({"learning_rate_fine_tuned": 1e-4}, "learning_rate_fine_tuned: 0.0001 → 1e-05"),
        ({"dataset_digest": "0123456789abcdef"}, "dataset_digest: '0123456789abcdef' → '"),
    ],
)
def test_checkpoints_written_with_other_settings_or_data_are_refused_in_one_line(
    aws, tiny_splits, capsys, written_with, said
):
    job = submitted(tiny_splits)
    plant_state(job, **written_with)
    capsys.readouterr()
    assert launch_smoke(tiny_splits, "--hp", *TINY) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "were written with other settings" in line and said in line and "FRESH=1" in line
    assert len(training_jobs()) == 1, "a job was submitted into foreign checkpoints"
