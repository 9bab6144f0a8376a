"""Registers for timing: delay lines beside a pipelined datapath, and copies of a register
for its far-apart loads, kept apart through synthesis.

nextpnr does not duplicate a flip-flop whose output fans out across the die, and Yosys
merges flip-flops that compute the same thing (``opt_merge``). A register made of
:func:`kept_copies` is one flip-flop per group of loads, each placed beside its own; the
copies carry the :data:`KEPT` attribute, on which the ECP5 builds mark their flip-flops
``keep`` before synthesis (``ternac.fpga.build.KEPT_COPIES``), so that Yosys leaves them
apart. Elsewhere Yosys merges them back into one: the netlist is the same as without.
"""

from amaranth.hdl import Signal

__all__ = ["KEPT", "delayed", "kept_copies"]

#: Wire attribute of a register copy (the FPGA build's Yosys script selects on it).
KEPT = "ternac_kept"


def kept_copies(name, count, *, shape=1, init=0, reset_less=False):
    """``count`` signals ``{name}_copy{i}``, to be assigned the same value in the same domain."""
    return [Signal(shape, name=f"{name}_copy{i}", init=init, reset_less=reset_less, attrs={KEPT: 1})
            for i in range(count)]


def delayed(m, value, cycles, name, *, reset_less=False):
    """``value`` delayed by ``cycles`` registers (control carried alongside a pipelined
    datapath); ``reset_less`` for data that a delayed valid qualifies (the reset's fanout)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_{i + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value
