"""The quantized network: layer records and the versioned ``.tern`` file.

A network is a chain of layers over int8 activations stored channel-major (C, H, W):

* :class:`TernaryLayer` -- a Linear or Conv2d layer mapped to a matrix-vector product with
  (N, K)-coded ternary weights, an integer bias and per-channel requantization;
* :class:`PoolLayer` -- max or average pooling on int8 activations (padding, ceil_mode);
* :class:`ReluLayer` -- a ReLU that could not be fused into the preceding ternary layer;
* :class:`FlattenLayer` -- (C, H, W) to a vector, C-major as ``torch.flatten`` does.

A network with several outputs (e.g. a classifier head and a box-regression head on one
trunk) keeps the shared chain in ``layers`` and one further chain per output in ``heads``;
every head reads the trunk's output.

``.tern`` file layout (all little-endian), see ``docs/format.md``::

    magic "TERNAC\\n\\0" | u32 version | u32 header length | header (UTF-8 JSON) | payload

The header lists the layers and, for every array, its dtype, shape, offset and size in the
payload, plus the payload's length and CRC-32, so truncation and corruption are detected.
Every record is written and read through the field tables of :mod:`.schema` (the one
definition of the format); loading checks each field's type and each array's dtype and shape.
"""

import copy
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import schema
from .arith import acc_bits
from .codebook import Codebook, Coding, TernacError
from .schema import FORMAT_VERSION

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ConvGeometry",
    "FlattenLayer",
    "Network",
    "PoolLayer",
    "ReluLayer",
    "TernaryLayer",
    "check_input_shape",
    "file_sha256",
    "layer_kind",
    "load_network",
    "pool_output_size",
    "save_network",
]

MAGIC = b"TERNAC\n\0"
_HEAD = struct.Struct("<8sII")


@dataclass(frozen=True)
class ConvGeometry:
    """A Conv2d layer's geometry and the column order of its coded weights.

    With ``padded_channels`` (Cp, a multiple of N) the columns run ``(ky, kx, c)`` over the
    zero-padded channels (``model/layout.py``), the order the accelerator reads; with
    ``packed_row`` (N) as well, ``(ky, [kx, c])`` with each kernel row's ``kw * C`` columns
    zero-padded to N (packed rows). Without ``padded_channels`` (files of format version 1)
    they run ``(c, ky, kx)``, which only the golden model runs.
    """

    in_channels: int
    in_h: int
    in_w: int
    kernel: tuple
    stride: tuple
    padding: tuple
    padded_channels: int | None = None
    packed_row: int | None = None

    @property
    def out_h(self):
        return (self.in_h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self):
        return (self.in_w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1

    @property
    def fan_in(self):
        """Columns of the coded weight matrix (padding columns included)."""
        if self.packed_row:
            return self.kernel[0] * self.packed_row
        return (self.padded_channels or self.in_channels) * self.kernel[0] * self.kernel[1]


@dataclass(eq=False)
class TernaryLayer:
    """A matrix-vector layer with (N, K)-coded ternary weights.

    ``acc[o] = sum_i W[o, i] * x[i] + bias[o]`` with ``W = codebook.decode(codes)`` (first
    ``in_features`` columns), then ``requantize(acc, mult, shift, relu)`` per channel. The
    real-valued weight is ``scale[o] * W[o, i]``; ``in_scale``/``out_scale`` are the real
    values of one int8 step of the input and output activations.
    """

    name: str
    in_features: int
    out_features: int
    codebook: Codebook
    codes: np.ndarray                       # (out_features, subvectors) uint16
    scale: np.ndarray                       # (out_features,) float64, weight scale alpha
    bias: np.ndarray                        # (out_features,) int64, accumulator units
    mult: np.ndarray                        # (out_features,) int64
    shift: np.ndarray                       # (out_features,) int64
    relu: bool
    in_scale: float
    out_scale: float
    conv: ConvGeometry | None = None
    # PReLU / LeakyReLU: requantization of a negative accumulator (arith.requantize);
    # None for a ReLU or no activation
    neg_mult: np.ndarray | None = None      # (out_features,) int64, signed
    neg_shift: np.ndarray | None = None     # (out_features,) int64

    kind = "ternary"

    def __post_init__(self):
        expect = (self.out_features, self.subvectors)
        if self.codes.shape != expect:
            raise TernacError(f"layer {self.name}: codes have shape {self.codes.shape}, expected {expect}")
        if self.codes.size and int(self.codes.max()) >= len(self.codebook):
            raise TernacError(f"layer {self.name}: code {int(self.codes.max())} is past the end of its "
                              f"{len(self.codebook)}-entry codebook")
        if self.conv is not None and self.conv.fan_in != self.in_features:
            raise TernacError(f"layer {self.name}: conv fan-in {self.conv.fan_in} != in_features {self.in_features}")

    @property
    def coding(self) -> Coding:
        return self.codebook.coding

    @property
    def subvectors(self):
        """Sub-vectors per output row, ``ceil(in_features / N)`` (the last one zero-padded)."""
        return -(-self.in_features // self.coding.n)

    @property
    def acc_bits(self):
        return acc_bits(self.in_features, self.coding)

    def weights(self):
        """The ternary weight matrix, int8 (out_features, in_features)."""
        dense = self.codebook.decode(self.codes).reshape(self.out_features, -1)
        return dense[:, : self.in_features]

    def in_shape(self):
        c = self.conv
        return (self.in_features,) if c is None else (c.in_channels, c.in_h, c.in_w)

    def out_shape(self):
        c = self.conv
        return (self.out_features,) if c is None else (self.out_features, c.out_h, c.out_w)

    def positions(self):
        """Matrix-vector products per inference: 1 for Linear, out_h * out_w for Conv2d."""
        return 1 if self.conv is None else self.conv.out_h * self.conv.out_w


def pool_output_size(size, kernel, stride, padding=0, ceil_mode=False):
    """Output length of a pooling window along one axis, PyTorch's rule.

    ``ceil_mode`` rounds the window count up, but the last window must start inside the
    input or its left padding.
    """
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@dataclass(eq=False)
class PoolLayer:
    """Max or average pooling over (C, H, W) int8 activations, PyTorch's window geometry.

    Max pooling pads with -128 (never above a real value, so padding is ignored). Average
    pooling rounds half up, ``floor((sum + count // 2) / count)``, with PyTorch's count: for
    ``count_include_pad`` (the default) the window clipped to the padded input (padding zeros
    count, a ``ceil_mode`` overhang past the padding does not), otherwise the window clipped
    to the input.
    """

    name: str
    mode: str                               # "max" or "avg"
    channels: int
    in_h: int
    in_w: int
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True          # avg only

    kind = "pool"

    def in_shape(self):
        return (self.channels, self.in_h, self.in_w)

    def out_shape(self):
        return (self.channels,
                pool_output_size(self.in_h, self.kernel[0], self.stride[0], self.padding[0], self.ceil_mode),
                pool_output_size(self.in_w, self.kernel[1], self.stride[1], self.padding[1], self.ceil_mode))


@dataclass(eq=False)
class ReluLayer:
    name: str
    shape: tuple
    kind = "relu"

    def in_shape(self):
        return tuple(self.shape)

    out_shape = in_shape


@dataclass(eq=False)
class FlattenLayer:
    name: str
    shape: tuple
    kind = "flatten"

    def in_shape(self):
        return tuple(self.shape)

    def out_shape(self):
        return (int(np.prod(self.shape)),)


def layer_kind(layer):
    """What a person calls the layer: linear, conv2d, max, avg, relu, flatten."""
    if isinstance(layer, TernaryLayer):
        return "conv2d" if layer.conv else "linear"
    return getattr(layer, "mode", None) or layer.kind


@dataclass(eq=False)
class Network:
    """A quantized network: input geometry and scale, the layer chain, and metadata.

    ``lanes`` is the hardware geometry the network was packed for (output neurons computed
    in parallel); ``meta`` holds provenance (source model, data set, accuracies). ``heads``:
    for a network with several outputs, one layer chain per output, each fed by the output of
    ``layers`` (the trunk); empty for a single-output network.
    """

    input_shape: tuple
    input_scale: float
    layers: list
    lanes: int = 8
    meta: dict = field(default_factory=dict)
    heads: list = field(default_factory=list)

    def __post_init__(self):
        trunk = self._check_chain(self.layers, tuple(self.input_shape))
        for head in self.heads:
            self._check_chain(head, trunk)
        if self.lanes < 1:
            raise TernacError(f"lanes must be at least 1, got {self.lanes}")

    @staticmethod
    def _check_chain(layers, shape):
        for layer in layers:
            if tuple(layer.in_shape()) != shape and int(np.prod(layer.in_shape())) != int(np.prod(shape)):
                raise TernacError(f"layer {layer.name} expects input {layer.in_shape()}, gets {shape}")
            shape = tuple(layer.out_shape())
        return shape

    @property
    def all_layers(self):
        """Trunk layers, then every head's layers in order."""
        return list(self.layers) + [layer for head in self.heads for layer in head]

    @property
    def ternary_layers(self):
        return [layer for layer in self.all_layers if isinstance(layer, TernaryLayer)]

    @property
    def coding(self) -> Coding:
        codings = {layer.coding for layer in self.ternary_layers}
        if len(codings) != 1:
            raise TernacError(f"network mixes codings {sorted(map(str, codings))}; one coding expected")
        return codings.pop()

    @property
    def output_shape(self):
        if self.heads:
            raise TernacError(f"the network has {len(self.heads)} outputs: use output_shapes")
        return self.output_shapes[0]

    @property
    def output_shapes(self):
        """Shape of every output: one per head, or the trunk's."""
        trunk = tuple(self.layers[-1].out_shape()) if self.layers else tuple(self.input_shape)
        return [tuple(head[-1].out_shape()) if head else trunk for head in self.heads] or [trunk]

    @property
    def weight_count(self):
        return sum(layer.in_features * layer.out_features for layer in self.ternary_layers)


def check_input_shape(expects, gives, source):
    """Raise :class:`TernacError` unless samples of shape ``gives`` fit a network's input.

    Samples are reshaped to the network's input shape, so equal sizes fit (a 1x8x8 image feeds
    a 64-input MLP). ``None`` in ``expects`` is a size the network does not fix (a Conv2d's
    height and width when no Linear layer pins them). ``source`` names the samples' origin.
    """
    expects, gives = tuple(expects), tuple(gives)
    if None in expects:
        fits = len(expects) == len(gives) and all(e is None or e == g for e, g in zip(expects, gives))
    else:
        fits = int(np.prod(expects)) == int(np.prod(gives))
    if not fits:
        names = "CHW" if len(expects) == 3 else "?" * len(expects)
        text = "x".join(names[i] if e is None else str(e) for i, e in enumerate(expects))
        raise TernacError(f"the network expects {text}, {source} gives {'x'.join(map(str, gives))}")


# ---------------------------------------------------------------------------------------------
# .tern file: records written and read through the tables of schema.py

_CLASSES = {"ternary": TernaryLayer, "pool": PoolLayer, "relu": ReluLayer, "flatten": FlattenLayer,
            "conv": ConvGeometry}
_NUMBERS = {"int": int, "float": float, "bool": bool, "str": str}


def _fields_of(kind, obj):
    """The values of ``obj``'s schema fields (a codebook is stored as its coding and patterns)."""
    if kind == "codebook":
        return {"n": obj.coding.n, "k": obj.coding.k, "patterns": obj.patterns if obj.learned else None}
    return {f.name: getattr(obj, f.name) for f in _table(kind)}


def _build(kind, values, where):
    try:
        if kind == "codebook":
            coding = Coding(values["n"], values["k"])
            if values["patterns"] is None:
                return Codebook.default(coding)
            return Codebook.learned_table(coding, values["patterns"])
        return _CLASSES[kind](**values)
    except TernacError as error:
        raise TernacError(f"{where}: {error}") from None


def _table(kind):
    return schema.LAYERS.get(kind) or schema.RECORDS[kind]


def _encode(fields, values, arrays, prefix):
    """JSON-able record of ``values``; its arrays go to ``arrays`` under unique names."""
    record = {}
    for f in fields:
        value = values[f.name]
        if value is None:
            record[f.name] = None
        elif f.is_array:
            array = np.asarray(value)
            stored = array.astype(f.type)
            if not np.array_equal(stored, array):
                raise TernacError(f"{prefix}{f.name}: values do not fit {f.type}")
            key = f"{len(arrays)}:{prefix}{f.name}"
            arrays[key] = stored
            record[f.name] = {"array": key}
        elif f.type in schema.RECORDS:
            record[f.name] = _encode(schema.RECORDS[f.type], _fields_of(f.type, value), arrays,
                                     f"{prefix}{f.name}.")
        elif f.type in _NUMBERS:
            record[f.name] = _NUMBERS[f.type](value)
        elif f.type in ("int[]", "int[2]"):
            record[f.name] = [int(v) for v in value]
        else:
            record[f.name] = value
    return record


def save_network(network, path):
    """Write ``network`` to ``path`` in the ``.tern`` format (``docs/format.md``)."""
    arrays = {}

    def records(chain, prefix):
        return [{"kind": layer.kind, **_encode(_table(layer.kind), _fields_of(layer.kind, layer), arrays,
                                               f"{prefix}{layer.name}.")}
                for layer in chain]

    layers = records(network.layers, "")
    heads = [records(head, f"head{i}/") for i, head in enumerate(network.heads)]
    header = _encode(schema.NETWORK, {f.name: getattr(network, f.name) for f in schema.NETWORK}, arrays, "")
    payload, index = bytearray(), {}
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        index[key] = {"dtype": array.dtype.str, "shape": list(array.shape),
                      "offset": len(payload), "nbytes": array.nbytes}
        payload += array.tobytes()
    header.update(layers=layers, arrays=index, payload_bytes=len(payload), payload_crc32=zlib.crc32(payload))
    if heads:
        header["heads"] = heads
    blob = json.dumps(header, default=_json_default).encode()
    with open(path, "wb") as f:
        f.write(_HEAD.pack(MAGIC, FORMAT_VERSION, len(blob)))
        f.write(blob)
        f.write(payload)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a .tern header")


def file_sha256(path):
    """Hex SHA-256 of a network file: ties a result (``ternac sim --json``) to the file it ran."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def load_network(path):
    """Read a ``.tern`` file; a truncated, corrupted, foreign or malformed file raises
    :class:`TernacError` naming the problem (and the layer and field, for a bad record)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise TernacError(f"cannot read network file {path}: {error.strerror}") from None
    if len(data) < _HEAD.size or data[:8] != MAGIC:
        raise TernacError(f"{path} is not a ternac network file (no 'TERNAC' magic at the start)")
    _, version, header_len = _HEAD.unpack_from(data)
    readable = schema.readable_versions()
    if version not in readable:
        raise TernacError(f"{path} is a version {version} .tern file; this ternac reads versions "
                          f"{', '.join(map(str, readable))}"
                          + (" (it was written by a newer ternac)" if version > FORMAT_VERSION else ""))
    start = _HEAD.size + header_len
    if len(data) < start:
        raise TernacError(f"{path} is truncated: header needs {start} bytes, file has {len(data)}")
    try:
        header = json.loads(data[_HEAD.size:start])
    except ValueError as error:
        raise TernacError(f"{path}: malformed header ({error})") from None
    if not isinstance(header, dict):
        raise TernacError(f"{path}: malformed header (not a JSON object)")
    payload = data[start:]
    if len(payload) != header.get("payload_bytes"):
        raise TernacError(f"{path} is truncated: payload should be {header.get('payload_bytes')} bytes, "
                          f"file has {len(payload)}")
    if zlib.crc32(payload) != header.get("payload_crc32"):
        raise TernacError(f"{path} is corrupted: payload CRC-32 does not match the header")
    try:
        return _Reader(schema.upgrade(header, version), payload).network()
    except TernacError as error:
        raise TernacError(f"{path}: {error}") from None


class _Reader:
    """Checks every record of a header against the schema and builds the objects."""

    def __init__(self, header, payload):
        self.header, self.payload = header, payload
        self.index = header.get("arrays")
        if not isinstance(self.index, dict):
            raise TernacError("malformed header: no array index")

    def network(self):
        values = self.record(self.header, schema.NETWORK, "header", extra=_CONTAINER)
        heads = self.header.get("heads", [])
        if not isinstance(heads, list):
            raise TernacError("malformed header: 'heads' is not a list")
        layers = self.chain(self.header.get("layers"), "layers", "layer")
        heads = [self.chain(head, f"heads[{h}]", f"head {h} layer") for h, head in enumerate(heads)]
        try:
            return Network(layers=layers, heads=heads, **values)
        except TernacError as error:
            raise TernacError(f"header: {error}") from None

    def chain(self, records, what, label):
        if not isinstance(records, list):
            raise TernacError(f"malformed header: '{what}' is not a list")
        layers = []
        for i, record in enumerate(records):
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind not in schema.LAYERS:
                raise TernacError(f"{label} {i}: unknown layer kind {kind!r} "
                                  f"(this ternac knows {', '.join(schema.LAYERS)})")
            name = record.get("name")
            where = f"{label} {name}" if isinstance(name, str) else f"{label} {i}"
            layers.append(_build(kind, self.record(record, schema.LAYERS[kind], where, extra=("kind",)), where))
        return layers

    def record(self, record, fields, where, extra=()):
        if not isinstance(record, dict):
            raise TernacError(f"{where}: expected a JSON object, found {type(record).__name__}")
        unknown = sorted(set(record) - {f.name for f in fields} - set(extra))
        if unknown:
            raise TernacError(f"{where}: unknown field {', '.join(unknown)}")
        values = {}
        for f in sorted(fields, key=lambda f: f.is_array):      # array shapes refer to the scalars
            if f.name not in record:
                if not f.optional:
                    raise TernacError(f"{where}, field {f.name}: missing")
                values[f.name] = copy.deepcopy(f.default)
            elif record[f.name] is None and f.optional and f.default is None:
                values[f.name] = None
            elif f.is_array:
                values[f.name] = self.array(record, f, where)
            elif f.type in schema.RECORDS:
                inner = self.record(record[f.name], schema.RECORDS[f.type], f"{where}, field {f.name}")
                values[f.name] = _build(f.type, inner, f"{where}, field {f.name}")
            else:
                values[f.name] = _scalar(record[f.name], f, where)
        return values

    def array(self, record, f, where):
        ref = record[f.name]
        spec = self.index.get(ref.get("array")) if isinstance(ref, dict) else None
        if not isinstance(spec, dict):
            raise TernacError(f"{where}, field {f.name}: expected an array reference, found {ref!r}")
        expect = [_size(rule, record) for rule in f.shape]
        dtype, shape = spec.get("dtype"), spec.get("shape")
        expect_text = f"{f.type} {schema.shape_text(['*' if n is None else n for n in expect])}"
        found_text = f"{_dtype_name(dtype)} {tuple(shape) if isinstance(shape, list) else shape!r}"
        if (dtype != np.dtype(f.type).str or not isinstance(shape, list) or len(shape) != len(expect)
                or any(n is not None and n != s for n, s in zip(expect, shape))):
            raise TernacError(f"{where}, field {f.name}: expected {expect_text}, found {found_text}")
        offset, nbytes = spec.get("offset"), spec.get("nbytes")
        itemsize = np.dtype(f.type).itemsize
        if (not isinstance(offset, int) or nbytes != int(np.prod(shape)) * itemsize
                or offset < 0 or offset + nbytes > len(self.payload)):
            raise TernacError(f"{where}, field {f.name}: array {ref['array']!r} lies outside the payload")
        raw = self.payload[offset: offset + nbytes]
        return np.frombuffer(raw, dtype=np.dtype(f.type)).reshape(shape).copy()


# header entries that are the container, not network fields
_CONTAINER = ("layers", "heads", "arrays", "payload_bytes", "payload_crc32")


def _size(rule, record):
    """The length an array axis must have (None: any)."""
    if rule == "*":
        return None
    if rule in schema.DIMENSIONS:
        return schema.DIMENSIONS[rule][1](record)
    return record[rule]


def _dtype_name(text):
    try:
        return np.dtype(text).name
    except TypeError:
        return repr(text)


def _scalar(value, f, where):
    kind = f.type
    if kind in ("int[]", "int[2]"):
        ok = (isinstance(value, list) and all(_is_int(v) for v in value)
              and (kind == "int[]" or len(value) == 2))
        value = tuple(value) if ok else value
    elif kind == "int":
        ok = _is_int(value)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "object":
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, _NUMBERS[kind])
    if not ok:
        raise TernacError(f"{where}, field {f.name}: expected {kind}, found {json.dumps(value)[:40]}")
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
