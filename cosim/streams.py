"""cocotb drivers for Amaranth streams (runs inside the simulator process).

An ``amaranth.lib.stream`` port named ``x`` appears in generated Verilog as the three
signals ``x__payload``, ``x__valid`` and ``x__ready``. A beat is transferred at a rising
clock edge where ``valid`` and ``ready`` are both high.

Sampling rule, and why
----------------------
Verilator and Icarus disagree on what a coroutine sees right after ``await RisingEdge(clk)``:
Icarus resumes it before the non-blocking assignments of that edge (registers still show
their old values), Verilator after evaluating the whole design (registers show new values).
So nothing here reads the design at the edge. Instead every driver follows the same cycle:

1. after a rising edge, drive inputs for the coming cycle;
2. ``await ReadOnly()``: all signals have settled, and nothing changes until the next edge,
   so what is read here is exactly what the next edge will sample (on both simulators);
3. ``await RisingEdge(clk)`` and act on the handshake decided in step 2.

Cycle numbers come from a :class:`CycleCounter`; a handshake is stamped with the index of the
edge that transfers it (the first edge after the counter starts is cycle 0). Share one
counter between a source and a sink to measure latency in cycles.

Every wait has a budget
-----------------------
A design that stops handshaking must fail the test, not hang the suite. So no driver waits
without a cycle budget: :meth:`StreamSource.send` and :meth:`StreamSink.wait_for` take
``timeout_cycles`` (no default; the caller derives it from the cycle model or the number of
beats) and raise :exc:`StreamTimeout`, naming the stream, the beats done and the cycle.
"""

import random
from dataclasses import dataclass

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_steps, get_sim_time

__all__ = ["Beat", "CycleCounter", "StreamSink", "StreamSource", "StreamTimeout",
           "clock_and_reset"]


class StreamTimeout(AssertionError):
    """A stream did not handshake within its cycle budget (an :exc:`AssertionError`: the
    cocotb test fails with this message)."""


class CycleCounter:
    """Count rising edges of ``clk`` from now on (call just after a rising edge).

    The count is read off the simulation time (edges are one clock ``period`` apart), so no
    coroutine wakes on every edge: waits in the benches sleep until something happens.

    Parameters
    ----------
    clk : cocotb handle
        Clock signal.
    period_ns : int
        Its period.

    Attributes
    ----------
    count : int
        Number of rising edges since the counter started. Read during ``ReadOnly()`` it is
        also the index of the *next* edge, which is how :class:`StreamSource` and
        :class:`StreamSink` stamp handshakes.
    """

    def __init__(self, clk, period_ns):
        self.clk = clk
        self.period = get_sim_steps(period_ns, "ns")
        self._start = get_sim_time("step")

    @property
    def count(self):
        return int(get_sim_time("step") - self._start) // self.period

    def timer(self, cycles):
        """A trigger ``cycles`` clock periods from now."""
        return Timer(max(1, cycles) * self.period, "step")

    def stop(self):
        """Nothing to stop (kept for the drivers' symmetry)."""


async def clock_and_reset(dut, period_ns=10, reset_cycles=2):
    """Start a clock on ``dut.clk``, pulse ``dut.rst``, and start a :class:`CycleCounter`.

    Returns just after a rising edge with reset released, so drivers can start at once. The
    returned counter's cycle 0 is the first edge after reset.

    Parameters
    ----------
    dut : cocotb handle
        Top level with Amaranth's ``clk`` and ``rst`` ports.
    period_ns : int
        Clock period in nanoseconds.
    reset_cycles : int
        Number of rising edges with reset asserted.

    Returns
    -------
    :class:`CycleCounter`
    """
    dut.rst.value = 1
    Clock(dut.clk, period_ns, unit="ns").start()
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst.value = 0
    return CycleCounter(dut.clk, period_ns)


@dataclass(frozen=True)
class Beat:
    """One transferred beat: its payload and the cycle index of its handshake."""
    value: int
    cycle: int


class _StreamPort:
    def __init__(self, dut, name, counter, seed):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.name = name
        self.counter = counter
        self.clk = counter.clk
        self.rng = random.Random(seed)
        self.beats = []

    @property
    def values(self):
        """Payloads transferred so far, in order."""
        return [beat.value for beat in self.beats]

    @property
    def cycles(self):
        """Handshake cycle indices, in order."""
        return [beat.cycle for beat in self.beats]


class StreamSource(_StreamPort):
    """Drive an Amaranth stream input port ``<name>__payload/valid/ready`` of the design.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    name : str
        Port name in the Amaranth signature (``"i"`` for ``dut.i__payload`` etc.).
    counter : :class:`CycleCounter`
        Cycle counter used to stamp handshakes (and provides the clock).
    idle_probability : float
        Probability of inserting idle cycles (``valid`` low) before a beat.
    max_idle : int
        An idle gap lasts a uniformly random 1 to ``max_idle`` cycles.
    seed : int
        Seed of the idle-cycle pattern; the same seed gives the same pattern.

    Attributes
    ----------
    beats : list of :class:`Beat`
        Beats accepted by the design so far.
    """

    def __init__(self, dut, name, counter, *, idle_probability=0.0, max_idle=4, seed=0):
        super().__init__(dut, name, counter, seed)
        self.idle_probability = idle_probability
        self.max_idle = max_idle
        self.valid.value = 0

    async def send(self, values, *, timeout_cycles):
        """Send ``values`` one beat each, returning after the last one is accepted.

        Call it just after a rising edge (for example, right after :func:`clock_and_reset`
        or ``await RisingEdge(clk)``). ``valid`` stays high from the time a beat is offered
        until it is accepted, as the stream protocol requires.

        Raises
        ------
        :exc:`StreamTimeout`
            If the design leaves beats waiting (``valid`` high, ``ready`` low) for more than
            ``timeout_cycles`` cycles in all; the source's own idle cycles do not count.
        """
        mask = (1 << len(self.payload)) - 1
        waited = 0
        for index, value in enumerate(values):
            if self.idle_probability and self.rng.random() < self.idle_probability:
                self.valid.value = 0
                for _ in range(self.rng.randint(1, self.max_idle)):
                    await RisingEdge(self.clk)
            self.payload.value = int(value) & mask
            self.valid.value = 1
            while True:
                await ReadOnly()
                accepted = self.ready.value == 1
                cycle = self.counter.count
                await RisingEdge(self.clk)
                if accepted:
                    self.beats.append(Beat(int(value), cycle))
                    break
                waited += 1
                if waited > timeout_cycles:
                    self.valid.value = 0
                    raise StreamTimeout(
                        f"stream {self.name!r}: beat {index} of {len(values)} not accepted, "
                        f"ready low for {waited} cycles (budget {timeout_cycles}) at cycle "
                        f"{cycle}")
        self.valid.value = 0


class StreamSink(_StreamPort):
    """Collect beats from an Amaranth stream output port, with optional back-pressure.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    name : str
        Port name in the Amaranth signature (``"o"`` for ``dut.o__payload`` etc.).
    counter : :class:`CycleCounter`
        Cycle counter used to stamp handshakes (and provides the clock).
    stall_probability : float
        Probability that ``ready`` is low in any given cycle.
    signed : bool
        Read payloads as two's complement.
    seed : int
        Seed of the back-pressure pattern.

    Attributes
    ----------
    beats : list of :class:`Beat`
        Beats received so far.
    """

    def __init__(self, dut, name, counter, *, stall_probability=0.0, signed=False, seed=0):
        super().__init__(dut, name, counter, seed)
        self.stall_probability = stall_probability
        self.signed = signed
        self.ready.value = 0
        self._task = None
        self._arrived = Event()

    def start(self):
        """Start accepting beats in a background task (call just after a rising edge)."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        """Stop accepting beats; ``ready`` goes low after the next edge."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.ready.value = 0

    async def _run(self):
        while True:
            ready = not (self.stall_probability and self.rng.random() < self.stall_probability)
            self.ready.value = int(ready)
            await ReadOnly()
            if self.valid.value != 1 and not self.stall_probability:
                # Always ready and nothing offered: sleep until valid rises (checked again
                # once settled: a glitch is not a beat).
                await RisingEdge(self.valid)
                await ReadOnly()
            if ready and self.valid.value == 1:
                value = self.payload.value
                value = value.to_signed() if self.signed else value.to_unsigned()
                self.beats.append(Beat(value, self.counter.count))
                self._arrived.set()
            await RisingEdge(self.clk)

    async def wait_for(self, count, *, timeout_cycles):
        """Wait until at least ``count`` beats have arrived.

        Raises
        ------
        :exc:`StreamTimeout`
            If they have not arrived within ``timeout_cycles`` cycles.
        """
        deadline = self.counter.count + timeout_cycles
        if len(self.beats) >= count:
            return self.beats
        while len(self.beats) < count and self.counter.count < deadline:
            self._arrived.clear()
            await First(self._arrived.wait(), self.counter.timer(deadline - self.counter.count))
        if len(self.beats) >= count:
            await RisingEdge(self.clk)      # the edge that took the beat, as a per-cycle poll
            return self.beats
        raise StreamTimeout(
            f"stream {self.name!r}: {len(self.beats)} of {count} beats after "
            f"{timeout_cycles} cycles (budget) at cycle {self.counter.count}")
