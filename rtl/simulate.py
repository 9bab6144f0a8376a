"""Run the accelerator in Amaranth's simulator: load it, stream inputs in, collect outputs."""

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator
from ternac.model.hw import ACTIONS
from ternac.model.pack import unpack_activations

__all__ = ["RtlRun", "run_rtl_network"]


@dataclass
class RtlRun:
    """Outputs of :func:`run_rtl_network`: int8 outputs and, per inference, cycle counts."""

    outputs: np.ndarray                                     # (B, out_count) int8
    cycles: list = field(default_factory=list)              # the accelerator's counter
    measured: list = field(default_factory=list)            # last out - first in + 1, seen outside
    actions: list = field(default_factory=list)             # activity counters, if the dut has them


def run_rtl_network(dut, inputs, *, program, beats=(), stall=0.0, seed=0, vcd=None,
                    timeout_cycles=1_000_000):
    """Simulate ``dut`` (an :class:`~ternac.rtl.accelerator.Accelerator`) on int8 ``inputs``.

    Parameters
    ----------
    inputs : array (B, ...) of int8
    program : AcceleratorProgram
        The lowered network: input layout, output words and where each output value lies.
    beats : list of int
        ``load`` stream sent first (:meth:`AcceleratorProgram.load_beats <ternac.model.hw.lower.AcceleratorProgram>`).
    stall : float
        Probability that the source holds back a beat or the sink refuses one, per cycle;
        0 gives the always-ready conditions of the cycle model.
    timeout_cycles : int
        Cycles one inference may take before the run fails (a hung design must fail, not
        stall the suite: this simulator manages a few thousand cycles per second).
    """
    n = dut.config.coding.n
    rng = np.random.default_rng(seed)
    positions = program.output_positions()
    result = RtlRun(np.zeros((len(inputs), len(positions)), dtype=np.int8))

    def go():
        return stall == 0 or rng.random() >= stall

    async def bench(ctx):
        i = 0
        while i < len(beats):
            valid = go()
            ctx.set(dut.load.valid, valid)
            ctx.set(dut.load.payload, beats[i])
            _, _, ready = await ctx.tick().sample(dut.load.ready)
            i += valid and ready
        ctx.set(dut.load.valid, 0)
        words_out = program.output_words
        for b, x in enumerate(inputs):
            words = program.input_stream(x)
            sent, received, t, first_in = 0, [], 0, None
            held = False                        # act_in.ready was high with words left to take
            while len(received) < words_out:
                valid = sent < len(words) and go()
                ready = go()
                ctx.set(dut.act_in.valid, valid)
                ctx.set(dut.act_in.payload, words[min(sent, len(words) - 1)])
                ctx.set(dut.act_out.ready, ready)
                _, _, in_ready, out_valid, payload = await ctx.tick().sample(
                    dut.act_in.ready, dut.act_out.valid, dut.act_out.payload)
                if held and not in_ready:
                    raise AssertionError(f"sample {b}, cycle {t}: act_in.ready fell without a transfer "
                                         "(the Accelerator's act_in contract)")
                held = in_ready and sent < len(words) - (valid and in_ready)
                if valid and in_ready:
                    first_in = t if first_in is None else first_in
                    sent += 1
                if out_valid and ready:
                    received.append(payload)
                    last_out = t
                t += 1
                if t > timeout_cycles:
                    raise TimeoutError(f"sample {b}: no complete output within {timeout_cycles} cycles")
            ctx.set(dut.act_in.valid, 0)
            ctx.set(dut.act_out.ready, 0)
            await ctx.tick()
            result.outputs[b] = unpack_activations(received, words_out * n, n)[positions]
            result.cycles.append(ctx.get(dut.cycles))
            result.measured.append(last_out - first_in + 1)
            if "activity" in dut.signature.members:
                result.actions.append({name: ctx.get(getattr(dut.activity, name)) for name in ACTIONS})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result
