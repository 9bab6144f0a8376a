"""FPGA flow: log/report parsers (fast), and a real iCE40 build (marked ``fpga``, slow)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from ternac.fpga.build import (
    BOARDS,
    NETWORKS,
    board_config,
    network_by_name,
    parse_nextpnr_log,
    parse_nextpnr_report,
    parse_yosys_stat,
    synthetic_network,
)
from ternac.model.hw import lower
from ternac.model.reference import golden_network

DATA = Path(__file__).parent / "data"


def _log_parts():
    text = (DATA / "nextpnr_ice40.log").read_text()
    ternary, dense = text.split("# --- dense baseline")
    return ternary, dense


def test_parse_nextpnr_log_utilization_and_fmax():
    ternary, _ = _log_parts()
    parsed = parse_nextpnr_log(ternary)
    util = parsed["utilization"]
    assert util["ICESTORM_LC"] == {"used": 4024, "available": 5280}
    assert util["ICESTORM_RAM"] == {"used": 15, "available": 30}
    assert util["ICESTORM_DSP"] == {"used": 1, "available": 8}
    assert util["ICESTORM_SPRAM"]["used"] == 0
    # The last Fmax line (after routing, printed as a Warning when it fails) wins.
    assert parsed["fmax"] == {"cd_sync.clk": {"achieved": 15.27, "constraint": 50.0, "pass": False}}
    assert parsed["error"] is None


def test_parse_nextpnr_log_does_not_fit():
    _, dense = _log_parts()
    parsed = parse_nextpnr_log(dense)
    assert parsed["utilization"]["ICESTORM_DSP"] == {"used": 65, "available": 8}
    assert parsed["fmax"] == {}
    assert "no BELs remaining" in parsed["error"]


def test_parse_nextpnr_report_json():
    report = {"utilization": {"ICESTORM_LC": {"used": 10, "available": 5280}},
              "fmax": {"clk": {"achieved": 60.5, "constraint": 50.0}}}
    parsed = parse_nextpnr_report(json.dumps(report))
    assert parsed["utilization"]["ICESTORM_LC"]["used"] == 10
    assert parsed["fmax"]["clk"] == {"achieved": 60.5, "constraint": 50.0, "pass": True}
    assert parsed["critical_path"] is None


def test_critical_path_is_the_longest_within_one_clock():
    def step(kind, delay, cell):
        return {"type": kind, "delay": delay, "from": {"cell": "a"}, "to": {"cell": cell}}
    inner = [step("clk-to-q", 1.39, "q"), step("routing", 4.35, "lut"), step("logic", 0.87, "lut"),
             step("setup", 0.1, "d")]
    io = [step("routing", 30.0, "pin")]
    report = {"critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": inner},
                                 {"from": "<async>", "to": "posedge clk", "path": io},
                                 {"from": "posedge clk", "to": "posedge clk", "path": [step("setup", 0.5, "x")]}]}
    path = parse_nextpnr_report(report)["critical_path"]
    assert path["ns"] == 6.71 and (path["from"], path["to"]) == ("a", "d")
    assert [(s["type"], s["ns"], s["to"]) for s in path["steps"]] == [
        ("clk-to-q", 1.39, "q"), ("routing", 4.35, "lut"), ("logic", 0.87, "lut"), ("setup", 0.1, "d")]


def test_parse_yosys_stat_both_formats():
    new = ("       48 cells\n       24   $scopeinfo\n        1   SB_MAC16\n     5183 submodules\n"
           "      518   SB_CARRY\n     3193   SB_LUT4\n\n4.60. Executing CHECK pass\n")
    old = "   Number of cells:               12\n     SB_DFF                          4\n     SB_LUT4    8\n\n"
    assert parse_yosys_stat("junk\n" + old + new) == {"$scopeinfo": 24, "SB_MAC16": 1, "SB_CARRY": 518,
                                                      "SB_LUT4": 3193}
    assert parse_yosys_stat(old) == {"SB_DFF": 4, "SB_LUT4": 8}
    assert parse_yosys_stat("no statistics") == {}


def test_synthetic_networks_map_and_run():
    for sizes, coding, lanes in NETWORKS.values():
        net = synthetic_network(sizes, coding, lanes)
        assert lower(net, lanes=lanes).images           # fits its own configuration
    small = synthetic_network([20, 13, 7], (8, 2), 8)   # fan-in not a multiple of N: padded codes
    tail = small.layers[0].codebook.decode(small.layers[0].codes[:, -1])[:, 20 % 8:]
    assert not tail.any()                               # the zero padding of each row stays zero
    assert golden_network(small, np.ones((1, 20), dtype=np.int8)).shape == (1, 7)


# ---------------------------------------------------------------------------------------------
# Real builds (minutes): make test-fpga


@pytest.fixture(scope="module")
def ice40_builds(tmp_path_factory):
    from ternac.fpga.build import build
    root = tmp_path_factory.mktemp("fpga")
    return {design: build("icebreaker", design, "64-64-10", root=root) for design in ("ternary", "dense")}


@pytest.mark.fpga
def test_ice40_ternary_build_fits_with_fmax(ice40_builds):
    r = ice40_builds["ternary"]
    assert r["fits"], r["reason"]
    assert 0 < r["lut"] <= BOARDS["icebreaker"].capacity["lut"]
    assert r["fmax_mhz"] > 0 and r["inferences_per_s"] > 0
    assert r["ebr"] > 0                                  # the memories are block RAM, not gone
    assert json.loads((Path(r["build_dir"]) / "report.json").read_text())["fmax_mhz"] == r["fmax_mhz"]
    # The MAC array has no multiplier: the only $mul is the requantizer's, and it is the only DSP.
    [(module, muls)] = r["muls_before_synth"].items()
    assert module.endswith(".core.requant") and muls == 1
    assert r["dsp"] <= 1
    # Weights in the four SPRAMs, behind the UART host link, at a PLL clock the design meets.
    assert (r["weights"], r["link"], r["spram"]) == ("spram", "uart", 4)
    assert r["timing_pass"] and r["clock_mhz"] <= r["fmax_mhz"]
    assert r["pll"]["primitive"] == "SB_PLL40_PAD"
    # nextpnr timed the design at the PLL's output (derived from its parameters), and no
    # constraint of ours named a net that synthesis had merged away.
    log = (Path(r["build_dir"]) / "top.tim").read_text()
    assert "ignoring clock constraint" not in log
    targets = {float(mhz) for mhz in re.findall(r"Max frequency for clock 'clk': [\d.]+ MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)", log)}
    assert targets and all(abs(mhz - r["clock_mhz"]) < 0.05 for mhz in targets), (targets, r["clock_mhz"])


@pytest.mark.fpga
def test_up5k_holds_the_784_256_256_10_mlp_behind_its_host_link(tmp_path):
    """The $5 chip: 268,800 weights in SPRAM, the UART host link, a PLL clock it meets."""
    from ternac.fpga.build import build
    r = build("icebreaker", "ternary", "784-256-256-10", root=tmp_path, pll_mhz=27)
    assert r["fits"], r["reason"]
    assert (r["weights"], r["link"], r["spram"], r["decoder"]) == ("spram", "uart", 4, "bram")
    assert r["lut"] <= BOARDS["icebreaker"].capacity["lut"] and r["ebr"] <= BOARDS["icebreaker"].capacity["ebr"]
    assert r["timing_pass"] and r["inferences_per_s"] == round(27e6 / r["cycles_per_inference"])


@pytest.mark.fpga
def test_up5k_holds_the_digits_cnn_behind_its_host_link(tmp_path):
    """A CNN on the $5 chip: P = 4, descriptors in 32-bit rows of block RAM (the default for a
    CNN on iCE40), the link's frame buffer in SPRAM (larger than the weights), the UART host
    link, a PLL clock it meets."""
    from ternac.fpga.build import build
    r = build("icebreaker", "ternary", "digits-cnn:8-16", root=tmp_path, pll_mhz=24)
    assert r["fits"], r["reason"]
    assert (r["lanes"], r["layer_table"], r["spram_holds"], r["link"]) == (4, "serial", "frames", "uart")
    assert r["config"]["serial_layers"] and r["config"]["conv_walk"]
    assert r["timing_pass"] and r["inferences_per_s"] == round(24e6 / r["cycles_per_inference"])


@pytest.mark.fpga
def test_up5k_holds_the_fashion_mnist_cnn_behind_its_host_link(tmp_path):
    """The Fashion-MNIST CNN on the $5 chip: the host packs the input rows, the 784-word input
    and the 196-word first map fold into one 1024-word memory (16 EBR), the frame buffer is in
    SPRAM, the weights in block RAM."""
    from ternac.fpga.build import build
    r = build("icebreaker", "ternary", "cnn:8-16", root=tmp_path, pll_mhz=24)
    assert r["fits"], r["reason"]
    assert (r["lanes"], r["input_packing"], r["spram_holds"], r["spram"]) == (4, "host", "frames", 4)
    assert r["config"]["act_depths"] == [784, 196] and not r["config"]["tap_packing"]
    assert r["ebr"] <= 30 and r["lut"] <= 5280
    assert r["timing_pass"] and r["inferences_per_s"] == round(24e6 / r["cycles_per_inference"])


def test_board_config_defaults_for_a_cnn_on_ice40():
    cnn, mlp = network_by_name("digits-cnn:8-16"), network_by_name("64-64-10")
    ice40, ecp5 = BOARDS["icebreaker"], BOARDS["ulx3s-85f"]
    assert board_config(ice40, "ternary", cnn).serial_layers
    assert board_config(ice40, "ternary", cnn).lanes == 4               # the network's own P
    assert not board_config(ecp5, "ternary", cnn).serial_layers
    assert not board_config(ice40, "ternary", mlp).serial_layers
    assert not board_config(ice40, "ternary", cnn, layer_table="wide").serial_layers
    assert board_config(ecp5, "ternary", mlp, layer_table="serial").serial_layers
    assert board_config(ice40, "ternary", cnn, lanes=2).lanes == 2
    assert board_config(ecp5, "dense", mlp).weight_register and not board_config(ice40, "ternary", mlp).weight_register
    # The host packs a CNN's first rows on iCE40: no packing pass, buffer 1 sized apart.
    assert not board_config(ice40, "ternary", cnn).tap_packing and board_config(ecp5, "ternary", cnn).tap_packing
    assert lower(cnn, board_config(ice40, "ternary", cnn)).input_packing
    assert board_config(ice40, "ternary", cnn, input_packing="chip").tap_packing


@pytest.mark.fpga
@pytest.mark.parametrize("family, board_mhz, primitive", [("ice40", 12, "SB_PLL40_PAD"),
                                                          ("ecp5", 25, "EHXPLLL")])
def test_pll_settings_at_most(family, board_mhz, primitive):
    from ternac.fpga.pll import pll_at_most
    settings = pll_at_most(family, board_mhz, 33.3)
    assert settings.primitive == primitive
    assert 30 < settings.output_mhz <= 33.3
    divider = "DIVF" if family == "ice40" else "CLKFB_DIV"
    assert isinstance(settings.params[divider], int)


@pytest.mark.fpga
def test_ice40_dense_baseline_needs_more_dsps(ice40_builds):
    ternary, dense = ice40_builds["ternary"], ice40_builds["dense"]
    # P*N int8 multipliers in the array (the module path depends on the harness and PLL wrappers)
    assert [n for module, n in dense["muls_before_synth"].items() if module.endswith(".core.array")] == [8 * 8]
    assert (not dense["fits"]) or dense["dsp"] > ternary["dsp"]
    if not dense["fits"]:
        assert dense["reason"] and dense["fmax_mhz"] is None
        assert dense["yosys"]["dsp"] > BOARDS["icebreaker"].capacity["dsp"]


# --------------------------------------------------------------------------------------------
# ternac fpga --program: the no-board path (fast: the board is looked for before any build)

FAKE_LOADER = """#!/bin/sh
# openFPGALoader --scan-usb as it prints with a board attached (vid:pid of the USB bridge)
echo "Bus device vid:pid       probe_type manufacturer serial product"
echo "001 004    0x0403:0x6010 FTDI2232   Olimex       XY12 iCEBreaker V1.0e"
"""


def _loader_or_skip():
    from ternac.fpga.program import loader
    from ternac.model.codebook import TernacError
    try:
        return loader()
    except TernacError as error:
        pytest.skip(str(error))


def test_program_without_a_board_says_so_and_fails(capsys, monkeypatch):
    """No iCEBreaker on this machine: exit code 1 before building, the summary says why."""
    import subprocess

    from ternac.model import cli
    scan = subprocess.run([_loader_or_skip(), "--scan-usb"], capture_output=True, text=True, check=False)
    if "0x0403:0x6010" in scan.stdout:
        pytest.skip("an FT2232H (iCEBreaker) is attached to this machine")
    monkeypatch.setenv("TERNAC_FPGA_BUILD", "/nonexistent/ternac-fpga")   # nothing may be built
    code = cli.main(["fpga", "--board", "icebreaker", "--program", "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert code == 1
    assert summary["ok"] is False and summary["board_attached"] is False
    assert summary["failed"].startswith("no icebreaker attached") and "FT2232H" in summary["failed"]
    assert "no icebreaker attached" in captured.err


def test_program_finds_an_attached_board(tmp_path, monkeypatch):
    """The scan is parsed for the board's USB bridge (a stand-in loader prints an iCEBreaker)."""
    from ternac.fpga.program import attached
    fake = tmp_path / "openFPGALoader"
    fake.write_text(FAKE_LOADER)
    fake.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER_CLI", str(fake))
    probe = attached("icebreaker")
    assert probe.found and probe.devices == ("0403:6010",)
    other = attached("ulx3s-85f")
    assert not other.found and "FT231X" in other.message and "0403:6010" in other.message


def test_block_luts_sums_a_block_with_its_submodules():
    """LUT4 + 2 x CCU2C per module (ECP5); ``top.array`` includes its decoder; "$n" suffixes merge."""
    from ternac.fpga.luts import block_luts
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 10, "TRELLIS_FF": 99}},
        "\\top.array": {"num_cells_by_type": {"LUT4": 100, "CCU2C": 5}},
        "\\top.array.decoder": {"num_cells_by_type": {"LUT4": 20}},
        "\\top.acts$12": {"num_cells_by_type": {"LUT4": 7}},
        "\\top.arrayish": {"num_cells_by_type": {"LUT4": 1}},
    }}
    luts = block_luts(stat, "ecp5")
    assert luts["blocks"]["array"] == 100 + 2 * 5 + 20
    assert luts["blocks"]["acts"] == 7
    assert luts["core"] == 10 + 110 + 20 + 7 + 1
    assert block_luts({"modules": {"\\top": {"num_cells_by_type": {"SB_LUT4": 3, "SB_CARRY": 2}}}},
                      "ice40")["core"] == 5


def test_undefined_collisions_mark_only_single_write_port_reads(tmp_path):
    """``UNDEFINED_COLLISIONS`` marks the non-transparent reads of a one-write-port memory (the
    activation buffers, parameter memory), not the layer table's transparent read nor a ROM's."""
    import subprocess

    from amaranth.back import rtlil
    from ternac.fpga.build import UNDEFINED_COLLISIONS, tool_environment
    from ternac.rtl.accelerator import Accelerator

    program = lower(synthetic_network((16, 8)))
    (tmp_path / "top.il").write_text(rtlil.convert(Accelerator.for_program(program), name="top"))
    script = (f"read_rtlil top.il\nhierarchy -top top\nproc\n{UNDEFINED_COLLISIONS}\n"
              "tee -q -o marked.txt select -list t:$memrd_v2 r:COLLISION_X_MASK=1'1 %i\n"
              "tee -q -o all.txt select -list t:$memrd_v2\n")
    (tmp_path / "s.ys").write_text(script)
    subprocess.run([tool_environment()["YOSYS"], "-q", "s.ys"], cwd=tmp_path, check=True)
    marked = (tmp_path / "marked.txt").read_text().split()
    every = (tmp_path / "all.txt").read_text().split()
    # The activation memory, weight buffer and parameter memory; not the layer table
    # (transparent), the decoder ROM's eight reads or the load port's small ROM.
    assert len(marked) == 3 and any(name.startswith("top.acts") for name in marked)
    assert not any("decoder" in name or "loader" in name for name in marked)
    assert len(every) == len(marked) + 1 + 8 + 1



def test_fsms_are_recoded_on_ice40_only(tmp_path):
    """On iCE40 the prelude frees the FSM state registers of their init value, and Yosys then
    takes the sequencer's and the load port's as FSMs (one-hot); on ECP5 it does not."""
    import subprocess

    from amaranth.back import rtlil
    from ternac.fpga.build import synthesis_prelude, tool_environment
    from ternac.rtl.accelerator import Accelerator

    program = lower(synthetic_network((16, 8)))
    (tmp_path / "top.il").write_text(rtlil.convert(Accelerator.for_program(program), name="top"))
    found = {}
    for family in ("ice40", "ecp5"):
        script = f"read_rtlil top.il\nhierarchy -top top\nproc\n{synthesis_prelude(family)}\nfsm_detect\n"
        (tmp_path / f"{family}.ys").write_text(script)
        log = subprocess.run([tool_environment()["YOSYS"], f"{family}.ys"], cwd=tmp_path, check=True,
                             capture_output=True, text=True).stdout
        found[family] = sorted(re.findall(r"Found FSM state register (\S+)\.fsm_state", log))
    assert found["ice40"] == ["top.loader", "top.sequencer"] and found["ecp5"] == []

def test_kept_copies_stay_apart_on_ecp5_only(tmp_path):
    """The MAC array's register copies (``rtl/pipeline.py``): ``keep`` on their flip-flops on
    ECP5, so synthesis leaves one per lane (``fresh``) and two per lane (decoded slots);
    on iCE40 they merge back into one."""
    import subprocess

    from amaranth.back import rtlil
    from ternac.fpga.build import synthesis_prelude, tool_environment
    from ternac.model.codebook import Coding
    from ternac.model.hw.lower import default_table
    from ternac.rtl.mac_array import TernaryMacArray

    coding = Coding(8, 2)
    array = TernaryMacArray(lanes=4, coding=coding, code_bits=8, acc_bits=12, tag_bits=2,
                            table=default_table(coding), fanout_copies=True)
    (tmp_path / "top.il").write_text(rtlil.convert(array, name="top"))
    kept = {}
    for family in ("ice40", "ecp5"):
        flops = "$dff,$sdff,$dffe,$sdffe,$sdffce,$adff,$adffe"
        lists = "\n".join(f"tee -q -o {family}-{name}.txt select -list w:*{name}_copy* %ci1:+{flops}[Q] w:* %d"
                          for name in ("fresh", "slots0"))
        (tmp_path / f"{family}.ys").write_text(
            f"read_rtlil top.il\nhierarchy -top top\nproc\n{synthesis_prelude(family)}\nflatten\nopt\n{lists}\n")
        subprocess.run([tool_environment()["YOSYS"], "-q", f"{family}.ys"], cwd=tmp_path, check=True)
        kept[family] = {name: len((tmp_path / f"{family}-{name}.txt").read_text().split())
                        for name in ("fresh", "slots0")}
    assert kept["ecp5"]["fresh"] == 4 and kept["ecp5"]["slots0"] == 2
    assert kept["ice40"]["fresh"] <= 1 and kept["ice40"]["slots0"] <= 1


def test_decoder_table_in_block_ram_is_an_attribute_only():
    """``--decoder bram`` asks Yosys for block RAM on the decoder ROM; the logic is unchanged."""
    from amaranth.back import rtlil
    from ternac.fpga.build import make_core
    program = lower(synthetic_network((16, 8)))
    bram = rtlil.convert(make_core("ternary", program, decoder="bram"), name="top")
    lut = rtlil.convert(make_core("ternary", program, decoder="lut"), name="top")
    assert 'attribute \\rom_style "block"' in bram and "rom_style" not in lut
    assert len(bram.splitlines()) == len(lut.splitlines()) + bram.count("rom_style")



def test_a_yosys_internal_error_is_built_again_with_abc9_dff(monkeypatch, tmp_path):
    """A Yosys assertion failure (Yosys 0.70's ABC9 on some ECP5 netlists) is retried with
    ``-dff``, and every later build of that design keeps it; a design error is not retried."""
    import ternac.fpga.build as fpga_build
    calls = []

    def fake_build_once(spec, design, net, weights, link, baud, settings, decoder, abc9_dff=False, **_):
        calls.append(abc9_dff)
        crash = not abc9_dff and net == "64-64-10"
        return {"fits": not crash, "ebr": 4, "reason": "build script exited with 1" if crash else None,
                "synthesis_error": "ERROR: Assert `x' failed in rtlil.cc:3091." if crash else None,
                "timing_pass": len(calls) > 2, "fmax_mhz": 80.0, "clock_mhz": 150.0,
                "build_dir": str(tmp_path), "abc9_dff": abc9_dff}

    monkeypatch.setattr(fpga_build, "_build_once", fake_build_once)
    monkeypatch.setattr(fpga_build, "_board_clock_mhz", lambda spec: 25.0)
    monkeypatch.setattr("ternac.fpga.pll.pll_settings", lambda *args: None)
    monkeypatch.setattr("ternac.fpga.pll.pll_at_most", lambda *args: type("S", (), {"output_mhz": 75})())
    result = fpga_build.build("ulx3s-85f", "ternary", "64-64-10", link="pins")
    assert calls == [False, True, True] and result["fits"] and result["abc9_dff"] is True
    calls.clear()
    fpga_build.build("ulx3s-85f", "ternary", "784-256-256-10", link="pins", pll_mhz=150)
    assert calls == [False]

def test_decoder_table_falls_back_to_luts_when_block_ram_runs_out(monkeypatch, tmp_path):
    """A default iCE40 build whose block RAMs do not suffice is built again with the table in LUTs;
    an explicit ``decoder="bram"`` is kept."""
    import ternac.fpga.build as fpga_build
    calls = []

    def fake_build_once(spec, design, net, weights, link, baud, settings, decoder, **_):
        calls.append(decoder)
        fits = decoder == "lut"
        return {"fits": fits, "ebr": 31 if fits else 39, "reason": None if fits else "needs 39/30",
                "timing_pass": True, "build_dir": str(tmp_path), "decoder": decoder}

    monkeypatch.setattr(fpga_build, "_build_once", fake_build_once)
    monkeypatch.setattr(fpga_build, "_board_clock_mhz", lambda spec: 12.0)
    monkeypatch.setattr("ternac.fpga.pll.pll_settings", lambda *args: None)
    result = fpga_build.build("icebreaker", "ternary", "784-1280-10", pll_mhz=27)
    assert calls == ["bram", "lut"] and result["decoder"] == "lut"
    calls.clear()
    assert not fpga_build.build("icebreaker", "ternary", "784-1280-10", pll_mhz=27, decoder="bram")["fits"]
    assert calls == ["bram"]


def test_report_row_says_where_the_weights_are():
    from ternac.fpga.report import COLUMNS, row
    result = {"board": "icebreaker", "design": "ternary", "net": "cnn:8-16", "fits": True,
              "config": {"lanes": 4, "serial_layers": True}, "link": "uart", "weights": "spram",
              "spram_holds": "frames", "decoder": "bram", "capacity": {}, "lut": 5061, "ff": 2172,
              "ebr": 30, "dsp": 2, "spram": 4, "clock_mhz": 25.875, "fmax_mhz": 26.74,
              "timing_pass": True, "build_seconds": 58.6, "gmacs_per_s": 0.83,
              "inferences_per_s": 2006, "cycles_per_inference": 12897}
    cells = dict(zip(COLUMNS, row(result)))
    assert cells["weights"] == "bram (frames: spram)" and cells["SPRAM"] == "4"
    assert dict(zip(COLUMNS, row({**result, "spram_holds": "weights"})))["weights"] == "spram"


def test_report_compares_each_build_with_the_same_build_before():
    from ternac.fpga.report import comparison_table
    result = {"board": "icebreaker", "design": "ternary", "net": "64-64-10", "fits": True,
              "config": {"lanes": 8}, "link": "uart", "capacity": {}, "lut": 4235,
              "fmax_mhz": 33.22, "timing_pass": True, "inferences_per_s": 250000, "cycles_per_inference": 123}
    before = [result,
              {**result, "config": {"lanes": 4}, "lut": 1}]       # another P: not the same build
    after = [{**result, "lut": 4300, "fmax_mhz": 40.04, "inferences_per_s": 300000},
             {**result, "net": "784-256-256-10"}]                 # built only now
    lines = comparison_table(before, after).splitlines()
    assert lines[2] == ("| icebreaker | ternary | 64-64-10 | uart | 123 | 123 | 4235 | 4300 | 33.2 | 40.0 "
                        "| 250,000 | 300,000 |")
    assert lines[3].endswith("| - | 123 | - | 4235 | - | 33.2 | - | 250,000 |")


def test_fpga_seeds_reports_every_seed_and_the_best(monkeypatch, tmp_path):
    import argparse

    from ternac.fpga import cmd_fpga
    from ternac.model.codebook import TernacError
    monkeypatch.setenv("TERNAC_FPGA_BUILD", str(tmp_path))
    fmax = {1: 44.5, 2: 46.0, 3: 41.0}
    roots = []

    def fake_build(board, design, net, *, seed, root, **_):
        roots.append(root)
        return {"board": board, "design": design, "net": net, "lanes": 8, "layer_table": "wide",
                "fits": True, "seed": seed, "fmax_mhz": fmax[seed], "clock_mhz": 48.0,
                "timing_pass": False, "lut": 4000 + seed, "ff": 1, "ebr": 1, "dsp": 1, "spram": 4,
                "inferences_per_s": None, "build_seconds": 1.0, "build_dir": str(root / "x")}

    monkeypatch.setattr(cmd_fpga, "build", fake_build)
    parser = argparse.ArgumentParser()
    cmd_fpga.configure(parser)
    result = cmd_fpga.run(parser.parse_args(["--seeds", "1,2,3", "--pll-mhz", "48"]), say=lambda _: None)
    assert [s["fmax_mhz"] for s in result["seeds"]] == [44.5, 46.0, 41.0]
    assert result["seed"] == 2 and result["lut"] == 4002
    assert result["fmax_spread"] == {"min": 41.0, "median": 44.5, "max": 46.0, "best_seed": 2}
    assert [root.name for root in roots] == ["seed-1", "seed-2", "seed-3"]
    with pytest.raises(TernacError, match="comma-separated"):
        cmd_fpga.run(parser.parse_args(["--seeds", "one"]), say=lambda _: None)


def test_a_net_with_two_drivers_in_the_yosys_report_is_a_failed_synthesis():
    # Yosys 0.70's ABC9 once wired two flip-flops to one net (fpga/build.py: ABC9_XAIGER1).
    from ternac.fpga.build import conflicting_drivers
    report = ("4.52. Executing CHECK pass (checking for obvious problems).\nChecking module top...\n"
              "Warning: multiple conflicting drivers for top.\\core.array.slot_copies[0] [5]:\n"
              "    port Q[0] of cell core.array.slot_copies[0]_TRELLIS_FF_Q_40 (TRELLIS_FF)\n")
    assert conflicting_drivers(report) == "top.\\core.array.slot_copies[0] [5]"
    assert conflicting_drivers("Found and reported 0 problems.\n") is None


def test_yosys_failures_are_built_again_with_the_flow_that_avoids_them(monkeypatch, tmp_path):
    from ternac.fpga import build as fpga_build
    flows = []

    def build_once(*args, abc9_xaiger1, abc9_dff, **kwargs):
        flows.append((abc9_xaiger1, abc9_dff))
        error = {1: "multiple conflicting drivers for top.x", 2: "ERROR: Assertion failed"}.get(len(flows))
        return {"synthesis_error": error, "fits": error is None, "timing_pass": True, "ebr": 0,
                "build_dir": str(tmp_path)}
    monkeypatch.setattr(fpga_build, "_build_once", build_once)
    result = fpga_build.build("ulx3s-85f", "ternary", "64-64-10", link="pins", pll_mhz=150)
    assert flows == [(False, False), (True, False), (True, True)] and result["fits"]
