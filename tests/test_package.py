import os
import subprocess
import sys


def test_import_sets_legacy_keras_before_tensorflow() -> None:
    code = (
        "import tfrec_xcat, os, sys; assert 'tensorflow' not in sys.modules; "
        "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'; "
        "import tensorflow as tf, tensorflow_recommenders as tfrs; "
        "assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "tfrec_xcat", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("tfrec-xcat ")
