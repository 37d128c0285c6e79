"""Runs the real Pulumi program (infra.program.define_stack) against Pulumi's mocks.

No CLI and no plugins: every resource the program registers is recorded with its inputs, and the
tests assert security properties on those records.
"""

import json
from dataclasses import dataclass, field

import pulumi
import pytest

ACCOUNT = "123456789012"


@dataclass
class Recorded:
    type: str
    name: str
    inputs: dict


@dataclass
class Mocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = args.inputs["bucketPrefix"] + "abc123"
            outputs["arn"] = f"arn:aws:s3:::{outputs['bucket']}"
        elif args.typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}-abc123"
        elif args.typ == "aws:iam/policy:Policy":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:policy/{args.name}-abc123"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/test", "id": ACCOUNT}
        raise NotImplementedError(args.token)

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str) -> Recorded:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {[r.name for r in found]}"
        return found[0]

    def policy(self, typ: str) -> dict:
        record = self.one(typ)
        key = "assumeRolePolicy" if typ == "aws:iam/role:Role" else "policy"
        return json.loads(record.inputs[key])


@pytest.fixture
def run_program():
    """A fresh program run per call: set mocks and config, run define_stack, resolve outputs."""

    def run(config: dict | None = None) -> tuple[Mocks, dict]:
        mocks = Mocks()
        pulumi.runtime.set_mocks(mocks, project="vgg-dogs-cats", stack="test", preview=False)
        settings = {"aws:region": "us-east-1"}
        settings.update(config or {})
        pulumi.runtime.set_all_config(settings)
        from infra.program import define_stack

        resolved: dict = {}

        @pulumi.runtime.test
        def program():
            outputs = define_stack()
            return pulumi.Output.all(**outputs).apply(resolved.update)

        program()
        return mocks, resolved

    return run
