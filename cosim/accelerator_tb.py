"""cocotb test bench for the accelerator (:class:`ternac.rtl.accelerator.Accelerator`).

Runs inside the simulator process, started by :func:`ternac.cosim.accelerator_sim.run_rtl_program`.
It knows nothing about networks: the pytest process computes everything expected with the
golden model (:func:`~ternac.cosim.accelerator_sim.golden_steps`) and hands over a *program*,
a list of steps that this bench executes in order on one simulated accelerator:

``{"op": "load", "beats": [...], "idle_probability": p, "seed": s, "timeout_cycles": t}``
    Send 32-bit beats on the ``load`` stream (weights, parameters, layer table, codebook).
``{"op": "infer", ...}``
    Run samples one after the other. Keys: ``inputs`` (per sample, the ``act_in`` words),
    ``expected`` (per sample, the golden int8 outputs), ``n`` (int8 values per word),
    ``out_words`` (output words per sample) and ``positions`` (the byte of the output stream
    holding each expected value: a feature map arrives pixel by pixel, channels padded),
    ``layer`` (network layer index the outputs belong to), ``first_sample`` (sample number
    of the first one, for messages), ``predicted`` (cycle model: ``input``, ``layers``,
    ``output``, ``total``), ``check_cycles`` (assert the totals equal the model: only
    meaningful without idle cycles or back-pressure), ``layer_cycles`` (probe the sequencer
    for per-layer cycles), ``idle_probability``/``max_idle`` (input source),
    ``stall_probability`` (output back-pressure), ``seed``, ``timeout_cycles``, ``actions``
    (per inference, the counts the ``activity__*`` ports must show; checked if the design
    has those ports, and handed back either way).
``{"op": "reset", ...}``
    Start an inference with ``inputs`` (one sample), wait until ``busy`` has been high for
    ``after_cycles`` cycles, assert ``rst`` for ``hold`` cycles, and check the accelerator is
    idle afterwards. Whatever left ``act_out`` before the reset is discarded.

Every wait is bounded by its step's ``timeout_cycles`` (computed in the pytest process by
:func:`~ternac.cosim.accelerator_sim.golden_budget` from the cycle model or the number of
beats): a load may leave beats waiting that many cycles in all; one sample may take that many
cycles from its first ``act_in`` beat offered to its last ``act_out`` beat; a reset step may
wait that long for ``busy``. Overrunning fails the test at once with a message naming the
step, the stream and the cycle (:exc:`~ternac.cosim.streams.StreamTimeout`), so a hung design
costs seconds, not the suite.

Checks, all within the simulator: every output value against ``expected`` (through a
:class:`~ternac.cosim.scoreboard.Scoreboard`; the failure names sample, layer and neuron),
no extra output beats, the on-chip ``cycles`` counter equal to the measured first ``act_in``
to last ``act_out`` handshake count, and with ``check_cycles`` both equal to the model (per
layer too, when probed). The bench hands back, per step, the outputs it received and every
cycle count (:func:`~ternac.cosim.runner.save_output`), also when a check fails.

Per-layer cycles come from three ports of the sequencer (``issue``, ``sel``, ``out_en``):
layer ``l`` starts at its first issued step (layer 0 after the input, later layers when the
activation buffers have swapped), the output phase at the first output-buffer read.
"""

import itertools
import time

import cocotb
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, ValueChange
from ternac.model.pack import unpack_activations

from .runner import load_data, save_output
from .scoreboard import Scoreboard
from .streams import StreamSink, StreamSource, StreamTimeout, clock_and_reset

CLOCK_NS = 10
#: Cycles to keep watching ``act_out`` after the last expected word (extra beats are errors).
QUIET_CYCLES = 8


class LayerProbe:
    """Cycle stamps of each inference's phases, from the sequencer's ports.

    For inference ``j``: ``records[j] = {"start": first act_in handshake, "layers": [first step
    of each layer], "output": first output-buffer read}``. A pass starts at the first issued
    step after the buffers swap (``sel`` toggles); between those events the probe sleeps
    instead of reading every cycle (``sel`` is a register; the combinational ``out_en`` is
    read again once settled, so a glitch is not an event).
    """

    def __init__(self, dut, counter):
        seq = dut.sequencer
        self.signals = (dut.act_in__valid, dut.act_in__ready, seq.issue, seq.sel, seq.out_en)
        self.counter = counter
        self.records = []
        self._task = cocotb.start_soon(self._run())

    async def _first_issue(self):
        """Cycle of the next issued step, from now (called while settled; returns after the
        edge that follows it)."""
        issue = self.signals[2]
        while issue.value != 1:
            await RisingEdge(self.counter.clk)
            await ReadOnly()
        cycle = self.counter.count
        await RisingEdge(self.counter.clk)
        return cycle

    async def _run(self):
        in_valid, in_ready, _, sel, out_en = self.signals
        while True:
            await ReadOnly()
            if not (in_valid.value == 1 and in_ready.value == 1):
                await RisingEdge(self.counter.clk)
                continue
            current = {"start": self.counter.count, "layers": [], "output": None}
            self.records.append(current)
            first_sel = int(sel.value)
            current["layers"].append(await self._first_issue())
            while True:
                await ReadOnly()
                if out_en.value == 1:
                    current["output"] = self.counter.count
                    await RisingEdge(self.counter.clk)
                    break
                if int(sel.value) == (first_sel + len(current["layers"])) % 2:
                    current["layers"].append(await self._first_issue())      # the next pass
                    continue
                await First(ValueChange(sel), RisingEdge(out_en))

    def stop(self):
        self._task.cancel()


async def run_load(dut, counter, step):
    source = StreamSource(dut, "load", counter,
                          idle_probability=step.get("idle_probability", 0.0),
                          seed=step.get("seed", 0))
    start = counter.count
    try:
        await source.send(step["beats"], timeout_cycles=step["timeout_cycles"])
    except StreamTimeout as error:
        raise StreamTimeout(f"load step: {error}") from None
    return {"op": "load", "beats": len(step["beats"]), "cycles": counter.count - start}


async def run_infer(dut, counter, step, scoreboard, problems):
    n, expected = step["n"], step["expected"]
    # Where each expected value lies in a sample's output stream (a feature map is sent pixel
    # by pixel, channels padded to whole words); by default the first values in order.
    positions = step.get("positions")
    out_words = [step.get("out_words") or -(-len(values) // n) for values in expected]
    source = StreamSource(dut, "act_in", counter,
                          idle_probability=step.get("idle_probability", 0.0),
                          max_idle=step.get("max_idle", 4), seed=step.get("seed", 0))
    sink = StreamSink(dut, "act_out", counter, stall_probability=step.get("stall_probability", 0.0),
                      seed=step.get("seed", 0) + 1).start()
    probe = LayerProbe(dut, counter) if step.get("layer_cycles") else None
    budget = step["timeout_cycles"]
    progress = step.get("progress_file")
    result = {"op": "infer", "outputs": [], "measured": [], "onchip": [], "layer_cycles": [],
              "actions": [], "sim_cycles": 0, "wall_seconds": 0.0}
    counters = activity_ports(dut, step.get("actions"))
    start_cycle, start_time = counter.count, time.perf_counter()
    first_sample = step.get("first_sample", 0)
    received = 0
    try:
        for index, words in enumerate(step["inputs"]):
            sample = first_sample + index
            first_in = len(source.beats)
            # No waiting on edges of `busy`: it is combinational, and simulators report
            # glitches of such signals as value changes. Poll the sink once per cycle.
            deadline = counter.count + budget
            try:
                await source.send(words, timeout_cycles=budget)
                await sink.wait_for(received + out_words[index],
                                    timeout_cycles=max(0, deadline - counter.count))
            except StreamTimeout as error:
                raise StreamTimeout(f"sample {sample}: inference not finished within "
                                    f"{budget} cycles: {error}") from None
            await ReadOnly()
            if dut.busy.value != 0:
                problems.append(f"sample {sample}: still busy after its last output word")
            onchip = int(dut.cycles.value)
            if counters:
                actions = {name: int(port.value) for name, port in counters.items()}
                result["actions"].append(actions)
                if actions != step["actions"]:
                    differ = {name: (actions[name], step["actions"][name]) for name in actions
                              if actions[name] != step["actions"][name]}
                    problems.append(f"sample {sample}: activity counters differ from the program's "
                                    f"actions (measured, modelled): {differ}")
            beats = sink.beats[received:received + out_words[index]]
            received += len(beats)
            # the activation word layout has one definition: model/pack.py
            stream = unpack_activations([beat.value for beat in beats], len(beats) * n, n)
            actual = (stream[positions] if positions else stream[:len(expected[index])]).tolist()
            scoreboard.compare(sample, step["layer"], expected[index], actual)
            result["outputs"].append(actual)
            measured = (beats[-1].cycle - source.beats[first_in].cycle + 1) if beats else None
            result["measured"].append(measured)
            result["onchip"].append(onchip)
            if len(beats) != out_words[index]:
                problems.append(f"sample {sample}: {len(beats)} of {out_words[index]} output "
                                f"words")
            elif onchip != measured:
                problems.append(f"sample {sample}: on-chip cycles {onchip} != measured {measured}")
            if step.get("check_cycles") and measured != step["predicted"]["total"]:
                problems.append(f"sample {sample}: measured {measured} cycles, cycle model "
                                f"predicts {step['predicted']['total']}")
            if progress:
                with open(progress, "a") as file:  # noqa: ASYNC230 (a few bytes per sample)
                    file.write(f"{sample}\n")
            await RisingEdge(dut.clk)      # leave ReadOnly before driving the next sample
        await ClockCycles(dut.clk, QUIET_CYCLES)
        if len(sink.beats) != received:
            problems.append(f"{len(sink.beats) - received} extra output words after the last "
                            f"sample (duplicated beats?)")
    finally:
        result["sim_cycles"] = counter.count - start_cycle
        result["wall_seconds"] = time.perf_counter() - start_time
        sink.stop()
        if probe is not None:
            probe.stop()
            result["layer_cycles"] = layer_cycles(probe.records, sink.beats, out_words)
            check_layer_cycles(step, result, problems)
    return result


def activity_ports(dut, actions):
    """The ``activity__<name>`` ports for the actions ``actions`` names, or ``{}`` if the design
    was built without activity counters."""
    names = list(actions or ())
    if not names or not hasattr(dut, f"activity__{names[0]}"):
        return {}
    return {name: getattr(dut, f"activity__{name}") for name in names}


def layer_cycles(records, beats, out_words):
    """Per inference ``[input, layer 0, ..., layer L-1, output]`` cycles from probe stamps."""
    rows, end = [], 0
    for record, count in zip(records, out_words):
        end += count
        if record["output"] is None or not record["layers"] or end > len(beats):
            rows.append(None)
            continue
        marks = [record["start"], *record["layers"], record["output"], beats[end - 1].cycle + 1]
        rows.append([b - a for a, b in itertools.pairwise(marks)])
    return rows


def check_layer_cycles(step, result, problems):
    predicted = step["predicted"]
    expect = [predicted["input"], *predicted["layers"], predicted["output"]]
    for index, row in enumerate(result["layer_cycles"]):
        sample = step.get("first_sample", 0) + index
        if row is None or len(row) != len(expect):
            problems.append(f"sample {sample}: per-layer probe saw {row}, expected phases {expect}")
            continue
        # Layers never wait for the streams; the input and output phases do when stalled.
        compare = range(len(expect)) if step.get("check_cycles") else range(1, len(expect) - 1)
        for i in compare:
            if row[i] != expect[i]:
                what = "input" if i == 0 else "output" if i == len(expect) - 1 else f"layer {i - 1}"
                problems.append(f"sample {sample}: {what} took {row[i]} cycles, cycle model "
                                f"predicts {expect[i]}")
                break


async def run_reset(dut, counter, step, problems):
    budget = step["timeout_cycles"]
    source = StreamSource(dut, "act_in", counter, seed=step.get("seed", 0))
    sink = StreamSink(dut, "act_out", counter).start()
    sender = cocotb.start_soon(source.send(step["inputs"], timeout_cycles=budget))
    busy_cycles = 0
    for _ in range(budget):
        await ReadOnly()
        busy_cycles += int(dut.busy.value == 1)
        await RisingEdge(dut.clk)
        if busy_cycles >= step["after_cycles"]:
            break
    else:
        raise StreamTimeout(
            f"reset step: 'busy' high for only {busy_cycles} of {step['after_cycles']} cycles "
            f"within {budget} cycles at cycle {counter.count} (stream 'act_in' took "
            f"{len(source.beats)} of {len(step['inputs'])} beats)")
    sender.cancel()
    dut.act_in__valid.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, step.get("hold", 2))
    dut.rst.value = 0
    sink.stop()
    await ReadOnly()
    busy_after = int(dut.busy.value)
    if busy_after:
        problems.append("reset step: still busy after reset")
    await RisingEdge(dut.clk)
    return {"op": "reset", "busy_cycles": busy_cycles, "inputs_taken": len(source.beats),
            "discarded_outputs": len(sink.beats), "busy_after": busy_after}


async def run_script(dut, name, handlers):
    """Execute the bench script handed over by the pytest process, one step after the other.

    ``handlers[op](dut, counter, step, scoreboard, problems)`` runs a step of kind ``op`` and
    returns its record. Whatever happens, every record so far and the scoreboard's counts go
    back to the pytest process; then any mismatch or problem fails the test.
    """
    data = load_data()
    dut.act_in__valid.value = 0
    dut.act_out__ready.value = 0
    dut.load__valid.value = 0
    counter = await clock_and_reset(dut, period_ns=CLOCK_NS)
    scoreboard = Scoreboard(data.get("name", name))
    problems, steps = [], []
    try:
        for step in data["steps"]:
            if step["op"] not in handlers:
                raise ValueError(f"unknown step {step['op']!r}")
            steps.append(await handlers[step["op"]](dut, counter, step, scoreboard, problems))
    finally:
        save_output({"steps": steps, "checked": scoreboard.checked,
                     "mismatches": len(scoreboard.mismatches),
                     "first_mismatch": str(scoreboard.first_mismatch or "") or None,
                     "problems": problems})
    scoreboard.finish()
    assert not problems, "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)"
                                                     if len(problems) > 5 else "")


STEPS = {
    "load": lambda dut, counter, step, scoreboard, problems: run_load(dut, counter, step),
    "infer": run_infer,
    "reset": lambda dut, counter, step, scoreboard, problems: run_reset(dut, counter, step, problems),
}


@cocotb.test()
async def accelerator_program(dut):
    """Execute the program handed over by the pytest process (see the module docstring)."""
    await run_script(dut, "accelerator", STEPS)
