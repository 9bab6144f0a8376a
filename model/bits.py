"""Bits per weight: the codes alone, and all-in (codes + per-channel parameters + tables).

What the accelerator stores per ternary layer (``docs/format.md``):

* codes: ``O * V`` codes of ``code_bits`` (``V = ceil(I / N)``, so a partial last sub-vector
  costs a whole code);
* per output channel: the integer bias (``acc_bits``), the multiplier (``MULT_BITS``) and the
  shift (``SHIFT_BITS``); the float weight scale is folded into the multiplier and not stored;
* decoder tables: a learned codebook's table is stored per layer (``entries * table_bits``);
  the default table is one ROM shared by the whole network, counted once.

Lane padding of the weight image (``ceil(O/P)*P`` rows) is a property of the geometry, not of
the network, and is reported separately as ``image_bits``.
"""

from .arith import MULT_BITS, SHIFT_BITS
from .codebook import Codebook

__all__ = ["bits_per_weight", "layer_bits"]


def layer_bits(layer):
    """Bit counts of one ternary layer (tables of learned codebooks included)."""
    codes = layer.out_features * layer.subvectors * layer.codebook.code_bits
    params = layer.out_features * (layer.acc_bits + MULT_BITS + SHIFT_BITS)
    table = len(layer.codebook) * layer.codebook.table_bits if layer.codebook.learned else 0
    return {"name": layer.name, "weights": layer.in_features * layer.out_features,
            "code_bits": codes, "param_bits": params, "table_bits": table}


def bits_per_weight(network):
    """Per-layer and network bits per weight.

    Returns a dict with ``codes`` and ``all_in`` (network, bits per weight), ``per_layer``
    (list of dicts with the same two figures and the raw bit counts), and the raw totals.
    """
    per_layer = []
    for layer in network.ternary_layers:
        row = layer_bits(layer)
        row["codes"] = row["code_bits"] / row["weights"]
        row["all_in"] = (row["code_bits"] + row["param_bits"] + row["table_bits"]) / row["weights"]
        per_layer.append(row)
    weights = sum(row["weights"] for row in per_layer)
    codes = sum(row["code_bits"] for row in per_layer)
    params = sum(row["param_bits"] for row in per_layer)
    tables = sum(row["table_bits"] for row in per_layer)
    default_codings = {layer.coding for layer in network.ternary_layers if not layer.codebook.learned}
    rom = sum(len(book) * book.table_bits for book in map(Codebook.default, default_codings))
    total = codes + params + tables + rom
    return {"weights": weights, "codes": codes / weights, "all_in": total / weights,
            "code_bits": codes, "param_bits": params, "table_bits": tables + rom,
            "total_bits": total, "fp32_ratio": 32 * weights / total, "per_layer": per_layer}
