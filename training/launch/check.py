"""``make check``: every prerequisite of the cloud path at once, each a line, ✓ or ✗ with its remedy
(– where nothing is wrong yet but something will happen: a tool to bootstrap, data to stage).
It reads and asks, and spends nothing: no upload, no job, no stack change.

    python -m training.launch check [--stack dev] [--splits data/splits]      (make check)
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.common import aws
from training.common.aws_errors import AWS_ERRORS, aws_error, not_from_aws
from training.common.errors import UserError
from training.common.infra_outputs import INFRA_DIR, load_outputs
from training.common.repo import REPO

OK, BAD, LATER = "✓", "✗", "–"
UNREACHED = "not checked until the AWS identity above works"
# Kaggle's train.zip (about 0.55 GB) and its extracted copy; the splits are hard links into it.
DATA_BYTES = int(1.2e9)


@dataclass
class Line:
    mark: str
    what: str
    said: str

    def __str__(self) -> str:
        return f"{self.mark} {self.what}: {self.said}"


def tools() -> list[Line]:
    from infra.pulumi_cli import PULUMI_VERSION, TOOLS

    uv = REPO / ".tools" / "uv" / "bin" / "uv"
    lines = [Line(OK, "uv", f"{uv}") if uv.exists() else
             Line(BAD, "uv", "not bootstrapped: any make target does it (make setup)")]  # fmt: skip
    own = shutil.which("pulumi")
    pinned = (REPO / TOOLS / PULUMI_VERSION / "bin" / "pulumi").resolve()
    if own:
        lines.append(Line(OK, "Pulumi", f"your CLI, {own}"))
    elif pinned.exists():
        lines.append(Line(OK, "Pulumi", f"v{PULUMI_VERSION}, bootstrapped in {pinned.parent}"))
    else:
        lines.append(Line(LATER, "Pulumi", f"no CLI: make infra-up bootstraps v{PULUMI_VERSION}"))
    return lines


def identity(session) -> tuple[Line, bool]:
    try:
        arn = session.client("sts").get_caller_identity()["Arn"]
    except AWS_ERRORS as error:
        return Line(BAD, "AWS identity", str(aws_error(error, "checking your identity"))), False
    return Line(OK, "AWS identity", not_from_aws("sts", arn)), True


def bucket_and_role(outputs, session) -> list[Line]:
    from training.launch.preflight import check_bucket_and_role

    check_bucket_and_role(session, outputs)
    role = outputs.role_arn.rsplit("/", 1)[-1]
    return [Line(OK, "bucket and role", f"{outputs.bucket}, {role}")]


def quotas(session) -> list[Line]:
    """The training quotas of every current GPU type, spot and on-demand (and the seed's K80)."""
    from training.common.instances import gpu_types_and_the_seeds
    from training.launch.capacity import read_quotas

    reading = read_quotas(session)
    if reading.problem and not reading.defaults:
        return [Line(BAD, "GPU quotas", reading.problem)]
    lines = []
    for instance in gpu_types_and_the_seeds():
        spot, on_demand = (reading.value(instance.name, spot) for spot in (True, False))
        if spot is None and on_demand is None:
            continue
        usable = (spot or 0) >= 1 or (on_demand or 0) >= 1
        said = (f"spot {spot or 0:g}, on-demand {on_demand or 0:g} "
                f"({reading.source(instance.name, True)})")  # fmt: skip
        if not usable:
            said += (f"; request an increase (Service Quotas → Amazon SageMaker → "
                     f"'{instance.name} for spot training job usage')")  # fmt: skip
        lines.append(Line(OK if usable else BAD, f"quota {instance.name} ({instance.accelerator})",
                          said))  # fmt: skip
    return lines or [Line(BAD, "GPU quotas", "none listed for SageMaker training in this region")]


def kaggle_token() -> Line:
    from training.data.kaggle_download import TOKEN_URL

    home = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    for where, present in (
        ("KAGGLE_API_TOKEN", bool(os.environ.get("KAGGLE_API_TOKEN"))),
        (str(home / "access_token"), (home / "access_token").is_file()),
        ("KAGGLE_USERNAME and KAGGLE_KEY",
         bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))),
        (str(home / "kaggle.json"), (home / "kaggle.json").is_file()),
    ):  # fmt: skip
        if present:
            return Line(OK, "Kaggle token", f"{where} (make data checks it with Kaggle)")
    return Line(BAD, "Kaggle token", f"none: create one at {TOKEN_URL} and put it in "
                "KAGGLE_API_TOKEN or ~/.kaggle/access_token (or pass DATA=path/to/train.zip)")  # fmt: skip


def data(splits: Path, outputs, session, reached: bool) -> list[Line]:
    from training.data.prepare import load_manifest, shortfalls
    from training.data.sample import SOURCE

    manifest = load_manifest(splits)
    if manifest is None:
        return [Line(BAD, "data", f"none prepared in {splits}: make data (or make data-sample)"),
                Line(LATER, "data staged", "not checked until the data above is prepared")]  # fmt: skip
    lacking = shortfalls(manifest)
    sample = manifest["source"].get("path") == str(SOURCE.resolve())
    said = f"{splits}, dataset {manifest['dataset_digest']}" + (
        " (the built-in synthetic sample: smoke runs only; make data for Kaggle's photos)"
        if sample else "")  # fmt: skip
    if lacking:
        said += f": incomplete ({'; '.join(lacking)}): make data"
    lines = [Line(BAD if lacking else OK, "data", said)]
    lines.append(staged(manifest["dataset_digest"], outputs, session) if reached else
                 Line(LATER, "data staged", UNREACHED))  # fmt: skip
    return lines


def staged(digest: str, outputs, session) -> Line:
    from training.data.upload import dataset_prefix

    if outputs is None:
        return Line(LATER, "data staged", "not checked: no stack outputs yet (make infra-up)")
    prefix = dataset_prefix(digest, outputs.data_prefix)
    try:
        listed = session.client("s3").list_objects_v2(Bucket=outputs.bucket, Prefix=prefix,
                                                      MaxKeys=1)  # fmt: skip
    except AWS_ERRORS as error:
        return Line(BAD, "data staged", str(aws_error(error, "listing the staged data")))
    if listed.get("KeyCount", 0):
        return Line(OK, "data staged", f"s3://{outputs.bucket}/{prefix}/")
    return Line(LATER, "data staged", "not yet: make train-cloud stages it (or make data-upload)")


def disk(splits: Path) -> Line:
    folder = next(p for p in (splits, *splits.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    said = f"{free / 1e9:.1f} GB free in {folder.resolve()}; Kaggle's data needs about " \
           f"{DATA_BYTES / 1e9:.1f} GB"  # fmt: skip
    return Line(OK if free > DATA_BYTES else BAD, "disk", said + ("" if free > DATA_BYTES else
                "; free some space"))  # fmt: skip


def guarded(what: str, check: Callable[[], list[Line]]) -> list[Line]:
    """A check whose failure is its own line, never the end of the others."""
    try:
        return check()
    except UserError as error:
        return [Line(BAD, what, str(error))]


def check(stack: str, splits: Path, write=print) -> int:
    """Every line, then 0 when none is ✗, else 1."""
    lines = tools()
    try:
        outputs = load_outputs(stack, INFRA_DIR)
        stack_line = Line(OK, "stack outputs", f"{INFRA_DIR / f'{stack}.json'} ({outputs.region})")
    except UserError as error:
        outputs, stack_line = None, Line(BAD, "stack outputs", str(error))
    session = aws.session((outputs and outputs.region) or os.environ.get("AWS_REGION") or
                          os.environ.get("AWS_DEFAULT_REGION"))  # fmt: skip
    who, reached = identity(session)
    region = session.region_name
    lines += [who, Line(OK if region else BAD, "AWS region", region or
                        "none: set AWS_REGION, or make infra-up writes the stack's")]  # fmt: skip
    lines.append(stack_line)
    # A check that cannot run yet is still a line: "–", naming the ✗ above it waits for.
    if not outputs:
        lines.append(Line(LATER, "bucket and role", "not checked until the stack outputs exist"))
    elif reached:
        lines += guarded("bucket and role", lambda: bucket_and_role(outputs, session))
    else:
        lines.append(Line(LATER, "bucket and role", UNREACHED))
    lines += guarded("GPU quotas", lambda: quotas(session)) if reached else [
        Line(LATER, "GPU quotas (spot and on-demand, every current type)", UNREACHED)]  # fmt: skip
    lines += [kaggle_token(), *guarded("data", lambda: data(splits, outputs, session, reached)),
              disk(splits)]  # fmt: skip
    for line in lines:
        write(str(line))
    failed = sum(line.mark == BAD for line in lines)
    write(f"\n{'all set' if not failed else f'{failed} to fix'} (nothing was spent)")
    return 1 if failed else 0
