"""The layout's rules, checked on the source: imports go one way, and each fact that crosses a
boundary is spelled in one module (phase names in the job's contract, the log group and job names
in training/common/sagemaker.py)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python_files(*folders: str) -> list[Path]:
    """Every module under ``folders``; none found means the test looks in the wrong place (it
    did, and passed with nothing to check, after it moved)."""
    files = sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))
    assert files, f"no Python files under {folders} in {REPO}"
    return files


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("training/job", ("training",)),  # shipped to SageMaker: nothing from the workstation
        (
            "training/common",
            ("training.launch", "training.data", "training.standin", "training.report"),
        ),  # fmt: skip
        ("training/data", ("training.launch", "training.standin")),
        # the stand-in is AWS's side: it knows nothing of the client it stands in for
        ("training/standin", ("training.launch", "training.rehearse")),
        ("infra", ("training.launch", "training.standin", "training.data")),
    ],
)
def test_imports_go_one_way(folder, forbidden):
    for path in python_files(folder):
        for module in imported_modules(path):
            assert not module.startswith(forbidden), f"{path.relative_to(REPO)} imports {module}"


def string_literals(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def test_phase_names_are_spelled_in_the_contract_only():
    contract = REPO / "training" / "job" / "vgg_transfer" / "contract.py"
    for path in python_files("training", "infra"):
        if path == contract:
            continue
        for node in string_literals(path):
            assert node.value not in ("frozen", "fine_tuned"), (
                f"{path.relative_to(REPO)}:{node.lineno} spells the phase {node.value!r}; "
                "import it from vgg_transfer.contract"
            )


def builds_a_job_name(node) -> bool:
    """f"vgg-{…}" builds a job name; a regex with "vgg-(" parses one."""
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        return isinstance(first, ast.Constant) and first.value == "vgg-"
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and "vgg-(" in node.value


def test_the_log_group_and_job_names_are_defined_once():
    home = REPO / "training" / "common" / "sagemaker.py"
    for path in python_files("training", "infra"):
        if path == home:
            continue
        for node in string_literals(path):
            assert node.value != "/aws/sagemaker/TrainingJobs", f"{path}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text())):
            assert not builds_a_job_name(node), f"{path}:{node.lineno} builds a job name"


def test_the_longest_first_order_names_test_files_that_exist():
    """make test starts the longest tests first (conftest.py); a name that matches no file would
    let a long test start last, and the other core idle while it runs, without any failure."""
    (order,) = [
        node.value
        for node in ast.parse((REPO / "tests" / "conftest.py").read_text()).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LONGEST_FIRST"
    ]  # read, not imported: "conftest" is also tests/job's, whichever pytest imported first
    LONGEST_FIRST = ast.literal_eval(order)
    present = {path.name for path in (REPO / "tests").rglob("test_*.py")}
    assert set(LONGEST_FIRST) <= present, set(LONGEST_FIRST) - present
