"""Loading an exported SavedModel for serving or batch scoring, the same way everywhere.

Grappler's graph rewrites are turned off in the loading process: on these graphs its cost model prints a
~900-character "Error in PredictCost()" warning per model (the softmax of the attention pooling has no static rank
inside the saved functions), which a user cannot tell from a real error, and measured no latency gain here
(batch-1 p50 0.53 ms with it, 0.51 ms without, on the demo model). ``TFREC_XCAT_GRAPPLER=1`` turns it back on.
"""

from __future__ import annotations

import os
from typing import Any


def load_saved_model(path: str) -> Any:
    """``tf.saved_model.load(path)`` with the loading process's graph optimizer settings applied."""
    import tensorflow as tf

    if os.environ.get("TFREC_XCAT_GRAPPLER", "0") != "1":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    return tf.saved_model.load(path)
