"""Shared by both test environments: puts the TensorFlow and Keras versions in the log header."""


def pytest_report_header(config):
    import keras
    import tensorflow as tf

    return f"tensorflow {tf.__version__}, keras {keras.__version__}"


# The longest tests first: make test runs them on every core (pytest-xdist, work stealing), and a
# long test that starts last would leave the other cores idle while it runs.
LONGEST_FIRST = ("test_rehearse.py", "test_job_train.py", "test_predict.py", "test_bench.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
