"""Shared by both test environments: puts the TensorFlow and Keras versions in the log header."""


def pytest_report_header(config):
    import keras
    import tensorflow as tf

    return f"tensorflow {tf.__version__}, keras {keras.__version__}"
