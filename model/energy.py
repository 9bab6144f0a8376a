"""Energy per inference: action counts times the 45 nm energy table (Horowitz, ISSCC 2014).

Method (as Accelergy does it): ``energy = sum over components and actions of count * energy
per action``. Four designs run the same network with the same dataflow (``lanes`` output
neurons in parallel, the input vector re-read once per lane group):

``fp32``           dense fp32 multiply-accumulate, 32-bit weights and activations
``int8``           dense int8 multiply, 32-bit accumulate, 8-bit weights and activations
``ternary-dense``  dense ternary at 2 bits per weight: one add/subtract per weight, no multiplier
``ternac``         structured sparse ternary: one add/subtract per *non-zero* weight,
                   ``code_bits`` per sub-vector of N weights, one decoder-table look-up per code

The ternac row charges what the accelerator does: the counts of the lowering's program
(:meth:`AcceleratorProgram.actions <ternac.model.hw.lower.AcceleratorProgram.actions>`, per
pass), or the same counts measured by the RTL's activity counters in simulation
(``ternac sim --json``, then ``ternac energy --measured``). They include what the mapping
costs: padding lanes and channels, zero-padding taps, max-pooling passes, the stream words.
The three baselines are estimated from the network's layers: their coded fan-in (which
includes a convolution's input channels padded to N, as in ternac), but no padding lanes and
no stream words; this favours them. Only a network the accelerator cannot run gets a
ternac row estimated from the network (``mappable`` false).

Assumptions, each stated in the action's note:

* Memory reads and writes are counted in bits and charged at the table's 64-bit access energy
  divided by 64 (64-bit words; every ternac word at P=8, (8,2) is exactly 64 bits).
* SRAM energy depends on the buffer's size; between the table's points (8 KB, 32 KB, 1 MB) it
  is *interpolated* linearly in log(size); below 8 KB the 8 KB figure is used (an upper bound),
  above 1 MB the 1 MB figure (a lower bound). Writes cost as much as reads.
* Integer adds wider than 8 and narrower than 32 bits are *interpolated* linearly in width
  between the 8-bit and 32-bit adds. The requantizer multiply (accumulator x 15-bit) is
  charged as a 32-bit multiply (an upper bound), the same in every integer design.
* The decoder table look-up is charged as a read of the table entry's width from a table of
  its own size: the default (8,2) codebook is a ROM of 129 entries of 10 bits (161 bytes), in
  logic. The 45 nm table has no figure that small; its SRAM points grow about as the square
  root of the size (x4 size, x2 energy from 8 KB to 32 KB; x32, x5 from 32 KB to 1 MB: the
  bit- and word-lines grow as the side of the array), so the 8 KB figure is *scaled* by
  ``sqrt(size / 8 KB)`` (an extrapolation: 1.40 pJ per 64-bit access at 161 B). The old
  charge, the 8 KB figure itself, is reported alongside as an upper bound.
* Idle slots (zero weights) are taken as gated: an add/subtract is charged per non-zero slot
  only (the RTL feeds an idle slot's adder input a constant 0; it has no clock gating).
* A pooling pass's byte (a max compare, or row packing's byte select) is charged as an 8-bit
  add (fp32: an fp32 add); a fused max pooling's compares on the accumulators are not charged.
* Each of the two (ping-pong) activation buffers holds the largest activation tensor: the
  input or any layer's output (C*H*W of a convolution's output, not its im2col fan-in); for
  ternac the program's buffers (``act_depth`` words of N bytes) and weight buffer
  (``weight_depth`` words).

The report says whether the accelerator can run the network at all (``mappable``, and the
``reason`` when not, e.g. a Conv2d layer): when it cannot, the ternac row is the estimate for
the same dataflow, not for a mapped network.
"""

from dataclasses import asdict, dataclass
from math import log, prod, sqrt

from .arith import ACT_BITS
from .codebook import TernacError
from .hw import ACTIONS, default_table, lower, mapping_problem
from .network import PoolLayer

__all__ = [
    "DESIGNS",
    "HOROWITZ_45NM_PJ",
    "SRAM_64BIT_PJ",
    "Action",
    "add_pj",
    "check_measured",
    "decoder_table",
    "energy_report",
    "sram_basis",
    "sram_pj_per_bit",
    "table_pj_per_bit",
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


def table_pj_per_bit(size_bytes):
    """Energy of reading one bit of a small table (the decoder): the 8 KB SRAM figure scaled by
    ``sqrt(size / 8 KB)`` (the module's assumptions), never above the 8 KB figure."""
    s0, e0 = SRAM_64BIT_PJ[0]
    return e0 * min(1.0, sqrt(size_bytes / s0)) / 64


def decoder_table(config):
    """``(entries, bytes)`` of the decoder table of ``config``: the default ROM or the writable table."""
    entries = config.codebook_depth or len(default_table(config.coding))
    return entries, entries * config.table_bits / 8


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


def _buffers(network, design):
    """``(weight pJ/bit, activation pJ/bit, weight note, activation note, weight bits, act bits)``."""
    layers = network.ternary_layers
    largest = max(prod(shape) for shape in [network.input_shape, *(layer.out_shape() for layer in network.layers)])
    weights = network.weight_count
    w_bits = {"fp32": 32, "ternary-dense": 2, "int8": 8}.get(design)
    a_bits = 32 if design == "fp32" else ACT_BITS
    code_bits = sum(layer.out_features * layer.subvectors * layer.codebook.code_bits for layer in layers)
    weight_buffer = (code_bits if design == "ternac" else weights * w_bits) // 8
    return (*_memory_notes(weight_buffer, 2 * largest * a_bits // 8), w_bits, a_bits)   # ping-pong


def _memory_notes(weight_buffer, act_buffer):
    w_pj, a_pj = sram_pj_per_bit(weight_buffer), sram_pj_per_bit(act_buffer)
    w_note = f"{weight_buffer} B weight SRAM, {w_pj * 64:.2f} pJ per 64-bit access ({sram_basis(weight_buffer)})"
    a_note = (f"{act_buffer} B activation SRAM (ping-pong), {a_pj * 64:.2f} pJ per 64-bit access "
              f"({sram_basis(act_buffer)})")
    return w_pj, a_pj, w_note, a_note


def _design_actions(network, design, lanes, table_pj):
    """A design's actions estimated from the network (the baselines; ternac if unmappable)."""
    w_pj, a_pj, w_note, a_note, w_bits, a_bits = _buffers(network, design)
    actions = []
    for layer in network.ternary_layers:
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
                               table_bits * table_pj, "one per code, small-table figure (sqrt scaling)")]
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
    for layer in network.layers:
        if isinstance(layer, PoolLayer):
            c, oh, ow = layer.out_shape()
            reads = c * oh * ow * layer.kernel[0] * layer.kernel[1]
            compare = HOROWITZ_45NM_PJ["fadd32" if design == "fp32" else "add8"]
            actions += [Action(layer.name, "max compare", reads, compare, "one per window element"),
                        Action(layer.name, "activation read (bits)", reads * a_bits, a_pj, a_note),
                        Action(layer.name, "activation write (bits)", c * oh * ow * a_bits, a_pj, a_note)]
    return actions


def _ternac_actions(component, counts, config, acc_bits, table_pj, w_pj, a_pj, w_note, a_note):
    """The accelerator's actions (:data:`ACTIONS` counts) charged at the 45 nm table."""
    n, word = config.coding.n, config.act_bits
    table_bits = config.table_bits
    # A ternary step reads one weight and one activation word; the other reads are pooling's.
    pooled = counts["act_words_read"] - counts["weight_words_read"]
    actions = [
        Action(component, f"{acc_bits}-bit add/sub", counts["nonzero_slots"], add_pj(acc_bits),
               "one per non-zero slot; width interpolated between 8 and 32 bits"),
        Action(component, "idle slot", counts["idle_slots"], 0.0, "zero weight: gated, not charged"),
        Action(component, f"decoder table read ({table_bits} b)", counts["decoder_lookups"],
               table_bits * table_pj, f"one per code; {table_pj * 64:.2f} pJ per 64 bits "
               f"(8 KB figure scaled by sqrt(size), the module's assumption)"),
        Action(component, "requantize (multiply + round add + bias add)", counts["requantizations"],
               HOROWITZ_45NM_PJ["mul32"] + 2 * HOROWITZ_45NM_PJ["add32"],
               "one per lane of a group, padding lanes included; multiply charged as 32-bit (upper bound)"),
        Action(component, "weight buffer read (bits)", counts["weight_words_read"] * config.weight_bits,
               w_pj, w_note),
        Action(component, "activation read (bits)", counts["act_words_read"] * word, a_pj,
               a_note + "; zero-padding taps and pooling included"),
        Action(component, "activation write (bits)", counts["bytes_written"] * ACT_BITS, a_pj, a_note),
    ]
    if pooled:
        actions.append(Action(component, "max compare", pooled * n, HOROWITZ_45NM_PJ["add8"],
                              "N per word a pooling pass reads (max, or row packing's byte "
                              "select), charged as an 8-bit add"))
    return [a for a in actions if a.count]          # a pooling pass has no weight-side actions


def _stream_actions(component, counts, config, a_pj, a_note):
    """The input stream's words written into, the output's read from, the activation buffers."""
    word = config.act_bits
    return [Action(component, "input write (bits)", counts["input_words"] * word, a_pj, a_note),
            Action(component, "output read (bits)", counts["output_words"] * word, a_pj, a_note)]


def _program_actions(program, measured, table_pj):
    """The ternac row from the program's per-pass counts, or from measured totals."""
    cfg = program.config
    w_pj, a_pj, w_note, a_note = _memory_notes(cfg.weight_depth * cfg.weight_bits // 8,
                                               2 * cfg.act_depth * cfg.act_bits // 8)
    charge = {"config": cfg, "acc_bits": cfg.acc_bits, "table_pj": table_pj, "w_pj": w_pj,
              "a_pj": a_pj, "w_note": w_note, "a_note": a_note}
    if measured is not None:
        return (_ternac_actions("accelerator (measured)", measured, **charge)
                + _stream_actions("accelerator (measured)", measured, cfg, a_pj, a_note))
    actions = []
    for name, counts in program.pass_actions():
        actions += _ternac_actions(name, counts, **charge)
    return actions + _stream_actions("streams", program.actions(), cfg, a_pj, a_note)


def check_measured(measured):
    """``measured`` as ``{action: int}`` with every name of :data:`ACTIONS`, or :class:`TernacError`."""
    if not isinstance(measured, dict) or set(measured) != set(ACTIONS):
        got = sorted(measured) if isinstance(measured, dict) else type(measured).__name__
        raise TernacError(f"measured actions must name exactly {', '.join(ACTIONS)}; got {got}")
    bad = [name for name, value in measured.items()
           if isinstance(value, bool) or not isinstance(value, int) or value < 0]
    if bad:
        raise TernacError(f"measured actions must be counts (integers >= 0): {', '.join(bad)}")
    return {name: measured[name] for name in ACTIONS}


def _totals(actions):
    memory = sum(a.pj for a in actions if "(bits)" in a.action)
    total = sum(a.pj for a in actions)
    return {"total_pj": total, "memory_pj": memory, "compute_pj": total - memory,
            "actions": [dict(asdict(a), pj=a.pj) for a in actions]}


def energy_report(network, lanes=None, *, measured=None):
    """The four-design energy table for one inference of ``network``.

    ``measured``: the accelerator's action counts from the RTL (``ternac sim --json``), used
    for the ternac row instead of the program's (the network must be mappable).

    Returns ``{"lanes", "mappable", "reason", "source", "counts", "decoder", "designs": {design:
    {"total_pj", "compute_pj", "memory_pj", "actions": [...]}}, "ratios_vs_ternac": {design: x},
    "upper_bound": {...}}``. ``source`` says where the ternac counts come from (``measured``,
    ``program`` or ``network estimate`` when the accelerator cannot run the network:
    ``reason``); ``upper_bound`` is the ternac total and ratios with the decoder table charged
    as an 8 KB SRAM.
    """
    lanes = lanes or network.lanes
    if not network.ternary_layers:
        raise TernacError("the network has no ternary layer: there is nothing to estimate")
    try:
        program, reason = lower(network, lanes=lanes), mapping_problem(network, lanes)
    except TernacError as error:
        program, reason = None, str(error)
    if measured is not None:
        if program is None:
            raise TernacError(f"measured actions given, but the accelerator cannot run the network: {reason}")
        measured = check_measured(measured)
    if program is not None:
        entries, size = decoder_table(program.config)
    else:
        layer = network.ternary_layers[0]
        entries = len(layer.codebook)
        size = entries * layer.codebook.table_bits / 8
    table_pj = table_pj_per_bit(size)

    def ternac(pj_per_bit):
        if program is None:
            return _design_actions(network, "ternac", lanes, pj_per_bit)
        return _program_actions(program, measured, pj_per_bit)

    designs = {d: _totals(ternac(table_pj) if d == "ternac" else _design_actions(network, d, lanes, table_pj))
               for d in DESIGNS}
    base = designs["ternac"]["total_pj"]
    bound = _totals(ternac(sram_pj_per_bit(0)))["total_pj"]
    return {"lanes": lanes, "mappable": reason is None, "reason": reason,
            "source": "network estimate" if program is None else "measured" if measured else "program",
            "counts": measured or (program.actions() if program else None),
            "decoder": {"entries": entries, "bytes": size, "pj_per_64_bits": table_pj * 64,
                        "basis": "8 KB SRAM figure scaled by sqrt(size / 8 KB) (an extrapolation)",
                        "upper_bound_pj_per_64_bits": sram_pj_per_bit(0) * 64},
            "designs": designs,
            "ratios_vs_ternac": {d: designs[d]["total_pj"] / base for d in DESIGNS},
            "upper_bound": {"what": "decoder table read charged as an 8 KB SRAM read",
                            "ternac_total_pj": bound,
                            "ratios_vs_ternac": {d: designs[d]["total_pj"] / bound for d in DESIGNS}}}
