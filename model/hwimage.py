"""What the accelerator holds for a network: buffer sizes, layer table, parameters, load beats.

The RTL (``ternac.rtl``) is built from a :class:`HardwareConfig`; this module derives one from a
network (:func:`hardware_config`), maps the network onto it (:func:`layer_plan`, raising
:class:`TernacError` when something does not fit or cannot run) and produces the memory images
(:func:`memory_images`) and the 32-bit beats of the load stream (:func:`load_beats`).

Load protocol (``load`` stream, 32-bit beats). A transfer is two header beats, then data::

    beat 0   target << 28 | address       target: 0 weights, 1 params, 2 layers, 3 codebook
    beat 1   count                        number of memory words that follow
    data     count * ceil(word_bits / 32) beats, each word least significant beat first

Word layouts, all LSB first:

* weights: ``pack.pack_weights`` words (P codes); the dense baseline stores P*N int8 weights
  instead, weight ``i`` of lane ``p`` at bits ``[8*(p*N+i), 8*(p*N+i)+8)``;
* params (one per output neuron, ``G*P`` per layer): bias (signed, ``acc_bits``), M (15 bits),
  S (6 bits);
* layers (one descriptor per layer): the fields of :meth:`HardwareConfig.layer_fields`;
* codebook (writable decoder table only): ``Codebook.slot_table`` entries.
"""

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .arith import ACT_BITS, MULT_BITS, SHIFT_BITS, acc_bits
from .codebook import Codebook, Coding, TernacError, bits_for
from .network import FlattenLayer, PoolLayer, ReluLayer, TernaryLayer
from .pack import Geometry, pack_codes

__all__ = [
    "ADDRESS_BITS",
    "LOAD_BITS",
    "HardwareConfig",
    "LayerDescriptor",
    "Target",
    "accelerator_layers",
    "default_table",
    "dense_weight_words",
    "hardware_config",
    "layer_plan",
    "load_beats",
    "memory_images",
]

LOAD_BITS = 32
ADDRESS_BITS = 28
MAX_DEPTH = 1 << 24
MAX_ACC_BITS = 40


class Target(IntEnum):
    """Memory selected by a load header (bits 31..28 of beat 0)."""

    WEIGHTS = 0
    PARAMS = 1
    LAYERS = 2
    CODEBOOK = 3


@dataclass(frozen=True)
class HardwareConfig:
    """Parameters of one accelerator instance; invalid combinations raise :class:`TernacError`.

    Parameters
    ----------
    lanes : int
        P, output neurons computed in parallel.
    coding : Coding
        (N, K): N activations per word, K adder/subtractors per lane.
    code_bits : int
        Width of a stored code (the default codebook's width unless the table is writable).
    weight_depth, act_depth, param_depth, layer_depth : int
        Words in the weight buffer, in each of the two activation buffers, in the parameter
        memory (one per output neuron) and in the layer-descriptor table.
    acc_bits : int
        Accumulator width (``arith.acc_bits`` of the largest fan-in).
    codebook_depth : int
        0 for the default codebook as a ROM; otherwise the entries of a writable decoder table.
    dense : bool
        The int8 multiply-accumulate baseline instead of the ternary array.
    """

    lanes: int
    coding: Coding
    code_bits: int
    weight_depth: int
    act_depth: int
    param_depth: int
    layer_depth: int
    acc_bits: int
    codebook_depth: int = 0
    dense: bool = False

    def __post_init__(self):
        if not isinstance(self.coding, Coding):
            raise TernacError(f"coding must be a Coding, got {self.coding!r}")
        Geometry(self.lanes, self.coding, self.code_bits)           # lanes and code width
        if self.coding.k < 1:
            raise TernacError(f"coding {self.coding}: K must be at least 1 for the accelerator")
        for name in ("weight_depth", "act_depth", "param_depth", "layer_depth"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= MAX_DEPTH):
                raise TernacError(f"{name.replace('_', ' ')} must be an integer in 1..{MAX_DEPTH}, got {value!r}")
        low = acc_bits(self.coding.n, self.coding)
        if not low <= self.acc_bits <= MAX_ACC_BITS:
            raise TernacError(f"accumulator width must be in {low}..{MAX_ACC_BITS} bits for coding "
                              f"{self.coding}, got {self.acc_bits}")
        if not (isinstance(self.codebook_depth, int) and 0 <= self.codebook_depth <= MAX_DEPTH):
            raise TernacError(f"codebook depth must be in 0..{MAX_DEPTH}, got {self.codebook_depth!r}")
        if self.dense and self.codebook_depth:
            raise TernacError("the dense baseline has no decoder table: codebook depth must be 0")
        if not self.dense and not self.codebook_depth and self.code_bits != self.coding.code_bits:
            raise TernacError(f"the default {self.coding} codebook ROM decodes {self.coding.code_bits}-bit "
                              f"codes, not {self.code_bits}-bit ones (a learned codebook needs a "
                              f"writable table: give a codebook depth)")

    @property
    def geometry(self):
        return Geometry(self.lanes, self.coding, self.code_bits)

    @property
    def weight_bits(self):
        """Width of one weight-buffer word: P codes, or P*N int8 weights for the baseline."""
        return self.lanes * (self.coding.n * ACT_BITS if self.dense else self.code_bits)

    @property
    def act_bits(self):
        return self.coding.n * ACT_BITS

    @property
    def table_bits(self):
        return self.coding.k * self.coding.slot_bits

    @property
    def max_outputs(self):
        """Largest padded output count (``G*P``) an activation buffer can take."""
        return self.act_depth * self.coding.n

    def param_fields(self):
        """Parameter word fields (name, width, signed), LSB first."""
        return [("bias", self.acc_bits, True), ("mult", MULT_BITS, False), ("shift", SHIFT_BITS, False)]

    def layer_fields(self):
        """Layer-descriptor fields (name, width, signed), LSB first."""
        fields = [
            ("weight_base", bits_for(self.weight_depth), False),
            ("words", self.act_depth.bit_length(), False),
            ("groups", (-(-self.max_outputs // self.lanes)).bit_length(), False),
            ("out_features", self.max_outputs.bit_length(), False),
            ("out_words", self.act_depth.bit_length(), False),
            ("param_base", bits_for(self.param_depth), False),
        ]
        if self.codebook_depth:
            fields.append(("codebook_base", bits_for(self.codebook_depth), False))
        return fields + [("relu", 1, False), ("last", 1, False)]

    def word_bits(self, target):
        fields = {Target.PARAMS: self.param_fields, Target.LAYERS: self.layer_fields}.get(target)
        if fields:
            return sum(width for _, width, _ in fields())
        return self.weight_bits if target == Target.WEIGHTS else self.table_bits

    def depth(self, target):
        return {Target.WEIGHTS: self.weight_depth, Target.PARAMS: self.param_depth,
                Target.LAYERS: self.layer_depth, Target.CODEBOOK: self.codebook_depth}[target]

    def beats_per_word(self, target):
        return -(-self.word_bits(target) // LOAD_BITS)

    def summary(self):
        return {"lanes": self.lanes, "coding": [self.coding.n, self.coding.k], "code_bits": self.code_bits,
                "weight_depth": self.weight_depth, "act_depth": self.act_depth,
                "param_depth": self.param_depth, "layer_depth": self.layer_depth,
                "acc_bits": self.acc_bits, "codebook_depth": self.codebook_depth, "dense": self.dense,
                "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "word_bits": {t.name.lower(): self.word_bits(t) for t in Target}}


@dataclass(frozen=True)
class LayerDescriptor:
    """One row of the layer table: where a layer's data lives and how big it is."""

    name: str
    in_features: int
    out_features: int
    words: int              # V: input words = sub-vectors per output row
    groups: int             # G: lane groups
    out_words: int          # ceil(O / N)
    weight_base: int
    param_base: int
    codebook_base: int
    relu: bool
    last: bool

    def fields(self):
        return {"weight_base": self.weight_base, "words": self.words, "groups": self.groups,
                "out_features": self.out_features, "out_words": self.out_words,
                "param_base": self.param_base, "codebook_base": self.codebook_base,
                "relu": int(self.relu), "last": int(self.last)}


def accelerator_layers(network):
    """The network as the accelerator runs it: a list of ``(TernaryLayer, relu)``.

    Flatten layers vanish (activations are already stored C-major) and a separate ReLU is
    fused into the preceding ternary layer (``max(sat(y), 0) == sat(max(y, 0))``). Anything
    else raises :class:`TernacError` naming the layer.
    """
    layers = []
    for layer in network.layers:
        if isinstance(layer, TernaryLayer):
            if layer.conv is not None:
                raise TernacError(f"layer {layer.name} (conv2d) cannot run on the accelerator: only "
                                  f"fully-connected layers are mapped (no im2col address generator)")
            layers.append([layer, bool(layer.relu)])
        elif isinstance(layer, ReluLayer):
            if not layers:
                raise TernacError(f"layer {layer.name} (relu) cannot run on the accelerator: a ReLU "
                                  f"is fused into the requantizer of a preceding ternary layer")
            layers[-1][1] = True
        elif isinstance(layer, PoolLayer):
            raise TernacError(f"layer {layer.name} ({layer.mode}pool) cannot run on the accelerator: "
                              f"pooling is not implemented in the RTL")
        elif not isinstance(layer, FlattenLayer):
            raise TernacError(f"layer {layer.name} ({layer.kind}) cannot run on the accelerator")
    if not layers:
        raise TernacError("network has no ternary layer to run on the accelerator")
    return [tuple(pair) for pair in layers]


def hardware_config(network, lanes=None, *, dense=False):
    """The smallest :class:`HardwareConfig` that runs ``network`` with ``lanes`` lanes."""
    layers = accelerator_layers(network)
    geometry = Geometry.for_network(network, lanes)
    p, n = geometry.lanes, geometry.coding.n
    learned = any(layer.codebook.learned for layer, _ in layers)
    shapes = [(layer.subvectors, geometry.groups(layer.out_features)) for layer, _ in layers]
    return HardwareConfig(
        lanes=p, coding=geometry.coding,
        code_bits=geometry.code_bits if (learned and not dense) else geometry.coding.code_bits,
        weight_depth=sum(v * g for v, g in shapes),
        act_depth=max(max(v, -(-g * p // n)) for v, g in shapes),
        param_depth=sum(g * p for _, g in shapes),
        layer_depth=len(layers),
        acc_bits=max(layer.acc_bits for layer, _ in layers),
        codebook_depth=sum(len(layer.codebook) for layer, _ in layers) if learned and not dense else 0,
        dense=dense)


def layer_plan(network, config):
    """Layer descriptors of ``network`` on ``config``; raises :class:`TernacError` if it does not fit."""
    layers = accelerator_layers(network)
    p, n = config.lanes, config.coding.n
    if len(layers) > config.layer_depth:
        raise TernacError(f"network has {len(layers)} layers, the layer table holds {config.layer_depth}")
    plan, weight, param, table = [], 0, 0, 0
    for i, (layer, relu) in enumerate(layers):
        where = f"layer {layer.name}"
        if layer.coding != config.coding:
            raise TernacError(f"{where} uses coding {layer.coding}, the accelerator is built for {config.coding}")
        if not config.dense:
            if layer.codebook.learned and not config.codebook_depth:
                raise TernacError(f"{where} has a learned codebook: the accelerator needs a writable "
                                  f"decoder table (codebook depth > 0), it has the default ROM")
            if layer.codebook.code_bits > config.code_bits:
                raise TernacError(f"{where} needs {layer.codebook.code_bits}-bit codes, the weight buffer "
                                  f"stores {config.code_bits}-bit codes")
        v, g = layer.subvectors, -(-layer.out_features // p)
        words_out = -(-g * p // n)
        if max(v, words_out) > config.act_depth:
            raise TernacError(f"{where} needs {max(v, words_out)} activation words "
                              f"({layer.in_features} inputs, {g * p} padded outputs, N={n}), "
                              f"each activation buffer holds {config.act_depth}")
        if layer.acc_bits > config.acc_bits:
            raise TernacError(f"{where} needs a {layer.acc_bits}-bit accumulator, the accelerator has "
                              f"{config.acc_bits} bits")
        bound = 1 << (config.acc_bits - 1)
        if np.any(layer.bias < -bound) or np.any(layer.bias >= bound):
            raise TernacError(f"{where}: a bias does not fit the {config.acc_bits}-bit accumulator")
        plan.append(LayerDescriptor(layer.name, layer.in_features, layer.out_features, v, g,
                                    -(-layer.out_features // n), weight, param, table, relu,
                                    i == len(layers) - 1))
        weight, param = weight + g * v, param + g * p
        table += len(layer.codebook) if config.codebook_depth else 0
    for name, used, depth in (("weight buffer", weight, config.weight_depth),
                              ("parameter memory", param, config.param_depth),
                              ("codebook table", table, config.codebook_depth if table else 0)):
        if used > depth:
            raise TernacError(f"network needs {used} {name} words, the accelerator has {depth}")
    return plan


def dense_weight_words(layer, config):
    """Baseline weight words of one layer: P*N int8 weights, same order as the codes."""
    p, n = config.lanes, config.coding.n
    g, v = -(-layer.out_features // p), layer.subvectors
    w = np.zeros((g * p, v * n), dtype=np.int64)
    w[:layer.out_features, :layer.in_features] = layer.weights()
    blocks = (w & 0xFF).reshape(g, p, v, n).transpose(0, 2, 1, 3).reshape(g * v, p * n)
    return [sum(int(b) << (8 * i) for i, b in enumerate(row)) for row in blocks]


def _field_word(fields, values):
    """Pack ``values`` into one word of ``fields`` (name, width, signed), LSB first.

    A value outside its field's range (signed: two's complement) raises instead of being masked.
    """
    word, offset = 0, 0
    for name, width, signed in fields:
        value = int(values.get(name, 0))
        low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not low <= value <= high:
            raise TernacError(f"{name}={value} does not fit its {width}-bit {'signed' if signed else 'unsigned'} "
                              f"field ({low}..{high})")
        word |= (value & ((1 << width) - 1)) << offset
        offset += width
    return word


def memory_images(network, config):
    """Initial contents per :class:`Target`: lists of words (integers) from address 0."""
    plan = layer_plan(network, config)
    layers = accelerator_layers(network)
    images = {target: [] for target in Target}
    for desc, (layer, _) in zip(plan, layers):
        if config.dense:
            images[Target.WEIGHTS] += dense_weight_words(layer, config)
        else:
            images[Target.WEIGHTS] += pack_codes(layer.codes, config.geometry)
        for o in range(desc.groups * config.lanes):
            values = ({"bias": layer.bias[o], "mult": layer.mult[o], "shift": layer.shift[o]}
                      if o < layer.out_features else {})
            images[Target.PARAMS].append(_field_word(config.param_fields(), values))
        images[Target.LAYERS].append(_field_word(config.layer_fields(), desc.fields()))
        if config.codebook_depth:
            images[Target.CODEBOOK] += layer.codebook.slot_table()
    return images


def default_table(coding):
    """Slot table of the default codebook (the decoder ROM contents)."""
    return Codebook.default(coding).slot_table()


def load_beats(network, config):
    """The ``load`` stream that writes every memory of ``config`` for ``network``."""
    beats = []
    for target, words in memory_images(network, config).items():
        if not words:
            continue
        per_word = config.beats_per_word(target)
        beats += [int(target) << ADDRESS_BITS, len(words)]
        for word in words:
            beats += [(word >> (LOAD_BITS * j)) & ((1 << LOAD_BITS) - 1) for j in range(per_word)]
    return beats
