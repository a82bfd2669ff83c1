"""Every op of some SavedModels (their functions included), checked against the stock TensorFlow op registry in a
fresh process (no project code imported, so no custom op can be registered)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


def op_report(saved_models: list[Path]) -> dict[str, list[str]]:
    """``{"ops": every op, "unknown": the ops the stock registry does not know}`` over ``saved_models``."""
    script = textwrap.dedent(f"""
        import json
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import op_def_registry
        ops = set()
        for path in {[str(p) for p in saved_models]!r}:
            proto = saved_model_pb2.SavedModel()
            proto.ParseFromString(open(path + "/saved_model.pb", "rb").read())
            for graph in proto.meta_graphs:
                ops |= {{n.op for n in graph.graph_def.node}}
                for fn in graph.graph_def.library.function:
                    ops |= {{n.op for n in fn.node_def}}
        unknown = sorted(op for op in ops if op_def_registry.get(op) is None)
        print(json.dumps({{"ops": sorted(ops), "unknown": unknown}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
