"""Running a request against a servable, shared by REST and gRPC: check, convert, call, and shape the reply.

Every problem with the request (missing or unexpected inputs, wrong dtype, wrong rank, ragged lists, a model
that rejects the values) is a :class:`BadRequest`, never a crash.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrec_xcat.serving.registry import BadRequest, Servable

MAX_ELEMENTS = 2_000_000  # per input tensor


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _has_bool(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: a hostile body may nest lists deeply
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def to_tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    if spec.dtype != tf.bool and _has_bool(value):  # JSON true/false is not a number or a string
        raise BadRequest(f"input '{name}' holds true/false, expected {spec.dtype.name}")
    try:
        tensor = tf.constant(value, dtype=spec.dtype) if not isinstance(value, tf.Tensor) else value
    except (TypeError, ValueError, OverflowError, tf.errors.InvalidArgumentError) as exc:
        raise BadRequest(f"input '{name}' cannot be read as {spec.dtype.name}: {first_line(exc)}") from None
    if tensor.dtype != spec.dtype:
        raise BadRequest(f"input '{name}' has dtype {tensor.dtype.name}, expected {spec.dtype.name}")
    if not spec.shape.is_compatible_with(tensor.shape):
        raise BadRequest(f"input '{name}' has shape {tensor.shape.as_list()}, expected {spec.shape}")
    if tensor.shape.num_elements() is not None and tensor.shape.num_elements() > MAX_ELEMENTS:
        raise BadRequest(f"input '{name}' has more than {MAX_ELEMENTS:,} elements")
    return tensor


def run(servable: Servable, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Call the servable's ``serving_default`` with ``inputs`` (name → nested lists, arrays or tensors)."""
    missing = sorted(set(servable.inputs) - set(inputs))
    extra = sorted(set(inputs) - set(servable.inputs))
    if missing or extra:
        raise BadRequest(
            f"inputs must be exactly {sorted(servable.inputs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    tensors = {n: to_tensor(n, v, servable.inputs[n]) for n, v in inputs.items()}
    batch = {t.shape[0] for t in tensors.values() if t.shape.rank}
    if len(batch) > 1:
        raise BadRequest(f"inputs disagree on the batch size: {sorted(batch)}")
    try:
        outputs = servable.signature(**tensors)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, ValueError, TypeError) as exc:
        raise BadRequest(f"the model rejected the request: {first_line(exc)}") from None
    return {k: v.numpy() for k, v in outputs.items()}


def jsonable(value: np.ndarray) -> Any:
    """Arrays as JSON: strings decoded as UTF-8."""
    if value.dtype == object or value.dtype.kind == "S":
        return (
            np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b), otypes=[object])(
                value
            ).tolist()
            if value.size
            else value.tolist()
        )
    return value.tolist()


def rows_to_columns(instances: Any, servable: Servable) -> dict[str, Any]:
    """TF Serving's row format: a list of objects (or of bare values for a one-input signature)."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list")
    names = list(servable.inputs)
    if all(isinstance(row, dict) for row in instances):
        keys = {frozenset(row) for row in instances}
        if len(keys) != 1:
            raise BadRequest("every instance must name the same inputs")
        return {k: [row[k] for row in instances] for k in next(iter(keys))}
    if len(names) == 1 and not any(isinstance(row, dict) for row in instances):
        return {names[0]: instances}
    raise BadRequest(f"instances must be objects with keys {names}")


def predict_json(servable: Servable, body: Any) -> dict[str, Any]:
    """A REST ``:predict`` body → the REST reply, as TF Serving shapes it."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise BadRequest(f'Serving signature name: "{signature}" not found in signature def')
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the request must have exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        outputs = run(servable, rows_to_columns(body["instances"], servable))
        n = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            return {"predictions": jsonable(next(iter(outputs.values())))}
        columns = {k: jsonable(v) for k, v in outputs.items()}
        return {"predictions": [{k: columns[k][i] for k in columns} for i in range(n)]}
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        if len(servable.inputs) != 1:
            raise BadRequest(f"'inputs' must be an object with keys {sorted(servable.inputs)}")
        inputs = {next(iter(servable.inputs)): inputs}
    outputs = run(servable, inputs)
    if len(outputs) == 1:
        return {"outputs": jsonable(next(iter(outputs.values())))}
    return {"outputs": {k: jsonable(v) for k, v in outputs.items()}}


def signature_json(servable: Servable) -> dict[str, Any]:
    """The ``serving_default`` SignatureDef as TF Serving's metadata JSON shows it."""

    def tensor_info(name: str, spec: tf.TensorSpec) -> dict[str, Any]:
        dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
        return {
            "dtype": f"DT_{spec.dtype.name.upper()}",
            "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": name,
        }

    return {
        "serving_default": {
            "inputs": {n: tensor_info(f"serving_default_{n}:0", s) for n, s in servable.inputs.items()},
            "outputs": {n: tensor_info(n, s) for n, s in servable.outputs.items()},
            "method_name": "tensorflow/serving/predict",
        }
    }
