"""Max pooling: the byte-wise maximum of a window's activation words."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MIN

__all__ = ["MaxPoolUnit"]


class MaxPoolUnit(wiring.Component):
    """Byte-wise signed maximum over the words of one pooling window (N channels at once).

    The sequencer walks a pooling pass like a convolution whose "groups" are channel words:
    for each output pixel and channel word, the window's taps arrive one word per cycle
    (``first`` on the first tap, ``last`` on the last). A tap in the padding (``skip``) does
    not count, as in PyTorch's max pooling. The result word leaves with its output ``word``
    address. N 8-bit comparators and multiplexers; no adder, no multiplier.

    Max pooling commutes with the requantizer (both are monotone), so pooling the int8
    outputs here equals the golden model's pooling of the int8 map.

    Latency: 1 cycle from the last tap's word to ``out_valid``.

    Parameters
    ----------
    n : int
        Activations per word.
    depth : int
        Words of an activation buffer (width of ``word``).
    """

    def __init__(self, *, n, depth):
        self._n = n
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "skip": In(1),
            "acts": In(n * ACT_BITS), "word": In(range(depth)),
            "out_valid": Out(1), "out_word": Out(range(depth)), "out_data": Out(n * ACT_BITS),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        best, new = [], []
        for i in range(self._n):
            x = self.acts[ACT_BITS * i: ACT_BITS * (i + 1)].as_signed()
            held = Signal.like(x, name=f"best{i}")
            so_far = Mux(self.first, ACT_MIN, held)
            value = Mux(~self.skip & (x > so_far), x, so_far)
            best.append(held)
            new.append(value)
        with m.If(self.valid):
            m.d.sync += [held.eq(value) for held, value in zip(best, new)]
        m.d.sync += self.out_valid.eq(self.valid & self.last)
        with m.If(self.valid & self.last):
            m.d.sync += [self.out_word.eq(self.word)]
            m.d.sync += [self.out_data[ACT_BITS * i: ACT_BITS * (i + 1)].eq(value)
                         for i, value in enumerate(new)]
        return m
