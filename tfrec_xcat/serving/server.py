"""``tfrec-xcat serve``: REST and gRPC on one models folder, new versions picked up without a restart."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from tfrec_xcat.serving.batching import Batcher, BatchingParameters, read_batching_parameters
from tfrec_xcat.serving.grpc_server import make_grpc_server
from tfrec_xcat.serving.metrics import Metrics
from tfrec_xcat.serving.registry import Registry
from tfrec_xcat.serving.rest import MAX_BODY, make_rest_server, serve_in_thread

log = logging.getLogger(__name__)


def make_batcher(
    models: str | Path, enable: bool, parameters_file: str | Path | None, metrics: Metrics
) -> Batcher | None:
    """TF Serving's ``--enable_batching``: parameters from ``parameters_file``, else from
    ``<models>/batching_parameters.txt`` when it exists, else TF Serving's defaults. None when batching is off."""
    if not enable:
        return None
    path = Path(parameters_file) if parameters_file else Path(models) / "batching_parameters.txt"
    if parameters_file or path.is_file():
        try:  # a missing or broken file named on purpose is an error
            params = read_batching_parameters(path)
        except OSError as exc:
            raise ValueError(f"cannot read batching parameters {path}: {exc.strerror or exc}") from None
        source = str(path)
    else:
        params, source = BatchingParameters(), "TF Serving's defaults"
    log.info("batching on (%s): %s", source, params)
    return Batcher(params, metrics)


def serve(
    models: str | Path,
    host: str = "127.0.0.1",
    rest_port: int = 8501,
    grpc_port: int = 8500,
    poll_seconds: float = 2.0,
    max_body: int = MAX_BODY,
    max_versions: int = 1,
    enable_batching: bool = True,
    batching_parameters_file: str | Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; the newest ``max_versions`` loadable versions of each model stay loaded (unless
    ``models.config`` sets a version policy). Batching: see :func:`make_batcher`."""
    metrics = Metrics()
    batcher = make_batcher(models, enable_batching, batching_parameters_file, metrics)
    registry = Registry(models, poll_seconds, max_versions)
    registry.start()
    rest = make_rest_server(registry, host, rest_port, max_body, metrics=metrics, batcher=batcher)
    grpc_server = make_grpc_server(registry, host, grpc_port, metrics=metrics, batcher=batcher)
    grpc_server.start()
    serve_in_thread(rest)
    print(
        f"serving {', '.join(registry.names()) or 'nothing yet'} from {models}: "
        f"REST http://{host}:{rest.server_address[1]}, gRPC {host}:{grpc_server.bound_port}"
        f" (batching {'on' if batcher else 'off'})",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    rest.shutdown()
    grpc_server.stop(grace=2)
    registry.stop()
