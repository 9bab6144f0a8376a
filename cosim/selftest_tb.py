"""cocotb test bench for :class:`~ternac.cosim.selftest_dut.AddConstant`.

Runs inside the simulator, started by ``tests/test_cosim_infra.py`` through
:func:`ternac.cosim.runner.run`. The data it receives:

``values``           payloads to send
``addend``           the constant the test bench *expects* the design to add
``width``            payload width
``idle_probability``, ``max_idle``, ``stall_probability``, ``seed``
                     random idle cycles on the input and back-pressure on the output
"""

import cocotb
from cocotb.triggers import ClockCycles

from .runner import load_data, save_output
from .scoreboard import Scoreboard
from .streams import StreamSink, StreamSource, clock_and_reset


@cocotb.test()
async def add_constant_stream(dut):
    data = load_data()
    values, mask = data["values"], (1 << data["width"]) - 1
    counter = await clock_and_reset(dut)
    source = StreamSource(dut, "i", counter, idle_probability=data["idle_probability"],
                          max_idle=data["max_idle"], seed=data["seed"])
    sink = StreamSink(dut, "o", counter, stall_probability=data["stall_probability"],
                      seed=data["seed"] + 1).start()
    # Budgets from the beat count: the design moves a beat every other cycle when unstalled.
    budget = 20 * len(values) + 100
    cocotb.start_soon(source.send(values, timeout_cycles=budget))

    await sink.wait_for(len(values), timeout_cycles=budget)
    await ClockCycles(dut.clk, 20)  # anything arriving now is a duplicated beat

    # Beat k is "neuron" k: the scoreboard then names the first beat that went wrong.
    scoreboard = Scoreboard("add_constant")
    scoreboard.compare(sample=0, layer=0,
                       expected=[(value + data["addend"]) & mask for value in values],
                       actual=sink.values)
    save_output({"in_cycles": source.cycles, "out_cycles": sink.cycles,
                 "cycles": sink.cycles[-1] - source.cycles[0] + 1})
    scoreboard.finish()
