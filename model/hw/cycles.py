"""The accelerator's cycle model: exact clock cycles of one inference (``docs/architecture.md``).

The one place the cycle formula lives. :func:`ternac.model.hw.lower` applies it to each pass
of a program; the RTL meets it cycle for cycle (its ``cycles`` counter equals
:attr:`CycleReport.total`, which the RTL tests check), and ``Accelerator`` refuses to build
if its blocks' latencies differ from the constants here.
"""

from dataclasses import dataclass

__all__ = ["AVG_POOL_TO_WRITE", "BUFFER_WRITE", "DRAIN_TO_WRITE", "ISSUE_TO_LATCH", "POOL_TO_WRITE", "CycleReport",
           "fetch_cycles", "input_cycles", "issue_to_latch", "layer_cycles", "output_cycles", "pool_cycles"]

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


#: Cycles from a max-pooling pass's last read to its last word's write: memory read, the
#: byte-wise max into the result register (``PoolUnit.latency``), the buffers' write register.
POOL_TO_WRITE = 1 + 1 + BUFFER_WRITE
#: The same for an average pooling: memory read, then the byte-wise rounded sums and the
#: window's count into a register, and two stages of long division, the second into the
#: result register (``PoolUnit.avg_latency``), then the buffers' write register.
AVG_POOL_TO_WRITE = 1 + 3 + BUFFER_WRITE


def pool_cycles(steps, avg=False):
    """Cycles of a pooling pass: one read per cycle, ``steps = pixels * CW * kh * kw``,
    then the last word's write; the next pass reads it the cycle after."""
    return steps + (AVG_POOL_TO_WRITE if avg else POOL_TO_WRITE)


def input_cycles(words):
    """Cycles of the input phase: one ``act_in`` word per cycle, then the last word's write
    (:data:`BUFFER_WRITE`) before the first pass reads."""
    return words + BUFFER_WRITE


def issue_to_latch(weight_register=False):
    """:data:`ISSUE_TO_LATCH`, one more with a register between the memory reads and the MAC
    array (``HardwareConfig.weight_register``)."""
    return ISSUE_TO_LATCH + int(weight_register)


def layer_cycles(words, groups, lanes, *, weight_register=False):
    """Cycles of one layer pass, from its first issued step to the next pass's first step.

    ``V + (G-1) * max(V, P)``: one (word, group) step per cycle, a group's last word waiting
    until the shadow bank has drained the previous group (P cycles); then
    ``ISSUE_TO_LATCH + P + DRAIN_TO_WRITE``: latch, drain P lanes, write the last byte
    (:func:`issue_to_latch` with ``weight_register``).
    """
    return (words + (groups - 1) * max(words, lanes) + issue_to_latch(weight_register) + lanes
            + DRAIN_TO_WRITE)


def fetch_cycles(rows, serial):
    """Cycles after a pass (not the last) to read the next pass's descriptor, counted in the
    pass: with a row-serial layer table (``HardwareConfig.serial_layers``) one row per cycle,
    the first row's read already issued during the pass; 0 with a descriptor-wide table,
    whose read overlaps the pass's settle."""
    return rows if serial else 0


def output_cycles(words):
    """Cycles of the output phase: one buffer read, then one ``act_out`` word per cycle."""
    return words + 1


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
