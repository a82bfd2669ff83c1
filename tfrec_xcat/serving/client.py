"""A small client for TF Serving's REST and gRPC APIs (works against TF Serving and ``tfrec-xcat serve``)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

import numpy as np


class ServingError(RuntimeError):
    """The server answered with an error (the HTTP status or gRPC code is in ``status``)."""

    def __init__(self, status: Any, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class RestClient:
    """REST calls over one kept-alive HTTP/1.1 connection (reopened when the server closed it). Not for
    sharing between threads: give each thread its own client."""

    def __init__(self, base: str = "http://127.0.0.1:8501", timeout: float = 10.0) -> None:
        self.base = base.rstrip("/")
        url = urllib.parse.urlsplit(self.base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) server address: {base!r}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port
        self.prefix = url.path
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        connection = kind(self.host, self.port, timeout=self.timeout)
        connection.connect()
        # a request's headers and body are separate writes: no Nagle delay between them
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (0, 1):  # a kept-alive connection the server has closed is reopened once
            if self.connection is None:
                self.connection = self._connect()
            try:
                self.connection.request("POST" if data else "GET", self.prefix + path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            if response.will_close:
                self.close()
            if response.status >= 400:
                try:
                    message = json.loads(payload or b"{}").get("error", "")
                except ValueError:
                    message = payload[:200].decode("latin-1")
                raise ServingError(response.status, message)
            return json.loads(payload)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def status(self, model: str) -> Any:
        return self._call(f"/v1/models/{model}")

    def metadata(self, model: str) -> Any:
        return self._call(f"/v1/models/{model}/metadata")

    def predict(
        self,
        model: str,
        instances: list[dict[str, Any]] | None = None,
        inputs: dict[str, Any] | None = None,
        version: int | None = None,
        signature: str | None = None,
    ) -> Any:
        """``:predict`` in the row (``instances``) or columnar (``inputs``) format; ``signature``: the
        ``signature_name`` (default the model's ``serving_default``)."""
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
        body: dict[str, Any] = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature:
            body["signature_name"] = signature
        return self._call(path, body)


class GrpcClient:
    def __init__(self, target: str = "127.0.0.1:8500", timeout: float = 10.0) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.timeout = timeout

    def predict(
        self, model: str, inputs: dict[str, Any], version: int | None = None, signature: str = "serving_default"
    ) -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            reply = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ServingError(exc.code(), exc.details()) from None
        return {k: tf.make_ndarray(v) for k, v in reply.outputs.items()}

    def metadata(self, model: str) -> Any:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        return self.stub.GetModelMetadata(request, timeout=self.timeout)

    def close(self) -> None:
        self.channel.close()
