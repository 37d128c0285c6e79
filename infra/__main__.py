"""Pulumi entry point (Pulumi.yaml: main: infra/): provisions the stack and exports its outputs.

The pulumi CLI runs this file with infra/ as the working folder; the repository root goes on the
path so the program's modules import as ``infra.*`` here and in the tests alike.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi

from infra.program import define_stack

for key, value in define_stack().items():
    pulumi.export(key, value)
