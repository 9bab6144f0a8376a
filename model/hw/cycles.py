"""The accelerator's cycle model: exact clock cycles of one inference (``docs/architecture.md``).

The one place the cycle formula lives. :func:`ternac.model.hw.lower` applies it to each pass
of a program; the RTL meets it cycle for cycle (its ``cycles`` counter equals
:attr:`CycleReport.total`, which the RTL tests check), and ``Accelerator`` refuses to build
if its blocks' latencies differ from the constants here.
"""

from dataclasses import dataclass

__all__ = ["AVG_POOL_TO_WRITE", "BUFFER_WRITE", "DRAIN_TO_WRITE", "ISSUE_TO_LATCH", "POOL_TO_WRITE", "CycleReport",
           "act_read", "drain_to_write", "fetch_cycles", "input_cycles", "issue_to_latch", "layer_cycles", "output_cycles",
           "pool_cycles", "pool_to_write"]

#: Cycles from issuing a (weight word, activation word) read to the cycle in which its sum is
#: accumulated (and, for a group's last word, latched into the shadow bank): memory read,
#: decoder table read, slot select and K-input sum.
ISSUE_TO_LATCH = 3
#: Cycles from a write offered to the activation buffers to the cycle it is written: the
#: buffers register their write port (``ActivationBuffers.write_latency``).
BUFFER_WRITE = 1
#: Cycles from a shadow-bank lane leaving the bank to the cycle its output byte is written:
#: parameter memory read (1), then the requantizer's 5 register stages (bias add, multiply,
#: the rounding shift in two, rounding increment; ``Requantizer.latency``), then the buffers'
#: write register; ReLU and saturation feed the byte write combinationally.
DRAIN_TO_WRITE = 1 + 5 + BUFFER_WRITE


def drain_to_write(weight_register=False):
    """:data:`DRAIN_TO_WRITE`, three more with ``weight_register``: a register on the
    parameter memory's address and the memory's output register, before the register beside
    the requantizer (the blocks sit far from both ends), with the lane waiting alongside; and
    the requantizer's stage 0 (``Requantizer.bias_stage``: the bias add before the multiplier)."""
    return DRAIN_TO_WRITE + 3 * int(weight_register)


#: Cycles from a max-pooling pass's last read to its last word's write: memory read, the
#: byte-wise max into the result register (``PoolUnit.latency``), the buffers' write register.
POOL_TO_WRITE = 1 + 1 + BUFFER_WRITE
#: The same for an average pooling: memory read, then the byte-wise rounded sums and the
#: window's count into a register, and two stages of long division, the second into the
#: result register (``PoolUnit.avg_latency``), then the buffers' write register.
AVG_POOL_TO_WRITE = 1 + 3 + BUFFER_WRITE


def act_read(weight_register=False):
    """Cycles of an activation-buffer read: 1, or 2 with ``weight_register``, whose builds
    read every block RAM through its output register (``ActivationBuffers.latency``). The
    MAC array's path keeps its cycles (the second is the ``weight_register`` cycle); the
    output phase and a pooling pass take one more."""
    return 1 + int(weight_register)


def pool_to_write(avg=False, weight_register=False):
    """:data:`POOL_TO_WRITE` or :data:`AVG_POOL_TO_WRITE`, one more with ``weight_register``
    (:func:`act_read`)."""
    return (AVG_POOL_TO_WRITE if avg else POOL_TO_WRITE) + int(weight_register)


def pool_cycles(steps, avg=False, weight_register=False):
    """Cycles of a pooling pass: one read per cycle, ``steps = pixels * CW * kh * kw``,
    then the last word's write; the next pass reads it the cycle after."""
    return steps + pool_to_write(avg, weight_register)


def input_cycles(words):
    """Cycles of the input phase: one ``act_in`` word per cycle, then the last word's write
    (:data:`BUFFER_WRITE`) before the first pass reads."""
    return words + BUFFER_WRITE


def issue_to_latch(weight_register=False):
    """:data:`ISSUE_TO_LATCH`, four more with ``weight_register`` (``HardwareConfig``): two
    registers on the weight buffer's address (a tree of copies near its blocks), the block
    RAMs' output registers, then a register between them and the MAC array."""
    return ISSUE_TO_LATCH + 4 * int(weight_register)


def layer_cycles(words, groups, lanes, *, weight_register=False):
    """Cycles of one layer pass, from its first issued step to the next pass's first step.

    ``V + (G-1) * max(V, P)``: one (word, group) step per cycle, a group's last word waiting
    until the shadow bank has drained the previous group (P cycles); then
    ``ISSUE_TO_LATCH + P + DRAIN_TO_WRITE``: latch, drain P lanes, write the last byte
    (:func:`issue_to_latch` and :func:`drain_to_write` with ``weight_register``).
    """
    return (words + (groups - 1) * max(words, lanes) + issue_to_latch(weight_register) + lanes
            + drain_to_write(weight_register))


def fetch_cycles(rows, serial):
    """Cycles after a pass (not the last) to read the next pass's descriptor, counted in the
    pass: with a row-serial layer table (``HardwareConfig.serial_layers``) one row per cycle,
    the first row's read already issued during the pass; 0 with a descriptor-wide table,
    whose read overlaps the pass's settle."""
    return rows if serial else 0


def output_cycles(words, weight_register=False):
    """Cycles of the output phase: one buffer read (:func:`act_read`), then one ``act_out``
    word per cycle."""
    return words + act_read(weight_register)


@dataclass(frozen=True)
class CycleReport:
    """Predicted cycles of one inference.

    ``total = input + sum(layers) + output`` is ``t_last_out - t_first_in + 1``: the cycles
    from the first ``act_in`` handshake to the last ``act_out`` handshake, both included,
    with a source that always has data and a sink that is always ready.
    """

    input: int
    layers: tuple           # (name, cycles) per accelerator pass
    output: int
    macs: tuple             # dense-equivalent multiply-accumulates per pass
    lanes: int
    n: int

    @property
    def total(self):
        return self.input + sum(cycles for _, cycles in self.layers) + self.output

    @property
    def peak(self):
        """Dense-equivalent MACs the array can do per cycle: ``P * N``."""
        return self.lanes * self.n

    @property
    def utilization(self):
        """Achieved over peak dense-equivalent MACs over the whole inference."""
        return sum(self.macs) / (self.peak * self.total)

    def layer_utilization(self):
        """Per pass: its MACs over ``P * N`` times its cycles."""
        return [macs / (self.peak * cycles) for macs, (_, cycles) in zip(self.macs, self.layers)]

    def to_dict(self):
        return {"input": self.input, "layers": [c for _, c in self.layers], "output": self.output,
                "total": self.total, "utilization": self.utilization,
                "layer_names": [name for name, _ in self.layers],
                "layer_utilization": self.layer_utilization()}
