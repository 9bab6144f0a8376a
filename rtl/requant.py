"""Shadow bank and requantizer: finished accumulators become int8 activations, one per cycle."""

from itertools import pairwise

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MAX, ACT_MIN, MULT_BITS, SHIFT_BITS

__all__ = ["PositionLayout", "Requantizer", "ShadowBank"]


class PositionLayout(data.StructLayout):
    """Where an output neuron goes: its index ``o`` and its byte ``o % N`` of word ``o // N``.

    Carried as counters so that the hardware never divides by N.
    """

    def __init__(self, max_outputs, n):
        super().__init__({"index": range(max_outputs), "word": range(-(-max_outputs // n)),
                          "byte": range(n)})


def advance_position(pos, step, n):
    """Assignments that move ``pos`` on by the constant ``step`` outputs (no divider)."""
    words, rest = divmod(step, n)
    byte = pos.byte + rest
    carry = byte >= n
    return [pos.index.eq(pos.index + step), pos.word.eq(pos.word + words + carry),
            pos.byte.eq(Mux(carry, byte - n, byte))]


class ShadowBank(wiring.Component):
    """Holds the P accumulators of a finished lane group while the array runs the next group.

    ``latch`` copies all P ``sums`` in one cycle; from the next cycle the bank shifts them out
    one lane per cycle (lane 0 first) with each one's output position. A new ``latch`` may
    come as early as the cycle that shifts out the last lane, so groups of at least P words
    never stall; the sequencer holds shorter groups back (``docs/architecture.md``).

    Latency: lane ``p`` leaves ``1 + p`` cycles after ``latch``.
    """

    def __init__(self, *, lanes, n, acc_bits, position):
        self._lanes = lanes
        self._n = n
        super().__init__({
            "sums": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "latch": In(1),
            "position": In(position),
            "valid": Out(1),
            "acc": Out(signed(acc_bits)),
            "out_position": Out(position),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        bank = [Signal.like(self.acc, name=f"shadow{p}") for p in range(self._lanes)]
        left = Signal(range(self._lanes + 1))
        pos = Signal.like(self.out_position)
        m.d.comb += [self.valid.eq(left != 0), self.acc.eq(bank[0]), self.out_position.eq(pos)]
        with m.If(self.latch):
            m.d.sync += [b.eq(s) for b, s in zip(bank, self.sums)]
            m.d.sync += [left.eq(self._lanes), pos.eq(self.position)]
        with m.Elif(left != 0):
            m.d.sync += [b.eq(s) for b, s in pairwise(bank)]
            m.d.sync += [left.eq(left - 1), *advance_position(pos, 1, self._n)]
        return m


class Requantizer(wiring.Component):
    """``y = sat8(relu((acc + bias) * M, rounded half up, >> S))``, bit-exact with ``arith.requantize``.

    Cycle 1 adds the bias and multiplies by ``M`` (the only multiplier of the accelerator: one
    ``(acc_bits+1) x 15`` product, a single DSP block on FPGA) into a register; cycle 2 is
    combinational: shift with rounding, ReLU, saturation. Rounding uses
    ``floor((v + 2**(S-1)) / 2**S) == (floor(v / 2**(S-1)) + 1) >> 1`` for ``S > 0``, so
    no ``2**(S-1)`` constant as wide as the largest shift is needed.

    Latency: 1 cycle (``y`` is valid the cycle after ``acc``).

    Attributes
    ----------
    acc, bias : In(signed(acc_bits))
    mult : In(15), shift : In(6), relu : In(1)
    zero : In(1)
        Force the output to 0 (padding lanes past the layer's outputs).
    tag : In(tag_bits)
        Carried to ``out_tag`` with the result.
    """

    def __init__(self, *, acc_bits, tag_bits):
        self._acc_bits = acc_bits
        super().__init__({
            "valid": In(1), "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(MULT_BITS), "shift": In(SHIFT_BITS), "relu": In(1), "zero": In(1),
            "tag": In(tag_bits),
            "out_valid": Out(1), "y": Out(signed(ACT_BITS)), "out_tag": Out(tag_bits),
        })

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(self._acc_bits + 1 + MULT_BITS + 1))
        shift, relu, zero = Signal.like(self.shift), Signal(), Signal()
        m.d.sync += [
            product.eq((self.acc + self.bias) * self.mult),
            shift.eq(self.shift), relu.eq(self.relu), zero.eq(self.zero),
            self.out_valid.eq(self.valid), self.out_tag.eq(self.tag),
        ]
        halved = product >> (shift - 1)[:SHIFT_BITS]          # unused when S == 0
        rounded = Mux(shift == 0, product, (halved + 1) >> 1)
        y = Mux(relu & (rounded < 0), 0, rounded)
        m.d.comb += self.y.eq(Mux(zero, 0, Mux(y > ACT_MAX, ACT_MAX, Mux(y < ACT_MIN, ACT_MIN, y))))
        return m
