"""TF Serving's gRPC services over a :class:`Registry`, with the protos of the ``tensorflow-serving-api`` package:
``tensorflow.serving.PredictionService`` (``Predict``, ``GetModelMetadata``) and ``tensorflow.serving.ModelService``
(``GetModelStatus``). A ``ModelSpec`` may name a version or a version label (from ``models.config``) and a
signature (default ``serving_default``).

Input tensors are checked and decoded by :func:`tfrec_xcat.serving.predict.proto_inputs` (exact dtype, rank,
declared size) before TensorFlow sees them. Errors: INVALID_ARGUMENT (a bad request, an unknown version label or
signature), RESOURCE_EXHAUSTED (over a size limit, or more concurrent calls than the server takes), NOT_FOUND,
UNAVAILABLE (a full batch queue); INTERNAL only for a bug, logged once.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from contextlib import nullcontext
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfrec_xcat.serving.batching import Batcher, Unavailable
from tfrec_xcat.serving.metrics import Metrics
from tfrec_xcat.serving.predict import TooLarge, proto_inputs, run
from tfrec_xcat.serving.registry import BadRequest, NotFound, Registry, Servable

log = logging.getLogger(__name__)

_STATES = {
    "AVAILABLE": get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    "END": get_model_status_pb2.ModelVersionStatus.END,
}
_ERROR_CODES = {"OK": 0, "UNKNOWN": 2}  # tensorflow.error.Code


def _resolve(registry: Registry, spec: Any, use_signature: bool = True) -> Servable:
    """The servable a ``ModelSpec`` names: its version or version label (none: the highest), then its signature;
    raises NotFound or BadRequest."""
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    servable = registry.get(spec.name, version, label)
    return servable.for_signature(spec.signature_name) if use_signature else servable


def _lookup(registry: Registry, spec: Any, context: grpc.ServicerContext, use_signature: bool = True) -> Servable:
    """:func:`_resolve`, its errors as NOT_FOUND or INVALID_ARGUMENT."""
    code, message = grpc.StatusCode.OK, ""
    try:
        return _resolve(registry, spec, use_signature)
    except NotFound as exc:
        code, message = grpc.StatusCode.NOT_FOUND, str(exc)
    except BadRequest as exc:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    context.abort(code, message)  # raises
    raise AssertionError("unreachable")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: Registry, metrics: Metrics | None = None, batcher: Batcher | None = None) -> None:
        self.registry = registry
        self.metrics = metrics if metrics is not None else Metrics()
        self.batcher = batcher

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        name = request.model_spec.name
        servable: Servable | None = None
        code, message = grpc.StatusCode.OK, ""
        try:
            servable = _resolve(self.registry, request.model_spec)
            with self.batcher.expecting(name) if self.batcher is not None else nullcontext():
                runner = self.batcher.run if self.batcher is not None else run
                outputs = runner(servable, proto_inputs(servable, request.inputs))
            names = list(request.output_filter) or list(outputs)
            missing = [n for n in names if n not in outputs]
            if missing:
                raise BadRequest(f"output {missing[0][:100]!r} not in the signature")
        except NotFound as exc:
            code, message = grpc.StatusCode.NOT_FOUND, str(exc)
        except TooLarge as exc:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        except BadRequest as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except Unavailable as exc:
            code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
        except Exception as exc:  # a bug, not the client's doing: one clear status, one log line
            log.exception("Predict on %s failed", name[:128])
            code, message = grpc.StatusCode.INTERNAL, f"cannot answer: {type(exc).__name__}"
        if servable is not None or name in self.registry.names():
            self.metrics.record(
                name,
                servable.version if servable is not None else None,
                servable.signature_name if servable is not None else "",
                "Predict",
                "GRPC",
                code.name,
                time.perf_counter() - started,
            )
        if code != grpc.StatusCode.OK:
            context.abort(code, message)  # outside the try: abort raises
        assert servable is not None
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.model_spec.signature_name = servable.signature_name
        for output in names:
            reply.outputs[output].CopyFrom(tf.make_tensor_proto(outputs[output]))
        return reply

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        """TF Serving's answer: the SavedModel's whole ``signature_def`` map under ``metadata["signature_def"]``."""
        message = ""
        if not request.HasField("model_spec"):
            message = "Missing ModelSpec"
        elif not request.metadata_field:
            message = "GetModelMetadataRequest must specify at least one metadata_field"
        else:
            other = [f for f in request.metadata_field if f != "signature_def"]
            if other:
                message = f"Metadata field {other[0][:100]} is not supported"
        if message:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
        servable = _lookup(self.registry, request.model_spec, context, use_signature=False)  # all signatures anyway
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in (servable.signature_defs or {}).items():
            signatures.signature_def[key].CopyFrom(signature)
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.metadata["signature_def"].Pack(signatures)
        return reply


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus`` as TF Serving answers it; ``HandleReloadConfigRequest`` is not offered (edit
    ``models.config`` instead: it is re-read at every poll)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.HasField("model_spec"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        choice = spec.WhichOneof("version_choice")
        rows: list[dict[str, Any]] = []
        code, message = grpc.StatusCode.OK, ""
        try:
            rows = self.registry.status(
                spec.name,
                spec.version.value if choice == "version" else None,
                spec.version_label if choice == "version_label" else None,
            )
        except NotFound as exc:
            code, message = grpc.StatusCode.NOT_FOUND, str(exc)
        except BadRequest as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        if code != grpc.StatusCode.OK:
            context.abort(code, message)
        reply = get_model_status_pb2.GetModelStatusResponse()
        for row in rows:
            status = reply.model_version_status.add(version=int(row["version"]), state=_STATES[row["state"]])
            status.status.error_code = _ERROR_CODES.get(row["status"]["error_code"], 2)
            status.status.error_message = row["status"]["error_message"]
        return reply


MAX_MESSAGE = 8 * 1024 * 1024  # bytes, a request or an answer
IDLE_TIMEOUT_MS = 300_000  # a connection with no call for this long is closed


def make_grpc_server(
    registry: Registry,
    host: str = "127.0.0.1",
    port: int = 8500,
    workers: int = 8,
    max_concurrent: int = 64,
    metrics: Metrics | None = None,
    batcher: Batcher | None = None,
) -> grpc.Server:
    """``workers`` threads run calls; past ``max_concurrent`` calls in flight, new ones get RESOURCE_EXHAUSTED.
    ``metrics`` is shared with the REST server (which shows it); ``batcher`` None means no batching."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_connection_idle_ms", IDLE_TIMEOUT_MS),
            ("grpc.max_concurrent_streams", max_concurrent),
        ],
        maximum_concurrent_rpcs=max_concurrent,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry, metrics, batcher), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.bound_port = bound  # type: ignore[attr-defined]
    return server
