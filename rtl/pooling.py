"""Pooling passes: the byte-wise maximum or average of a window's words, or its taps packed
into one word; and the window maximum of a fused max pooling."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MIN
from ternac.model.hw.config import MAX_AVG_TAPS
from ternac.model.hw.lower import POOL_MODES

__all__ = ["PoolUnit", "WindowMax"]

#: Bias that makes an int8 value unsigned (x + 128: flip the sign bit).
_BIAS = 1 << (ACT_BITS - 1)


class PoolUnit(wiring.Component):
    """Byte-wise combine over the words of one pooling window (N channels at once).

    The sequencer walks a pooling pass like a convolution whose "groups" are channel words:
    for each output pixel and channel word, the window's taps arrive one word per cycle
    (``first`` on the first tap, ``last`` on the last). ``mode`` (the descriptor's
    ``pool_mode``, ``POOL_MODES`` of ``model/hw/lower.py``) selects the combine; the result
    word leaves with its output ``word`` address.

    * Max (only with ``max``): a tap in the padding (``skip``) does not count, as in PyTorch's max pooling. N
      8-bit comparators and multiplexers. Max pooling commutes with the requantizer (both
      are monotone), so pooling the int8 outputs here equals the golden model's pooling of
      the int8 map.
    * Pack (only with ``packing``): tap ``j``'s first ``tap_bytes`` channels go to bytes
      ``j*tap_bytes ..`` of the result, a tap in the padding as zeros -- the packed rows of a
      convolution with few channels (``model/layout.py``). One byte multiplexer per byte.
    * Average (only with ``avg``): each lane sums its bytes biased to unsigned (``u = sum +
      128 * count``; a ``skip`` tap, a padding zero, adds 128) over the taps the walk marks
      ``counted``, and the unit counts those taps: the window's count comes from its
      position against the map bounds, computed by the walk, never stored. The mean is
      ``floor((u + count // 2) / count) - 128``, the golden ``floor((sum + count // 2) /
      count)``. As ``u + count // 2 < 256 * count``, the quotient has 8 bits: 8 steps of
      long division by the 4-bit count, each a 5-bit compare and subtract, in two pipeline
      stages. Why not a reciprocal multiply: exact needs a 12 x 15-bit product per lane,
      which Yosys maps to N SB_MAC16 (all 8 of an iCE40UP5K) or about 3400 more LUTs for
      N = 8; the long division costs about 650 (``docs/architecture.md``).

    Latency: from the last tap's word to ``out_valid``, 1 cycle for max and pack
    (:attr:`latency`), 3 for average (:attr:`avg_latency`: rounded sums and count into a
    register, then two stages of 4 quotient bits). Windows stream back to back within a
    pass; ``mode`` changes only between passes, after the last result is out (the
    sequencer's settle), so the two latencies never emit together.

    Parameters
    ----------
    n : int
        Activations per word.
    depth : int
        Words of an activation buffer (width of ``word``).
    packing : bool
        Build the packing combine (only accelerators that run packed rows need it).
    avg : bool
        Build the average combine (only accelerators that run average pooling need it).
    maximum : bool
        Build the max combine (only accelerators that run max pooling not fused into a
        convolution need it).
    """

    def __init__(self, *, n, depth, packing=False, avg=False, maximum=True):
        self._n = n
        self._packing = packing
        self._avg = avg
        self._max = maximum
        members = {
            "valid": In(1), "first": In(1), "last": In(1), "skip": In(1),
            "acts": In(n * ACT_BITS), "word": In(range(depth)),
            "out_valid": Out(1), "out_word": Out(range(depth)), "out_data": Out(n * ACT_BITS),
        }
        if packing or avg:
            members["mode"] = In(2)
        if packing:
            members["tap_bytes"] = In(range(n + 1))
        if avg:
            members["counted"] = In(1)
        super().__init__(members)

    @property
    def latency(self):
        return 1

    @property
    def avg_latency(self):
        return 3

    def _emit(self, m, valid, word, lanes):
        """Drive the result register from one combine's ``valid``, ``word`` and lane bytes."""
        with m.If(valid):
            m.d.sync += [self.out_valid.eq(1), self.out_word.eq(word)]
            m.d.sync += [self.out_data[ACT_BITS * i: ACT_BITS * (i + 1)].eq(value)
                         for i, value in enumerate(lanes)]

    def _max_or_pack(self, m, step):
        n = self._n
        x = [self.acts[ACT_BITS * i: ACT_BITS * (i + 1)].as_signed() for i in range(n)]
        held = [Signal.like(x[0], name=f"held{i}") for i in range(n)]
        new = []
        for i in range(n if self._max else 0):
            so_far = Mux(self.first, ACT_MIN, held[i])
            new.append(Mux(~self.skip & (x[i] > so_far), x[i], so_far))
        if self._packing:
            # Tap j lands at byte offset j*tap_bytes: a running offset, no multiplier.
            offset = Signal(range(n + 1))
            start = Mux(self.first, 0, offset)
            with m.If(step):
                m.d.sync += offset.eq(start + self.tap_bytes)
            taps = Array(Mux(self.skip, 0, xi) for xi in x)
            packed = []
            for i in range(n):
                kept = Mux(self.first, 0, held[i])
                here = (start <= i) & (i < start + self.tap_bytes)
                packed.append(Mux(here, taps[i - start], kept))
            pack_mode = self.mode == POOL_MODES["pack"]
            new = [Mux(pack_mode, p, v) for p, v in zip(packed, new)] if self._max else packed
        if not new:
            return
        with m.If(step):
            m.d.sync += [h.eq(v) for h, v in zip(held, new)]
        self._emit(m, step & self.last, self.word, new)

    def _avg_combine(self, m, step):
        counted_max = MAX_AVG_TAPS * (2 * _BIAS - 1)
        count = Signal(range(MAX_AVG_TAPS + 1))
        count_new = Mux(self.first, 0, count) + self.counted
        sums, new = [], []
        for i in range(self._n):
            x = self.acts[ACT_BITS * i: ACT_BITS * (i + 1)]
            held = Signal(range(counted_max + 1), name=f"sum{i}")
            biased = Mux(self.skip, _BIAS, x ^ _BIAS)
            sums.append(held)
            new.append(Mux(self.first, 0, held) + Mux(self.counted, biased, 0))
        with m.If(step):
            m.d.sync += [count.eq(count_new), *(held.eq(value) for held, value in zip(sums, new))]
        # The window's rounded sums u + count // 2 (< 256 * count) and count into a register,
        # then the 8 quotient bits of long division in two register stages of 4 bits each.
        valid, word, divisor = step & self.last, self.word, count_new
        width = (counted_max + MAX_AVG_TAPS // 2).bit_length()
        dividends = [(value + (count_new >> 1))[:width] for value in new]
        for stage in range(2):
            valid, word, divisor, dividends = self._register(m, valid, word, divisor, dividends,
                                                             f"div{stage}")
            dividends = [_divide_4_bits(dividend, divisor) for dividend in dividends]
        self._emit(m, valid, word, [dividend[:ACT_BITS] ^ _BIAS for dividend in dividends])

    @staticmethod
    def _register(m, valid, word, divisor, values, name):
        regs = (Signal(name=f"{name}_valid"), Signal.like(word, name=f"{name}_word"),
                Signal.like(divisor, name=f"{name}_divisor"),
                [Signal.like(value, name=f"{name}_{i}") for i, value in enumerate(values)])
        m.d.sync += regs[0].eq(valid)
        with m.If(valid):
            m.d.sync += [regs[1].eq(word), regs[2].eq(divisor),
                         *(reg.eq(value) for reg, value in zip(regs[3], values))]
        return regs

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out_valid.eq(0)
        if self._avg:
            avg = self.mode == POOL_MODES["avg"]
            self._max_or_pack(m, self.valid & ~avg)
            self._avg_combine(m, self.valid & avg)
        else:
            self._max_or_pack(m, self.valid)
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


def _divide_4_bits(value, divisor):
    """Four steps of long division of an 8-bit quotient: ``value`` is ``remainder : the
    dividend's low bits still to divide : the quotient bits so far`` (the remainder is below
    ``divisor``, so it fits its width); the result has the same layout, 4 bits further on.

    Start: the dividend ``d < 256 * divisor``, whose remainder part ``d >> 8`` is below the
    divisor; after two calls the low 8 bits are ``floor(d / divisor)``.
    """
    low = ACT_BITS
    rem, rest = value[low:], value[:low]                 # rest: dividend bits, then quotient bits
    for _ in range(4):
        trial = Cat(rest[-1], rem)                       # 2 * remainder + next dividend bit
        take = trial >= divisor
        rem = Mux(take, trial - divisor, trial)[:len(rem)]
        rest = Cat(take, rest[:-1])
    return Cat(rest, rem)
