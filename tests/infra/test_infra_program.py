"""Security properties of the resources the real Pulumi program creates (under mocks)."""

import json

import pytest

from infra import dlc
from training.common.infra_outputs import OUTPUT_KEYS, load_outputs, save_outputs

BUCKET = "aws:s3/bucket:Bucket"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LAUNCHER = "aws:iam/policy:Policy"


def statements(policy: dict) -> list[dict]:
    return policy["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_bucket_is_auto_named_from_the_configured_prefix(run_program):
    mocks, outputs = run_program({"vgg-dogs-cats:bucketPrefix": "team-a-"})
    bucket = mocks.one(BUCKET)
    assert bucket.inputs["bucketPrefix"] == "team-a-", f"bucket {bucket.name} ignores bucketPrefix"
    assert "bucket" not in bucket.inputs, f"bucket {bucket.name} has a fixed physical name"
    assert outputs["bucket_name"].startswith("team-a-")


def test_bucket_blocks_every_kind_of_public_access(run_program):
    mocks, _ = run_program()
    block = mocks.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for flag in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block.inputs.get(flag) is True, f"{block.name}: {flag} is not set"


def test_bucket_disables_acls(run_program):
    mocks, _ = run_program()
    ownership = mocks.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced", ownership.name


@pytest.mark.parametrize(
    ("config", "algorithm"),
    [({}, "AES256"), ({"vgg-dogs-cats:encryption": "sse-kms"}, "aws:kms")],
)
def test_bucket_is_encrypted_by_default(run_program, config, algorithm):
    mocks, _ = run_program(config)
    sse = mocks.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    rule = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert rule["sseAlgorithm"] == algorithm, f"{sse.name}: {rule}"


def test_bucket_is_versioned_with_lifecycle_rules(run_program):
    mocks, _ = run_program({"vgg-dogs-cats:checkpointExpiryDays": "14"})
    versioning = mocks.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled", versioning.name
    lifecycle = mocks.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] > 0
    assert (
        rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"][
            "daysAfterInitiation"
        ]
        > 0
    )
    assert rules["expire-checkpoints"]["filter"]["prefix"] == "checkpoints/"
    assert rules["expire-checkpoints"]["expiration"]["days"] == 14


def test_bucket_policy_denies_requests_without_tls(run_program):
    mocks, _ = run_program()
    record = mocks.one("aws:s3/bucketPolicy:BucketPolicy")
    deny = [s for s in statements(json.loads(record.inputs["policy"])) if s["Effect"] == "Deny"]
    assert deny, f"{record.name} has no Deny statement"
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, record.name
    assert deny[0]["Action"] == "s3:*" and deny[0]["Principal"] == "*", record.name


def test_no_deprecated_v2_resources_and_no_inline_role_policies(run_program):
    mocks, _ = run_program()
    for record in mocks.resources:
        assert not record.type.split(":")[-1].endswith("V2"), f"{record.name} uses {record.type}"
    role = mocks.one(ROLE)
    assert "inlinePolicies" not in role.inputs, f"{role.name} sets inline_policies"
    assert "managedPolicyArns" not in role.inputs, f"{role.name} sets managed_policy_arns"


def test_role_trusts_only_sagemaker_training_and_tuning_jobs_of_this_account(run_program):
    mocks, _ = run_program()
    (statement,) = statements(mocks.policy(ROLE))
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}, "role trusts others"
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == "123456789012"
    sources = condition["ArnLike"]["aws:SourceArn"]
    assert sorted(arn.split(":", 5)[5] for arn in sources) == [
        "hyper-parameter-tuning-job/*",
        "training-job/*",
    ], f"role trusts {sources}"
    assert all(":123456789012:" in arn for arn in sources), f"role trusts {sources}"


def test_execution_policy_is_least_privilege(run_program):
    mocks, outputs = run_program()
    policy = mocks.policy(ROLE_POLICY)
    bucket_arn = f"arn:aws:s3:::{outputs['bucket_name']}"
    by_action: dict[str, list[str]] = {}
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert not action.endswith("*"), f"sagemaker-execution-policy grants {action}"
            by_action.setdefault(action, []).extend(as_list(statement["Resource"]))
    for action, resources in by_action.items():
        if action.startswith("s3:"):
            assert "*" not in resources, f"sagemaker-execution-policy: {action} on *"
            assert all(r.startswith(bucket_arn) for r in resources), f"{action}: {resources}"
    assert by_action["s3:ListBucket"] == [bucket_arn]
    reads = set(by_action["s3:GetObject"])
    for prefix in ("datasets", "code", "weights", "outputs", "checkpoints"):
        assert f"{bucket_arn}/{prefix}/*" in reads, f"execution role cannot read {prefix}/"
    assert set(by_action["s3:PutObject"]) == {
        f"{bucket_arn}/outputs/*",
        f"{bucket_arn}/checkpoints/*",
    }, "execution role may write outside outputs/ and checkpoints/"
    assert all("/aws/sagemaker/TrainingJobs" in r for r in by_action["logs:PutLogEvents"])
    assert "cloudwatch:PutMetricData" in by_action
    assert by_action["ecr:GetAuthorizationToken"] == ["*"]
    assert by_action["ecr:BatchGetImage"] == [
        "arn:aws:ecr:us-east-1:763104351884:repository/tensorflow-training"
    ]


@pytest.mark.parametrize(
    ("region", "account", "partition"),
    [
        ("eu-west-1", "763104351884", "aws"),
        ("af-south-1", "626614931356", "aws"),
        ("ap-east-1", "871362719292", "aws"),
        ("cn-north-1", "727897471807", "aws-cn"),
    ],
)
def test_image_pull_is_scoped_to_the_regions_dlc_registry(run_program, region, account, partition):
    mocks, _ = run_program({"aws:region": region})
    pull = [s for s in statements(mocks.policy(ROLE_POLICY)) if "ecr:BatchGetImage" in s["Action"]]
    expected = f"arn:{partition}:ecr:{region}:{account}:repository/tensorflow-training"
    assert pull[0]["Resource"] == expected, (
        f"sagemaker-execution-policy pulls {pull[0]['Resource']}"
    )


def test_dlc_table_matches_the_sagemaker_sdk():
    sdk_config = pytest.importorskip("sagemaker.core.image_uris").config_for_framework("tensorflow")
    registries = sdk_config["training"]["versions"]["2.11.0"]["registries"]
    for region, account in registries.items():
        assert dlc.registry_account(region) == account, f"DLC registry for {region}"


def test_launcher_policy_passes_only_this_role_to_sagemaker(run_program):
    mocks, outputs = run_program()
    policy = mocks.policy(LAUNCHER)
    (passrole,) = [s for s in statements(policy) if s["Action"] == "iam:PassRole"]
    assert passrole["Resource"] == outputs["role_arn"], "launcher may pass other roles"
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
    jobs = [s for s in statements(policy) if "sagemaker:CreateTrainingJob" in as_list(s["Action"])]
    assert jobs[0]["Resource"].endswith(":training-job/*"), "launcher policy: jobs not scoped"
    for statement in statements(policy):
        for action in as_list(statement["Action"]):
            if action.startswith("s3:"):
                assert statement["Resource"] != "*", f"launcher policy: {action} on *"
    actions = {a for s in statements(policy) for a in as_list(s["Action"])}
    assert "servicequotas:ListServiceQuotas" in actions
    assert "logs:GetLogEvents" in actions


def test_outputs_file_is_the_one_the_launcher_reads(run_program, tmp_path):
    _, outputs = run_program()
    assert set(outputs) == set(OUTPUT_KEYS)
    # `make infra-up` saves `pulumi stack output --json`, i.e. these outputs, as .infra/<stack>.json
    save_outputs(outputs, "test", directory=tmp_path)
    loaded = load_outputs("test", directory=tmp_path)
    assert loaded.bucket_name == outputs["bucket_name"]
    assert loaded.role_arn == outputs["role_arn"]
    assert loaded.checkpoints_prefix == "checkpoints"


def test_infra_commands_without_a_cli_or_a_network_are_one_line(monkeypatch, tmp_path, capsys):
    from infra import cli

    monkeypatch.setenv("PATH", "/nonexistent")  # no pulumi of the user's own
    monkeypatch.chdir(tmp_path)  # the bootstrap goes to .tools/ where the command runs
    monkeypatch.setenv("PULUMI_RELEASES_URL", "http://127.0.0.1:9/v{version}")  # unreachable
    assert cli.main(["up", "--stack", "dev"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "No network? Re-run when online" in message
    assert "install the pulumi CLI yourself" in message


def test_execution_role_may_delete_checkpoints_and_nothing_else(run_program):
    # SageMaker mirrors deletes in /opt/ml/checkpoints; the job replaces its files every epoch.
    mocks, outputs = run_program()
    bucket_arn = f"arn:aws:s3:::{outputs['bucket_name']}"
    deletes = [
        resource
        for statement in statements(mocks.policy(ROLE_POLICY))
        if "s3:DeleteObject" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    assert deletes == [f"{bucket_arn}/checkpoints/*"], f"sagemaker-execution-policy: {deletes}"


# What calls each action the launcher policy may grant: the boto3 calls (or the SDK's) in the code
# that runs under the launcher's identity. An action with no caller is a right nobody needs.
CALLERS = {
    "s3:ListBucket": ("head_bucket", "list_objects_v2"),
    "s3:GetObject": ("get_object", "head_object", "download_file"),
    "s3:PutObject": ("upload_file", "put_object"),
    "s3:AbortMultipartUpload": ("upload_file",),  # s3transfer aborts a failed multipart upload
    "iam:GetRole": ("get_role",),
    "iam:PassRole": (".train(", ".tune("),  # CreateTrainingJob / …TuningJob pass the role
    "sagemaker:CreateTrainingJob": ("trainer.train(",),  # ModelTrainer.train
    "sagemaker:CreateHyperParameterTuningJob": ("tuner.tune(",),  # HyperparameterTuner.tune
    "sagemaker:AddTags": ("tags=",),  # both requests carry tags
    "logs:GetLogEvents": ("get_log_events",),
    "logs:DescribeLogStreams": ("describe_log_streams",),
    "servicequotas:ListServiceQuotas": ("list_service_quotas",),
    "servicequotas:ListAWSDefaultServiceQuotas": ("list_aws_default_service_quotas",),
    "pricing:GetProducts": ("get_products",),
    "kms:Decrypt": ("download_file",),  # objects encrypted with the bucket's customer key
    "kms:GenerateDataKey": ("upload_file",),
    "sagemaker-mlflow:*": ("MlflowClient(",),  # through the sagemaker-mlflow plugin
    "sagemaker:CreatePresignedMlflowTrackingServerUrl": ("create_presigned_mlflow_tracking",),
}
from training.common.sagemaker import KINDS  # noqa: E402

# Describe and Stop of a job kind are called through its record: kind.describe(...) while
# following, kind.stop(...) when Ctrl-C is answered "y".
KIND_VERBS = {
    f"sagemaker:{verb}{kind.api}": callers
    for kind in KINDS
    for verb, callers in (("Describe", (".describe(sm",)), ("Stop", ("kind.stop(sm",)))
}
LAUNCHER_CODE = ("training/launch", "training/common", "training/data", "training/report")


def snake_case(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action.split(":")[1]).lstrip("_")


def test_every_action_the_launcher_policy_grants_has_a_caller(run_program):
    from pathlib import Path

    mocks, _ = run_program({"vgg-dogs-cats:encryption": "sse-kms", "vgg-dogs-cats:kmsKeyArn": KEY,
                            **MANAGED_MLFLOW})  # fmt: skip
    granted = {a for s in statements(mocks.policy(LAUNCHER)) for a in as_list(s["Action"])}
    repo = Path(__file__).resolve().parents[2]
    code = "\n".join(
        p.read_text() for folder in LAUNCHER_CODE for p in (repo / folder).rglob("*.py")
    )
    for action in sorted(granted):
        # SageMaker's job verbs are called through the job-kind table (training/common/sagemaker.py)
        callers = CALLERS.get(action) or KIND_VERBS.get(action) or (
            f'"{snake_case(action)}"', f".{snake_case(action)}(")  # fmt: skip
        assert any(caller in code for caller in callers), f"nothing calls {action}: drop it"
    assert {
        "servicequotas:ListServiceQuotas",
        "pricing:GetProducts",
        "logs:GetLogEvents",
    } <= granted


MLFLOW = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/vgg-runs"
MLFLOW_ARTIFACTS = "s3://team-mlflow/artifacts"
MANAGED_MLFLOW = {"vgg-dogs-cats:mlflowTrackingServerArn": MLFLOW,
                  "vgg-dogs-cats:mlflowArtifactUri": MLFLOW_ARTIFACTS}  # fmt: skip


def test_the_launcher_may_record_runs_in_managed_mlflow_only_when_configured(run_program):
    mocks, _ = run_program()
    plain = statements(mocks.policy(LAUNCHER))
    assert not [s for s in plain if "mlflow" in str(s).lower()], "MLflow rights without the setting"
    mocks, _ = run_program(MANAGED_MLFLOW)
    granted = [s for s in statements(mocks.policy(LAUNCHER)) if "mlflow" in s["Sid"].lower()]
    server = [s for s in granted if s["Resource"] == MLFLOW]
    assert {a for s in server for a in as_list(s["Action"])} == {
        "sagemaker-mlflow:*",
        "sagemaker:DescribeMlflowTrackingServer",  # the server's MLflow version
        "sagemaker:CreatePresignedMlflowTrackingServerUrl",
    }
    # The plugin uploads artifacts with the launcher's own credentials: objects under the
    # artifact location, and listing its bucket; nothing else of S3.
    artifacts = {a: as_list(s["Resource"]) for s in granted if s not in server
                 for a in as_list(s["Action"])}  # fmt: skip
    assert artifacts == {
        "s3:ListBucket": ["arn:aws:s3:::team-mlflow"],
        "s3:GetObject": ["arn:aws:s3:::team-mlflow/artifacts/*"],
        "s3:PutObject": ["arn:aws:s3:::team-mlflow/artifacts/*"],
        "s3:AbortMultipartUpload": ["arn:aws:s3:::team-mlflow/artifacts/*"],
    }


def test_a_shared_servers_artifact_location_is_granted_alone(run_program):
    mocks, _ = run_program({"vgg-dogs-cats:mlflowArtifactUri": "s3://team-mlflow/"})
    granted = [s for s in statements(mocks.policy(LAUNCHER)) if "mlflow" in s["Sid"].lower()]
    assert {r for s in granted for r in as_list(s["Resource"])} == {
        "arn:aws:s3:::team-mlflow", "arn:aws:s3:::team-mlflow/*"}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"vgg-dogs-cats:mlflowTrackingServerArn": MLFLOW}, "needs mlflowArtifactUri"),
        ({"vgg-dogs-cats:mlflowArtifactUri": "team-mlflow/artifacts"}, "expected s3://bucket"),
    ],
)
def test_an_incomplete_or_malformed_mlflow_setting_is_refused(run_program, config, said):
    with pytest.raises(ValueError, match=said):
        run_program(config)


KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, None),
        ({"vgg-dogs-cats:encryption": "sse-kms"}, None),  # the AWS-managed key needs no grant
        ({"vgg-dogs-cats:encryption": "sse-kms", "vgg-dogs-cats:kmsKeyArn": KEY}, KEY),
    ],
)
def test_launcher_may_use_the_buckets_customer_key_only_when_there_is_one(
    run_program, config, expected
):
    mocks, _ = run_program(config)
    kms = [s for s in statements(mocks.policy(LAUNCHER)) if "kms:Decrypt" in as_list(s["Action"])]
    if expected is None:
        assert kms == [], f"launcher policy grants KMS without a customer key: {kms}"
    else:
        (statement,) = kms
        assert set(statement["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
        assert statement["Resource"] == expected, f"launcher policy: KMS on {statement['Resource']}"


def test_launcher_may_run_tuning_jobs_of_this_account_only(run_program):
    mocks, _ = run_program()
    (tuning,) = [
        s
        for s in statements(mocks.policy(LAUNCHER))
        if "sagemaker:CreateHyperParameterTuningJob" in as_list(s["Action"])
    ]
    assert tuning["Resource"].endswith(":123456789012:hyper-parameter-tuning-job/*"), tuning
    for action in ("Describe", "Stop", "ListTrainingJobsFor"):
        assert any(action in a for a in tuning["Action"]), f"launcher policy lacks {action}"
