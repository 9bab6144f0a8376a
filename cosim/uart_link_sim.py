"""The host link in simulation: the board's design (UART, frames, accelerator, the SPRAMs
holding the weights or the frame buffer) under Verilator or Icarus, reachable as a serial port.

:func:`simulated_port` builds the design (:class:`ternac.rtl.host_link.HostLink` around the
accelerator, the SPRAMs holding the larger of the weight buffer and the frame buffer as on the
iCE40UP5K (:func:`ternac.rtl.spram.spram_holds`), the UART at ``clock / SIM_DIVISOR`` baud so
a byte costs 40 cycles), starts
the simulator in a thread with the bit-level UART bench (:mod:`ternac.cosim.uart_link_tb`) and
yields a pyserial port on the bench's pseudo-terminal: the host driver
(:mod:`ternac.model.host.driver`) runs on it exactly as on a board's ``/dev/ttyUSB1``.
"""

import contextlib
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ternac.model.codebook import TernacError
from ternac.model.hw import HardwareConfig, lower

from . import runner
from .spram_sim import spram_model_path
from .toolchain import ToolchainError

__all__ = ["SIM_DIVISOR", "SIM_TIMEOUT", "TB", "TOPLEVEL", "build_link", "cycle_budget",
           "link_design", "sim_uart", "simulated_port"]

TB = "ternac.cosim.uart_link_tb"
TOPLEVEL = "ternac_board"
#: Clock cycles per UART bit in simulation (the hardware's 1 Mbaud is 30 or more).
SIM_DIVISOR = 4
#: Cycles without a byte after which the link drops a half-received frame, in simulation.
SIM_TIMEOUT = 50_000


def link_design(hardware, divisor=SIM_DIVISOR, timeout=SIM_TIMEOUT):
    """Factory for :func:`ternac.cosim.runner.build_design`: the host link around the accelerator,
    the SPRAM instances holding the weights or the frame buffer (:func:`spram_holds`; the other
    one is a block-RAM ``Memory``, loaded through the link like the SPRAM). A
    ``weight_register`` design is the ECP5 builds': no SPRAM, every buffer registered."""
    from ternac.rtl.accelerator import Accelerator
    from ternac.rtl.host_link import HostLink
    from ternac.rtl.spram import spram_memories

    config = HardwareConfig.from_dict(hardware)
    weight_memory = frame_memory = None
    if not config.weight_register:
        weight_memory, frame_memory = spram_memories(config, primitive=True)
    return HostLink(Accelerator(config, weight_memory=weight_memory), config, divisor=divisor,
                    timeout=timeout, frame_memory=frame_memory)


def cycle_budget(program, samples):
    """Simulated cycles ``ternac run`` needs for a network load and ``samples`` inferences,
    doubled, plus a million for the start: each byte on the wire is 10 bits of
    :data:`SIM_DIVISOR` cycles (the load, each input and output word with its frame), and each
    inference its own cycles. A bench that exceeds it fails, naming the budget."""
    n, frame = program.config.coding.n, 16                    # a frame's header, CRC, reply
    load = len(program.load_beats()) * 4 + frame * (1 + len(program.load_beats()) // 64)
    sample = (program.input_words + program.output_words) * n + 2 * frame
    wire = (load + samples * sample) * 10 * SIM_DIVISOR
    return 2 * (wire + samples * program.cycles.total) + 1_000_000


def build_link(config, *, sim="verilator", waves=None):
    return runner.build_design(link_design, {"hardware": config.to_dict()}, sim=sim,
                               toplevel=TOPLEVEL, waves=waves, extra_sources=[spram_model_path()])


@contextmanager
def simulated_port(config, *, sim="verilator", name="uart-link", max_cycles=50_000_000,
                   start_seconds=300.0, waves=None):
    """A pyserial port connected to the simulated host link; the simulation ends on exit.

    Raises :class:`TernacError` if the simulator does not come up within ``start_seconds``,
    and :exc:`~ternac.cosim.runner.CosimFailure` if the bench failed (framing error on ``tx``,
    cycle budget ``max_cycles`` exhausted).
    """
    import serial

    design = build_link(config, sim=sim, waves=waves)
    with tempfile.TemporaryDirectory() as tmp:
        pty_file, stop_file = Path(tmp) / "pty", Path(tmp) / "stop"
        outcome = {}

        def simulate():
            try:
                outcome["result"] = runner.run_test(
                    design, TB, name=name,
                    data={"divisor": SIM_DIVISOR, "pty_file": str(pty_file),
                          "stop_file": str(stop_file), "max_cycles": max_cycles})
            except (runner.CosimError, runner.CosimFailure) as error:   # re-raised below
                outcome["error"] = error

        thread = threading.Thread(target=simulate, daemon=True)
        thread.start()
        deadline = time.monotonic() + start_seconds
        while not pty_file.is_file():
            if not thread.is_alive() or time.monotonic() > deadline:
                stop_file.touch()
                thread.join()
                if "error" in outcome:
                    raise outcome["error"]
                raise TernacError(f"the {sim} simulation did not open its serial port "
                                  f"within {start_seconds:g} s")
            time.sleep(0.05)
        port = serial.serial_for_url(pty_file.read_text(), baudrate=1_000_000, timeout=0.05)
        try:
            yield port
        finally:
            port.close()
            stop_file.touch()
            thread.join()
            if "error" in outcome:      # the cause of whatever the driver saw (a closed port)
                raise outcome["error"]


def sim_uart(args, network, config, x, labels, say):
    """``ternac sim --link uart``: the ``ternac run`` driver against the simulated board."""
    from ternac.model.host.cmd import report
    from ternac.model.host.driver import HostLinkDriver, run_network
    from ternac.rtl.spram import spram_holds
    where = "weights" if spram_holds(config) == "weights" else "frame buffer"
    say(f"{args.net}: {len(x)} samples through the UART host link on {args.simulator} "
        f"({SIM_DIVISOR} cycles per bit, {where} in SPRAM)")
    program = lower(network, config)
    try:
        with contextlib.redirect_stdout(sys.stderr), simulated_port(
                config, sim=args.simulator, name=f"ternac-sim-uart-{args.simulator}",
                max_cycles=cycle_budget(program, len(x)), waves=True if args.waves else None) as port:
            summary = run_network(HostLinkDriver(port, timeout=300), network, program, x, say=say)
    except (ToolchainError, runner.CosimError, runner.CosimFailure) as error:
        raise TernacError(f"the simulated board failed: {str(error).strip()}") from None
    summary.update(net=args.net, simulator=args.simulator, link="uart",
                   note="inferences/s is of the simulation, not of a board")
    return report(args, summary, labels, say)
