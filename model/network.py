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
"""

import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .arith import acc_bits
from .codebook import Codebook, Coding, TernacError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ConvGeometry",
    "FlattenLayer",
    "Network",
    "PoolLayer",
    "ReluLayer",
    "TernaryLayer",
    "load_network",
    "pool_output_size",
    "save_network",
]

MAGIC = b"TERNAC\n\0"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sII")


@dataclass(frozen=True)
class ConvGeometry:
    """A Conv2d layer's geometry; its im2col column order is (in channel, ky, kx)."""

    in_channels: int
    in_h: int
    in_w: int
    kernel: tuple
    stride: tuple
    padding: tuple

    @property
    def out_h(self):
        return (self.in_h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self):
        return (self.in_w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1

    @property
    def fan_in(self):
        return self.in_channels * self.kernel[0] * self.kernel[1]


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
    pooling rounds half up, ``floor((sum + count // 2) / count)``, with PyTorch's default
    ``count_include_pad=True`` count: the window clipped to the padded input (padding zeros
    count, a ``ceil_mode`` overhang past the padding does not).
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


_LAYER_TYPES = {cls.kind: cls for cls in (TernaryLayer, PoolLayer, ReluLayer, FlattenLayer)}


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


# ---------------------------------------------------------------------------------------------
# .tern file

def _layer_record(layer, arrays):
    """JSON-able dict of one layer; its arrays go to ``arrays`` under unique names."""
    record = {"kind": layer.kind}
    for name, value in vars(layer).items():
        if isinstance(value, np.ndarray):
            key = f"{len(arrays)}:{layer.name}.{name}"
            arrays[key] = value
            record[name] = {"array": key}
        elif isinstance(value, Codebook):
            record[name] = {"n": value.coding.n, "k": value.coding.k, "learned": value.learned}
            if value.learned:
                key = f"{len(arrays)}:{layer.name}.codebook"
                arrays[key] = value.patterns
                record[name]["patterns"] = {"array": key}
        elif isinstance(value, ConvGeometry):
            record[name] = {"conv": vars(value)}
        else:
            record[name] = value
    return record


def save_network(network, path):
    """Write ``network`` to ``path`` in the ``.tern`` format."""
    arrays = {}
    layers = [_layer_record(layer, arrays) for layer in network.layers]
    heads = [[_layer_record(layer, arrays) for layer in head] for head in network.heads]
    payload, index = bytearray(), {}
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        index[key] = {"dtype": array.dtype.str, "shape": list(array.shape),
                      "offset": len(payload), "nbytes": array.nbytes}
        payload += array.tobytes()
    header = {
        "input_shape": list(network.input_shape), "input_scale": network.input_scale,
        "lanes": network.lanes, "meta": network.meta, "layers": layers,
        "heads": heads, "arrays": index,
        "payload_bytes": len(payload), "payload_crc32": zlib.crc32(payload),
    }
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


def load_network(path):
    """Read a ``.tern`` file; a truncated, corrupted or foreign file raises :class:`TernacError`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise TernacError(f"cannot read network file {path}: {error.strerror}") from None
    if len(data) < _HEAD.size or data[:8] != MAGIC:
        raise TernacError(f"{path} is not a ternac network file (no 'TERNAC' magic at the start)")
    _, version, header_len = _HEAD.unpack_from(data)
    if version != FORMAT_VERSION:
        raise TernacError(f"{path}: .tern format version {version} is not supported (this ternac reads {FORMAT_VERSION})")
    start = _HEAD.size + header_len
    if len(data) < start:
        raise TernacError(f"{path} is truncated: header needs {start} bytes, file has {len(data)}")
    try:
        header = json.loads(data[_HEAD.size:start])
    except ValueError as error:
        raise TernacError(f"{path}: malformed header ({error})") from None
    payload = data[start:]
    if len(payload) != header["payload_bytes"]:
        raise TernacError(f"{path} is truncated: payload should be {header['payload_bytes']} bytes, "
                          f"file has {len(payload)}")
    if zlib.crc32(payload) != header["payload_crc32"]:
        raise TernacError(f"{path} is corrupted: payload CRC-32 does not match the header")
    try:
        return _network_from_header(header, payload)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, TernacError):
            raise
        raise TernacError(f"{path}: malformed header ({type(error).__name__}: {error})") from None


def _network_from_header(header, payload):
    def array(ref):
        spec = header["arrays"][ref["array"]]
        raw = payload[spec["offset"]: spec["offset"] + spec["nbytes"]]
        return np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()

    def value(item):
        if isinstance(item, dict) and "array" in item:
            return array(item)
        if isinstance(item, dict) and "conv" in item:
            return ConvGeometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in item["conv"].items()})
        if isinstance(item, dict) and "learned" in item:
            coding = Coding(item["n"], item["k"])
            if item["learned"]:
                return Codebook.learned_table(coding, array(item["patterns"]))
            return Codebook.default(coding)
        return tuple(item) if isinstance(item, list) else item

    def layer(record):
        cls = _LAYER_TYPES.get(record.get("kind"))
        if cls is None:
            raise TernacError(f"unknown layer kind {record.get('kind')!r} in network file")
        return cls(**{k: value(v) for k, v in record.items() if k != "kind"})

    return Network(tuple(header["input_shape"]), header["input_scale"], list(map(layer, header["layers"])),
                   lanes=header["lanes"], meta=header["meta"],
                   heads=[list(map(layer, head)) for head in header.get("heads", [])])
