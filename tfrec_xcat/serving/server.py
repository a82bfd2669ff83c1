"""``tfrec-xcat serve``: REST and gRPC on one models folder, new versions picked up without a restart."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from tfrec_xcat.serving.grpc_server import make_grpc_server
from tfrec_xcat.serving.registry import Registry
from tfrec_xcat.serving.rest import MAX_BODY, make_rest_server, serve_in_thread

log = logging.getLogger(__name__)


def serve(
    models: str | Path,
    host: str = "127.0.0.1",
    rest_port: int = 8501,
    grpc_port: int = 8500,
    poll_seconds: float = 2.0,
    max_body: int = MAX_BODY,
    max_versions: int = 1,
) -> None:
    """Serve until SIGINT/SIGTERM; the newest ``max_versions`` loadable versions of each model stay loaded."""
    registry = Registry(models, poll_seconds, max_versions)
    registry.start()
    rest = make_rest_server(registry, host, rest_port, max_body)
    grpc_server = make_grpc_server(registry, host, grpc_port)
    grpc_server.start()
    serve_in_thread(rest)
    print(
        f"serving {', '.join(registry.names()) or 'nothing yet'} from {models}: "
        f"REST http://{host}:{rest.server_address[1]}, gRPC {host}:{grpc_server.bound_port}",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    rest.shutdown()
    grpc_server.stop(grace=2)
    registry.stop()
