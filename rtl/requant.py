"""Shadow bank and requantizer: finished accumulators become int8 activations, one per cycle."""

from itertools import pairwise

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS, ACT_MAX, ACT_MIN, MULT_BITS, SHIFT_BITS
from ternac.model.codebook import TernacError

from .ecp5_bram import ecp5_platform
from .ecp5_dsp import MULT_PORT_BITS, mult18x18d
from .pipeline import delayed

__all__ = ["PositionLayout", "Requantizer", "ShadowBank"]


class PositionLayout(data.StructLayout):
    """Where an output neuron goes: its index ``o`` and its byte ``o % N`` of word ``o // N``.

    Carried as counters so that the hardware never divides by N.
    """

    def __init__(self, max_outputs, n):
        super().__init__({"index": range(max_outputs), "word": range(-(-max_outputs // n)),
                          "byte": range(n)})


def advance_position(pos, step, n):
    """Assignments that move ``pos`` on by the constant ``step`` outputs (no divider). With
    N a power of two the byte wraps by itself and its carry is the sum's top bit: no compare."""
    words, rest = divmod(step, n)
    byte = pos.byte + rest
    if n & (n - 1) == 0:
        bits = len(pos.byte)
        carry, wrapped = byte[bits], byte[:bits]
    else:
        carry = byte >= n
        wrapped = Mux(carry, byte - n, byte)
    return [pos.index.eq(pos.index + step), pos.word.eq(pos.word + words + carry), pos.byte.eq(wrapped)]


class ShadowBank(wiring.Component):
    """Holds the P accumulators of a finished lane group while the array runs the next group.

    ``latch`` copies all P ``sums`` in one cycle; from the next cycle the bank shifts them out
    one lane per cycle (lane 0 first) with each one's output position. A new ``latch`` may
    come as early as the cycle that shifts out the last lane, so groups of at least P words
    never stall; the sequencer holds shorter groups back (``docs/architecture.md``).

    With ``held`` the ``sums`` are flip-flops that hold the latched values in the cycle after
    ``latch`` (the MAC array's ``held_sums``): lane 0 leaves from them directly and lanes 1 to
    P-1 are copied then, into P-1 registers. So the bank's inputs are flip-flops, not the
    array's carry chains, and the long route from the array to the bank has a cycle of its
    own (Fmax); the lanes leave in the same cycles.

    ``read_addr`` is the parameter address of the output that ``out_position`` holds in the
    next cycle while the bank holds lanes, so that a lane's parameters can be read a cycle
    ahead and registered (no memory read in front of the requantizer's bias add): at
    ``latch`` the latched group's first lane's, ``read_start`` (the caller adds the pass's
    parameter base to the output index before the sums reach the array, and the address
    travels with them), then one more per lane. When the bank runs empty it is an address
    nobody uses: only ``latch`` selects, so no count sits in front of the read. Both
    candidates are registers, so no adder sits behind the ``latch`` select on its way to
    the memory's address (Fmax).

    Latency: lane ``p`` leaves ``1 + p`` cycles after ``latch``.
    """

    def __init__(self, *, lanes, n, acc_bits, position, read_depth, held=False):
        self._lanes = lanes
        self._n = n
        self._held = held
        super().__init__({
            "read_start": In(range(read_depth)),
            "read_addr": Out(range(read_depth)),
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
        left = Signal(range(self._lanes + 1))
        # Data registers have no reset (`valid` qualifies them): the reset's fanout (Fmax).
        pos = Signal.like(self.out_position, reset_less=True)
        latched = Signal.like(self.read_addr)           # the latched group's first lane
        addr_next = Signal.like(self.read_addr, reset_less=True)    # the next lane's (a register: Fmax)
        m.d.comb += [self.valid.eq(left != 0), self.out_position.eq(pos),
                     latched.eq(self.read_start),
                     self.read_addr.eq(Mux(self.latch, latched, addr_next))]
        with m.If(self.latch):
            m.d.sync += [left.eq(self._lanes), pos.eq(self.position), addr_next.eq(latched + 1)]
        with m.Else():
            # Shifting on after the last lane changes nothing `valid` shows: no decode of
            # `left` in front of the many enables (Fmax).
            m.d.sync += [left.eq(Mux(left != 0, left - 1, 0)), *advance_position(pos, 1, self._n),
                         addr_next.eq(addr_next + 1)]

        sums = list(self.sums)
        if self._held:
            taken = Signal()                            # latch, a cycle ago: `sums` hold the lanes
            m.d.sync += taken.eq(self.latch)
            copy, sums = taken, sums[1:]
        else:
            copy = self.latch
        bank = [Signal.like(self.acc, name=f"shadow{p}", reset_less=True) for p in range(len(sums))]
        with m.If(copy):
            m.d.sync += [b.eq(s) for b, s in zip(bank, sums)]
        with m.Else():
            m.d.sync += [b.eq(s) for b, s in pairwise(bank)]
        if self._held:
            m.d.comb += self.acc.eq(Mux(taken, self.sums[0], bank[0] if bank else 0))
        else:
            m.d.comb += self.acc.eq(bank[0])
        return m


class Requantizer(wiring.Component):
    """``y = sat8(relu((acc + bias) * M, rounded half up, >> S))``, bit-exact with ``arith.requantize``.

    A negative ``acc + bias`` takes the pair ``(neg_mult, neg_shift)`` instead (PReLU and
    LeakyReLU; the lowering writes ``(M, S)`` there for other layers).

    Five register stages, each with at most one adder, multiplier, half a barrel shift or
    saturation on its path (the requantizer used to set Fmax, ``docs/fpga.md``):

    1. ``v0 = acc + bias``: ``acc_bits + 1`` bits (the bias add, on the registered
       parameter word), and by its sign the pair ``(M, S)`` or ``(M_neg, S_neg)``;
    2. ``v = v0 * M``: one ``(acc_bits + 1) x 15`` signed-by-unsigned product,
       ``acc_bits + 17`` bits -- the only multiplier of the accelerator, one DSP block on FPGA
       while ``acc_bits + 1`` fits its port (16 bits on iCE40, 18 on ECP5), its inputs and
       output registered;
    3. and 4. ``h = (2 v) >> S``: the variable (arithmetic) shift, keeping one fraction bit,
       by ``8 * (S >> 3)`` and then by ``S & 7``: ``h = floor(v / 2**(S-1))`` for ``S > 0``,
       ``2 v`` for ``S = 0``;
    5. ``r = (h + 1) >> 1``: the rounding increment. ``r = floor((v + 2**(S-1)) / 2**S)``
       for ``S > 0`` and ``v`` for ``S = 0``, without a ``2**(S-1)`` constant as wide as
       the largest shift;

    then, combinationally into the activation buffer's byte write: ReLU, saturation to int8
    and the ``zero`` override, as muxes on flags registered in stage 5 (``r`` above 127, below
    -128, negative, found from ``h``). ``shift``, ``relu``, ``zero``, ``valid`` and ``tag`` are
    delayed with the data. A new input may come every cycle.

    With ``bias_stage`` a stage 0 registers ``acc + bias`` and the chosen pair first, so
    stage 1 is only the multiplier's input registers.

    Latency: 5 cycles (``y`` is valid 5 cycles after ``acc``), 6 with ``bias_stage``.

    Attributes
    ----------
    acc, bias : In(signed(acc_bits))
    mult : In(15), shift : In(6), relu : In(1)
    neg_mult : In(signed(16)), neg_shift : In(6)
        The negative-side pair, chosen by the sign of ``acc + bias`` in stage 1.
    zero : In(1)
        Force the output to 0 (padding lanes past the layer's outputs).
    tag : In(tag_bits)
        Carried to ``out_tag`` with the result.
    """

    def __init__(self, *, acc_bits, tag_bits, dsp=None, bias_stage=False):
        self._acc_bits = acc_bits
        self._dsp = dsp
        self._bias_stage = bias_stage
        super().__init__({
            "valid": In(1), "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(MULT_BITS), "shift": In(SHIFT_BITS),
            "neg_mult": In(signed(MULT_BITS + 1)), "neg_shift": In(SHIFT_BITS),
            "relu": In(1), "zero": In(1),
            "tag": In(tag_bits),
            "out_valid": Out(1), "y": Out(signed(ACT_BITS)), "out_tag": Out(tag_bits),
        })

    @property
    def latency(self):
        return 5 + self._bias_stage

    def elaborate(self, platform):
        m = Module()
        # Data registers have no reset (``valid`` qualifies them), so that they can go into the
        # DSP block's input and output registers. A negative biased accumulator takes the
        # negative-side pair (PReLU / LeakyReLU), chosen by the adder's sign as it is
        # registered: the multiplier's inputs are then flip-flops, no multiplexer in front of
        # the DSP block (Fmax; the parameters arrive from a register, so the add and the
        # choice fit one cycle).
        total = self.acc + self.bias
        shift, chosen_shift = (Signal.like(self.shift, reset_less=True, name=n) for n in ("shift_1", "shift_2"))
        product = Signal(signed(self._acc_bits + 1 + MULT_BITS + 1), reset_less=True)
        chosen_mult = Mux(total[-1], self.neg_mult, self.mult)
        chosen_shift_value = Mux(total[-1], self.neg_shift, self.shift)
        if self._bias_stage:
            # Stage 0: the bias add and the pair's choice registered, so neither shares a cycle
            # with the route into the multiplier's input registers (ECP5: 6.9 ns).
            biased0 = Signal(signed(self._acc_bits + 1), reset_less=True)
            mult0 = Signal(signed(MULT_BITS + 1), reset_less=True)
            shift0 = Signal.like(self.shift, reset_less=True)
            m.d.sync += [biased0.eq(total), mult0.eq(chosen_mult), shift0.eq(chosen_shift_value)]
            total, chosen_mult, chosen_shift_value = biased0, mult0, shift0
        chosen = shift.eq(chosen_shift_value)
        if self._use_dsp(platform):
            # Stages 1 and 2 are the MULT18X18D's input and output registers.
            m.submodules.multiplier = mult18x18d(total, chosen_mult, product)
            m.d.sync += [chosen, chosen_shift.eq(shift)]
        else:
            biased = Signal(signed(self._acc_bits + 1), reset_less=True)
            mult = Signal(signed(MULT_BITS + 1), reset_less=True)
            m.d.sync += [biased.eq(total), mult.eq(chosen_mult), chosen]                  # stage 1
            m.d.sync += [product.eq(biased * mult), chosen_shift.eq(shift)]              # stage 2
        # The shift in two stages of three 2:1 levels each: 8 * (S >> 3), then S & 7 (Fmax:
        # six levels in one stage were the iCE40 builds' critical path).
        coarse = Signal(signed(len(product) + 1), reset_less=True)
        fine = Signal(3, reset_less=True)
        m.d.sync += [coarse.eq((product << 1) >> Cat(Const(0, 3), chosen_shift[3:])),       # stage 3
                     fine.eq(chosen_shift[:3])]
        halved = Signal(signed(len(product) + 1), reset_less=True)
        m.d.sync += halved.eq(coarse >> fine)                                       # stage 4
        # Stage 5: r = (h + inc) >> 1, of which the byte write takes 8 bits (from h's low 9).
        rounded = Signal(ACT_BITS, reset_less=True)
        inc = self._rounding_increment()
        m.d.sync += rounded.eq((halved[:ACT_BITS + 1] + inc)[1:])                   # stage 5
        # Beside it, where r lands against int8, found from h = upper * 256 + low without an
        # adder or a compare (both were carry chains the width of h, 7.3 ns on the ECP5), from
        # the OR and AND of upper's bits. r > 127 when h + inc >= 256 (with inc, low = 255 and
        # upper = 0 too). r < -128 when h + inc < -256; `below` is h < -256, which also takes
        # h = -257 with inc, whose r = -128 the clamp keeps. ReLU zeroes r < 0 by h's sign,
        # which also takes h = -1 with inc, whose r = 0.
        above, below, negative = (Signal(name=n, reset_less=True) for n in ("above", "below", "negative"))
        upper, sign = halved[ACT_BITS:], halved[-1]
        carry = halved[:ACT_BITS].all() if inc else Const(0)     # low + inc carries into upper
        m.d.sync += [above.eq(~sign & upper.any() | ~upper.any() & carry),
                     below.eq(sign & ~upper.all()), negative.eq(sign)]
        relu = delayed(m, self.relu, self.latency, "relu")
        zero = delayed(m, self.zero, self.latency, "zero")
        m.d.comb += [self.out_valid.eq(delayed(m, self.valid, self.latency, "valid")),
                     self.out_tag.eq(delayed(m, self.tag, self.latency, "tag"))]
        clamped = Mux(above, ACT_MAX, Mux(below, ACT_MIN, rounded))
        m.d.comb += self.y.eq(Mux(zero | (relu & negative), 0, clamped))
        return m

    def _use_dsp(self, platform):
        """The product in a registered MULT18X18D: on an ECP5 (``dsp=None``) or with
        ``dsp=True``, when ``acc + bias`` fits its 18-bit port."""
        fits = self._acc_bits + 1 <= MULT_PORT_BITS
        if self._dsp is not None:
            if self._dsp and not fits:
                raise TernacError(f"a {self._acc_bits + 1}-bit biased accumulator does not fit "
                                  f"the MULT18X18D's {MULT_PORT_BITS}-bit port")
            return self._dsp
        return fits and ecp5_platform(platform)

    def _rounding_increment(self):
        """Stage 4 adds 1 before halving (round half up): its own method, which the
        planted-bug tests override."""
        return 1
