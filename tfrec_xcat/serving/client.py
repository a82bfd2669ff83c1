"""A small client for TF Serving's REST and gRPC APIs (works against TF Serving and ``tfrec-xcat serve``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np


class ServingError(RuntimeError):
    """The server answered with an error (the HTTP status or gRPC code is in ``status``)."""

    def __init__(self, status: Any, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class RestClient:
    def __init__(self, base: str = "http://127.0.0.1:8501", timeout: float = 10.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method="POST" if data else "GET", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServingError(exc.code, json.loads(exc.read() or b"{}").get("error", "")) from None

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
    ) -> Any:
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
        return self._call(path, {"instances": instances} if instances is not None else {"inputs": inputs})


class GrpcClient:
    def __init__(self, target: str = "127.0.0.1:8500", timeout: float = 10.0) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.timeout = timeout

    def predict(self, model: str, inputs: dict[str, Any], version: int | None = None) -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "serving_default"
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
