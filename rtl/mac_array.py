"""Add-only ternary MAC array: P lanes, K adder/subtractors each, no multiplier."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS
from ternac.model.codebook import TernacError

from .decoder import SparseDecoder, TableWriteSignature
from .pipeline import kept_copies

__all__ = ["TernaryMacArray", "accumulate", "carry_save_sum", "mac_members"]


def mac_members(*, lanes, n, weight_bits, acc_bits, tag_bits):
    """Ports shared by the ternary array and the dense baseline array.

    Inputs arrive one cycle after the sequencer issued the reads (the memories' data);
    ``latch`` pulses ``latency`` cycles later for a group's last word, with ``sums`` holding the
    P finished accumulators and ``latch_tag`` the tag that came with that word; in the cycle
    after ``latch`` the same P sums are on ``held_sums`` (lane ``p`` at bits ``p * acc_bits``
    up), the accumulators' flip-flops. A group is the valid words after the last group's
    ``last`` (or reset), up to its own ``last``.
    """
    return {
        "weights": In(weight_bits),
        "acts": In(n * ACT_BITS),
        "valid": In(1), "last": In(1), "tag": In(tag_bits),
        "sums": Out(data.ArrayLayout(signed(acc_bits), lanes)),
        # Flat, not an ArrayLayout: Yosys 0.70's ABC9 (ECP5) names a flip-flop output's bits
        # `held_sums[i]`, and asserts when a view's element wire already has that name.
        "held_sums": Out(lanes * acc_bits),
        "latch": Out(1),
        "latch_tag": Out(tag_bits),
    }


def select(values, index):
    """``values[index]`` as a binary tree of 2:1 muxes, one level per index bit (LUT4s, and
    the ECP5's PFUMX/L6MUX); an index past the end gives some value, the caller masks it."""
    level = list(values)
    for bit in range(len(index)):
        if len(level) == 1:
            break
        level = [Mux(index[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def carry_save_sum(values, bits, width):
    """``sum(values) + sum(bits)`` modulo ``2**width``, as a signed ``width``-bit value.

    Three addends at a time become a sum and a carry word (one LUT level, no carry chain), the
    carry word's free bit 0 taking one of the 1-bit ``bits``; the last two addends go into
    one adder whose carry input takes one more bit (Yosys maps ``a + b + bit`` to one iCE40
    carry chain). So any number of addends costs one carry chain. Exact whenever the true
    sum fits ``width`` signed bits.
    """
    def extend(v):
        v = Value.cast(v)
        if len(v) >= width:
            return v[:width]
        return Cat(v, v[-1].replicate(width - len(v))) if v.shape().signed else v
    values, bits = [extend(v) for v in values], list(bits)
    while len(values) > 2:
        a, b, c = values[:3]
        carry = (a & b) | (a & c) | (b & c)
        values = values[3:] + [a ^ b ^ c, Cat(bits.pop() if bits else 0, carry[:-1])]
    total = sum(values) + (bits.pop() if bits else 0) + sum(bits)
    return total[:width].as_signed()


def accumulate(m, *, addends, valid, last, tag, component, bits=None, fanout_copies=False):
    """Last stage of both arrays: per lane ``sums = acc + sum(addends) + sum(bits)`` (one carry
    chain, :func:`carry_save_sum`), latched on ``last``.

    The accumulator keeps a group's total after its last word (``held_sums``: the shadow bank
    takes it from these flip-flops, which sit with their carry chain, rather than from the
    chain's far end; Fmax), and the next group's first word adds to zero instead (``fresh``,
    a register; with K >= 2 the zero folds into the carry-save sum's first LUT level). With
    ``fanout_copies`` each lane has its own ``fresh`` (:func:`~ternac.rtl.pipeline.kept_copies`):
    one flip-flop drove every accumulator bit of every lane across the ECP5 (4.4 ns of routing).
    """
    # The next valid word starts a group.
    fresh = kept_copies("fresh", len(addends), init=1) if fanout_copies else [Signal(name="fresh", init=1)]
    with m.If(valid):
        m.d.sync += [f.eq(last) for f in fresh]
    fresh = fresh * (len(addends) // len(fresh))
    for p, terms in enumerate(addends):
        acc = Signal.like(component.sums[p], name=f"acc{p}", reset_less=True)     # `fresh` clears it
        total = carry_save_sum([Mux(fresh[p], 0, acc), *terms], bits[p] if bits else (), len(acc))
        m.d.comb += [component.sums[p].eq(total), component.held_sums.word_select(p, len(acc)).eq(acc)]
        with m.If(valid):
            m.d.sync += acc.eq(total)
    m.d.comb += [component.latch.eq(valid & last), component.latch_tag.eq(tag)]


class TernaryMacArray(wiring.Component):
    """P lanes that each add or subtract at most K of the N broadcast activations per cycle.

    Every cycle one weight word (P codes) and one activation word (N int8) enter. Stage 1
    decodes each code through the :class:`SparseDecoder` table; stage 2 selects the K slot
    activations per lane (an N:1 byte mux tree each) and registers them negated as the slots
    say; stage 3 adds the K of them to the lane's accumulator (a carry-save sum into one
    adder), which holds a group's total after its last word until the next group's first word
    adds to zero (:func:`accumulate`). The mux tree and the adder are in different stages.
    The datapath holds only muxes, negations and adders -- no multiplier.

    Latency: 2 cycles from ``weights``/``acts`` to the ``latch`` strobe (decoder table read,
    then the registered slot selection); ``sums`` is combinational in the accumulate cycle,
    ``held_sums`` the accumulators' flip-flops in the cycle after.

    Widths: K picks of 8 bits and K one-bits per lane between stages 2 and 3; the
    accumulator has ``acc_bits`` (``arith.acc_bits`` of the largest fan-in), so it cannot
    overflow, and the carry-save sum is computed modulo ``2**acc_bits``.

    Parameters
    ----------
    lanes, coding, code_bits, acc_bits : int / Coding
    tag_bits : int
        Width of an opaque tag carried from a word to its latch (the sequencer's output position).
    table : list of int, optional
        Default-codebook ROM contents (``Codebook.slot_table``), or with ``codebook_depth`` the
        writable table's initial contents;
    codebook_depth : int
        Entries of a writable decoder table (then ``table_base`` and ``table_write`` exist).
    table_ram : bool
        The decoder table in block RAM (:class:`SparseDecoder` ``block_ram``).
    fanout_copies : bool
        Registers that fan out over every lane's or every slot multiplexer's bits, in copies
        (:mod:`ternac.rtl.pipeline`): the decoded slots twice (one copy per half of each byte
        selected; the ROM in LUTs only), the activation word and ``fresh`` once per lane.
        The ECP5 builds use it.
    """

    def __init__(self, *, lanes, coding, code_bits, acc_bits, tag_bits, table=None, codebook_depth=0,
                 table_ram=False, fanout_copies=False):
        if coding.k < 1:
            raise TernacError(f"coding {coding}: the MAC array needs K >= 1")
        self._lanes = lanes
        self._coding = coding
        self._code_bits = code_bits
        self._acc_bits = acc_bits
        self._table = table
        self._codebook_depth = codebook_depth
        self._table_ram = table_ram
        self._fanout_copies = fanout_copies
        members = mac_members(lanes=lanes, n=coding.n, weight_bits=lanes * code_bits,
                              acc_bits=acc_bits, tag_bits=tag_bits)
        if codebook_depth:
            members["table_base"] = In(range(codebook_depth))
            members["table_write"] = In(TableWriteSignature(codebook_depth, coding.k * coding.slot_bits))
        # The valid bit of every decoded slot, one cycle after `weights` (activity counters).
        members["slot_valid"] = Out(lanes * coding.k)
        super().__init__(members)

    @property
    def latency(self):
        return 2

    @property
    def _slot_copies(self):
        return 2 if self._fanout_copies and not (self._codebook_depth or self._table_ram) else 1

    def elaborate(self, platform):
        m = Module()
        c = self._coding
        m.submodules.decoder = decoder = SparseDecoder(
            coding=c, lanes=self._lanes, code_bits=self._code_bits,
            table=self._table, depth=self._codebook_depth, block_ram=self._table_ram,
            copies=self._slot_copies)
        m.d.comb += decoder.codes.eq(self.weights)
        m.d.comb += self.slot_valid.eq(Cat(decoder.slots[p][t].valid for p in range(self._lanes)
                                           for t in range(c.k)))
        if self._codebook_depth:
            m.d.comb += decoder.base.eq(self.table_base)
            wiring.connect(m, wiring.flipped(self.table_write), decoder.write)

        # Stage 1: the table read; activations and control wait alongside (the activations
        # once per lane with `fanout_copies`: each bit feeds every lane's slot multiplexers).
        lanes = self._lanes
        # Data registers have no reset (`valid` qualifies them): the reset's fanout (Fmax).
        acts = (kept_copies("acts", lanes, shape=len(self.acts), reset_less=True) if self._fanout_copies
                else [Signal.like(self.acts, name="acts", reset_less=True)])
        ctrl = [Signal.like(s, name=f"{s.name}_1", reset_less=s is not self.valid)
                for s in (self.valid, self.last, self.tag)]
        m.d.sync += [a.eq(self.acts) for a in acts] + [r.eq(s) for r, s in zip(ctrl, (self.valid, self.last, self.tag))]
        x = [[a[ACT_BITS * i: ACT_BITS * (i + 1)].as_signed() for i in range(c.n)]
             for a in acts * (lanes // len(acts))]

        # Stage 2: the K selected activations of each lane, registered as they will be added.
        # A negative slot keeps the one's complement (~x = -x - 1 fits int8) and a 1 to add,
        # so no negation carry chain sits behind the mux tree.
        picks = [[Signal(signed(ACT_BITS), name=f"pick{p}_{t}", reset_less=True) for t in range(c.k)]
                 for p in range(self._lanes)]
        ones = [[Signal(name=f"one{p}_{t}", reset_less=True) for t in range(c.k)] for p in range(self._lanes)]
        copies = self._slot_copies
        part = ACT_BITS // copies                   # bits of a pick selected by one slot copy
        for p in range(self._lanes):
            for t in range(c.k):
                for i in range(copies):
                    slot = (decoder.slot_copies[i] if copies > 1 else decoder.slots)[p][t]
                    picked = select([v[part * i:part * (i + 1)] for v in x[p]], slot.index)
                    m.d.sync += picks[p][t][part * i:part * (i + 1)].eq(
                        Mux(slot.valid, Mux(slot.negative, ~picked, picked), 0))
                slot = decoder.slots[p][t]
                m.d.sync += ones[p][t].eq(slot.valid & slot.negative)
        ctrl2 = [Signal.like(s, name=f"{s.name[:-2]}_2", reset_less=s is not ctrl[0]) for s in ctrl]
        m.d.sync += [r.eq(s) for r, s in zip(ctrl2, ctrl)]

        # Stage 3: the lane's K picks and ones go into its accumulator in one carry-save sum;
        # a group's last word latches the P sums into the shadow bank.
        valid, last, tag = ctrl2
        accumulate(m, addends=picks, bits=ones, valid=valid, last=last, tag=tag, component=self,
                   fanout_copies=self._fanout_copies)
        return m
