"""Gather everything the design review shows into one JSON-able dict.

Each section is measured here or read from a saved result; what cannot be had is recorded
by :func:`Collector.missing` with the command that would produce it, so the renderers
show it as MISSING instead of leaving it out.
"""

import contextlib
import datetime
import importlib.metadata
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import bits as bits_module
from .. import energy as energy_module
from ..bits import bits_per_weight
from ..codebook import TernacError
from ..datasets import network_samples
from ..hw import cycles as cycles_module
from ..hw import lower, size_config
from ..network import TernaryLayer, layer_kind

__all__ = ["SIMULATORS", "collect", "network_shape"]

SIMULATORS = ("verilator", "icarus")
#: Keys of a ``ternac sim --json`` summary the report uses (a run made here has the same).
SIM_KEYS = ("simulator", "samples", "bit_exact", "mismatches", "first_mismatch",
            "cycles_per_inference", "predicted_cycles", "cycles_exact", "dataset", "accuracy",
            "reference_accuracy", "config", "error", "actions", "actions_exact")
#: Fields of an FPGA build's ``report.json`` the report shows.
FPGA_KEYS = ("board", "device", "design", "net", "fits", "reason", "lut", "ff", "ebr", "dsp",
             "fmax_mhz", "clock_mhz", "target_mhz", "timing_pass", "cycles_per_inference", "inferences_per_s",
             "build_seconds", "config")
DOCS = Path(__file__).resolve().parents[2] / "docs"


class Collector:
    """Accumulates the sections and the list of what is missing."""

    def __init__(self, net_path, progress):
        self.net_path = net_path
        self.progress = progress
        self.missing_items = []

    def missing(self, section, what, command):
        item = {"section": section, "missing": what, "command": command}
        self.missing_items.append(item)
        return item


def network_shape(network):
    """``"64-64-10"`` for a chain of linear layers (the FPGA builds' names), else ``None``."""
    layers = network.ternary_layers
    if not layers or any(layer.conv is not None for layer in layers):
        return None
    return "-".join(str(n) for n in [layers[0].in_features] + [layer.out_features for layer in layers])


# -- network and layers ---------------------------------------------------------------------

def _network_section(network, net_path, program):
    bits = bits_per_weight(network)
    return {
        "path": str(net_path), "file_bytes": Path(net_path).stat().st_size,
        "input_shape": list(network.input_shape), "input_scale": network.input_scale,
        "output_shape": list(network.output_shape), "lanes": network.lanes,
        "codings": sorted({str(layer.coding) for layer in network.ternary_layers}),
        "layers": len(network.layers), "ternary_layers": len(network.ternary_layers),
        "shape": network_shape(network), "weights": bits["weights"],
        "nonzero_share": (sum(int((layer.weights() != 0).sum()) for layer in network.ternary_layers)
                          / max(1, bits["weights"])),
        "bits_per_weight": {key: bits[key] for key in ("codes", "all_in", "fp32_ratio", "total_bits")},
        "meta": network.meta,
        "hardware": program.config.summary() if program else None,
    }


def _not_mappable(reason, name):
    """The clause of a lowering error that names layer ``name``, else the whole reason."""
    clauses = reason.removeprefix("not mappable: ").split("; ")
    mine = [c for c in clauses if c.startswith(f"layer {name} ")]
    return "not mappable: " + ("; ".join(mine) if mine else reason.removeprefix("not mappable: "))


def _layer_rows(network, program, reason):
    bits = {row["name"]: row for row in bits_per_weight(network)["per_layer"]}
    passes = {}
    if program:
        passes = {d.name: (d, u) for d, u in zip(program.layers, program.cycles.layer_utilization())}
    rows, previous = [], None
    for layer in network.layers:
        row = {"name": layer.name, "kind": layer_kind(layer), "in_shape": list(layer.in_shape()),
               "out_shape": list(layer.out_shape())}
        if isinstance(layer, TernaryLayer):
            weights = layer.weights()
            row.update(coding=str(layer.coding), code_bits=layer.codebook.code_bits,
                       learned_codebook=layer.codebook.learned,
                       codes_bpw=bits[layer.name]["codes"], all_in_bpw=bits[layer.name]["all_in"],
                       nonzero_share=float((weights != 0).mean()), acc_bits=layer.acc_bits,
                       relu=bool(layer.relu))
            desc, util = passes.get(layer.name, (None, None))
            if desc:
                row.update(cycles=desc.cycles, utilization=util)
            else:
                row["not_mappable"] = _not_mappable(reason, layer.name)
            previous = layer
        elif program and layer.kind == "relu" and previous is not None:
            row["fused_into"] = previous.name
        elif not program:
            row["not_mappable"] = _not_mappable(reason, layer.name)
        rows.append(row)
    return rows


# -- accuracy -------------------------------------------------------------------------------


def _accuracy_section(c, network, dataset, samples, x, labels, runs):
    from ..reference import golden_predict

    meta, net = network.meta, c.net_path
    trained_on = meta.get("dataset")
    suggest = dataset or trained_on or "NAME"
    rows = []
    if "float_accuracy" in meta:
        rows.append({"model": "float (PyTorch)", "accuracy": meta["float_accuracy"],
                     "dataset": trained_on, "samples": "full test split",
                     "source": "recorded by ternac train in the .tern"})
    else:
        rows.append({"model": "float (PyTorch)", **c.missing(
            "accuracy", "float accuracy: the .tern records none (networks from `ternac train` do)",
            f"ternac train --dataset {suggest} --out {net}")})
    if "integer_accuracy" in meta:
        rows.append({"model": "integer reference (at training)", "accuracy": meta["integer_accuracy"],
                     "dataset": trained_on, "samples": "full test split",
                     "source": "recorded by ternac train in the .tern"})
    if labels is not None:
        c.progress(f"integer reference on {len(labels)} {dataset} test samples")
        predicted = golden_predict(network, x.reshape((len(x),) + tuple(network.input_shape)))
        rows.append({"model": "integer reference", "accuracy": float(np.mean(predicted == labels)),
                     "dataset": dataset, "samples": len(labels),
                     "source": "golden model, measured by this report"})
    else:
        rows.append({"model": "integer reference", **c.missing(
            "accuracy", "integer reference accuracy: no data set given",
            f"ternac report {net} --dataset {suggest} --samples {samples}")})
    rtl = [r for r in runs if r.get("accuracy") is not None]
    for run in rtl:
        rows.append({"model": f"RTL ({run['simulator']})", "accuracy": run["accuracy"],
                     "dataset": run["dataset"], "samples": run["samples"], "source": run["source"]})
    if not rtl:
        rows.append({"model": "RTL", **c.missing(
            "accuracy", "RTL accuracy: no simulation on a data set's test samples",
            f"ternac report {net} --dataset {suggest} --samples {samples} --sim")})
    return {"rows": rows, "trained_on": trained_on}


# -- simulation sign-off --------------------------------------------------------------------

def tool_versions():
    """Versions of the sign-off tools installed here."""
    versions = {}
    for name in ("cocotb", "verilator", "amaranth"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    iverilog = shutil.which("iverilog")
    versions["iverilog"] = "not installed"
    if iverilog:
        out = subprocess.run([iverilog, "-V"], check=False, capture_output=True, text=True, timeout=30)
        versions["iverilog"] = (out.stdout.splitlines() or ["unknown"])[0].strip()
    return versions


def _run_simulator(network, program, simulator, x, labels, dataset, progress):
    """One ``sim_network`` run, as a ``ternac sim --json``-like record; an error is a record too."""
    from ternac.cosim.accelerator_sim import sim_network
    from ternac.cosim.runner import CosimError
    from ternac.cosim.toolchain import ToolchainError
    from tqdm import tqdm

    progress(f"simulating {len(x)} samples on {simulator}")
    bar = tqdm(total=len(x), desc=f"ternac report ({simulator})", unit="inference",
               file=sys.stderr, disable=None)
    record = {"simulator": simulator, "samples": len(x), "config": program.config.summary(),
              "predicted_cycles": program.cycles.total, "dataset": dataset}
    try:
        # The runner prints a waveform path on stdout: keep stdout for the JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            run = sim_network(network, x, sim=simulator, config=program.config,
                              progress=lambda done: bar.update(done - bar.n),
                              name=f"ternac-report-{simulator}")
    except (ToolchainError, CosimError) as error:
        return {**record, "bit_exact": False, "cycles_exact": False, "error": str(error)}
    finally:
        bar.close()
    measured = sorted(set(run.measured))
    record.update(bit_exact=run.bit_exact, mismatches=run.mismatches, first_mismatch=run.first_mismatch,
                  cycles_per_inference=measured[0] if len(measured) == 1 else measured,
                  cycles_exact=run.cycles_exact, error=run.error,
                  actions=run.actions[0] if run.actions else None, actions_exact=run.actions_exact)
    if labels is not None:
        record.update(accuracy=float(np.mean(run.outputs.argmax(axis=1) == labels)),
                      reference_accuracy=float(np.mean(run.expected.argmax(axis=1) == labels)))
    return record


def _saved_run(summary, source, date):
    if not isinstance(summary, dict) or summary.get("simulator") not in SIMULATORS:
        raise TernacError(f"{source}: not a `ternac sim --json` summary (no simulator field)")
    return {**{key: summary.get(key) for key in SIM_KEYS}, "source": source, "date": date}


def load_sim_json(path):
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TernacError(f"--sim-json {path}: {error}") from None
    date = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
    return _saved_run(summary, f"file {path}", date)


def _judge(run, program):
    """Sign-off status of one run against this network's program."""
    if program is None:
        return {**run, "status": "FAILED", "why": "the network does not map onto the accelerator"}
    same = (run.get("predicted_cycles") == program.cycles.total
            and run.get("config") in (None, program.config.summary()))
    if not same:
        return {**run, "status": "FAILED",
                "why": "the run is of another network or configuration (predicted cycles or "
                       "hardware configuration differ from this network's)"}
    if run.get("error") and not run.get("bit_exact"):
        return {**run, "status": "FAILED", "why": run["error"].splitlines()[0]}
    ok = bool(run.get("bit_exact")) and bool(run.get("cycles_exact")) and run.get("actions_exact") is not False
    why = (("bit-exact and cycle-exact" + (", actions = model" if run.get("actions_exact") else "")) if ok else
           f"{run.get('mismatches')} output values differ" if not run.get("bit_exact") else
           "activity counters differ from the program's actions" if run.get("cycles_exact") else
           f"cycles {run.get('cycles_per_inference')} measured, {run.get('predicted_cycles')} predicted")
    return {**run, "status": "SIGNED OFF" if ok else "FAILED", "why": why}


def _signoff_section(c, program, runs, samples, dataset):
    judged = [_judge(run, program) for run in runs]
    simulators = {}
    for sim in SIMULATORS:
        mine = [run for run in judged if run["simulator"] == sim]
        if mine:
            simulators[sim] = {"status": "SIGNED OFF" if all(r["status"] == "SIGNED OFF" for r in mine)
                               else "FAILED", "runs": len(mine)}
        else:
            flag = "--sim" if sim == "verilator" else "--sim --icarus"
            data = f" --dataset {dataset}" if dataset else ""
            simulators[sim] = c.missing(
                "signoff", f"no {sim} run", f"ternac report {c.net_path}{data} --samples {samples} "
                f"{flag} (or: ternac sim {c.net_path} --simulator {sim} --json > {sim}.json, "
                f"then --sim-json {sim}.json)")
    return {"runs": judged, "simulators": simulators, "tools": tool_versions()}


# -- FPGA -----------------------------------------------------------------------------------

def _fpga_reports(paths, root):
    files = [Path(p) for p in paths] if paths else sorted(Path(root).glob("*/report.json"))
    builds = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TernacError(f"FPGA report {path}: {error}") from None
        for build in data.get("builds", [data]) if isinstance(data, dict) else []:
            if "board" not in build or "design" not in build:
                raise TernacError(f"FPGA report {path}: not a `ternac fpga` report.json")
            row = {key: build.get(key) for key in FPGA_KEYS}
            builds[(row["board"], row["design"], row["net"])] = {**row, "source": str(path)}
    return list(builds.values())


def _as_built(network, program, built):
    """This network lowered onto a build's configuration, if the build is the one this network
    gets at that build's lanes, layer table, weight register and input packing (a board build
    of a synthetic network of the same architecture, at another P than the .tern's own); else
    None."""
    if program is None or not built or built == program.config.summary():
        return None
    try:
        config = size_config(network, built["lanes"], dense=built.get("dense", False), head=program.head,
                             serial_layers=built.get("serial_layers", False),
                             weight_register=built.get("weight_register", False),
                             pack_on_host=not built.get("tap_packing", True))
    except (TernacError, KeyError, TypeError):
        return None
    return lower(network, config, head=program.head) if config.summary() == built else None


def _fpga_section(c, network, program, paths):
    from ternac.fpga.build import NETWORKS, build_root

    root = build_root()
    shape = network_shape(network)
    builds = _fpga_reports(paths, root)
    config = program.config.summary() if program else None
    for build in builds:
        same_geometry = (config is not None and build["config"] is not None
                         and (build["config"]["lanes"], build["config"]["coding"])
                         == (config["lanes"], config["coding"]))
        cycles = program.cycles.total if program else None
        as_built = _as_built(network, program, build["config"])
        if build["config"] == config:
            build["match"] = "same configuration"
        elif as_built:
            build["match"] = f"this network at P = {as_built.config.lanes}"
            cycles = as_built.cycles.total
        elif build["net"] == shape and same_geometry:
            build["match"] = "same shape"
        else:
            build["match"] = "other network"
        # At the PLL clock the bitstream runs at, when it meets it (a build without a PLL: Fmax).
        clock = build["clock_mhz"] if build["clock_mhz"] and build["timing_pass"] else build["fmax_mhz"]
        if build["match"] != "other network" and build["fmax_mhz"]:
            build["this_inferences_per_s"] = round(clock * 1e6 / cycles)
    matched = [b for b in builds if b["match"] != "other network" and b["design"] == "ternary"]
    section = {"builds": builds, "searched": [str(p) for p in paths] or [f"{root}/*/report.json"]}
    if not matched:
        if shape in NETWORKS:
            command = f"ternac fpga --board icebreaker --net {shape} (then ternac report ... --fpga-json " \
                      f"build/fpga/icebreaker-ternary-{shape}-uart/report.json)"
        else:
            command = (f"none yet for this shape: ternac fpga builds the synthetic networks "
                       f"{', '.join(NETWORKS)} (ternac fpga --net NAME); add {shape or 'this network'} "
                       f"to fpga/build.py NETWORKS")
        section["missing"] = c.missing(
            "fpga", f"no FPGA build of this network's shape ({shape or 'not a linear chain'}"
            f"{', ' + str(config['lanes']) + ' lanes' if config else ''})", command)
    return section


# -- energy and assumptions -----------------------------------------------------------------

def _plain(doc):
    """Docstring text on one line, reST ``code`` as Markdown `code`, *emphasis* plain."""
    text = re.sub(r"``(.+?)``", r"`\1`", " ".join(doc.split()))
    return re.sub(r"\*(\w+)\*", r"\1", text).replace(":func:", "").replace(":attr:", "")


def _bullets(doc, after=""):
    """The ``* `` bullet items of a docstring (after the line starting with ``after``)."""
    text = inspect.cleandoc(doc)
    if after:
        text = text[text.index(after):]
    return [_plain(item) for item in re.findall(r"^\* (.+?)(?=^\* |^\S|\Z)", text, flags=re.MULTILINE | re.DOTALL)]


def _assumptions(energy, program):
    notes = sorted({a["note"] for a in energy["designs"].get("ternac", {}).get("actions", [])})
    cycle = [_plain(inspect.getdoc(cycles_module.CycleReport).split("\n\n")[1]),
             _plain(inspect.getdoc(cycles_module.layer_cycles)),
             (f"ISSUE_TO_LATCH = {cycles_module.ISSUE_TO_LATCH} cycles, DRAIN_TO_WRITE = "
             f"{cycles_module.DRAIN_TO_WRITE} cycles (model/hw/cycles.py).")]
    if program:
        cycle.append(f"Utilization = dense-equivalent MACs / (P x N = {program.cycles.peak} per cycle "
                     f"x cycles); idle slots of sparse sub-vectors count as work done.")
    return {
        "energy model": ["45 nm energies per action from Horowitz, ISSCC 2014 (model/energy.py)."]
        + _bullets(energy_module.__doc__, "Assumptions") + [f"Action note: {n}" for n in notes],
        "cycle model": cycle,
        "bits per weight": _bullets(bits_module.__doc__),
        "accuracy": [("Inputs are pixels in [0, 1] quantized to int8 with the network's input scale; "
                     "a prediction is the argmax of the int8 logits, the lowest index winning a tie."),
                     ("RTL accuracy is counted on the RTL's own outputs; the float and at-training "
                     "figures are as recorded in the .tern file, not re-measured.")],
        "FPGA": [("Fmax is nextpnr's for one placement seed; inferences per second = the PLL clock "
                 "the bitstream runs at (Fmax for a build without one) / predicted cycles per "
                 "inference (compute only: no host I/O).")],
    }


# -- all ------------------------------------------------------------------------------------

def collect(network, net_path, *, lanes=None, dataset=None, samples=100, simulators=(),
            sim_runs=(), fpga_json=(), command=None, progress=lambda text: None):
    """Every section of the report as a JSON-able dict.

    Parameters
    ----------
    network : Network
    net_path : str
        The ``.tern`` file (shown, and used in the commands of missing items).
    dataset : str, optional
        Data set whose first ``samples`` test samples give the integer reference (and RTL)
        accuracy; without it, simulations run on random int8 inputs.
    simulators : iterable of str
        Simulators to run now (``sim_network``).
    sim_runs : iterable of dict
        Saved ``ternac sim --json`` summaries (see :func:`load_sim_json`).
    fpga_json : iterable of path
        FPGA ``report.json`` files; default: every build under ``build/fpga``.
    """
    from ..energy import energy_report

    c = Collector(net_path, progress)
    try:
        program, reason = lower(network, lanes=lanes), None
    except TernacError as error:
        program, reason = None, str(error)
    now = datetime.datetime.now().astimezone()
    x, labels = (None, None)
    if dataset or simulators:
        x, labels = network_samples(network, dataset, samples)
    runs = [_saved_run(run, run.get("source", "saved summary"), run.get("date") or now.date().isoformat())
            for run in sim_runs]
    for simulator in simulators:
        if program is None:
            runs.append({"simulator": simulator, "samples": 0, "bit_exact": False, "cycles_exact": False,
                         "error": reason, "source": "not run", "date": now.date().isoformat()})
            continue
        run = _run_simulator(network, program, simulator, x, labels, dataset, progress)
        runs.append({**run, "source": "run by this report", "date": now.date().isoformat()})
    # The RTL-measured actions of a signed-off run, if any (equal to the program's by the check).
    signed = [run for run in (_judge(run, program) for run in runs)
              if run["status"] == "SIGNED OFF" and run.get("actions_exact")]
    measured = signed[0]["actions"] if signed else None
    energy = energy_report(network, program.config.lanes if program else lanes, measured=measured)
    report = {
        "title": f"ternac design review: {Path(net_path).name}",
        "date": now.isoformat(timespec="seconds"), "command": command,
        "network": _network_section(network, net_path, program),
        "program": {"mappable": program is not None, "reason": reason,
                    "cycles": program.cycles.to_dict() if program else None},
        "layers": _layer_rows(network, program, reason),
        "accuracy": _accuracy_section(c, network, dataset, samples, x, labels, runs),
        "signoff": _signoff_section(c, program, runs, samples, dataset),
        "fpga": _fpga_section(c, network, program, list(fpga_json)),
        "energy": energy,
        "assumptions": _assumptions(energy, program),
    }
    if program is None:
        c.missing("cycles", f"cycles and utilization: {reason}", "none: the network must map onto "
                  "the accelerator (see the layer table)")
    report["missing"] = c.missing_items
    return report
