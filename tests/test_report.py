"""``ternac report``: the design review page (HTML and Markdown), its MISSING markers, its
judgement of saved simulation and FPGA results, and the page rendered in headless Chromium."""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import random_network
from ternac.model import cli
from ternac.model.bits import bits_per_weight
from ternac.model.hw import lower, size_config
from ternac.model.network import Network, ReluLayer, load_network, save_network

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_fpga_builds(tmp_path, monkeypatch):
    """An empty FPGA build root: the result must not depend on builds lying in the worktree."""
    root = tmp_path / "fpga-builds"
    root.mkdir()
    monkeypatch.setenv("TERNAC_FPGA_BUILD", str(root))
    return root


def _report(tmp_path, net, *extra, name="net"):
    path = tmp_path / f"{name}.tern"
    save_network(net, path)
    out = tmp_path / f"{name}-report"
    args = ["report", str(path), "--out", str(out), "--json", *map(str, extra)]
    return path, out, args


def _run(args, capsys):
    assert cli.main(args) == 0
    return json.loads(capsys.readouterr().out)


def _md_row(md, first_cell):
    """The cells of the first Markdown table row starting with ``first_cell``."""
    rows = [line for line in md.splitlines() if line.startswith(f"| {first_cell} |")]
    assert rows, f"no Markdown row for {first_cell!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


@pytest.fixture
def small_report(tmp_path, no_fpga_builds, capsys):
    net = random_network([20, 13, 7])
    path, out, args = _report(tmp_path, net)
    return net, path, out, _run(args, capsys)


def test_report_tables_images_and_missing(small_report):
    net, path, out, summary = small_report
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert summary["html"] == str(out / "report.html") and summary["markdown"] == str(out / "report.md")
    assert summary["sections"]["signoff"] == "missing" and summary["sections"]["fpga"] == "missing"
    assert summary["sections"]["accuracy"] == "missing"
    assert {"network", "layers", "energy", "assumptions", "cycles"} <= set(summary["present"])
    # Each plot: a PNG beside the Markdown, referenced by it, embedded in the HTML.
    assert sorted(p.split("/")[-1] for p in summary["images"]) == ["accuracy.png", "cycles.png", "energy.png"]
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == 3
    for name, data in zip(("cycles", "accuracy", "energy"), embedded):      # page order
        assert (out / f"{name}.png").read_bytes() == base64.b64decode(data)
        assert base64.b64decode(data).startswith(PNG)
        assert f"]({name}.png)" in md
    assert "http://" not in html and "https://" not in html and "<link" not in html
    # The layer table: bits, sparsity, accumulator, cycles and utilization of the program.
    program = lower(net)
    bits = {row["name"]: row for row in bits_per_weight(net)["per_layer"]}
    for layer, desc, util in zip(net.ternary_layers, program.layers, program.cycles.layer_utilization()):
        row = _md_row(md, layer.name)
        nonzero = float((layer.weights() != 0).mean())
        assert row == [layer.name, "linear", str(layer.in_features), str(layer.out_features), "(8,2)",
                       f"{bits[layer.name]['codes']:.4f}", f"{bits[layer.name]['all_in']:.4f}",
                       f"{nonzero:.1%}", str(layer.acc_bits), f"{desc.cycles:,}", f"{util:.1%}"]
        assert f"<td>{desc.cycles:,}</td>" in html
    assert f"= {program.cycles.total:,} cycles" in md
    # Missing parts are marked, each with the command that produces it.
    assert html.count('<div class="missing"><b>MISSING</b>') >= 4
    assert f"ternac report {path} --samples 100 --sim --icarus" in md
    assert f"ternac report {path} --dataset NAME --samples 100" in md
    assert "no FPGA build of this network's shape (20-13-7, 8 lanes)" in md
    assert _md_row(md, "verilator")[1] == "MISSING" and _md_row(md, "icarus")[1] == "MISSING"
    # Energy against the other designs, and the assumptions stated.
    for design in ("fp32", "int8", "ternary-dense", "ternac"):
        assert _md_row(md, design)
    assert "Horowitz" in md and "interpolated" in md and "always has data" in md


def test_report_not_mappable(tmp_path, no_fpga_builds, capsys):
    base = random_network([20, 13, 7])
    net = Network(input_shape=(20,), input_scale=base.input_scale,
                  layers=[ReluLayer("pre", (20,)), *base.layers], lanes=8)
    _, out, args = _report(tmp_path, net)
    summary = _run(args, capsys)
    md = (out / "report.md").read_text()
    assert summary["sections"]["cycles"] == "missing"
    reason = "not mappable: layer pre (relu): a ReLU is fused into the requantizer"
    assert _md_row(md, "pre")[9].startswith(reason)
    assert _md_row(md, "0")[9].startswith("not mappable: layer pre (relu)")
    assert "MISSING**: plot: Predicted cycles" in md
    assert "cycles.png" not in md and len(summary["images"]) == 2


def _sim_summary(program, **changes):
    """A `ternac sim --json` summary as the command writes it for this program."""
    summary = {"net": "x.tern", "simulator": "icarus", "samples": 12, "bit_exact": True,
               "mismatches": 0, "first_mismatch": None, "cycles_per_inference": program.cycles.total,
               "predicted_cycles": program.cycles.total, "cycles_exact": True, "dataset": None,
               "config": program.config.summary(), "problems": []}
    return {**summary, **changes}


def test_report_judges_saved_sim_and_fpga_results(tmp_path, no_fpga_builds, capsys):
    net = random_network([20, 13, 7])
    program = lower(net)
    files = {
        "good": _sim_summary(program),
        "wrong": _sim_summary(program, simulator="verilator", bit_exact=False, mismatches=3),
        "other": _sim_summary(program, simulator="verilator", predicted_cycles=program.cycles.total + 1),
        "drift": _sim_summary(program, simulator="verilator", actions_exact=False,
                              actions=dict(program.actions(), idle_slots=0)),
    }
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    build = {"board": "icebreaker", "design": "ternary", "net": "20-13-7", "fits": True, "lut": 1234,
             "ff": 900, "ebr": 4, "dsp": 0, "fmax_mhz": 30.0, "inferences_per_s": 1,
             "cycles_per_inference": program.cycles.total, "config": program.config.summary()}
    other = {**build, "net": "64-64-10", "config": {**build["config"], "weight_depth": 999},
             "fmax_mhz": 25.0, "inferences_per_s": 123}
    # A board build at another P with a row-serial layer table: the configuration this network
    # gets there, so its rate is this network's on that build.
    at_p4 = size_config(net, 4, serial_layers=True)
    board_build = {**build, "board": "ulx3s-85f", "config": at_p4.summary(), "fmax_mhz": 40.0}
    (tmp_path / "fpga.json").write_text(json.dumps({"builds": [build, other, board_build]}))
    extra = [f for name in files for f in ("--sim-json", tmp_path / f"{name}.json")]
    _, out, args = _report(tmp_path, net, *extra, "--fpga-json", tmp_path / "fpga.json")
    summary = _run(args, capsys)
    md = (out / "report.md").read_text()
    assert _md_row(md, "icarus")[1] == "SIGNED OFF"
    assert _md_row(md, "verilator")[1:3] == ["FAILED", "3"]
    details = [line for line in md.splitlines() if line.startswith("| verilator | file ")]
    assert "3 output values differ" in details[0] and "of another network" in details[1]
    assert "activity counters differ" in details[2]
    assert summary["signoff"] == {"verilator": "FAILED", "icarus": "SIGNED OFF"}
    assert summary["sections"]["signoff"] == "present" and summary["sections"]["fpga"] == "present"
    rows = {line.split("|")[3].strip(): line for line in md.splitlines() if line.startswith("| icebreaker |")}
    assert "same configuration" in rows["20-13-7"]
    assert f"| {round(30e6 / program.cycles.total):,} |" in rows["20-13-7"]
    assert "other network" in rows["64-64-10"] and "| 123 |" in rows["64-64-10"]
    [p4_row] = [line for line in md.splitlines() if line.startswith("| ulx3s-85f |")]
    assert "this network at P = 4" in p4_row
    assert f"| {round(40e6 / lower(net, at_p4).cycles.total):,} |" in p4_row
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    assert cli.main(["report", args[1], "--out", str(out), "--sim-json", str(tmp_path / "bad.json")]) == 2
    assert "not a `ternac sim --json` summary" in capsys.readouterr().err


# -- the page in a real browser -------------------------------------------------------------

def _chromium(tmp_path, *flags):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package `chromium`, installed by `make venv`)")
    profile = tmp_path / "chromium-profile"
    command = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout


def _dom(tmp_path, page):
    return _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri())


def test_report_renders_in_chromium(small_report, tmp_path):
    import matplotlib.image

    _, _, out, _ = small_report
    page = out / "report.html"
    dom = _dom(tmp_path, page)
    assert '<body data-images="ok 3/3">' in dom
    assert dom.count("<table") >= 8 and dom.count("<img") == 3
    assert "MISSING" in dom and "Energy per inference" in dom
    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri())
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    ink = (pixels.mean(axis=2) < 0.9).mean()          # share of non-white pixels
    assert ink > 0.03 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    # The check can fail: a page with one corrupt image reports it.
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    assert '<body data-images="broken 1/3">' in _dom(tmp_path, broken)


# -- with a real sign-off ----------------------------------------------------------------------

@pytest.mark.cosim
def test_report_sim_signoff_and_accuracy(tmp_path, no_fpga_builds, capsys):
    from test_cosim_accelerator import _trained_digits_path

    net_path = _trained_digits_path()
    icarus = tmp_path / "icarus.json"
    assert cli.main(["sim", str(net_path), "--simulator", "icarus", "--samples", "12",
                     "--dataset", "digits", "--json"]) == 0
    icarus.write_text(capsys.readouterr().out)
    out = tmp_path / "report"
    summary = _run(["report", str(net_path), "--out", str(out), "--dataset", "digits", "--samples", "12",
                    "--sim", "--sim-json", str(icarus), "--json"], capsys)
    md = (out / "report.md").read_text()
    assert summary["signoff"] == {"verilator": "SIGNED OFF", "icarus": "SIGNED OFF"}
    assert summary["sections"]["accuracy"] == "present"
    assert _md_row(md, "verilator")[1] == "SIGNED OFF" and _md_row(md, "icarus")[1] == "SIGNED OFF"
    report = json.loads((out / "report.json").read_text())
    rows = {row["model"]: row for row in report["accuracy"]["rows"]}
    assert rows["RTL (verilator)"]["samples"] == rows["integer reference"]["samples"] == 12
    assert rows["RTL (verilator)"]["accuracy"] == rows["integer reference"]["accuracy"]
    assert rows["RTL (icarus)"]["accuracy"] == rows["integer reference"]["accuracy"]
    assert rows["float (PyTorch)"]["accuracy"] > 0.5
    # The ternac energy row charges the actions the RTL measured (equal to the program's).
    assert report["energy"]["source"] == "measured"
    assert report["energy"]["counts"] == lower(load_network(net_path)).actions()
