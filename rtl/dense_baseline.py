"""The dense int8 baseline: same interface and outputs per cycle, with P*N multipliers."""

from dataclasses import replace

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from ternac.model.arith import ACT_BITS

from .accelerator import Accelerator
from .mac_array import accumulate, mac_members

__all__ = ["DenseBaseline", "DenseMacArray"]


class DenseMacArray(wiring.Component):
    """P lanes of N int8 x int8 multipliers and an N-input adder tree each.

    The comparison point for every area and energy figure: the same P*N multiply-accumulates
    per cycle as :class:`~ternac.rtl.mac_array.TernaryMacArray`, but from stored int8 weights
    (P*N per weight word) instead of codes. Stage 1 registers the P*N products, stage 2 the
    lane sums, stage 3 accumulates exactly like the ternary array.

    Latency: 2 cycles from ``weights``/``acts`` to ``latch``, as the ternary array, so the
    sequencer and the cycle model are shared.
    """

    def __init__(self, *, lanes, n, acc_bits, tag_bits):
        self._lanes = lanes
        self._n = n
        super().__init__(mac_members(lanes=lanes, n=n, weight_bits=lanes * n * ACT_BITS,
                                     acc_bits=acc_bits, tag_bits=tag_bits))

    @property
    def latency(self):
        return 2

    def elaborate(self, platform):
        m = Module()
        n = self._n
        x = [self.acts[ACT_BITS * i: ACT_BITS * (i + 1)].as_signed() for i in range(n)]
        ctrl = [self.valid, self.last, self.tag]
        ctrl1 = [Signal.like(s, name=f"{s.name}_1") for s in ctrl]
        ctrl2 = [Signal.like(s, name=f"{s.name}_2") for s in ctrl]
        m.d.sync += [r.eq(s) for r, s in zip(ctrl1, ctrl)] + [r.eq(s) for r, s in zip(ctrl2, ctrl1)]
        sums = []
        for p in range(self._lanes):
            products = []
            for i in range(n):
                bit = ACT_BITS * (p * n + i)
                product = Signal(signed(2 * ACT_BITS), name=f"prod{p}_{i}")
                m.d.sync += product.eq(self.weights[bit: bit + ACT_BITS].as_signed() * x[i])
                products.append(product)
            total = Signal(signed(2 * ACT_BITS + n.bit_length()), name=f"sum{p}")
            m.d.sync += total.eq(sum(products))
            sums.append(total)
        valid, last, tag = ctrl2
        accumulate(m, addends=[[s] for s in sums], valid=valid, last=last, tag=tag, component=self)
        return m


class DenseBaseline(Accelerator):
    """:class:`~ternac.rtl.accelerator.Accelerator` with the :class:`DenseMacArray`."""

    def __init__(self, config, *, image=None):
        super().__init__(replace(config, dense=True, codebook_depth=0), image=image)
