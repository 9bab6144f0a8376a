"""The pooling unit: byte-wise max or average of a window's activation words."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MIN, AVG_SHIFT, MAX_AVG_TAPS, avg_reciprocal
from ternac.model.hw.config import PoolMode

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
    * Average (only with ``avg``): each lane sums its bytes biased to unsigned (``x + 128``;
      a ``skip`` tap, a padding zero, adds 128) over the taps the walk marks ``counted``,
      and the unit counts those taps. The window's count is thus computed from its position
      against the map bounds by the walk, never stored. The mean is
      ``((u + count // 2) * avg_reciprocal(count)) >> AVG_SHIFT`` minus the bias, which is
      the golden ``floor((sum + count // 2) / count)`` for every sum of up to
      ``MAX_AVG_TAPS`` values (``model/arith.py``): N 12-bit accumulators and N small
      multipliers by a count-indexed constant, no divider.

    Latency: from the last tap's word to ``out_valid``, 1 cycle for max (:attr:`latency`),
    2 for average (:attr:`avg_latency`: sums and count into a register, then the division).
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
        return 2

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
        # Stage 2: the window's sums and count, divided into the result register.
        done, word = Signal(), Signal.like(self.word)
        total = [Signal.like(held, name=f"total{i}") for i, held in enumerate(sums)]
        divisor = Signal.like(count)
        m.d.sync += done.eq(step & self.last)
        with m.If(step & self.last):
            m.d.sync += [word.eq(self.word), divisor.eq(count_new),
                         *(t.eq(value) for t, value in zip(total, new))]
        reciprocal = Signal(range(avg_reciprocal(1) + 1))
        with m.Switch(divisor):
            for c in range(1, MAX_AVG_TAPS + 1):
                with m.Case(c):
                    m.d.comb += reciprocal.eq(avg_reciprocal(c))
        half = divisor >> 1
        means = [((t + half) * reciprocal >> AVG_SHIFT)[:ACT_BITS] ^ _BIAS for t in total]
        self._emit(m, done, word, means)

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
