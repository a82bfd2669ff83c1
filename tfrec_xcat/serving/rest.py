"""TF Serving's REST API over a :class:`Registry` (stdlib HTTP server, one thread per request).

``GET /v1/models/{name}[/versions/{v}|/labels/{label}]`` (status), ``GET .../metadata``, ``POST ...:predict``
(``instances`` or ``inputs``, optional ``signature_name``), and ``GET /monitoring/prometheus/metrics``. Errors are
``{"error": "..."}`` with 400 (bad request, an unknown version label, garbage request lines included), 404
(unknown model, version or path), 405, 408 (a body that stops arriving), 411/413 (missing or too large body, or a
request over a size limit), 503 (too many open connections, or a full batch queue); the server answers every
request with a status line and never lets one take it down.

Bounded: at most ``max_connections`` connections are served at once (one thread each; more get a 503 and are
closed), a connection idle for ``idle_timeout`` seconds between reads is closed, a request must arrive whole
within ``request_timeout`` seconds of its first byte, and running out of file descriptors pauses the accept loop
instead of spinning on it.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from contextlib import nullcontext
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tfrec_xcat.serving import metrics as prometheus
from tfrec_xcat.serving.batching import Batcher, Unavailable
from tfrec_xcat.serving.metrics import Metrics
from tfrec_xcat.serving.predict import TooLarge, pick_signature, predict_json, run, signature_json
from tfrec_xcat.serving.registry import BadRequest, NotFound, Registry

log = logging.getLogger(__name__)

PATH = re.compile(
    r"^/v1/models/([A-Za-z0-9_.-]{1,128})(?:/versions/(\d{1,18})|/labels/([A-Za-z0-9_.-]{1,128}))?(:predict|/metadata)?$"
)
MAX_BODY = 8 * 1024 * 1024
MAX_CONNECTIONS = 128  # connections served at once (one thread each)
IDLE_TIMEOUT = 30.0  # seconds a connection may stay silent while the server waits to read
REQUEST_TIMEOUT = 60.0  # seconds from a request's first byte to its last (request line, headers and body)
ACCEPT_PAUSE = 0.1  # seconds the accept loop waits when the process is out of file descriptors
_sleep = time.sleep


class _DeadlineReader(io.RawIOBase):
    """The connection's reads: each waits at most ``idle`` seconds, and once a request has started (its first
    byte arrived) all of it must arrive within ``limit`` seconds, so a client trickling bytes cannot hold a
    connection for ever. :meth:`next_request` starts the clock again for the next request on the connection."""

    def __init__(self, sock: socket.socket, idle: float, limit: float) -> None:
        super().__init__()
        self.sock, self.idle, self.limit = sock, idle, limit
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self.idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the request did not arrive within {self.limit:g} s")
            timeout = min(timeout, left)
        self.sock.settimeout(timeout)
        n = self.sock.recv_into(buffer)
        if n and self.deadline is None:
            self.deadline = time.monotonic() + self.limit
        return n

    def next_request(self) -> None:
        self.deadline = None


class _Handler(BaseHTTPRequestHandler):
    server_version = "tfrec-xcat-serving"
    protocol_version = "HTTP/1.1"
    registry: Registry
    metrics: Metrics
    batcher: Batcher | None = None
    max_body: int = MAX_BODY
    timeout = IDLE_TIMEOUT  # socket timeout for every read (StreamRequestHandler applies it)
    request_timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's reader, replaced by one that also keeps the per-request deadline
        self._reader = _DeadlineReader(self.request, self.timeout, self.request_timeout)
        self.rfile = io.BufferedReader(self._reader)
        # headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm holds the body
        # until the client's delayed ACK (~40 ms) on a kept-alive connection
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        log.debug("%s - %s", self.address_string(), format % args)

    def _reply(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.connection.settimeout(self.timeout)  # writes wait the idle timeout, whatever the read deadline left
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self._reader.next_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # a bare "GET /": no headers, no status line in the answer
            self.send_error(HTTPStatus.BAD_REQUEST, "Malformed request line: HTTP/1.0 or HTTP/1.1 is required")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib raises itself (bad request line, unsupported method, headers too long) as JSON with
        a status line, like every other answer."""
        self.request_version = self.protocol_version  # the stdlib omits the status line for "HTTP/0.9"
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._reply(code, {"error": (message or phrase)[:300]})

    def _hung_up(self, exc: OSError) -> None:
        """The client went away or stopped sending: routine for a server, one debug line."""
        log.debug("%s: connection dropped: %s", self.address_string(), exc)
        self.close_connection = True

    def _error(self, status: int, message: str) -> None:
        self._reply(status, {"error": message})

    def _route(self) -> tuple[str, int | None, str | None, str] | None:
        match = PATH.match(self.path.split("?", 1)[0])
        if not match:
            self._error(HTTPStatus.NOT_FOUND, f"Malformed request: {self.command} {self.path[:200]}")
            return None
        name, version, label, action = match.groups()
        return name, int(version) if version else None, label, action or ""

    def do_GET(self) -> None:
        try:
            if self.path.split("?", 1)[0] == prometheus.PATH:
                self._reply(HTTPStatus.OK, self.metrics.render(), prometheus.CONTENT_TYPE)
                return
            route = self._route()
            if route is None:
                return
            name, version, label, action = route
            if action == ":predict":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "predict takes POST")
                return
            if action == "/metadata":
                servable = self.registry.get(name, version, label)
                self._reply(
                    HTTPStatus.OK,
                    {
                        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": {"signature_def": {"signature_def": signature_json(servable)}},
                    },
                )
                return
            self._reply(HTTPStatus.OK, {"model_version_status": self.registry.status(name, version, label)})
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (ConnectionError, TimeoutError) as exc:
            self._hung_up(exc)
        except Exception as exc:  # never a 5xx for what a client sent
            log.exception("GET %s failed", self.path[:200])
            self._error(HTTPStatus.BAD_REQUEST, f"cannot answer: {type(exc).__name__}")

    def do_POST(self) -> None:
        try:
            length_text = self.headers.get("Content-Length")
            if length_text is None or not length_text.isdigit():
                self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
                self.close_connection = True
                return
            length = int(length_text)
            if length > self.max_body:
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {self.max_body:,} bytes")
                self.close_connection = True
                return
            try:
                raw = self.rfile.read(length)
            except TimeoutError as exc:
                self.close_connection = True
                self._error(HTTPStatus.REQUEST_TIMEOUT, f"the body stopped arriving: {exc}")
                return
            if len(raw) < length:  # the client hung up mid-body
                self.close_connection = True
                return
            route = self._route()
            if route is None:
                return
            name, version, label, action = route
            if action != ":predict":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only :predict takes POST")
                return
            self._predict(name, version, label, raw)
        except (ConnectionError, TimeoutError) as exc:
            self._hung_up(exc)
        except Exception as exc:
            log.exception("POST %s failed", self.path[:200])
            self._error(HTTPStatus.BAD_REQUEST, f"cannot answer: {type(exc).__name__}")

    def _predict(self, name: str, version: int | None, label: str | None, raw: bytes) -> None:
        """Run one ``:predict`` and answer it; counted in the metrics if ``name`` is a served model."""
        started = time.perf_counter()
        servable, signature, code = None, "", "OK"
        try:
            servable = self.registry.get(name, version, label)
            with self.batcher.expecting(name) if self.batcher is not None else nullcontext():
                try:
                    body = json.loads(raw.decode("utf-8"))
                except RecursionError:
                    raise BadRequest("JSON Parse error: nested too deeply") from None
                except (UnicodeDecodeError, ValueError) as exc:
                    raise BadRequest(f"JSON Parse error: {str(exc)[:200]}") from None
                view = pick_signature(servable, body)
                signature = view.signature_name
                reply = predict_json(view, body, self.batcher.run if self.batcher is not None else run)
        except NotFound as exc:
            code, status, reply = "NOT_FOUND", HTTPStatus.NOT_FOUND, {"error": str(exc)}
        except TooLarge as exc:
            code, status, reply = "RESOURCE_EXHAUSTED", HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(exc)}
        except BadRequest as exc:
            code, status, reply = "INVALID_ARGUMENT", HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except Unavailable as exc:
            code, status, reply = "UNAVAILABLE", HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        except Exception as exc:  # a bug, not the client's doing: one clear answer, one log line
            log.exception("POST %s failed", self.path[:200])
            code, status, reply = "INTERNAL", HTTPStatus.BAD_REQUEST, {"error": f"cannot answer: {type(exc).__name__}"}
        else:
            status = HTTPStatus.OK
        if servable is not None or name in self.registry.names():
            version_seen = servable.version if servable is not None else None
            self.metrics.record(name, version_seen, signature, "Predict", "REST", code, time.perf_counter() - started)
        self._reply(status, reply)

    def do_PUT(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST")

    do_DELETE = do_PATCH = do_PUT


class RestServer(ThreadingHTTPServer):
    """At most ``max_connections`` connections at once: beyond that, a connection gets a 503 from a short-lived
    thread (at most ``max_connections`` of those too; past both, it is closed at once). A client that hangs up
    is routine: no traceback for it. Out of file descriptors, the accept loop pauses (said once) instead of
    spinning. The listen backlog is sized for many concurrent clients (the default of 5 drops connections)."""

    request_queue_size = 256
    daemon_threads = True
    block_on_close = False  # closing the server does not wait for idle keep-alive connections

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refusals = threading.BoundedSemaphore(max_connections)
        self._out_of_fds = False

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            pair = super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                if not self._out_of_fds:
                    log.warning("REST: out of file descriptors (%s); pausing new connections", exc.strerror)
                    self._out_of_fds = True
                _sleep(ACCEPT_PAUSE)
            raise
        if self._out_of_fds:
            log.warning("REST: accepting connections again")
            self._out_of_fds = False
        return pair

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._slots.release()
                raise
        elif self._refusals.acquire(blocking=False):
            try:
                threading.Thread(target=self._refuse, args=(request,), daemon=True).start()
            except BaseException:
                self._refusals.release()
                raise
        else:
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """503 and close, reading what the client sent so that closing does not reset the connection."""
        body = json.dumps({"error": f"too many open connections (over {self.max_connections}); retry later"})
        reply = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
        )
        try:
            request.settimeout(1.0)
            request.sendall(reply.encode())
            request.shutdown(socket.SHUT_WR)
            for _ in range(64):  # drain briefly (bounded) until the client closes
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            request.close()
            self._refusals.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def make_rest_server(
    registry: Registry,
    host: str = "127.0.0.1",
    port: int = 8501,
    max_body: int = MAX_BODY,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
    request_timeout: float = REQUEST_TIMEOUT,
    metrics: Metrics | None = None,
    batcher: Batcher | None = None,
) -> RestServer:
    """``metrics`` (shared with the gRPC server for one page of both) and ``batcher`` (None: no batching)."""
    attributes = {
        "registry": registry,
        "max_body": max_body,
        "timeout": idle_timeout,
        "metrics": metrics if metrics is not None else Metrics(),
        "batcher": batcher,
    }
    handler = type("Handler", (_Handler,), {**attributes, "request_timeout": request_timeout})
    return RestServer((host, port), handler, max_connections)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="rest", daemon=True)
    thread.start()
    return thread
