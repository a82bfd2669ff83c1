"""TF Serving's REST API over a :class:`Registry` (stdlib HTTP server, one thread per request).

``GET /v1/models/{name}[/versions/{v}]`` (status), ``GET /v1/models/{name}[/versions/{v}]/metadata``,
``POST /v1/models/{name}[/versions/{v}]:predict`` (``instances`` or ``inputs``). Errors are ``{"error": "..."}``
with 400 (bad request), 404 (unknown model, version or path), 405, 411/413 (missing or too large body); the
server answers every request and never lets one take it down.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tfrec_xcat.serving.predict import predict_json, signature_json
from tfrec_xcat.serving.registry import BadRequest, NotFound, Registry

log = logging.getLogger(__name__)

PATH = re.compile(r"^/v1/models/([A-Za-z0-9_.-]{1,128})(?:/versions/(\d{1,18}))?(:predict|/metadata)?$")
MAX_BODY = 8 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server_version = "tfrec-xcat-serving"
    protocol_version = "HTTP/1.1"
    registry: Registry
    max_body: int = MAX_BODY

    def setup(self) -> None:
        super().setup()
        # headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm holds the body
        # until the client's delayed ACK (~40 ms) on a kept-alive connection
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        log.debug("%s - %s", self.address_string(), format % args)

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, {"error": message})

    def _route(self) -> tuple[str, int | None, str] | None:
        match = PATH.match(self.path.split("?", 1)[0])
        if not match:
            self._error(HTTPStatus.NOT_FOUND, f"Malformed request: {self.command} {self.path[:200]}")
            return None
        name, version, action = match.groups()
        return name, int(version) if version else None, action or ""

    def do_GET(self) -> None:
        try:
            route = self._route()
            if route is None:
                return
            name, version, action = route
            if action == ":predict":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "predict takes POST")
                return
            if action == "/metadata":
                servable = self.registry.get(name, version)
                self._reply(
                    HTTPStatus.OK,
                    {
                        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": {"signature_def": {"signature_def": signature_json(servable)}},
                    },
                )
                return
            versions = [version] if version is not None else self.registry.versions(name)
            if version is not None:
                self.registry.get(name, version)
            self._reply(
                HTTPStatus.OK,
                {
                    "model_version_status": [
                        {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                        for v in versions
                    ]
                },
            )
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
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
            raw = self.rfile.read(length)
            route = self._route()
            if route is None:
                return
            name, version, action = route
            if action != ":predict":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only :predict takes POST")
                return
            servable = self.registry.get(name, version)
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise BadRequest(f"JSON Parse error: {str(exc)[:200]}") from None
            self._reply(HTTPStatus.OK, predict_json(servable, body))
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception as exc:
            log.exception("POST %s failed", self.path[:200])
            self._error(HTTPStatus.BAD_REQUEST, f"cannot answer: {type(exc).__name__}")

    def do_PUT(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST")

    do_DELETE = do_PATCH = do_PUT


class RestServer(ThreadingHTTPServer):
    """A client that hangs up before reading its answer is routine for a server: no traceback for it. The
    listen backlog is sized for many concurrent clients (the default of 5 drops connections under load)."""

    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def make_rest_server(
    registry: Registry, host: str = "127.0.0.1", port: int = 8501, max_body: int = MAX_BODY
) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"registry": registry, "max_body": max_body})
    server = RestServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="rest", daemon=True)
    thread.start()
    return thread
