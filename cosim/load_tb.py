"""cocotb bench for the ``load`` protocol of the accelerator: split, partial, invalid, overlapped.

Runs inside the simulator, started by ``tests/test_cosim_load.py`` through
:func:`ternac.cosim.runner.run_test`. Like :mod:`ternac.cosim.accelerator_tb` it knows nothing
about networks: the pytest process builds the beats and the expected values from ``model/``
and hands over a program, a list of steps executed in order:

``{"op": "load", "beats", "headers", "idle_probability", "seed", "budget"}``
    Send the beats. ``headers`` are the indices of the beats that begin a transfer: the port
    must be idle (``load_busy`` 0) when it takes exactly those (``LOAD_PORT_LAG`` cycles after
    the stream accepts them), busy at every other beat, and idle after the last one, so every
    transfer (a rejected one too) takes exactly the beats ``model/status.py`` says and the
    port never hangs.
``{"op": "status", "expect": {field: value}}``
    The status word's fields (``model/status.py``) and the ``error`` port.
``{"op": "infer", ...}``
    :func:`ternac.cosim.accelerator_tb.run_infer` (scoreboard, cycle checks), within ``budget``.
``{"op": "overlap", "beats", "headers", "offer_after", "inputs", "expected", "n", "layer",
"sample", "idle_probability", "seed", "budget"}``
    Send ``beats[:offer_after]``, then offer one sample on ``act_in`` while the remaining
    beats go on (with idle gaps). ``act_in`` must not be accepted before the last beat; the
    outputs are compared on the scoreboard.
``{"op": "reset", "hold"}``
    Pulse ``rst``; afterwards ``busy``, ``cycles`` and the status word read 0.

Every wait has a cycle budget; running out fails the run naming the stream.
"""

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from ternac.model.hw.status import LOAD_PORT_LAG, decode_status
from ternac.model.pack import unpack_activations

from . import accelerator_tb
from .streams import StreamSink, StreamSource

CLOCK_NS = accelerator_tb.CLOCK_NS


async def within(coro, cycles, what):
    """Await ``coro``, failing with ``what`` if it takes more than ``cycles`` clock cycles."""
    task = cocotb.start_soon(coro)
    try:
        return await with_timeout(task, cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        task.cancel()
        raise AssertionError(f"{what}: not done within {cycles} cycles") from None


class LoadMonitor:
    """Records the cycle of every accepted ``load`` beat and ``load_busy`` in every cycle.

    The load port takes a beat :data:`LOAD_PORT_LAG` cycles after the stream does, and
    ``load_busy`` is its state: :meth:`busy_flags` reads it for each beat from then.
    """

    def __init__(self, dut, counter):
        self.dut, self.counter = dut, counter
        self.beats = []                      # cycles of the accepted beats
        self.busy = {}                       # cycle -> load_busy
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        while True:
            await ReadOnly()
            self.busy[self.counter.count] = decode_status(dut.status.value)["load_busy"]
            if dut.load__valid.value == 1 and dut.load__ready.value == 1:
                self.beats.append(self.counter.count)
            await RisingEdge(self.counter.clk)

    async def stop(self):
        """Stop once the port has taken the last beat and the cycle after it is recorded."""
        await ClockCycles(self.dut.clk, LOAD_PORT_LAG + 2)
        self._task.cancel()

    def busy_flags(self):
        """``load_busy`` as the port took each beat."""
        return [self.busy[cycle + LOAD_PORT_LAG] for cycle in self.beats]

    def idle_after(self):
        """``load_busy`` in the cycle after the port took the last beat: it must be clear."""
        return self.busy[self.beats[-1] + LOAD_PORT_LAG + 1]


def check_framing(step, busy_flags, problems, where):
    """Idle exactly at the header beats: each transfer took exactly its beats."""
    headers = set(step["headers"])
    for index, busy in enumerate(busy_flags):
        if busy != (index not in headers):
            kind = "header" if index in headers else "data/count"
            problems.append(f"{where}: load beat {index} ({kind}) accepted with load_busy={busy}: "
                            f"the port is out of step with the transfers")
            return


async def send_load(dut, counter, step, beats, what):
    source = StreamSource(dut, "load", counter, idle_probability=step.get("idle_probability", 0.0),
                          seed=step.get("seed", 0))
    budget = step["budget"]
    try:
        await within(source.send(beats, timeout_cycles=budget), budget + 1, f"stream 'load' ({what})")
    except AssertionError as error:
        status = decode_status(dut.status.value)
        raise AssertionError(f"{error}; {len(source.beats)} of {len(beats)} beats accepted, "
                             f"status {status}") from None
    return source


def check_idle_after_load(monitor, problems, where):
    if monitor.idle_after():
        problems.append(f"{where}: load_busy still set after the last beat (the port hangs)")


async def run_load(dut, counter, step, problems):
    monitor = LoadMonitor(dut, counter)
    start = counter.count
    try:
        await send_load(dut, counter, step, step["beats"], "load step")
    finally:
        await monitor.stop()
    check_framing(step, monitor.busy_flags(), problems, "load")
    check_idle_after_load(monitor, problems, "load")
    return {"op": "load", "beats": len(step["beats"]), "cycles": counter.count - start}


async def run_status(dut, step, problems):
    await ReadOnly()
    status = decode_status(dut.status.value)
    error_port = int(dut.error.value)
    await RisingEdge(dut.clk)
    for name, value in step["expect"].items():
        if status[name] != value:
            problems.append(f"status: {name} = {status[name]}, expected {value} (word {status})")
    if error_port != status["error"]:
        problems.append(f"status: error port {error_port} != status error bit {status['error']}")
    return {"op": "status", "status": status}


async def run_overlap(dut, counter, step, scoreboard, problems):
    beats, split = step["beats"], step["offer_after"]
    monitor = LoadMonitor(dut, counter)
    sink = StreamSink(dut, "act_out", counter).start()
    inputs = StreamSource(dut, "act_in", counter)
    out_words = -(-len(step["expected"]) // step["n"])
    try:
        await send_load(dut, counter, step, beats[:split], "before act_in is offered")
        sender = cocotb.start_soon(within(inputs.send(step["inputs"], timeout_cycles=step["budget"]),
                                          step["budget"] + 1, "stream 'act_in'"))
        await send_load(dut, counter, step, beats[split:], "while act_in is offered")
        await within(sink.wait_for(out_words, timeout_cycles=step["budget"]), step["budget"] + 1,
                     "stream 'act_out'")
        await sender
    finally:
        await monitor.stop()
        sink.stop()
    check_framing(step, monitor.busy_flags(), problems, "overlap")
    last_load = monitor.beats[-1]
    first_in = inputs.beats[0].cycle
    if first_in <= last_load:
        problems.append(f"overlap: act_in accepted at cycle {first_in}, during the load transfer "
                        f"(its last beat at cycle {last_load})")
    actual = unpack_activations([beat.value for beat in sink.beats[:out_words]],
                                len(step["expected"]), step["n"]).tolist()
    scoreboard.compare(step["sample"], step["layer"], step["expected"], actual)
    await RisingEdge(dut.clk)
    return {"op": "overlap", "outputs": actual, "first_act_in": first_in, "last_load": last_load}


async def run_reset(dut, step, problems):
    dut.rst.value = 1
    await ClockCycles(dut.clk, step.get("hold", 2))
    dut.rst.value = 0
    await ReadOnly()
    seen = {"busy": int(dut.busy.value), "cycles": int(dut.cycles.value),
            "status": int(dut.status.value), "error": int(dut.error.value)}
    await RisingEdge(dut.clk)
    for name, value in seen.items():
        if value:
            problems.append(f"reset: {name} reads {value} after rst, expected 0")
    return {"op": "reset", **seen}


STEPS = {
    "load": lambda dut, counter, step, scoreboard, problems: run_load(dut, counter, step, problems),
    "status": lambda dut, counter, step, scoreboard, problems: run_status(dut, step, problems),
    "infer": lambda dut, counter, step, scoreboard, problems: within(
        accelerator_tb.run_infer(dut, counter, step, scoreboard, problems), step["budget"],
        "streams 'act_in'/'act_out' (infer step)"),
    "overlap": run_overlap,
    "reset": lambda dut, counter, step, scoreboard, problems: run_reset(dut, step, problems),
}


@cocotb.test()
async def load_program(dut):
    """Execute the program handed over by the pytest process (see the module docstring)."""
    await accelerator_tb.run_script(dut, "load", STEPS)
