"""The accelerator's cycle model: exact clock cycles of one inference (``docs/architecture.md``).

The RTL meets this model cycle for cycle: its ``cycles`` counter equals
:func:`predict_cycles` for every network, which the RTL tests check.
"""

from dataclasses import dataclass

from .hwimage import accelerator_layers

__all__ = ["DRAIN_TO_WRITE", "ISSUE_TO_LATCH", "CycleReport", "predict_cycles", "utilization"]

#: Cycles from issuing a (weight word, activation word) read to the cycle in which its sum is
#: accumulated (and, for a group's last word, latched into the shadow bank): memory read,
#: decoder table read, slot select and K-input sum.
ISSUE_TO_LATCH = 3
#: Cycles from a shadow-bank lane leaving the bank to the cycle its output byte is written:
#: parameter memory read (1), then the requantizer's 4 register stages (bias add, multiply,
#: rounding shift, rounding increment; ``Requantizer.latency``); ReLU and saturation feed the
#: byte write combinationally.
DRAIN_TO_WRITE = 1 + 4


@dataclass
class CycleReport:
    """Predicted cycles of one inference.

    ``total = input + sum(layers) + output`` is ``t_last_out - t_first_in + 1``: the cycles
    from the first ``act_in`` handshake to the last ``act_out`` handshake, both included,
    with a source that always has data and a sink that is always ready.
    """

    input: int
    layers: list            # (name, cycles) per accelerator layer
    output: int
    total: int
    macs: int               # dense-equivalent multiply-accumulates (sum of in * out)
    lanes: int
    n: int

    @property
    def utilization(self):
        """Achieved over peak dense-equivalent MACs: ``macs / (P * N * total)``."""
        return self.macs / (self.lanes * self.n * self.total)


def predict_cycles(network, geometry):
    """Cycles of one inference of ``network`` on an accelerator of ``geometry``.

    With ``P`` lanes, ``N`` activations per word and, per layer, ``V`` input words
    (sub-vectors per row), ``G = ceil(O / P)`` lane groups::

        input  = V of the first layer                   one act_in word per cycle
        layer  = V + (G-1) * max(V, P)                  one (word, group) step per cycle; a
                                                        group's last word waits until the
                                                        shadow bank has drained (P cycles)
                 + ISSUE_TO_LATCH + P + DRAIN_TO_WRITE  after the last step: latch, drain P
                                                        lanes, write the last output byte;
                                                        the next cycle is the next layer's
                                                        first step (or the first output read)
        output = ceil(O / N) of the last layer + 1      one act_out word per cycle, each
                                                        sent the cycle after its buffer read
    """
    lanes, n = geometry.lanes, geometry.coding.n
    layers = [layer for layer, _ in accelerator_layers(network)]
    per_layer = []
    for layer in layers:
        v, g = layer.subvectors, geometry.groups(layer.out_features)
        cycles = v + (g - 1) * max(v, lanes) + ISSUE_TO_LATCH + lanes + DRAIN_TO_WRITE
        per_layer.append((layer.name, cycles))
    first_in = layers[0].subvectors
    last_out = -(-layers[-1].out_features // n) + 1
    total = first_in + sum(c for _, c in per_layer) + last_out
    macs = sum(layer.in_features * layer.out_features for layer in layers)
    return CycleReport(first_in, per_layer, last_out, total, macs, lanes, n)


def utilization(network, geometry):
    """Dense-equivalent MACs per cycle over the whole inference, as a fraction of ``P*N``."""
    return predict_cycles(network, geometry).utilization
