"""The FPGA builds declare every same-address read/write collision undefined
(``fpga.build.UNDEFINED_COLLISIONS``): no output may depend on what such a read returns.

Amaranth's simulator gives a non-transparent read the old data. Here every memory of the
accelerator is replaced by :class:`PoisonedMemory`, whose read returns the old data with
every bit flipped after a collision, and whole networks must still come out bit-exact and
cycle-exact.
"""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator
from conftest import CONV_CASES, random_cnn, random_network
from test_rtl_accelerator import random_inputs, run_rtl_checked


class PoisonedMemory(memory.Memory):
    """A :class:`~amaranth.lib.memory.Memory` whose synchronous reads return garbage (the old
    row inverted) when a write port not in the read's transparency set wrote the same row in
    the same cycle."""

    created = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._poisoned = []
        PoisonedMemory.created += 1

    def read_port(self, *, domain="sync", transparent_for=(), src_loc_at=0):
        inner = super().read_port(domain=domain, transparent_for=transparent_for, src_loc_at=1 + src_loc_at)
        if domain == "comb":
            return inner
        outer = memory.ReadPort(inner.signature, memory=None, domain=domain)
        self._poisoned.append((outer, inner, transparent_for))
        return outer

    def elaborate(self, platform):
        wrapper = Module()
        wrapper.submodules.memory = super().elaborate(platform)
        for outer, inner, transparent in self._poisoned:
            hit = Signal()
            for wp in self.write_ports:
                if wp not in transparent:
                    with wrapper.If(outer.en & wp.en.any() & (wp.addr == outer.addr)):
                        wrapper.d.comb += hit.eq(1)
            collided = Signal()
            with wrapper.If(outer.en):
                wrapper.d[outer.domain] += collided.eq(hit)
            value = inner.data.as_value() if hasattr(inner.data, "as_value") else inner.data
            wrapper.d.comb += [inner.addr.eq(outer.addr), inner.en.eq(outer.en),
                               outer.data.eq(value ^ collided.replicate(len(value)))]
        return wrapper


@pytest.fixture
def poisoned(monkeypatch):
    import ternac.rtl.accelerator
    import ternac.rtl.buffers
    for module in (ternac.rtl.accelerator, ternac.rtl.buffers):
        monkeypatch.setattr(module, "Memory", PoisonedMemory)


def test_poisoned_memory_returns_garbage_on_a_collision():
    """The model can fail: a read of the row being written gets the old row inverted."""
    mem = PoisonedMemory(shape=8, depth=4, init=[0x11, 0x22, 0x33, 0x44])
    wp, rp = mem.write_port(), mem.read_port()
    m = Module()
    m.submodules.mem = mem
    sim = Simulator(m)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        ctx.set(rp.addr, 2)
        ctx.set(wp.addr, 2)
        ctx.set(wp.data, 0x99)
        ctx.set(wp.en, 1)
        await ctx.tick()
        seen.append(ctx.get(rp.data))          # the colliding read's data
        ctx.set(wp.en, 0)
        await ctx.tick()
        seen.append(ctx.get(rp.data))          # a clean read of the new row

    sim.add_testbench(bench)
    sim.run()
    assert seen == [0x33 ^ 0xFF, 0x99]


@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_mlp_does_not_use_colliding_reads(stall):
    net = random_network([40, 24, 10], seed=5)
    run_rtl_checked(net, random_inputs(net, 3), stall=stall, seed=3)
    assert PoisonedMemory.created


@pytest.mark.usefixtures("poisoned")
@pytest.mark.parametrize("case", [1, 5, 6, 7])
def test_cnn_does_not_use_colliding_reads(case):
    """Padding, packed rows with fused max pooling, overlapping windows, average pooling."""
    shape, convs, classes = CONV_CASES[case]
    net = random_cnn(shape, convs, classes, seed=case)
    run_rtl_checked(net, random_inputs(net, 2))
    assert PoisonedMemory.created                      # the accelerator's memories were poisoned
