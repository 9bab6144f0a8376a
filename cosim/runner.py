"""Build an Amaranth design for a simulator once, and run cocotb tests on it.

Typical use from a pytest test::

    result = run(AddConstant, {"addend": 1}, test_module="ternac.cosim.selftest_tb",
                 sim="verilator", data={"values": [1, 2, 3]})

Layout under ``build/cosim/`` (git-ignored):

``<sim>/<toplevel>-<hash>/``
    One build per design configuration, shared by every test (and pytest-xdist worker) that
    uses it. ``<hash>`` covers the generated Verilog text, so editing the RTL can never reuse
    a stale build. A ``built.json`` stamp, written last and atomically, marks it complete;
    building happens under an ``fcntl`` lock, so concurrent workers build it exactly once.
    Verilator's intermediates (precompiled headers, objects) are deleted once it is built:
    the simulator binary is all a run needs, and a build shrinks from ~166 MB to ~10 MB.
``runs/<sim>/<test name>/``
    One directory per test run: the JSON handed to the cocotb test, ``sim.log``,
    ``results.xml``, the test's JSON output, and the waveform if requested.

The cocotb test runs in a separate simulator process. :func:`load_data` gives it the
``data`` passed to :func:`run_test`, and :func:`save_output` hands a JSON value back as
:attr:`CosimResult.output`. A failing cocotb test raises :exc:`CosimFailure` in the caller.

Why not let :mod:`cocotb_tools.runner` decide when to rebuild? Icarus skips compiling when
``sim.vvp`` is newer than the sources (mtime only), and Verilator ignores ``always=False``
but reruns ``verilator`` (which skips identical inputs) and ``make`` (incremental), so a
repeated ``build()`` in a finished directory is cheap (about 0.06 s). Neither is safe when
two processes build the same directory at once, hence the lock and stamp.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .toolchain import setup_simulator, verilator_fst_support

__all__ = [
    "DATA_ENV",
    "OUTPUT_ENV",
    "CosimBuild",
    "CosimError",
    "CosimFailure",
    "CosimResult",
    "TestcaseResult",
    "build_design",
    "build_root",
    "load_data",
    "model_source",
    "run",
    "run_test",
    "save_output",
]

#: Environment variable holding the path of the JSON data for the cocotb test.
DATA_ENV = "TERNAC_COSIM_DATA"
#: Environment variable holding the path the cocotb test writes its JSON output to.
OUTPUT_ENV = "TERNAC_COSIM_OUTPUT"

# Amaranth's Verilog trips Verilator lint warnings (WIDTHEXPAND, CASEINCOMPLETE, ...).
_VERILATOR_ARGS = ("-Wno-fatal",)
# Yosys makes every `always @*` block depend on a dummy `reg ... = 0` so that it runs once at
# time 0. Under cocotb's default -g2012 Icarus applies declaration initializers without an
# event, so combinational logic whose inputs never change after time 0 (an FSM held in its
# reset state) stays X. -g2005 (given after -g2012, so it wins) restores the time-0 event.
_ICARUS_ARGS = ("-g2005",)
# cocotb's Icarus waveform module declares a SystemVerilog `string`, which -g2005 rejects:
# this one does the same in Verilog-2005 (the run always passes +dumpfile_path).
_ICARUS_DUMP_MODULE = """module cocotb_iverilog_dump();
reg [8*4096-1:0] dumpfile_path;
initial begin
    if ($value$plusargs("dumpfile_path=%s", dumpfile_path))
        $dumpfile(dumpfile_path);
    $dumpvars(0, {toplevel});
end
endmodule
"""
_TIMESCALE = ("1ns", "1ps")
_LOG_TAIL_LINES = 40


class CosimError(RuntimeError):
    """Generating, building or running a simulation failed outside the cocotb test."""


class CosimFailure(AssertionError):
    """A cocotb test failed (an :exc:`AssertionError`, so pytest shows it as a failure).

    Attributes
    ----------
    result : :class:`CosimResult`
        The run, including every testcase and its message.
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class CosimBuild:
    """A design compiled for one simulator, ready for :func:`run_test`.

    Attributes
    ----------
    sim : str
        ``"verilator"`` or ``"icarus"``.
    toplevel : str
        Verilog name of the top module.
    directory : :class:`pathlib.Path`
        Build directory (shared; treat as read-only).
    verilog : :class:`pathlib.Path`
        The generated Verilog.
    waves : str or None
        Waveform format the build records (``"fst"`` or ``"vcd"``), or ``None``.
    fresh : bool
        ``True`` if this call compiled it, ``False`` if an existing build was reused.
    """
    sim: str
    toplevel: str
    directory: Path
    verilog: Path
    waves: str | None
    fresh: bool = False


@dataclass(frozen=True)
class TestcaseResult:
    """Outcome of one cocotb test function, from the results XML."""
    name: str
    passed: bool
    message: str = ""
    sim_time_ns: float | None = None


@dataclass
class CosimResult:
    """Outcome of :func:`run_test`.

    Attributes
    ----------
    test_dir : :class:`pathlib.Path`
        Directory the simulator ran in.
    testcases : list of :class:`TestcaseResult`
        Every cocotb test that ran.
    output : object
        JSON value the cocotb test passed to :func:`save_output`, or ``None``.
    waves : :class:`pathlib.Path` or None
        The waveform file, if waveforms were requested.
    log : :class:`pathlib.Path`
        Simulator output.
    """
    test_dir: Path
    testcases: list = field(default_factory=list)
    output: object = None
    waves: Path | None = None
    log: Path | None = None

    @property
    def passed(self):
        return bool(self.testcases) and all(case.passed for case in self.testcases)


def build_root():
    """Root of co-simulation builds: ``$TERNAC_COSIM_BUILD``, else ``<repo>/build/cosim``."""
    if "TERNAC_COSIM_BUILD" in os.environ:
        return Path(os.environ["TERNAC_COSIM_BUILD"]).resolve()
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "pyproject.toml").is_file():  # not an editable install: use the cwd
        repo = Path.cwd()
    return repo / "build" / "cosim"


def _waves_requested(waves):
    # Same rule as cocotb_tools.runner, which applies it again in build() and test(): a
    # non-empty WAVES overrides the argument. Agreeing with it keeps our choice of build
    # (and build directory) consistent with what the runner will actually do.
    value = os.environ.get("WAVES", "").strip().lower()
    if not value:
        return bool(waves)
    if value in ("1", "yes", "y", "on", "true", "enable"):
        return True
    if value in ("0", "no", "n", "off", "false", "disable"):
        return False
    raise ValueError(f"WAVES={os.environ['WAVES']!r} is neither true nor false")


def _config_key(config):
    return json.dumps(config, sort_keys=True, default=repr)


# Elaborating and converting costs seconds (the first conversion warms up the Yosys
# WebAssembly module), so do it once per (factory, config) in each process.
_verilog_memo = {}


def _generate_verilog(factory, config, toplevel):
    from amaranth.back import verilog  # here: cocotb tests import this module too

    memo_key = (factory, _config_key(config), toplevel)
    if memo_key not in _verilog_memo:
        if config is None:
            design = factory()
        elif isinstance(config, dict):
            design = factory(**config)
        else:
            design = factory(config)
        _verilog_memo[memo_key] = verilog.convert(design, name=toplevel)
    return _verilog_memo[memo_key]


def _atomic_write(path, text):
    # Write-then-rename: readers see the old file or the whole new one, never a torn one.
    with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(text)
    os.chmod(file.name, 0o644)  # NamedTemporaryFile makes it private
    os.replace(file.name, path)


@contextmanager
def _locked(path):
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# A build log line that reports an error: Verilator's "%Error...", a compiler's "file:line:
# error: ..." or "c++: error: ...", Icarus' "file:line: syntax error", make's "make: ***".
# Verilator's source excerpts (" 12 |  code") are skipped: the code may name a signal "error".
_ERROR_LINE = re.compile(r"^%Error|:\s*(?:fatal |syntax )?error\b|^make(?:\[\d+\])?: \*\*\*")
_EXCERPT_LINE = re.compile(r"^\s*\d*\s*[|:]\s")
# Verilator prints this report when it has written the C++; a failure after it is make's.
_VERILATOR_DONE = "V e r i l a t i o n   R e p o r t"


def _build_failure(sim, toplevel, log):
    """One message for a failed build: the tool that failed, its first error line, the log."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        text = ""
    if sim == "icarus":
        tool = "Icarus Verilog (iverilog)"
    elif _VERILATOR_DONE in text and "%Error" not in text:
        tool = "Verilator's C++ build (make and the C++ compiler)"
    else:
        tool = "Verilator"
    first = next((line.strip() for line in text.splitlines()
                  if _ERROR_LINE.search(line) and not _EXCERPT_LINE.match(line)),
                 "no error line in the log")
    return CosimError(f"{tool} failed to build {toplevel}: {first} (full log: {log})")


def _log_tail(path):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def model_source(module, text):
    """A vendor primitive's simulation model (``module``'s Verilog ``text``), written once
    under the co-simulation build root: an ``extra_sources`` entry of :func:`build_design`."""
    path = build_root() / "models" / f"{module}.v"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, text)
    return path


def build_design(factory, config=None, *, sim="verilator", toplevel="top", waves=None,
                 build_args=(), extra_sources=()):
    """Generate Verilog for a design and compile it for ``sim``, reusing a finished build.

    Parameters
    ----------
    factory : callable
        Returns the Amaranth ``Elaboratable`` (usually a ``wiring.Component`` class).
        Called as ``factory(**config)`` for a dict, ``factory()`` for ``None``, else
        ``factory(config)``.
    config : dict, str or None
        Design configuration; must be JSON-serializable.
    sim : str
        ``"verilator"`` or ``"icarus"``.
    toplevel : str
        Verilog module name; must differ from every port name.
    waves : bool or None
        Build with waveform support: FST, except VCD on Verilator if the FST library is
        missing (see :func:`.verilator_fst_support`). A non-empty ``WAVES`` environment
        variable (``1``/``0``) overrides it, as in :mod:`cocotb_tools.runner`.
    build_args : sequence of str
        Extra simulator build arguments.
    extra_sources : sequence of path
        More Verilog files to compile with the design (e.g. simulation models of vendor
        primitives it instantiates); their text is part of the build's hash.

    Returns
    -------
    :class:`CosimBuild`

    Raises
    ------
    :exc:`.ToolchainError`
        If the simulator is not installed.
    :exc:`CosimError`
        If compilation fails: one line naming the tool that failed (Verilator, the C++
        build it drives, or Icarus), the log's first error line, and the log file.
    """
    from cocotb_tools.runner import get_runner

    setup_simulator(sim)
    waves = "fst" if _waves_requested(waves) else None
    build_args = [*(_VERILATOR_ARGS if sim == "verilator" else _ICARUS_ARGS), *build_args]
    if waves and sim == "verilator":
        if verilator_fst_support():
            build_args.append("--trace-fst")  # cocotb's own default is VCD
        else:
            waves = "vcd"
            warnings.warn("Verilator cannot write FST here (no lz4.h / -llz4: install Debian "
                          "package liblz4-dev); recording VCD instead", stacklevel=2)

    text = _generate_verilog(factory, config, toplevel)
    # The simulator binary links cocotb's VPI library, so tool upgrades need a fresh build too.
    tools = [importlib.metadata.version(name) for name in ("cocotb", "verilator")]
    extra_sources = [Path(path) for path in extra_sources]
    extra = [path.read_text() for path in extra_sources]
    digest = hashlib.sha256(
        json.dumps([text, sim, toplevel, waves, build_args, tools, *extra]).encode()).hexdigest()[:16]
    directory = build_root() / sim / f"{toplevel}-{digest}"
    design = CosimBuild(sim, toplevel, directory, directory / f"{toplevel}.v", waves)
    stamp = directory / "built.json"
    if stamp.is_file():
        return design

    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory.parent / f"{directory.name}.lock"):
        if stamp.is_file():  # another process built it while we waited
            return design
        _atomic_write(design.verilog, text)
        log = directory / "build.log"
        try:
            sources, args = [design.verilog, *extra_sources], list(build_args)
            if waves and sim == "icarus":
                dump = directory / "iverilog_dump.v"
                _atomic_write(dump, _ICARUS_DUMP_MODULE.format(toplevel=toplevel))
                sources.append(dump)
                args += ["-s", "cocotb_iverilog_dump"]
            get_runner(sim).build(
                sources=sources, hdl_toplevel=toplevel, build_dir=directory,
                build_args=args, timescale=_TIMESCALE,
                waves=bool(waves) and sim != "icarus", always=True, log_file=log)
        except (RuntimeError, SystemExit):
            raise _build_failure(sim, toplevel, log) from None
        _remove_intermediates(directory)
        _atomic_write(stamp, json.dumps({
            "factory": f"{getattr(factory, '__module__', '?')}."
                       f"{getattr(factory, '__qualname__', repr(factory))}",
            "config": json.loads(_config_key(config)), "sim": sim, "waves": waves,
            "build_args": build_args}, indent=2))
    return CosimBuild(sim, toplevel, directory, design.verilog, waves, fresh=True)


# What a finished Verilator build no longer needs: its two precompiled headers alone are
# ~156 MB of a ~166 MB accelerator build, and a full test run makes dozens of builds.
_INTERMEDIATES = ("*.gch", "*.o", "*.a")


def _remove_intermediates(directory):
    """Delete compiler intermediates; the simulator binary is all :func:`run_test` needs."""
    for pattern in _INTERMEDIATES:
        for path in directory.glob(pattern):
            path.unlink()


def _default_run_name():
    # "tests/test_x.py::test_y[icarus] (call)" -> "test_x.test_y-icarus"
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if node:
        path, _, rest = node.partition("::")
        node = f"{Path(path).stem}.{rest}"
    else:
        node = Path(sys.argv[0]).stem or "run"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", node).strip("-")


_NS_PER_UNIT = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


def _read_results(path):
    cases = []
    for case in ET.parse(path).iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        message = "" if problem is None else (problem.get("message") or problem.text or "")
        props = {prop.get("name"): prop.get("value") for prop in case.iter("property")}
        sim_time = None
        if "sim_time_duration" in props and props.get("sim_time_unit") in _NS_PER_UNIT:
            sim_time = float(props["sim_time_duration"]) * _NS_PER_UNIT[props["sim_time_unit"]]
        cases.append(TestcaseResult(
            name=case.get("name", "?"), passed=problem is None, message=message.strip(),
            sim_time_ns=sim_time))
    return cases


def run_test(design, test_module, *, data=None, name=None, testcase=None, seed=None,
             extra_env=None):
    """Run the cocotb tests in ``test_module`` on a built design.

    Parameters
    ----------
    design : :class:`CosimBuild`
        From :func:`build_design`; waveforms are recorded if it was built with them.
    test_module : str
        Importable module with ``@cocotb.test()`` functions (the simulator's Python sees the
        caller's ``sys.path``).
    data : object
        JSON-serializable value for the cocotb side, returned there by :func:`load_data`.
    name : str or None
        Run directory name; default derived from the current pytest test id. Give distinct
        names to several runs within one test, or each overwrites the previous.
    testcase : str or list of str or None
        Run only these cocotb test functions.
    seed : int or None
        ``COCOTB_RANDOM_SEED``.
    extra_env : dict or None
        More environment variables for the simulator (the caller's environment wins on
        conflicts, a quirk of :mod:`cocotb_tools.runner`).

    Returns
    -------
    :class:`CosimResult`

    Raises
    ------
    :exc:`CosimFailure`
        If any cocotb test failed; the message lists each failure.
    :exc:`CosimError`
        If the simulator produced no results (crash, or no test found).
    """
    from cocotb_tools.runner import get_runner

    setup_simulator(design.sim)
    test_dir = build_root() / "runs" / design.sim / (name or _default_run_name())
    shutil.rmtree(test_dir, ignore_errors=True)  # stale results must not pass for new ones
    test_dir.mkdir(parents=True)
    data_file, output_file = test_dir / "data.json", test_dir / "output.json"
    data_file.write_text(json.dumps(data))
    results_xml, log = test_dir / "results.xml", test_dir / "sim.log"

    plusargs = []
    waves = None
    if design.waves:
        if design.sim == "verilator":
            # cocotb's Verilator main writes dump.<format> to the cwd, our test_dir.
            waves = test_dir / f"dump.{design.waves}"
        else:
            # The default dump path is inside the shared build directory: redirect it.
            waves = test_dir / f"{design.toplevel}.fst"
            plusargs.append(f"+dumpfile_path={waves}")

    runner = get_runner(design.sim)
    try:
        runner.test(
            test_module=test_module, hdl_toplevel=design.toplevel, hdl_toplevel_lang="verilog",
            build_dir=design.directory, test_dir=test_dir, results_xml=str(results_xml),
            extra_env={**(extra_env or {}), DATA_ENV: str(data_file),
                       OUTPUT_ENV: str(output_file)},
            testcase=testcase, seed=seed, waves=bool(design.waves), plusargs=plusargs,
            timescale=_TIMESCALE, log_file=log)
        exit_code = 0
    except SystemExit as stop:  # the runner exits on failure when it sees pytest running
        exit_code = stop.code
    except RuntimeError as error:
        exit_code = str(error)

    result = CosimResult(test_dir=test_dir, waves=waves, log=log)
    if results_xml.is_file():
        result.testcases = _read_results(results_xml)
    if output_file.is_file():
        result.output = json.loads(output_file.read_text())
    if waves is not None:
        print(f"waveform: {waves}")

    if not result.testcases:
        raise CosimError(
            f"{design.sim} run of {test_module} produced no test results "
            f"(exit {exit_code}); log {log}:\n{_log_tail(log)}")
    failed = [case for case in result.testcases if not case.passed]
    if failed:
        lines = [(f"{len(failed)} of {len(result.testcases)} cocotb tests failed on "
                  f"{design.sim} (log {log}):")]
        lines += [f"  {case.name}: {case.message}" for case in failed]
        if waves is not None:
            lines.append(f"waveform: {waves}")
        raise CosimFailure("\n".join(lines), result)
    if exit_code:
        raise CosimError(f"{design.sim} exited with {exit_code} although all tests passed; "
                         f"log {log}:\n{_log_tail(log)}")
    return result


def run(factory, config=None, *, test_module, sim="verilator", toplevel="top", data=None,
        waves=None, build_args=(), **kwargs):
    """:func:`build_design` then :func:`run_test`; keyword arguments go to the latter."""
    design = build_design(factory, config, sim=sim, toplevel=toplevel, waves=waves,
                          build_args=build_args)
    return run_test(design, test_module, data=data, **kwargs)


# -- cocotb side ------------------------------------------------------------------------------

def load_data():
    """In a cocotb test: the ``data`` given to :func:`run_test`."""
    with open(os.environ[DATA_ENV]) as file:
        return json.load(file)


def save_output(value):
    """In a cocotb test: hand a JSON-serializable ``value`` back as ``CosimResult.output``."""
    _atomic_write(Path(os.environ[OUTPUT_ENV]), json.dumps(value))
