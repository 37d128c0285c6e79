"""Everything that runs in the ml.p2.xlarge image (Python 3.9): our job folder and the SDK's own
container drivers (ModelTrainer ships them in the sm_drivers channel)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def container_files() -> list[Path]:
    from sagemaker.train import container_drivers

    drivers = Path(container_drivers.__file__).parent
    return sorted((REPO / "training" / "job").rglob("*.py")) + sorted(drivers.rglob("*.py"))


def runtime_union_annotations(tree: ast.Module) -> list[int]:
    """Lines where `X | Y` appears in an annotation Python 3.9 evaluates (no future import)."""
    future = any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )  # fmt: skip
    if future:
        return []
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
            annotations += [a.annotation for a in args if a.annotation] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    return [
        sub.lineno
        for annotation in annotations
        if annotation is not None
        for sub in ast.walk(annotation)
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr)
    ]


@pytest.mark.parametrize("path", container_files(), ids=lambda p: p.name)
def test_runs_on_python_39(path):
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    assert runtime_union_annotations(tree) == [], f"{path}: `X | Y` annotations fail on Python 3.9"
