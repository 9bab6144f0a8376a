"""Activity counters: the accelerator's per-inference actions, measured (simulation only)."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from ternac.model.hw import ACTIONS

__all__ = ["COUNTER_BITS", "ActivityCounters", "ActivitySignature"]

#: Width of each counter (the largest program's counts are far below 2**32).
COUNTER_BITS = 32


class ActivitySignature(wiring.Signature):
    """One counter per action of :data:`ternac.model.hw.ACTIONS`, named as there."""

    def __init__(self):
        super().__init__({name: Out(COUNTER_BITS) for name in ACTIONS})


class ActivityCounters(wiring.Component):
    """Counts what the accelerator does during one inference, for the energy model.

    Every input is a strobe (or the decoded slots) observed at the datapath's handshakes, so
    the counts are measured, not derived: they equal
    :meth:`AcceleratorProgram.actions <ternac.model.hw.lower.AcceleratorProgram.actions>` only
    if the hardware does what the lowering says it does. All counters restart on ``start``
    (an inference's first ``act_in`` word, which it counts) and hold after the last output
    word until the next inference. Off by default in the accelerator: ``P*K`` bits of
    popcount and nine 32-bit adders that an FPGA build does not need.

    Latency: a strobe is counted the cycle after it (counters are registers).

    Parameters
    ----------
    lanes, slots, n : int
        P, K and N: a weight read decodes P codes, each of K slots; a pooled word is N bytes.

    Attributes
    ----------
    start, input_word, output_word : In(1)
        First ``act_in`` handshake of an inference; every ``act_in``/``act_out`` handshake.
    step, pool : In(1)
        The sequencer issued a (weight word, activation word) step; the pass is a max pooling.
    decoded : In(1)
        ``slot_valid`` holds the decoded slots of a step (decoder latency after its issue).
    slot_valid : In(P*K)
        The ``valid`` bit of every decoded slot (a non-zero weight: the slot adds or subtracts).
    requantize, byte_write, word_write : In(1)
        A lane enters the requantizer; a byte (requantizer) or word (max pooling) is written.
    counts : Out(ActivitySignature)
    """

    def __init__(self, *, lanes, slots, n):
        self._lanes = lanes
        self._slots = slots
        self._n = n
        super().__init__({
            "start": In(1), "input_word": In(1), "output_word": In(1),
            "step": In(1), "pool": In(1), "decoded": In(1), "slot_valid": In(lanes * slots),
            "requantize": In(1), "byte_write": In(1), "word_write": In(1),
            "counts": Out(ActivitySignature()),
        })

    def elaborate(self, platform):
        m = Module()
        weight_read = self.step & ~self.pool
        active = sum(self.slot_valid[i] for i in range(len(self.slot_valid)))
        increments = {
            "weight_words_read": weight_read,
            "act_words_read": self.step,
            "decoder_lookups": Mux(weight_read, self._lanes, 0),
            "nonzero_slots": Mux(self.decoded, active, 0),
            "idle_slots": Mux(self.decoded, self._lanes * self._slots - active, 0),
            "requantizations": self.requantize,
            "bytes_written": self.byte_write + Mux(self.word_write, self._n, 0),
            "input_words": self.input_word,
            "output_words": self.output_word,
        }
        for name in ACTIONS:
            counter = getattr(self.counts, name)
            m.d.sync += counter.eq(Mux(self.start, 0, counter) + increments[name])
        return m
