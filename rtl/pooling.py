"""The pooling unit: byte-wise max or average of a window's activation words."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MIN
from ternac.model.hw.config import MAX_AVG_TAPS, PoolMode

__all__ = ["PoolUnit"]

#: Bias that makes an int8 value unsigned (x + 128: flip the sign bit).
_BIAS = 1 << (ACT_BITS - 1)


class PoolUnit(wiring.Component):
    """Byte-wise combine over the words of one pooling window (N channels at once).

    The sequencer walks a pooling pass like a convolution whose "groups" are channel words:
    for each output pixel and channel word, the window's taps arrive one word per cycle
    (``first`` on the first tap, ``last`` on the last). ``mode`` (the descriptor's
    ``pool_mode``, :class:`~ternac.model.hw.config.PoolMode`) selects the combine; the
    result word leaves with its output ``word`` address.

    * Max: a tap in the padding (``skip``) does not count, as in PyTorch's max pooling. N
      8-bit comparators and multiplexers. Max pooling commutes with the requantizer (both
      are monotone), so pooling the int8 outputs here equals the golden model's pooling of
      the int8 map.
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

    Latency: from the last tap's word to ``out_valid``, 1 cycle for max (:attr:`latency`),
    3 for average (:attr:`avg_latency`: rounded sums and count into a register, then two
    stages of 4 quotient bits).
    Windows stream back to back within a pass; ``mode`` changes only between passes, after
    the last result is out (the sequencer's settle), so the two paths never emit together.

    Parameters
    ----------
    n : int
        Activations per word.
    depth : int
        Words of an activation buffer (width of ``word``).
    avg : bool
        Elaborate the average combine (off: ``mode`` is ignored, the unit is max only).
    """

    def __init__(self, *, n, depth, avg=False):
        self._n = n
        self._avg = avg
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "skip": In(1),
            "mode": In(2), "counted": In(1),
            "acts": In(n * ACT_BITS), "word": In(range(depth)),
            "out_valid": Out(1), "out_word": Out(range(depth)), "out_data": Out(n * ACT_BITS),
        })

    @property
    def latency(self):
        return 1

    @property
    def avg_latency(self):
        return 3

    def _lanes(self):
        return [self.acts[ACT_BITS * i: ACT_BITS * (i + 1)] for i in range(self._n)]

    def _emit(self, m, valid, word, lanes):
        """Drive the result register from one combine's ``valid``, ``word`` and lane bytes."""
        with m.If(valid):
            m.d.sync += [self.out_valid.eq(1), self.out_word.eq(word)]
            m.d.sync += [self.out_data[ACT_BITS * i: ACT_BITS * (i + 1)].eq(value)
                         for i, value in enumerate(lanes)]

    def _max(self, m, step):
        best, new = [], []
        for i, x in enumerate(self._lanes()):
            x = x.as_signed()
            held = Signal.like(x, name=f"best{i}")
            so_far = Mux(self.first, ACT_MIN, held)
            best.append(held)
            new.append(Mux(~self.skip & (x > so_far), x, so_far))
        with m.If(step):
            m.d.sync += [held.eq(value) for held, value in zip(best, new)]
        self._emit(m, step & self.last, self.word, new)

    def _avg_combine(self, m, step):
        counted_max = MAX_AVG_TAPS * (2 * _BIAS - 1)
        count = Signal(range(MAX_AVG_TAPS + 1))
        count_new = Mux(self.first, 0, count) + self.counted
        sums, new = [], []
        for i, x in enumerate(self._lanes()):
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
            avg = self.mode == PoolMode.AVG
            self._max(m, self.valid & ~avg)
            self._avg_combine(m, self.valid & avg)
        else:
            self._max(m, self.valid)
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
