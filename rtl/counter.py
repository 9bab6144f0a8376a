"""A wide up counter in two halves, for the accelerator's ``cycles``."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SplitCounter"]


class SplitCounter(wiring.Component):
    """An up counter whose carry from the low half into the high half is a register.

    The low half's last value is kept as a flag beside it (set as the low half steps to it),
    so a step adds 1 to each half independently: two carry chains of ``width // 2`` bits
    instead of one of ``width``. On the iCE40UP5K the 32-bit chain of the inference's cycle
    count was a critical path of 21.5 ns (``docs/fpga.md``).

    ``restart`` loads ``init`` and wins over ``step``. ``value`` is the count, ``successor``
    is ``value + 1`` (mod ``2**width``) from the same two half-width adders.

    Latency: a ``step`` or ``restart`` shows on ``value`` the next cycle.

    Parameters
    ----------
    width : int
        Bits of the count, even.
    init : int
        The value after reset and after ``restart``.
    """

    def __init__(self, *, width=32, init=0):
        if width % 2:
            raise ValueError(f"the counter's width must be even, got {width}")
        self._init = init % (1 << width)
        super().__init__({"restart": In(1), "step": In(1), "value": Out(width), "successor": Out(width)})

    def elaborate(self, platform):
        m = Module()
        half = len(self.value) // 2
        top = (1 << half) - 1
        init_low, init_high = self._init & top, self._init >> half
        low, high = Signal(half, init=init_low), Signal(half, init=init_high)
        low_top = Signal(init=init_low == top)          # low == all ones: the next step carries
        m.d.comb += [self.value.eq(Cat(low, high)),
                     self.successor.eq(Cat((low + 1)[:half], (high + low_top)[:half]))]
        with m.If(self.restart):
            m.d.sync += [low.eq(init_low), high.eq(init_high), low_top.eq(init_low == top)]
        with m.Elif(self.step):
            m.d.sync += [low.eq(low + 1), low_top.eq(low == top - 1)]
            with m.If(low_top):
                m.d.sync += high.eq(high + 1)
        return m
