"""Pooling passes: the byte-wise maximum of a window's words, or its taps packed into one word."""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MIN
from ternac.model.hw.lower import POOL_MODES

__all__ = ["MaxPoolUnit", "WindowMax"]


class MaxPoolUnit(wiring.Component):
    """Byte-wise signed maximum over the words of one pooling window (N channels at once).

    The sequencer walks a pooling pass like a convolution whose "groups" are channel words:
    for each output pixel and channel word, the window's taps arrive one word per cycle
    (``first`` on the first tap, ``last`` on the last). A tap in the padding (``skip``) does
    not count, as in PyTorch's max pooling. The result word leaves with its output ``word``
    address. N 8-bit comparators and multiplexers; no adder, no multiplier.

    Max pooling commutes with the requantizer (both are monotone), so pooling the int8
    outputs here equals the golden model's pooling of the int8 map.

    With ``packing``, ``mode`` selects the packing combine instead (``pool_mode`` "pack" of
    ``model/hw/lower.py``): tap ``j``'s first ``tap_bytes`` channels go to bytes
    ``j*tap_bytes ..`` of the result, a tap in the padding as zeros -- the packed rows of a
    convolution with few channels (``model/layout.py``). One byte multiplexer per byte.

    Latency: 1 cycle from the last tap's word to ``out_valid``.

    Parameters
    ----------
    n : int
        Activations per word.
    depth : int
        Words of an activation buffer (width of ``word``).
    packing : bool
        Build the packing combine (only accelerators that run packed rows need it).
    """

    def __init__(self, *, n, depth, packing=False):
        self._n = n
        self._packing = packing
        members = {
            "valid": In(1), "first": In(1), "last": In(1), "skip": In(1),
            "acts": In(n * ACT_BITS), "word": In(range(depth)),
            "out_valid": Out(1), "out_word": Out(range(depth)), "out_data": Out(n * ACT_BITS),
        }
        if packing:
            members |= {"mode": In(2), "tap_bytes": In(range(n + 1))}
        super().__init__(members)

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        n = self._n
        x = [self.acts[ACT_BITS * i: ACT_BITS * (i + 1)].as_signed() for i in range(n)]
        held = [Signal.like(x[0], name=f"held{i}") for i in range(n)]
        new = []
        for i in range(n):
            so_far = Mux(self.first, ACT_MIN, held[i])
            new.append(Mux(~self.skip & (x[i] > so_far), x[i], so_far))
        if self._packing:
            # Tap j lands at byte offset j*tap_bytes: a running offset, no multiplier.
            offset = Signal(range(n + 1))
            start = Mux(self.first, 0, offset)
            with m.If(self.valid):
                m.d.sync += offset.eq(start + self.tap_bytes)
            taps = Array(Mux(self.skip, 0, xi) for xi in x)
            packed = []
            for i in range(n):
                kept = Mux(self.first, 0, held[i])
                here = (start <= i) & (i < start + self.tap_bytes)
                packed.append(Mux(here, taps[i - start], kept))
            pack_mode = self.mode == POOL_MODES["pack"]
            new = [Mux(pack_mode, p, v) for p, v in zip(packed, new)]
        with m.If(self.valid):
            m.d.sync += [h.eq(v) for h, v in zip(held, new)]
        m.d.sync += self.out_valid.eq(self.valid & self.last)
        with m.If(self.valid & self.last):
            m.d.sync += [self.out_word.eq(self.word)]
            m.d.sync += [self.out_data[ACT_BITS * i: ACT_BITS * (i + 1)].eq(value)
                         for i, value in enumerate(new)]
        return m


class WindowMax(wiring.Component):
    """Per-lane maximum of a fused max pooling's window, taken on the accumulators.

    Between the MAC array and the shadow bank: each ``latch`` of the array (one window
    position's P finished sums) updates a held maximum per lane (``first``: the first
    position, which starts it afresh); the window's ``last`` position passes the maximum on
    as ``out_latch``. The requantizer is non-decreasing in every channel of a fused layer
    (``model/hw/lower.py`` checks it), so requantizing the maximum equals pooling the
    requantized outputs, bit for bit. P comparators of ``acc_bits``; no multiplier.

    Latency: 0 cycles (``out_sums`` and ``out_latch`` are combinational).
    """

    def __init__(self, *, lanes, acc_bits):
        self._lanes = lanes
        sums = data.ArrayLayout(signed(acc_bits), lanes)
        super().__init__({"sums": In(sums), "latch": In(1), "first": In(1), "last": In(1),
                          "out_sums": Out(sums), "out_latch": Out(1)})

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        for p in range(self._lanes):
            held = Signal.like(self.sums[p], name=f"max{p}")
            best = Mux(self.first | (self.sums[p] > held), self.sums[p], held)
            m.d.comb += self.out_sums[p].eq(best)
            with m.If(self.latch):
                m.d.sync += held.eq(best)
        m.d.comb += self.out_latch.eq(self.latch & self.last)
        return m
