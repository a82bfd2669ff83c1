"""tfrec-xcat: cross-category recommendation by transfer learning on TensorFlow Recommenders.

TFRS needs Keras 2, so the legacy-Keras switch is set here, before anything can import TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["__version__"]
