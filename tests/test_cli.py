"""The command line: lazy command imports, exit codes decided by main alone, one-line errors
for a network whose input does not match the data set, energy on a network the accelerator
cannot run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ternac.model import cli
from ternac.model.codebook import Coding
from ternac.model.convert import quantize_network
from ternac.model.network import save_network
from torch import nn

DATA = Path(__file__).parent / "data"
HEAVY = {"torch", "amaranth", "cocotb", "cocotb_tools"}


def conv_model(channels=3, side=12):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 10, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(10 * (side - 2) ** 2, 10)).eval()


@pytest.fixture(scope="module")
def rgb_net(tmp_path_factory):
    """A .tern CNN taking 3x12x12 images (the digits data set has 1x8x8)."""
    path = tmp_path_factory.mktemp("rgb") / "rgb.tern"
    calib = torch.rand(32, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    save_network(quantize_network(conv_model(), Coding(8, 2), calib), path)
    return path


def run_cli(capsys, *argv):
    code = cli.main([*map(str, argv), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


# --------------------------------------------------------------------------------------------
# only the running command's module is imported

PROBE = """
import json, sys
from ternac.model.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


@pytest.mark.parametrize("argv,allowed", [
    (["--help"], set()),
    (["info", DATA / "v1_mlp_learned.tern"], set()),
    (["info", DATA / "v1_cnn.tern", "--json"], set()),
    (["eval", DATA / "v1_cnn.tern", "--dataset", "digits", "--limit", "20"], {"torch"}),
])
def test_commands_import_only_what_they_need(argv, allowed):
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True,
                          timeout=120, check=False)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    assert HEAVY & set(result["loaded"]) <= allowed


# --------------------------------------------------------------------------------------------
# exit codes: the command returns its summary, main decides

def fake_sim(flip):
    """A stand-in for sim_network: the golden outputs and cycles, one value flipped if asked."""
    from ternac.cosim.accelerator_sim import SimRun, golden_outputs, golden_predicted
    from ternac.model.hw import lower

    def sim_network(network, x, *, config, **_):
        expected = golden_outputs(network, x)
        outputs = expected.copy()
        if flip:
            outputs[0, 0] ^= 1
        predicted = golden_predicted(lower(network, config))
        total = [predicted["total"]] * len(x)
        return SimRun("verilator", expected, outputs, total, total, predicted, [], 100, 1.0, 1.0, 0.0,
                      log=Path("sim.log"))
    return sim_network


@pytest.mark.parametrize("flip,code", [(True, 1), (False, 0)])
def test_sim_mismatch_exits_1_with_the_summary_printed(capsys, monkeypatch, flip, code):
    from ternac.cosim import accelerator_sim
    monkeypatch.setattr(accelerator_sim, "sim_network", fake_sim(flip))
    got, summary, err = run_cli(capsys, "sim", DATA / "v1_mlp_learned.tern", "--samples", "4")
    assert got == code
    assert summary["bit_exact"] is not flip and summary["ok"] is not flip
    if flip:
        assert "not bit-exact" in summary["failed"] and "failed: the RTL differs" in err
    else:
        assert summary["failed"] is None and summary["cycles_exact"]


def test_demo_runs_every_step_and_fails_on_a_failed_sim(tmp_path, capsys, monkeypatch):
    """A failing sim step no longer stops the demo halfway: energy still runs, the exit is 1."""
    from ternac.cosim import cmd_sim
    from ternac.model import cmd_energy, cmd_eval, cmd_info, cmd_report, cmd_train
    from ternac.rtl import cmd_verilog

    ran = []

    def fake(name, summary):
        def run(args, say):
            ran.append(name if name != "sim" else f"sim_{args.simulator}")
            return dict(summary(args) if callable(summary) else summary)
        return run

    train = {"float_accuracy": 0.9, "integer_accuracy": 0.89, "bits_per_weight_codes": 1.0}
    monkeypatch.setattr(cmd_train, "run", fake("train", train))
    for module in (cmd_info, cmd_eval, cmd_verilog):
        monkeypatch.setattr(module, "run", fake(module.__name__, {}))
    monkeypatch.setattr(cmd_sim, "run", fake("sim", lambda args: {"ok": args.simulator != "verilator",
                                                                   "failed": "not bit-exact"}))
    monkeypatch.setattr(cmd_energy, "run", fake("energy", {"ratios_vs_ternac": {"int8": 13.0}}))
    monkeypatch.setattr(cmd_report, "run", lambda args, say, sim_summaries: ran.append("report") or {})
    code, summary, err = run_cli(capsys, "demo", "--out", tmp_path)
    assert code == 1 and "sim_verilator" in summary["failed"] and "failed steps" in err
    assert summary["signed_off"] is False and ran[-4:] == ["sim_verilator", "sim_icarus", "energy", "report"]


# --------------------------------------------------------------------------------------------
# a network whose input does not match the data set: one line, no traceback

SHAPE_ERROR = "the network expects 3x12x12, the data set digits gives 1x8x8"


def assert_one_line_error(code, summary, err):
    assert code == 2 and summary["error"] == SHAPE_ERROR
    assert err.strip().splitlines() == [f"ternac {err.split()[1]} error: {SHAPE_ERROR}"]


def test_eval_on_a_network_for_other_inputs(capsys, rgb_net):
    assert_one_line_error(*run_cli(capsys, "eval", rgb_net, "--dataset", "digits"))


def test_sim_on_a_network_for_other_inputs(capsys, rgb_net):
    assert_one_line_error(*run_cli(capsys, "sim", rgb_net, "--dataset", "digits", "--samples", "2"))


def test_train_model_for_other_inputs(tmp_path, capsys):
    torch.save(conv_model(), tmp_path / "rgb.pt")
    assert_one_line_error(*run_cli(capsys, "train", "--dataset", "digits", "--model", tmp_path / "rgb.pt",
                                   "--epochs", "0.01", "--no-progress"))


def test_train_model_with_matching_channels_but_other_size(tmp_path, capsys):
    torch.save(conv_model(channels=1, side=28), tmp_path / "mnist.pt")
    code, summary, _ = run_cli(capsys, "train", "--dataset", "digits", "--model", tmp_path / "mnist.pt")
    assert code == 2 and summary["error"] == "the network expects 1x28x28, the data set digits gives 1x8x8"


# --------------------------------------------------------------------------------------------
# energy and info on a network the accelerator cannot run

def test_energy_says_when_the_accelerator_cannot_run_the_network(capsys):
    code, report, _ = run_cli(capsys, "energy", DATA / "v1_cnn.tern")
    assert code == 0 and report["mappable"] is False and "conv2d" in report["reason"]
    cli.main(["energy", str(DATA / "v1_cnn.tern")])
    assert "cannot run this network" in capsys.readouterr().out


def test_energy_activation_buffer_holds_the_largest_tensor(capsys):
    """v1_cnn: the largest tensor is conv 0's 4x8x8 output (256 int8), ping-pong: 512 B; the
    widest fan-in (36) would give 72 B."""
    _, report, _ = run_cli(capsys, "energy", DATA / "v1_cnn.tern")
    notes = {a["note"] for a in report["designs"]["ternac"]["actions"] if a["action"].startswith("activation")}
    assert notes and all(note.startswith("512 B activation SRAM") for note in notes)


def test_energy_on_a_mappable_network(capsys):
    code, report, _ = run_cli(capsys, "energy", DATA / "v1_mlp_learned.tern")
    assert code == 0 and report["mappable"] is True and report["reason"] is None


def test_info_lists_an_unmappable_network(capsys):
    code, summary, _ = run_cli(capsys, "info", DATA / "v1_cnn.tern")
    assert code == 0 and summary["mappable"] is False and len(summary["layers"]) == 7
    assert np.isclose(summary["bits_per_weight"]["codes"], 1.59)
