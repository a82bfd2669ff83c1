"""Running a request against a servable, shared by REST and gRPC: check, convert, call, and shape the reply.

Every request is checked against the ``serving_default`` signature *before* TensorFlow sees any of it: input
names, dtype (exactly the signature's), rank, the shape a gRPC tensor declares, the number of elements, the
batch size, and what the answer would cost (rows × ``k``). A JSON value is walked without recursion, so no
nesting depth can reach TensorFlow; a gRPC tensor is decoded here, from the count its shape declares, never by
TensorFlow's ``make_ndarray``. Problems are a :class:`BadRequest` (HTTP 400, gRPC INVALID_ARGUMENT) or, for the
size limits, a :class:`TooLarge` (HTTP 413, gRPC RESOURCE_EXHAUSTED); never a crash.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrec_xcat.serving.registry import BadRequest, Servable

MAX_ELEMENTS = 2_000_000  # per input tensor, as declared (a gRPC shape counts, not the values sent)
MAX_BATCH = 10_000  # rows per request
MAX_OUTPUT_ELEMENTS = 1_000_000  # per output tensor (rows × k for retrieval)
MAX_K = 1_000  # an integer input named ``k`` (how many items per row)
MAX_RANK = 8  # for a signature input of unknown rank


class TooLarge(BadRequest):
    """A request over one of the size limits (HTTP 413, gRPC RESOURCE_EXHAUSTED)."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _shape_text(spec: tf.TensorSpec) -> str:
    if spec.shape.rank is None:
        return "any shape"
    return "[" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + "]"


def _check_shape(name: str, shape: list[int], spec: tf.TensorSpec) -> None:
    """Rank, static dims and the element count of a shape that was declared or measured, not yet built."""
    rank = spec.shape.rank
    if rank is not None and len(shape) != rank:
        raise BadRequest(f"input '{name}' has rank {len(shape)}, expected rank {rank} (shape {_shape_text(spec)})")
    if rank is None and len(shape) > MAX_RANK:
        raise BadRequest(f"input '{name}' has rank {len(shape)}, more than {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise BadRequest(f"input '{name}' declares a negative dimension: {shape}")
    if rank is not None:
        for got, want in zip(shape, spec.shape.as_list(), strict=True):
            if want is not None and got != want:
                raise BadRequest(f"input '{name}' has shape {shape}, expected {_shape_text(spec)}")
    if math.prod(shape) > MAX_ELEMENTS:
        raise TooLarge(f"input '{name}' has more than {MAX_ELEMENTS:,} elements (shape {shape[:10]})")


# ------------------------------------------------------------------------------------------------- JSON (REST)


def _json_shape(name: str, value: Any, spec: tf.TensorSpec) -> list[int]:
    """The shape the first element of every level implies; deeper than the signature's rank is an error at once."""
    limit = spec.shape.rank if spec.shape.rank is not None else MAX_RANK
    shape: list[int] = []
    node = value
    while isinstance(node, list):
        if len(shape) == limit:
            raise BadRequest(f"input '{name}' is nested deeper than its rank {limit} (shape {_shape_text(spec)})")
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return shape


def _json_leaves(name: str, value: Any, shape: list[int]) -> list[Any]:
    """Every element in row-major order, level by level (no recursion); ragged or deeper lists are errors."""
    level = [value]
    for depth, size in enumerate(shape):
        below: list[Any] = []
        for node in level:
            if not isinstance(node, list) or len(node) != size:
                raise BadRequest(f"input '{name}' is ragged: every list at depth {depth + 1} must have {size} items")
            below.extend(node)
        level = below
    if any(isinstance(leaf, list) for leaf in level):
        raise BadRequest(f"input '{name}' is ragged: lists and values mixed at depth {len(shape) + 1}")
    return level


def _kind(leaf: Any) -> str:
    return "true/false" if isinstance(leaf, bool) else "null" if leaf is None else type(leaf).__name__


def _string_leaf(name: str, leaf: Any) -> bytes:
    if isinstance(leaf, str):
        try:
            return leaf.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
            raise BadRequest(f"input '{name}' holds a string that is not valid Unicode") from None
    if isinstance(leaf, dict) and set(leaf) == {"b64"} and isinstance(leaf["b64"], str):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"input '{name}' holds a 'b64' value that is not base64") from None
    raise BadRequest(f"input '{name}' holds {_kind(leaf)}, expected a string (or {{\"b64\": ...}})")


def _json_array(name: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
    shape = _json_shape(name, value, spec)
    _check_shape(name, shape, spec)
    leaves = _json_leaves(name, value, shape)
    dtype = spec.dtype
    if dtype == tf.string:
        return np.array([_string_leaf(name, x) for x in leaves] or [], dtype=object).reshape(shape)
    if dtype == tf.bool:
        if not all(isinstance(x, bool) for x in leaves):
            bad = next(x for x in leaves if not isinstance(x, bool))
            raise BadRequest(f"input '{name}' holds {_kind(bad)}, expected true/false")
        return np.array(leaves, dtype=bool).reshape(shape)
    if dtype.is_integer:
        info = np.iinfo(dtype.as_numpy_dtype)
        for x in leaves:
            if isinstance(x, bool) or not isinstance(x, int):
                raise BadRequest(f"input '{name}' holds {_kind(x)} {str(x)[:20]}, expected an integer ({dtype.name})")
            if not info.min <= x <= info.max:
                raise BadRequest(f"input '{name}' holds {str(x)[:30]}, out of the {dtype.name} range")
        return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)
    if dtype.is_floating:
        for x in leaves:
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise BadRequest(f"input '{name}' holds {_kind(x)}, expected a number ({dtype.name})")
        try:
            return np.array(leaves, dtype=dtype.as_numpy_dtype).reshape(shape)
        except OverflowError:
            raise BadRequest(f"input '{name}' holds a number out of the {dtype.name} range") from None
    raise BadRequest(f"input '{name}' has dtype {dtype.name}, which a JSON request cannot carry")


# ----------------------------------------------------------------------------------------------- gRPC tensors

# the TensorProto field that carries each dtype's values (tensor_content carries any of them as raw bytes)
_FIELDS = {
    tf.string: "string_val",
    tf.bool: "bool_val",
    tf.int8: "int_val",
    tf.int16: "int_val",
    tf.int32: "int_val",
    tf.uint8: "int_val",
    tf.uint16: "int_val",
    tf.int64: "int64_val",
    tf.uint32: "uint32_val",
    tf.uint64: "uint64_val",
    tf.float32: "float_val",
    tf.float64: "double_val",
}
_VALUE_FIELDS = (
    "string_val",
    "bool_val",
    "int_val",
    "int64_val",
    "uint32_val",
    "uint64_val",
    "float_val",
    "double_val",
    "half_val",
    "scomplex_val",
    "dcomplex_val",
    "resource_handle_val",
    "variant_val",
    "tensor_content",
)


def _dtype_name(enum: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"unknown dtype {enum}"


def proto_array(name: str, proto: Any, spec: tf.TensorSpec) -> np.ndarray:
    """A ``TensorProto`` → ndarray, with dtype, rank, declared shape and value count checked first."""
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise BadRequest(f"input '{name}' has dtype {_dtype_name(proto.dtype)}, expected DT_{spec.dtype.name.upper()}")
    if proto.tensor_shape.unknown_rank:
        raise BadRequest(f"input '{name}' has an unknown rank, expected shape {_shape_text(spec)}")
    shape = [d.size for d in proto.tensor_shape.dim]
    _check_shape(name, shape, spec)
    n = math.prod(shape)
    field = _FIELDS.get(spec.dtype)
    if field is None:
        raise BadRequest(f"input '{name}' has dtype {_dtype_name(proto.dtype)}, which this server cannot read")
    used = [f for f in _VALUE_FIELDS if len(getattr(proto, f))]
    others = [f for f in used if f not in (field, "tensor_content")]
    if others or len(used) > 1:
        raise BadRequest(f"input '{name}' holds values in {used}, expected only {field} or tensor_content")
    np_dtype = spec.dtype.as_numpy_dtype
    if proto.tensor_content:
        if spec.dtype == tf.string:
            raise BadRequest(f"input '{name}': a string tensor cannot use tensor_content")
        expected = n * np.dtype(np_dtype).itemsize
        if len(proto.tensor_content) != expected:
            raise BadRequest(
                f"input '{name}' has {len(proto.tensor_content)} bytes of tensor_content, "
                f"expected {expected} for shape {shape}"
            )
        return (
            np.frombuffer(proto.tensor_content, dtype=np.dtype(np_dtype).newbyteorder("<"))
            .astype(np_dtype)
            .reshape(shape)
        )
    values = getattr(proto, field)
    count = len(values)
    if count != n and not (count == 1 and n > 1):  # one value fills the declared shape (bounded by MAX_ELEMENTS)
        raise BadRequest(f"input '{name}' holds {count} values, expected {n} for shape {shape}")
    if spec.dtype == tf.string:
        flat = np.empty(n, dtype=object)
        flat[:] = list(values) if count == n else [values[0]] * n
        return flat.reshape(shape)
    if spec.dtype.is_integer:
        info = np.iinfo(np_dtype)
        if count and (min(values) < info.min or max(values) > info.max):
            raise BadRequest(f"input '{name}' holds values out of the {spec.dtype.name} range")
    array = np.array(list(values), dtype=np_dtype)
    return (array if count == n else np.full(n, array[0], dtype=np_dtype)).reshape(shape)


# ---------------------------------------------------------------------------------------------------- running


def check_names(servable: Servable, names: Any) -> None:
    names = set(names)
    missing = sorted(set(servable.inputs) - names)
    extra = sorted(str(n)[:60] for n in names - set(servable.inputs))
    if missing or extra:
        raise BadRequest(
            f"inputs must be exactly {sorted(servable.inputs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra[:5]}" if extra else "")
        )


def _check_cost(servable: Servable, arrays: dict[str, np.ndarray]) -> None:
    """Batch size, and rows × k (what a retrieval answer costs) before the model runs."""
    batch = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batch) > 1:
        raise BadRequest(f"inputs disagree on the batch size: {sorted(batch)}")
    rows = batch.pop() if batch else 1
    if rows > MAX_BATCH:
        raise TooLarge(f"{rows:,} rows in one request, more than {MAX_BATCH:,}; send smaller batches")
    k = arrays.get("k")
    if k is not None and k.dtype.kind in "iu" and k.size:
        low, high = int(k.min()), int(k.max())
        if low < 1 or high > MAX_K:
            raise BadRequest(f"input 'k' must be between 1 and {MAX_K:,} (got {low if low < 1 else high})")
        if rows * high > MAX_OUTPUT_ELEMENTS:
            raise TooLarge(
                f"{rows:,} rows × k={high} is more than {MAX_OUTPUT_ELEMENTS:,} items in the answer; "
                "ask for fewer rows or a smaller 'k'"
            )


def check(servable: Servable, arrays: dict[str, np.ndarray]) -> None:
    """Everything about a request that can be checked before the model runs."""
    check_names(servable, arrays)
    _check_cost(servable, arrays)


def call(servable: Servable, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The signature on checked arrays (one request's, or a batch of them); what the model rejects is a BadRequest."""
    try:
        tensors = {n: tf.constant(a, dtype=servable.inputs[n].dtype) for n, a in arrays.items()}
        outputs = servable.signature(**tensors)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, ValueError, TypeError) as exc:
        raise BadRequest(f"the model rejected the request: {first_line(exc)}") from None
    return {k: v.numpy() for k, v in outputs.items()}


def check_outputs(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, value in result.items():
        if value.size > MAX_OUTPUT_ELEMENTS:
            raise TooLarge(
                f"output '{name}' has {value.size:,} elements, more than {MAX_OUTPUT_ELEMENTS:,}; send smaller batches"
            )
    return result


def run(servable: Servable, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call the servable's signature with arrays checked by :func:`json_inputs` or :func:`proto_inputs`."""
    check(servable, arrays)
    return check_outputs(call(servable, arrays))


Runner = Callable[[Servable, dict[str, np.ndarray]], dict[str, np.ndarray]]


def pick_signature(servable: Servable, body: Any) -> Servable:
    """The signature a REST body names (``signature_name``; default ``serving_default``)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    signature = body.get("signature_name", "")
    if not isinstance(signature, str):
        raise BadRequest("'signature_name' key must be a string value.")
    return servable.for_signature(signature)


def json_inputs(servable: Servable, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    check_names(servable, inputs)
    return {n: _json_array(n, v, servable.inputs[n]) for n, v in inputs.items()}


def proto_inputs(servable: Servable, inputs: Any) -> dict[str, np.ndarray]:
    """``PredictRequest.inputs`` → checked arrays."""
    check_names(servable, list(inputs))
    return {n: proto_array(n, p, servable.inputs[n]) for n, p in inputs.items()}


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
    if len(instances) > MAX_BATCH:
        raise TooLarge(f"{len(instances):,} rows in one request, more than {MAX_BATCH:,}; send smaller batches")
    names = list(servable.inputs)
    if all(isinstance(row, dict) for row in instances):
        keys = {frozenset(row) for row in instances}
        if len(keys) != 1:
            raise BadRequest("every instance must name the same inputs")
        return {k: [row[k] for row in instances] for k in next(iter(keys))}
    if len(names) == 1 and not any(isinstance(row, dict) for row in instances):
        return {names[0]: instances}
    raise BadRequest(f"instances must be objects with keys {names}")


def predict_json(servable: Servable, body: Any, runner: Runner = run) -> dict[str, Any]:
    """A REST ``:predict`` body → the REST reply, as TF Serving shapes it (the signature is the one the body
    names; ``runner`` is :func:`run` or a batcher's)."""
    servable = pick_signature(servable, body)
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the request must have exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        outputs = runner(servable, json_inputs(servable, rows_to_columns(body["instances"], servable)))
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
    outputs = runner(servable, json_inputs(servable, inputs))
    if len(outputs) == 1:
        return {"outputs": jsonable(next(iter(outputs.values())))}
    return {"outputs": {k: jsonable(v) for k, v in outputs.items()}}


def signature_json(servable: Servable) -> dict[str, Any]:
    """The SavedModel's ``signature_def`` map as TF Serving's metadata JSON shows it (every signature, with the
    graph's tensor names)."""
    from google.protobuf import json_format

    defs = servable.signature_defs
    if defs is None:
        return {}
    return {
        key: json_format.MessageToDict(
            defs[key], preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for key in sorted(defs)
    }
