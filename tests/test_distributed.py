"""``strategy = "multi_worker"``: two workers as two local processes on loopback ports finish and agree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import small_config_toml

CONFIG = small_config_toml(training={"epochs": 2, "strategy": "multi_worker"})


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_finish_and_agree(tmp_path: Path) -> None:
    config = tmp_path / "mw.toml"
    config.write_text(CONFIG)
    out = tmp_path / "run"
    cluster = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "",
        }
        log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "tfrec_xcat.train", "--config", str(config), "--out", str(out)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    try:
        codes = [p.wait(timeout=600) for p, _ in procs]
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs
    chief = tf.train.load_checkpoint(str(out / "model" / "weights"))
    other = tf.train.load_checkpoint(str(out / "work" / "worker-1" / "final" / "weights"))
    dtypes = chief.get_variable_to_dtype_map()
    names = [n for n, d in dtypes.items() if d.is_floating and "OPTIMIZER" not in n]
    assert len(names) > 5
    for name in names:
        np.testing.assert_allclose(chief.get_tensor(name), other.get_tensor(name), atol=1e-6, err_msg=name)
    assert json.loads((out / "metrics.json").read_text())["models"]["transfer"]["cold_start_test"]["users"] > 0
