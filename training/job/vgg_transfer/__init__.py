"""VGG16 transfer learning on Dogs vs. Cats: the code that runs inside the SageMaker training job.

This package is shipped as the job's ``source_dir`` together with ``train.py``. It imports only the
standard library, numpy and TensorFlow/Keras, and runs on TF 2.11/Keras 2/Python 3.9 (the
``ml.p2.xlarge`` image) as well as on TF 2.21/Keras 3/Python 3.11 (a current workstation).
"""
