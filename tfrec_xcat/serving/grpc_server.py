"""TF Serving's gRPC ``tensorflow.serving.PredictionService`` (``Predict``, ``GetModelMetadata``) over a
:class:`Registry`, with the protos of the ``tensorflow-serving-api`` package.

Input tensors are checked and decoded by :func:`tfrec_xcat.serving.predict.proto_inputs` (exact dtype, rank,
declared size) before TensorFlow sees them. Errors: INVALID_ARGUMENT (a bad request), RESOURCE_EXHAUSTED (over a
size limit, or more concurrent calls than the server takes), NOT_FOUND; INTERNAL only for a bug, logged once.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from tfrec_xcat.serving.predict import TooLarge, proto_inputs, run
from tfrec_xcat.serving.registry import BadRequest, NotFound, Registry, Servable

log = logging.getLogger(__name__)


def _signature_def(servable: Servable) -> Any:
    from tensorflow.core.protobuf import meta_graph_pb2

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, spec in servable.inputs.items():
        info = sig.inputs[name]
        info.name = f"serving_default_{name}:0"
        info.dtype = spec.dtype.as_datatype_enum
        info.tensor_shape.CopyFrom(spec.shape.as_proto())
    for name, spec in servable.outputs.items():
        info = sig.outputs[name]
        info.name = name
        info.dtype = spec.dtype.as_datatype_enum
        info.tensor_shape.CopyFrom(spec.shape.as_proto())
    return sig


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _servable(self, spec: Any, context: grpc.ServicerContext) -> Servable:
        version = spec.version.value if spec.HasField("version") else None
        if spec.signature_name not in ("", "serving_default"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"signature {spec.signature_name!r} not found")
        try:
            return self.registry.get(spec.name, version)
        except NotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise  # abort raises; this is for type checkers

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        servable = self._servable(request.model_spec, context)
        code, message = grpc.StatusCode.OK, ""
        try:
            outputs = run(servable, proto_inputs(servable, request.inputs))
        except TooLarge as exc:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        except BadRequest as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except Exception as exc:  # a bug, not the client's doing: one clear status, one log line
            log.exception("Predict on %s failed", servable.name)
            code, message = grpc.StatusCode.INTERNAL, f"cannot answer: {type(exc).__name__}"
        if code != grpc.StatusCode.OK:
            context.abort(code, message)  # outside the try: abort raises
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.model_spec.signature_name = "serving_default"
        names = request.output_filter or list(outputs)
        for name in names:
            if name not in outputs:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"output {name!r} not in the signature")
            reply.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return reply

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        if list(request.metadata_field) not in ([], ["signature_def"]):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "only metadata_field 'signature_def' is supported")
        servable = self._servable(request.model_spec, context)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signatures.signature_def["serving_default"].CopyFrom(_signature_def(servable))
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.metadata["signature_def"].Pack(signatures)
        return reply


MAX_MESSAGE = 8 * 1024 * 1024  # bytes, a request or an answer
IDLE_TIMEOUT_MS = 300_000  # a connection with no call for this long is closed


def make_grpc_server(
    registry: Registry, host: str = "127.0.0.1", port: int = 8500, workers: int = 8, max_concurrent: int = 64
) -> grpc.Server:
    """``workers`` threads run calls; past ``max_concurrent`` calls in flight, new ones get RESOURCE_EXHAUSTED."""
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
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(registry), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.bound_port = bound  # type: ignore[attr-defined]
    return server
