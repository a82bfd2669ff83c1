"""tfrec-xcat: cross-category recommendation by transfer learning on TensorFlow Recommenders.

Environment defaults, set here before anything can import TensorFlow:

- ``TF_USE_LEGACY_KERAS=1``: TFRS needs Keras 2.
- ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ log lines are known-harmless on the machines this runs on and
  look like errors to a user (a CPU-only machine prints "failed call to cuInit ... (303)" and "oneDNN supports
  DT_INT32 only on platforms with AVX-512" on every command). Real failures still raise Python exceptions.
  ``TFREC_XCAT_TF_LOGS=1`` leaves TensorFlow's logging as TensorFlow sets it (every C++ line back); a
  ``TF_CPP_MIN_LOG_LEVEL`` of your own is always kept. (Grappler's "PredictCost()" warning in ``score`` goes
  through absl logging before it is initialised, which this variable does not reach.)
"""

import os

TF_LOGS_VARIABLE = "TFREC_XCAT_TF_LOGS"

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ.get(TF_LOGS_VARIABLE, "").strip().lower() in ("", "0", "false", "no", "off"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

__all__ = ["__version__"]
