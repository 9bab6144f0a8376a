"""The report's content as a list of blocks, rendered alike to HTML and Markdown.

A block is a dict with a ``type``: ``h1``/``h2`` (``text``, ``id``), ``h3`` (``text``), ``p`` (``text``, with
`code` spans), ``table`` (``headers``, ``rows`` of strings), ``list`` (``items``), ``image``
(``file``, ``caption``) or ``missing`` (``what``, ``command``). Status words in a table cell
(SIGNED OFF, FAILED, MISSING) are styled by the HTML renderer.
"""

from ..energy import DESIGNS
from .plots import _action_kind

__all__ = ["SECTIONS", "blocks", "section_status"]

#: (id, heading) of every section, in page order.
SECTIONS = (
    ("network", "Network"), ("layers", "Layers"), ("accuracy", "Accuracy"),
    ("signoff", "RTL sign-off"), ("fpga", "FPGA"), ("energy", "Energy per inference"),
    ("assumptions", "Assumptions"), ("missing", "Missing"),
)


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f} %"


def _num(value, digits=4):
    return "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else f"{value:,}"


def _shape(shape):
    return "x".join(map(str, shape))


def _missing_blocks(item):
    return [{"type": "missing", "what": item["missing"], "command": item["command"]}]


def section_status(report):
    """``{section: "present" | "partial" | "missing"}`` from the report's missing items."""
    sections = {name for name, _ in SECTIONS if name != "missing"} | {"cycles"}
    missing = {}
    for item in report["missing"]:
        missing.setdefault(item["section"], []).append(item)
    status = {name: "partial" if name in missing else "present" for name in sorted(sections)}
    if not any(row.get("accuracy") is not None for row in report["accuracy"]["rows"]):
        status["accuracy"] = "missing"
    if "fpga" in missing and not report["fpga"]["builds"]:
        status["fpga"] = "missing"
    if "signoff" in missing and not report["signoff"]["runs"]:
        status["signoff"] = "missing"
    if "cycles" in missing:
        status["cycles"] = "missing"
    return status


# -- sections -------------------------------------------------------------------------------

def _summary(report, images):
    net, acc = report["network"], report["accuracy"]["rows"]
    signoff = report["signoff"]["simulators"]
    cycles = report["program"]["cycles"]
    energy = report["energy"]
    measured = [f"{r['model']} {_pct(r['accuracy'])} ({r['samples']})" for r in acc if r.get("accuracy") is not None]
    fpga = [b for b in report["fpga"]["builds"] if b["match"] != "other network" and b["design"] == "ternary"]
    rows = [
        ["network", (f"{_shape(net['input_shape'])} -> {_shape(net['output_shape'])}, "
                    f"{net['weights']:,} weights, coding {', '.join(net['codings'])}, "
                    f"{net['bits_per_weight']['all_in']:.3f} bits/weight all-in")],
        ["accuracy (samples)", ", ".join(measured) or "MISSING"],
        *[[f"sign-off {sim}", value.get("status") or "MISSING"] for sim, value in signoff.items()],
        ["cycles per inference", f"{cycles['total']:,} ({cycles['utilization']:.1%} utilization)"
         if cycles else f"not mappable: {report['program']['reason']}"],
        ["FPGA", ", ".join(f"{b['board']}: {b['fmax_mhz']:.1f} MHz, {b['this_inferences_per_s']:,} inferences/s"
                           if b["fmax_mhz"] else f"{b['board']}: does not fit" for b in fpga) or "MISSING"],
        ["energy per inference", f"{energy['designs']['ternac']['total_pj'] / 1e3:.3g} nJ, "
         f"x{energy['ratios_vs_ternac']['int8']:.1f} below int8, "
         f"x{energy['ratios_vs_ternac']['fp32']:.1f} below fp32" if energy["designs"] else "MISSING"],
        ["missing items", f"{len(report['missing'])} (see Missing)" if report["missing"] else "none"],
    ]
    return [{"type": "table", "headers": ["item", "result"], "rows": rows}]


def _network(report, images):
    net = report["network"]
    bits = net["bits_per_weight"]
    rows = [
        ["file", f"`{net['path']}` ({net['file_bytes']:,} bytes)"],
        ["input shape", f"{_shape(net['input_shape'])} (int8, scale {net['input_scale']:.6g})"],
        ["output shape", _shape(net["output_shape"])],
        ["layers", f"{net['layers']} ({net['ternary_layers']} ternary)"],
        ["coding", ", ".join(net["codings"])],
        ["weights", f"{net['weights']:,}, {net['nonzero_share']:.1%} non-zero"],
        ["bits per weight", (f"{bits['codes']:.4f} codes, {bits['all_in']:.4f} all-in "
                            f"({bits['total_bits']:,} bits, x{bits['fp32_ratio']:.1f} smaller than fp32)")],
        ["lanes (packing hint)", str(net["lanes"])],
    ]
    hw = net["hardware"]
    if hw:
        rows.append(["accelerator", (f"{hw['lanes']} lanes, coding ({hw['coding'][0]},{hw['coding'][1]}), "
                                    f"{hw['code_bits']}-bit codes, {hw['acc_bits']}-bit accumulator, "
                                    f"weight buffer {hw['weight_depth']} x {hw['weight_bits']} b, "
                                    f"activation buffers {' + '.join(map(str, hw.get('act_depths') or [hw['act_depth']] * 2))}"
                                    f" x {hw['act_bits']} b")])
    rows += [[f"meta: {key}", _num(value) if isinstance(value, float) else str(value)]
             for key, value in net["meta"].items()]
    return [{"type": "table", "headers": ["property", "value"], "rows": rows}]


def _layers(report, images):
    rows = []
    for r in report["layers"]:
        row = [r["name"], r["kind"], _shape(r["in_shape"]), _shape(r["out_shape"])]
        if "coding" in r:
            row += [r["coding"] + (" learned" if r["learned_codebook"] else ""), f"{r['codes_bpw']:.4f}",
                    f"{r['all_in_bpw']:.4f}", f"{r['nonzero_share']:.1%}", str(r["acc_bits"])]
        else:
            row += ["-"] * 5
        if "cycles" in r:
            row += [f"{r['cycles']:,}", f"{r['utilization']:.1%}"]
        elif "fused_into" in r:
            row += [f"fused into {r['fused_into']}", "-"]
        elif "not_mappable" in r:
            row += [r["not_mappable"], "-"]
        else:
            row += ["free (no pass)", "-"]
        rows.append(row)
    out = [{"type": "table", "headers": ["layer", "kind", "in", "out", "coding", "code b/w", "all-in b/w",
                                         "non-zero", "acc bits", "cycles", "utilization"], "rows": rows}]
    cycles = report["program"]["cycles"]
    if cycles:
        out.append({"type": "p", "text": f"One inference: {cycles['input']} input cycles, "
                    f"{' + '.join(map(str, cycles['layers']))} layer cycles, {cycles['output']} output "
                    f"cycles = {cycles['total']:,} cycles; utilization {cycles['utilization']:.1%}."})
    return out + _image(images, "cycles", "Predicted cycles per phase of one inference, with each "
                        "pass's utilization (cycle model, model/hw/cycles.py).")


def _accuracy(report, images):
    rows = []
    for r in report["accuracy"]["rows"]:
        if "missing" in r:
            rows.append([r["model"], "MISSING", "-", "-", f"run `{r['command']}`"])
        else:
            rows.append([r["model"], _pct(r["accuracy"]), r["dataset"] or "-", str(r["samples"]), r["source"]])
    return ([{"type": "table", "headers": ["model", "accuracy", "data set", "samples", "source"], "rows": rows}]
            + _image(images, "accuracy", "Test accuracy against all-in bits per weight: this network "
                     "(stars) and the oneshot-retrained rows of docs/accuracy.json (`ternac accuracy`)."))


def _signoff(report, images):
    signoff = report["signoff"]
    tools = signoff["tools"]
    version = {"verilator": tools["verilator"], "icarus": tools["iverilog"]}
    rows = [[sim, value.get("status") or "MISSING", str(value.get("runs", 0)), version[sim],
             f"run `{value['command']}`" if "missing" in value else "-"]
            for sim, value in signoff["simulators"].items()]
    out = [{"type": "table", "headers": ["simulator", "status", "runs", "version", "to produce"], "rows": rows}]
    if signoff["runs"]:
        out.append({"type": "table", "headers": ["simulator", "source", "date", "samples", "inputs",
                                                 "cycles measured / predicted", "status", "detail"],
                    "rows": [[r["simulator"], r["source"], r["date"], str(r["samples"]),
                              f"{r['dataset']} test split" if r.get("dataset") else "random int8",
                              f"{r.get('cycles_per_inference')} / {r.get('predicted_cycles')}",
                              r["status"], r["why"]] for r in signoff["runs"]]})
    out.append({"type": "p", "text": "Tools: " + ", ".join(f"{k} {v}" for k, v in tools.items())
                + f"; report date {report['date']}. SIGNED OFF = every output value equal to the golden "
                "model and every inference exactly the predicted cycles."})
    return out


def _fpga(report, images):
    fpga = report["fpga"]
    out = []
    if fpga["builds"]:
        out.append({"type": "table", "headers": ["board", "design", "network", "match", "LUT", "FF", "EBR",
                                                 "DSP", "Fmax MHz", "inferences/s", "source"],
                    "rows": [[b["board"], b["design"], b["net"], b["match"], *[_num(b[k]) for k in
                              ("lut", "ff", "ebr", "dsp")],
                              f"{b['fmax_mhz']:.1f}" if b["fmax_mhz"] else "does not fit",
                              _num(b.get("this_inferences_per_s", b["inferences_per_s"])),
                              f"`{b['source']}`"] for b in fpga["builds"]]})
        out.append({"type": "p", "text": "inferences/s: Fmax / this network's cycles per inference for "
                    "a build of the same shape; the build's own network otherwise."})
    else:
        out.append({"type": "p", "text": f"No FPGA report found (searched {', '.join(fpga['searched'])})."})
    if "missing" in fpga:
        out += _missing_blocks(fpga["missing"])
    return out


def _energy(report, images):
    energy = report["energy"]
    if not energy["designs"]:
        return [{"type": "p", "text": "No ternary layer: no energy figures."}]
    designs = energy["designs"]
    bound, decoder = energy["upper_bound"], energy["decoder"]
    source = {"measured": "measured by the RTL's activity counters in simulation",
              "program": "the lowered program's actions",
              "network estimate": "estimated from the network (the accelerator cannot run it)"}
    out = [{"type": "p", "text": f"45 nm action energies (Horowitz 2014), {energy['lanes']} lanes, "
            f"the same dataflow for every design. ternac's counts: {source[energy['source']]}. "
            f"Decoder table: {decoder['entries']} entries, {decoder['bytes']:.0f} B, "
            f"{decoder['pj_per_64_bits']:.2f} pJ per 64 bits ({decoder['basis']}); charged as an "
            f"8 KB SRAM instead (upper bound) ternac is {bound['ternac_total_pj'] / 1e3:.4g} nJ, "
            f"x{bound['ratios_vs_ternac']['int8']:.1f} below int8, "
            f"x{bound['ratios_vs_ternac']['ternary-dense']:.2f} below dense ternary."},
           {"type": "table", "headers": ["design", "total nJ", "compute nJ", "memory nJ", "x ternac"],
            "rows": [[d, f"{designs[d]['total_pj'] / 1e3:.4g}", f"{designs[d]['compute_pj'] / 1e3:.4g}",
                      f"{designs[d]['memory_pj'] / 1e3:.4g}", f"{energy['ratios_vs_ternac'][d]:.2f}"]
                     for d in DESIGNS]}]
    kinds = list(dict.fromkeys(_action_kind(a["action"]) for d in DESIGNS for a in designs[d]["actions"]))
    by_kind = [[kind] + [_num(sum(a["pj"] for a in designs[d]["actions"]
                                  if _action_kind(a["action"]) == kind) / 1e3) for d in DESIGNS]
               for kind in kinds]
    out.append({"type": "table", "headers": ["action (nJ per inference)", *DESIGNS], "rows": by_kind})
    out += _image(images, "energy", "Energy per inference by action: every design (left), ternac by "
                  "layer (right).")
    out.append({"type": "table", "headers": ["component", "action", "count", "pJ each", "pJ", "note"],
                "rows": [[a["component"], a["action"], f"{a['count']:,}", f"{a['pj_each']:.4g}",
                          f"{a['pj']:.4g}", a["note"]] for a in designs["ternac"]["actions"]]})
    return out


def _assumptions(report, images):
    out = []
    for group, items in report["assumptions"].items():
        out += [{"type": "h3", "text": group}, {"type": "list", "items": items}]
    return out


def _missing(report, images):
    if not report["missing"]:
        return [{"type": "p", "text": "Nothing is missing."}]
    return [b for item in report["missing"] for b in _missing_blocks(item)]


def _image(images, name, caption):
    if images.get(name):
        return [{"type": "image", "file": images[name], "caption": caption}]
    return [{"type": "missing", "what": f"plot: {caption}", "command": "none: no data for it (see above)"}]


_BUILDERS = {"network": _network, "layers": _layers, "accuracy": _accuracy, "signoff": _signoff,
             "fpga": _fpga, "energy": _energy, "assumptions": _assumptions, "missing": _missing}


def blocks(report, images):
    """The whole page as blocks; ``images`` maps plot names to file names (or ``None``)."""
    out = [{"type": "h1", "text": report["title"], "id": "top"},
           {"type": "p", "text": f"Generated {report['date']} by `{report['command']}`."}]
    out += _summary(report, images)
    for name, heading in SECTIONS:
        out.append({"type": "h2", "text": heading, "id": name})
        out += _BUILDERS[name](report, images)
    return out
