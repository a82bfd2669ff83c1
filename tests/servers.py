"""Starting ``python -m tfrec_xcat serve`` as a subprocess on free loopback ports, for the serving tests."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch_server(
    models: Path, log: Path, extra: list[str] | tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str]:
    """Start the server (stderr appended to ``log``) and return it with its first stdout line (the addresses),
    or "" when it printed nothing within three minutes."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "tfrec_xcat", "serve", "--models", str(models), "--rest-port", "0"]
    command += ["--grpc-port", "0", "--poll-seconds", "0.5", *extra]
    with open(log, "a") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    ready = selector.select(timeout=180)
    selector.close()
    return proc, proc.stdout.readline() if ready else ""


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)
