"""`ternac pack`, `ternac energy`, and the importer's errors, through the real CLI entry point."""

import json

import pytest
import torch
from conftest import random_mlp
from ternac.model.cli import main
from torch import nn


def run_cli(capsys, *argv):
    code = main([*map(str, argv), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


class Chain(nn.Module):
    """A non-Sequential module whose forward is a chain (traced with torch.fx)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


@pytest.mark.parametrize("coding,codes_bpw", [("8,2", 1.0), ("16,3", 0.8125)])
def test_pack_mlp_bits_per_weight(tmp_path, capsys, coding, codes_bpw):
    torch.save(random_mlp([784, 256, 10]), tmp_path / "mlp.pt")
    code, summary = run_cli(capsys, "pack", tmp_path / "mlp.pt", "--coding", coding, "--out", tmp_path / "n.tern")
    assert code == 0
    assert summary["bits_per_weight"]["codes"] == codes_bpw
    # all-in adds per-channel bias/multiplier/shift and the decoder ROM (large for (16,3))
    assert codes_bpw < summary["bits_per_weight"]["all_in"] < codes_bpw + 0.5


def test_pack_torchscript_and_traced_module(tmp_path, capsys):
    torch.jit.script(random_mlp([16, 8, 4])).save(tmp_path / "ts.pt")
    assert run_cli(capsys, "pack", tmp_path / "ts.pt", "--coding", "4,2", "--out", tmp_path / "a.tern")[0] == 0
    torch.save(Chain(), tmp_path / "chain.pt")
    code, summary = run_cli(capsys, "pack", tmp_path / "chain.pt", "--coding", "8,2", "--out", tmp_path / "b.tern")
    assert code == 0 and [layer["name"] for layer in summary["layers"]] == ["fc1", "fc2"]


@pytest.mark.parametrize("model,message", [
    (nn.Sequential(nn.Linear(8, 4), nn.Sigmoid()), r"cannot be mapped to ternac: layer 1 \(Sigmoid\)"),
    (nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4)), r"cannot be mapped to ternac: layer 1 \(LayerNorm\)"),
    (nn.Sequential(nn.ReLU()), "no Linear or Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1, dilation=2)), "dilation=1"),
])
def test_pack_rejects_unsupported_layers(tmp_path, capsys, model, message):
    torch.save(model, tmp_path / "m.pt")
    code, summary = run_cli(capsys, "pack", tmp_path / "m.pt", "--coding", "8,2", "--out", tmp_path / "n.tern")
    assert code == 2
    assert pytest.importorskip("re").search(message, summary["error"])


def test_pack_rejects_bad_files_and_codings(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert "neither a TorchScript file" in run_cli(capsys, "pack", tmp_path / "junk.pt", "--coding", "8,2",
                                                   "--out", tmp_path / "n.tern")[1]["error"]
    torch.save(random_mlp([8, 4]).state_dict(), tmp_path / "sd.pt")
    assert "state_dict" in run_cli(capsys, "pack", tmp_path / "sd.pt", "--coding", "8,2",
                                   "--out", tmp_path / "n.tern")[1]["error"]
    torch.save(random_mlp([8, 4]), tmp_path / "m.pt")
    assert "K must be in 0..N" in run_cli(capsys, "pack", tmp_path / "m.pt", "--coding", "8,9",
                                          "--out", tmp_path / "n.tern")[1]["error"]


def test_energy_table(tmp_path, capsys):
    torch.save(random_mlp([784, 256, 256, 10]), tmp_path / "mlp.pt")
    run_cli(capsys, "pack", tmp_path / "mlp.pt", "--coding", "8,2", "--out", tmp_path / "n.tern")
    code, report = run_cli(capsys, "energy", tmp_path / "n.tern", "--plot", tmp_path / "e.png")
    assert code == 0
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    ratios = report["ratios_vs_ternac"]
    assert ratios["ternac"] == 1.0
    assert ratios["fp32"] > ratios["int8"] > ratios["ternary-dense"] > 1.0
    for design in report["designs"].values():
        assert all(a["count"] >= 0 and a["note"] for a in design["actions"])


def test_info_reports_cycles_and_widths(tmp_path, capsys):
    torch.save(random_mlp([784, 256, 256, 10]), tmp_path / "mlp.pt")
    run_cli(capsys, "pack", tmp_path / "mlp.pt", "--coding", "8,2", "--lanes", "8", "--out", tmp_path / "n.tern")
    code, info = run_cli(capsys, "info", tmp_path / "n.tern")
    assert code == 0
    assert [layer["acc_bits"] for layer in info["layers"] if "acc_bits" in layer] == [17, 16, 16]
    assert info["bits_per_weight"]["codes"] == 1.0
    assert info["utilization"] >= 0.90                       # issue target: >= 90 % of P*N MACs/cycle
    # input 98 + 1 + fc1 (98 + 31*98 + 3 + 8 + 7 = 3154) + fc2 (32 + 31*32 + 18 = 1042)
    # + fc3 (32 + 1*32 + 18 = 82) + output (2 + 1 = 3) = 4380
    # (BUFFER_WRITE 1, ISSUE_TO_LATCH 3, P 8, DRAIN_TO_WRITE 7)
    assert info["predicted_cycles"] == 4380


def test_pack_calibrates_on_data_and_warns_on_a_range_mismatch(tmp_path, capsys):
    """--calibrate uniform ([0, 1)) on inputs in [-1, 1]: one warning line (stderr and JSON);
    --data alone calibrates on the data: no warning."""
    import numpy as np
    torch.save(random_mlp([64, 32, 10]), tmp_path / "m.pt")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).uniform(-1, 1, (300, 64)).astype(np.float32))
    args = ["pack", tmp_path / "m.pt", "--coding", "8,2", "--out", tmp_path / "n.tern", "--data", tmp_path / "x.npz"]
    code, summary = run_cli(capsys, *args, "--calibrate", "uniform")
    assert code == 0 and len(summary["warnings"]) == 1 and "[-1, 1]" in summary["warnings"][0]
    code = main([*map(str, args), "--calibrate", "uniform"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("ternac pack: warning: calibration inputs span") == 1
    code, summary = run_cli(capsys, *args)
    assert code == 0 and summary["warnings"] == [] and summary["calibration"] == str(tmp_path / "x.npz")
    assert summary["check"]["samples"] == 300 and 0 <= summary["check"]["agreement"] <= 1
