"""Energy per inference: action counts times the 45 nm energy table (Horowitz, ISSCC 2014).

Method (as Accelergy does it): ``energy = sum over components and actions of count * energy
per action``. Four designs run the same network with the same dataflow (``lanes`` output
neurons in parallel, the input vector re-read once per lane group):

``fp32``           dense fp32 multiply-accumulate, 32-bit weights and activations
``int8``           dense int8 multiply, 32-bit accumulate, 8-bit weights and activations
``ternary-dense``  dense ternary at 2 bits per weight: one add/subtract per weight, no multiplier
``ternac``         structured sparse ternary: one add/subtract per *non-zero* weight,
                   ``code_bits`` per sub-vector of N weights, one decoder-table look-up per code

Assumptions, each stated in the action's note:

* Memory reads and writes are counted in bits and charged at the table's 64-bit access energy
  divided by 64 (64-bit words; every ternac word at P=8, (8,2) is exactly 64 bits).
* SRAM energy depends on the buffer's size; between the table's points (8 KB, 32 KB, 1 MB) it
  is *interpolated* linearly in log(size); below 8 KB the 8 KB figure is used (an upper bound),
  above 1 MB the 1 MB figure (a lower bound). Writes cost as much as reads.
* Integer adds wider than 8 and narrower than 32 bits are *interpolated* linearly in width
  between the 8-bit and 32-bit adds. The requantizer multiply (accumulator x 15-bit) is
  charged as a 32-bit multiply (an upper bound), the same in every integer design.
* The decoder table look-up is charged as an SRAM read of the table entry's width at the 8 KB
  figure (an upper bound: the table is a few hundred bytes of ROM).
* Each of the two (ping-pong) activation buffers holds the largest activation tensor: the
  input or any layer's output (C*H*W of a convolution's output, not its im2col fan-in).

The report says whether the accelerator can run the network at all (``mappable``, and the
``reason`` when not, e.g. a Conv2d layer): when it cannot, the ternac row is the estimate for
the same dataflow, not for a mapped network.
"""

from dataclasses import asdict, dataclass
from math import log, prod

from .arith import ACT_BITS
from .codebook import TernacError
from .hw import mapping_problem

__all__ = [
    "DESIGNS",
    "HOROWITZ_45NM_PJ",
    "SRAM_64BIT_PJ",
    "Action",
    "add_pj",
    "energy_report",
    "sram_basis",
    "sram_pj_per_bit",
]

HOROWITZ_45NM_PJ = {
    "add8": 0.03, "add32": 0.1, "mul8": 0.2, "mul32": 3.1,
    "fadd16": 0.4, "fmul16": 1.1, "fadd32": 0.9, "fmul32": 3.7,
}
SRAM_64BIT_PJ = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))   # (bytes, pJ)
DESIGNS = ("fp32", "int8", "ternary-dense", "ternac")


@dataclass
class Action:
    component: str
    action: str
    count: int
    pj_each: float
    note: str

    @property
    def pj(self):
        return self.count * self.pj_each


def sram_pj_per_bit(size_bytes):
    """Energy of reading one bit from an SRAM of ``size_bytes`` (64-bit access / 64)."""
    (s0, e0), (s1, e1), (s2, e2) = SRAM_64BIT_PJ
    if size_bytes <= s0:
        e = e0
    elif size_bytes >= s2:
        e = e2
    else:
        (lo, elo), (hi, ehi) = ((s0, e0), (s1, e1)) if size_bytes <= s1 else ((s1, e1), (s2, e2))
        e = elo + (ehi - elo) * log(size_bytes / lo) / log(hi / lo)
    return e / 64


def sram_basis(size_bytes):
    """How :func:`sram_pj_per_bit` got its figure for this size (stated in every note)."""
    lo, hi = SRAM_64BIT_PJ[0][0], SRAM_64BIT_PJ[-1][0]
    if size_bytes <= lo:
        return "8 KB figure, an upper bound"
    if size_bytes >= hi:
        return "1 MB figure, a lower bound"
    return "interpolated in log(size)"


def add_pj(bits):
    """Integer add energy, interpolated linearly in width between 8 and 32 bits."""
    lo, hi = HOROWITZ_45NM_PJ["add8"], HOROWITZ_45NM_PJ["add32"]
    bits = min(max(bits, 8), 32)
    return lo + (hi - lo) * (bits - 8) / 24


def _layer_counts(layer, lanes):
    """Per-inference counts shared by every design for one ternary layer."""
    positions = layer.positions()
    groups = -(-layer.out_features // lanes)
    return {
        "positions": positions,
        "macs": layer.out_features * layer.in_features * positions,
        "act_reads": groups * layer.in_features * positions,        # input re-read per lane group
        "act_writes": layer.out_features * positions,
        "outputs": layer.out_features * positions,
    }


def _design_actions(network, design, lanes):
    layers = network.ternary_layers
    largest = max(prod(shape) for shape in [network.input_shape, *(layer.out_shape() for layer in network.layers)])
    weights = network.weight_count
    if design == "fp32":
        w_bits, a_bits = 32, 32
    elif design == "ternary-dense":
        w_bits, a_bits = 2, ACT_BITS
    else:
        w_bits, a_bits = (8 if design == "int8" else None), ACT_BITS
    code_bits = sum(layer.out_features * layer.subvectors * layer.codebook.code_bits for layer in layers)
    weight_buffer = (code_bits if design == "ternac" else weights * w_bits) // 8
    act_buffer = 2 * largest * a_bits // 8                              # ping-pong
    w_pj, a_pj = sram_pj_per_bit(weight_buffer), sram_pj_per_bit(act_buffer)
    w_note = f"{weight_buffer} B weight SRAM, {w_pj * 64:.2f} pJ per 64-bit access ({sram_basis(weight_buffer)})"
    a_note = (f"{act_buffer} B activation SRAM (ping-pong), {a_pj * 64:.2f} pJ per 64-bit access "
              f"({sram_basis(act_buffer)})")
    actions = []
    for layer in layers:
        c = _layer_counts(layer, lanes)
        acc = layer.acc_bits
        name = layer.name
        if design == "fp32":
            actions += [Action(name, "fp32 multiply", c["macs"], HOROWITZ_45NM_PJ["fmul32"], "one per weight"),
                        Action(name, "fp32 add", c["macs"] + c["outputs"], HOROWITZ_45NM_PJ["fadd32"],
                               "one per weight, plus the bias")]
        elif design == "int8":
            actions += [Action(name, "8-bit multiply", c["macs"], HOROWITZ_45NM_PJ["mul8"], "one per weight"),
                        Action(name, "32-bit add", c["macs"], HOROWITZ_45NM_PJ["add32"], "32-bit accumulator")]
        elif design == "ternary-dense":
            actions += [Action(name, f"{acc}-bit add/sub", c["macs"], add_pj(acc),
                               "one per weight (dense array); width interpolated between 8 and 32 bits")]
        else:
            nonzeros = int((layer.weights() != 0).sum()) * c["positions"]
            lookups = layer.out_features * layer.subvectors * c["positions"]
            table_bits = layer.codebook.table_bits
            actions += [Action(name, f"{acc}-bit add/sub", nonzeros, add_pj(acc),
                               "one per non-zero weight (idle slots gated); width interpolated"),
                        Action(name, f"decoder table read ({table_bits} b)", lookups,
                               table_bits * sram_pj_per_bit(0), "one per code, charged as 8 KB SRAM (upper bound)")]
        if design != "fp32":
            actions += [Action(name, "requantize (multiply + round add + bias add)", c["outputs"],
                               HOROWITZ_45NM_PJ["mul32"] + 2 * HOROWITZ_45NM_PJ["add32"],
                               "multiply charged as 32-bit (upper bound)")]
        weight_read_bits = (layer.out_features * layer.subvectors * layer.codebook.code_bits
                            if design == "ternac" else c["macs"] // c["positions"] * w_bits) * c["positions"]
        act_read_bits = c["act_reads"] * a_bits
        actions += [Action(name, "weight buffer read (bits)", weight_read_bits, w_pj, w_note),
                    Action(name, "activation read (bits)", act_read_bits, a_pj, a_note),
                    Action(name, "activation write (bits)", c["act_writes"] * a_bits, a_pj, a_note)]
    return actions


def energy_report(network, lanes=None):
    """The four-design energy table for one inference of ``network``.

    Returns ``{"lanes", "mappable", "reason", "designs": {design: {"total_pj", "compute_pj",
    "memory_pj", "actions": [...]}}, "ratios_vs_ternac": {design: x}}``; ``mappable`` says
    whether the accelerator can run ``network`` (``reason``: why not).
    """
    lanes = lanes or network.lanes
    if not network.ternary_layers:
        raise TernacError("the network has no ternary layer: there is nothing to estimate")
    reason = mapping_problem(network, lanes)
    designs = {}
    for design in DESIGNS:
        actions = _design_actions(network, design, lanes)
        memory = sum(a.pj for a in actions if "(bits)" in a.action)
        total = sum(a.pj for a in actions)
        designs[design] = {"total_pj": total, "memory_pj": memory, "compute_pj": total - memory,
                           "actions": [dict(asdict(a), pj=a.pj) for a in actions]}
    base = designs["ternac"]["total_pj"]
    return {"lanes": lanes, "mappable": reason is None, "reason": reason, "designs": designs,
            "ratios_vs_ternac": {d: designs[d]["total_pj"] / base for d in DESIGNS}}
