"""``make demo``'s last step: start ``tfrec-xcat serve`` on ports of its own, ask it, stop it.

    python tools/demo_recommend.py --models saved_models -- --user new-shopper --history FOO00001 --k 10

The REST and gRPC ports are free ports picked here (never 8501/8500, where something else may listen). The
recommendation is asked only once this very server process has printed that it serves on that port, and while
it is still running; if it exits first, or does not come up in ``--timeout`` seconds, the demo fails (exit 1)
instead of asking whatever else answers. Exit status: the ``recommend`` command's, or 1.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import subprocess
import sys
import threading
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_demo(serve: list[str], recommend: list[str], host: str = "127.0.0.1", timeout: float = 180.0) -> int:
    """Start ``serve`` (+ ``--host/--rest-port/--grpc-port``), wait for its "serving ... REST http://host:port"
    line, run ``recommend`` (+ ``--server``) against that port, stop the server. Returns an exit status."""
    rest, grpc = free_port(host), free_port(host)
    while grpc == rest:
        grpc = free_port(host)
    url = f"http://{host}:{rest}"
    command = [*serve, "--host", host, "--rest-port", str(rest), "--grpc-port", str(grpc)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            print(line, end="", flush=True)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                print(f"demo: the server did not come up on {url} within {timeout:g} s", file=sys.stderr)
                return 1
            if line is None:
                print(f"demo: the server exited (status {server.wait()}) before serving on {url}", file=sys.stderr)
                return 1
            if line.startswith("serving ") and f"REST {url}" in line:
                break
        status = subprocess.call([*recommend, "--server", url])
        if server.poll() is not None:
            print(f"demo: the server on {url} stopped while being asked (status {server.returncode})", file=sys.stderr)
            return 1
        return status
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="saved_models")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the server to come up")
    parser.add_argument("recommend", nargs=argparse.REMAINDER, help="-- then tfrec-xcat recommend's arguments")
    args = parser.parse_args(argv)
    extra = args.recommend[1:] if args.recommend[:1] == ["--"] else args.recommend
    cli = [sys.executable, "-m", "tfrec_xcat"]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_demo([*cli, "serve", "--models", args.models], [*cli, "recommend", *extra], timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
