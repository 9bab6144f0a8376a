"""Bit-exact memory images of a network for one hardware geometry (``docs/format.md``).

Weight buffer. One word holds one code per lane: ``lanes * code_bits`` bits, lane ``p`` at
bits ``[p*code_bits, (p+1)*code_bits)``. Ternary layer ``l`` with ``O`` outputs and ``V``
sub-vectors per row occupies ``G * V`` words (``G = ceil(O / lanes)`` lane groups) from
``base[l]``; word ``base[l] + g*V + v`` holds sub-vector ``v`` of outputs ``g*lanes + p``.
Lanes past ``O`` hold code 0 (all-zero). Layers follow each other in network order.

Activation buffer. One word holds ``N`` int8 activations: ``N * 8`` bits, element ``i`` at
bits ``[8*i, 8*i+8)`` in two's complement. A vector of ``I`` values takes ``ceil(I / N)``
words, the last one zero-padded.
"""

from dataclasses import dataclass

import numpy as np

from .arith import ACT_BITS
from .codebook import Coding, TernacError

__all__ = [
    "Geometry",
    "WeightImage",
    "pack_activations",
    "pack_codes",
    "pack_weights",
    "unpack_activations",
    "unpack_codes",
    "unpack_weights",
]


@dataclass(frozen=True)
class Geometry:
    """Hardware geometry: lanes (output neurons in parallel), coding, code width.

    Parameters
    ----------
    lanes : int
        P, output neurons computed in parallel (each with K adder/subtractors).
    coding : Coding
    code_bits : int
        Width of one stored code (the coding's default width, or a learned codebook's).
    """

    lanes: int
    coding: Coding
    code_bits: int

    def __post_init__(self):
        if not (isinstance(self.lanes, int) and 1 <= self.lanes <= 256):
            raise TernacError(f"lanes must be an integer in 1..256, got {self.lanes!r}")
        if not 1 <= self.code_bits <= 16:
            raise TernacError(f"code width must be in 1..16 bits, got {self.code_bits}")

    @classmethod
    def for_network(cls, network, lanes=None):
        """The geometry a network was packed for (or with ``lanes`` overridden)."""
        widths = {layer.codebook.code_bits for layer in network.ternary_layers}
        if len(widths) != 1:
            raise TernacError(f"network mixes code widths {sorted(widths)}; one width expected")
        return cls(lanes or network.lanes, network.coding, widths.pop())

    @property
    def weight_word_bits(self):
        return self.lanes * self.code_bits

    @property
    def act_word_bits(self):
        return self.coding.n * ACT_BITS

    def groups(self, out_features):
        """Lane groups of a layer: ``ceil(O / lanes)``."""
        return -(-out_features // self.lanes)


@dataclass
class WeightImage:
    """The weight buffer contents: ``words`` (Python ints) and each ternary layer's base address."""

    geometry: Geometry
    words: list
    bases: list

    @property
    def depth(self):
        return len(self.words)

    @property
    def bits(self):
        return self.depth * self.geometry.weight_word_bits


def pack_codes(codes, geometry):
    """Words of one layer's codes (O, V) in group-major, sub-vector-minor order."""
    codes = np.asarray(codes, dtype=np.int64)
    out_features, subvectors = codes.shape
    lanes, width = geometry.lanes, geometry.code_bits
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << width):
        raise TernacError(f"codes do not fit {width}-bit fields")
    padded = np.zeros((geometry.groups(out_features) * lanes, subvectors), dtype=np.int64)
    padded[:out_features] = codes
    grouped = padded.reshape(-1, lanes, subvectors).transpose(0, 2, 1)   # (G, V, P)
    words = []
    for lane_codes in grouped.reshape(-1, lanes):
        word = 0
        for p, code in enumerate(lane_codes.tolist()):
            word |= code << (p * width)
        words.append(word)
    return words


def unpack_codes(words, out_features, subvectors, geometry):
    """Inverse of :func:`pack_codes`."""
    lanes, width = geometry.lanes, geometry.code_bits
    mask = (1 << width) - 1
    fields = np.array([[(word >> (p * width)) & mask for p in range(lanes)] for word in words],
                      dtype=np.int64).reshape(-1, subvectors, lanes)
    return fields.transpose(0, 2, 1).reshape(-1, subvectors)[:out_features].astype(np.uint16)


def pack_weights(network, geometry=None):
    """The weight buffer image of every ternary layer of ``network``."""
    geometry = geometry or Geometry.for_network(network)
    words, bases = [], []
    for layer in network.ternary_layers:
        if layer.coding != geometry.coding or layer.codebook.code_bits != geometry.code_bits:
            raise TernacError(f"layer {layer.name} uses coding {layer.coding}/{layer.codebook.code_bits}-bit "
                              f"codes, geometry is {geometry.coding}/{geometry.code_bits}-bit")
        bases.append(len(words))
        words += pack_codes(layer.codes, geometry)
    return WeightImage(geometry, words, bases)


def unpack_weights(image, network):
    """Codes of each ternary layer read back from a weight image (the inverse of packing)."""
    result = []
    for base, layer in zip(image.bases, network.ternary_layers):
        count = image.geometry.groups(layer.out_features) * layer.subvectors
        result.append(unpack_codes(image.words[base: base + count], layer.out_features,
                                   layer.subvectors, image.geometry))
    return result


def pack_activations(x, n):
    """Words of an int8 vector, ``n`` values per word, the last word zero-padded."""
    x = np.asarray(x, dtype=np.int64).reshape(-1)
    padded = np.zeros(-(-len(x) // n) * n, dtype=np.int64)
    padded[: len(x)] = x
    words = []
    for chunk in padded.reshape(-1, n).tolist():
        word = 0
        for i, value in enumerate(chunk):
            word |= (value & 0xFF) << (ACT_BITS * i)
        words.append(word)
    return words


def unpack_activations(words, count, n):
    """int8 vector of ``count`` values from activation words."""
    values = [(word >> (ACT_BITS * i)) & 0xFF for word in words for i in range(n)][:count]
    return ((np.array(values, dtype=np.int64) + 128) % 256 - 128).astype(np.int8)
