"""FPGA utilization and Fmax table: ``python -m ternac.fpga.report [--json] [--quick]``.

Runs the builds of :data:`RUNS` (board, design, network, link) with :func:`ternac.fpga.build.build`,
prints a table, writes ``build/fpga/report.json`` and the markdown table into
``docs/fpga.md`` (between the ``fpga-table`` markers) with the command and the date.
"""

import argparse
import datetime
import json
import platform as host_platform
import sys
import time
from pathlib import Path

from .build import BOARDS, SEED, build, build_root

__all__ = ["QUICK", "RUNS", "comparison_table", "main", "markdown_table", "run_all", "text_table"]

#: Every build of the full report, in table order: board, design, network, link (None: the
#: default, the UART host link for the ternary design, the pin harness for the baseline).
RUNS = [
    ("icebreaker", "ternary", "64-64-10", None),
    ("icebreaker", "ternary", "64-64-10", "pins"),
    ("icebreaker", "dense", "64-64-10", None),
    ("ulx3s-85f", "ternary", "64-64-10", None),
    ("ulx3s-85f", "ternary", "64-64-10", "pins"),
    ("ulx3s-85f", "dense", "64-64-10", None),
    ("ulx3s-85f", "dense-lut", "64-64-10", None),
    ("icebreaker", "ternary", "784-256-256-10", None),
    ("icebreaker", "ternary", "784-256-256-10", "pins"),
    ("icebreaker", "ternary", "784-1000-10", None),
    ("icebreaker", "ternary", "784-1280-10", "pins"),
    ("icebreaker", "ternary", "cnn:8-16", None),
    ("icebreaker", "ternary", "digits-cnn:8-16", None),
    ("ulx3s-85f", "ternary", "784-256-256-10", None),
    ("ulx3s-85f", "ternary", "784-256-256-10", "pins"),
    ("ulx3s-85f", "dense", "784-256-256-10", None),
]
#: The small network only (``--quick``).
QUICK = [run for run in RUNS if run[2] == "64-64-10"]

BEGIN, END = "<!-- fpga-table:begin -->", "<!-- fpga-table:end -->"
LUT_MARKERS = ("<!-- fpga-luts:begin -->", "<!-- fpga-luts:end -->")
COLUMNS = ("board", "design", "network", "P", "link", "weights", "decoder", "layers", "LUT", "FF", "EBR", "DSP", "SPRAM",
           "PLL MHz", "Fmax MHz", "build s", "GMAC/s", "inf/s", "cycles")
#: Columns left-aligned in the tables (the rest are numbers).
TEXT_COLUMNS = 8


def _cell(result, key):
    """A resource count; for a design that does not fit, what Yosys asked for, marked ``*``."""
    cap = result["capacity"].get(key)
    if result["fits"]:
        value = result.get(key)
        return "-" if value is None else f"{value}"
    value = result.get(key)
    if value is None:                   # nextpnr stopped before packing: Yosys' count
        value = result["yosys"].get("lut4" if key == "lut" else key)
    if value is None:
        return "-"
    return f"{value}*" + (f" (of {cap})" if cap and value > cap else "")


def _weights(result):
    """Where the weights are: behind the host link the SPRAMs may hold the frame buffer."""
    if result.get("spram_holds") == "frames":
        return "bram (frames: spram)"
    return result.get("weights", "bram")


def row(result):
    fits = result["fits"]
    return [
        result["board"], result["design"], result["net"], f"{result['config']['lanes']}",
        result.get("link", "pins"), _weights(result), result.get("decoder") or "-",
        "serial" if result["config"].get("serial_layers") else "wide",
        _cell(result, "lut"), _cell(result, "ff"), _cell(result, "ebr"), _cell(result, "dsp"),
        _cell(result, "spram"),
        f"{result['clock_mhz']:g}" if result.get("clock_mhz") else "-",
        (f"{result['fmax_mhz']:.1f}" + ("" if result.get("timing_pass") else " (misses)"))
        if fits and result["fmax_mhz"] else "does not fit",
        f"{result['build_seconds']:.0f}",
        f"{result['gmacs_per_s']:.2f}" if fits and result["gmacs_per_s"] else "-",
        f"{result['inferences_per_s']:,}" if fits and result["inferences_per_s"] else "-",
        f"{result['cycles_per_inference']}",
    ]


def text_table(results):
    rows = [list(COLUMNS)] + [row(r) for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i >= TEXT_COLUMNS else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  * {r['board']} {r['design']} {r['net']}: does not fit: {r['reason']}"
             for r in results if not r["fits"]]
    return "\n".join(lines + notes)


def markdown_table(results, *, command, date, missing=()):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(
        "---" if i < TEXT_COLUMNS else "---:" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    misfits = [r for r in results if not r["fits"]]
    notes = [
        "",
        f"Measured {date} with `{command}` (host: {host_platform.machine()}, "
        f"{host_platform.python_implementation()} {host_platform.python_version()}). "
        f"nextpnr options: `--seed {SEED} --timing-allow-fail`, "
        + ", ".join(f"on {name} also `{b.nextpnr_opts}`" for name, b in BOARDS.items() if b.nextpnr_opts)
        + "".join(f", on {name} for the dense baselines `{b.dense_nextpnr_opts}`"
                  for name, b in BOARDS.items() if b.dense_nextpnr_opts)
        + "; the design runs from the board's "
        "PLL (`PLL MHz`, the clock nextpnr is constrained to); the PLL first asks for the goal ("
        + ", ".join(f"{b.target_mhz:g} MHz on {name}" for name, b in BOARDS.items())
        + ") and, if the routed design misses it, is rebuilt (up to twice) at most 95 % of the achieved Fmax; "
        "GMAC/s and inf/s are at the PLL clock; Yosys "
        + " / ".join(f"`synth_{b.family}{' ' + b.synth_opts if b.synth_opts else ''}{' -dsp' if b.family == 'ice40' else ''}`"
                     for b in BOARDS.values())
        + " (`-nodsp` for `dense-lut`: the baseline's "
        "multipliers in LUTs), every non-transparent memory read with undefined same-address collisions "
        "(`UNDEFINED_COLLISIONS`), on iCE40 FSM state registers one-hot (`RECODED_FSMS`), the ternary decoder's table in block RAM on iCE40, in LUTs on ECP5 (`Board.decoder`). "
        "Weights `bram (frames: spram)`: behind the host link on iCE40 the SPRAMs hold the larger of the "
        "weight buffer and the link's frame buffer (`rtl/spram.py: spram_holds`). The iCE40 builds of a "
        "CNN take their input rows packed by the host (`--input-packing`, `fpga.build.board_config`). "
        "Build seconds are wall-clock on a shared 2-core machine.",
    ]
    if missing:
        notes += ["", "Not built yet (`RUNS` without a build): " + "; ".join(missing) + "."]
    if misfits:
        notes.append("")
        notes.append("`*`: does not fit; the count is what the design needs (nextpnr after packing, else Yosys).")
        for r in misfits:
            notes.append(f"- {r['board']} {r['design']} {r['net']}: {r['reason']}")
    retried = [r for r in results if r.get("abc9_dff")]
    if retried:
        notes += ["", "Built with `synth_ecp5 -dff` after a Yosys internal error with the default "
                  "flow (`build()` retries so, `docs/fpga.md`): " + "; ".join(
                      f"{r['board']} {r['design']} {r['net']} {r.get('link', 'pins')}" for r in retried) + "."]
    rewired = [r for r in results if r.get("abc9_xaiger1")]
    if rewired:
        notes += ["", "Synthesized with ABC9's first XAIGER writer (`ABC9_XAIGER1`) after the "
                  "default flow gave a net two drivers (YosysHQ/yosys#6237; `build()` retries so): "
                  + "; ".join(f"{r['board']} {r['design']} {r['net']} {r.get('link', 'pins')}"
                              for r in rewired) + "."]
    return "\n".join(lines + notes)


def _key(result):
    return (result["board"], result["design"], result["net"], result.get("link", "pins"),
            result["config"]["lanes"])


def comparison_table(before, after):
    """Markdown: each build of ``after`` beside the same build (board, design, network, link, P)
    of ``before``: cycles, LUT, Fmax and inferences per second, before and after."""
    earlier = {_key(r): r for r in before}
    columns = ("board", "design", "network", "link", "cycles before", "cycles after", "LUT before",
               "LUT after", "Fmax MHz before", "Fmax MHz after", "inf/s before", "inf/s after")
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if i < 4 else "---:"
                                                             for i in range(len(columns))) + "|"]

    def figures(result):
        if result is None:
            return ["-"] * 4
        fits = result["fits"]
        fmax = (f"{result['fmax_mhz']:.1f}" + ("" if result.get("timing_pass") else " (misses)")
                if fits and result["fmax_mhz"] else "does not fit")
        rate = f"{result['inferences_per_s']:,}" if fits and result["inferences_per_s"] else "-"
        return [f"{result['cycles_per_inference']}", _cell(result, "lut"), fmax, rate]

    for result in after:
        old, new = figures(earlier.get(_key(result))), figures(result)
        cells = [result["board"], result["design"], result["net"], result.get("link", "pins")]
        cells += [value for pair in zip(old, new) for value in pair]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_docs(path, table, markers=(BEGIN, END)):
    begin, end = markers
    path = Path(path)
    text = path.read_text() if path.is_file() else f"# FPGA builds\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def _last_luts(root):
    path = Path(root) / "luts.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_dir(root, board, design, net, link):
    """The build directory of a run (:func:`ternac.fpga.build.build` writes ``report.json`` there)."""
    link = link or ("uart" if design == "ternary" else "pins")
    return Path(root) / f"{board}-{design}-{net}-{link}"


def collect(runs, root):
    """No builds: the ``report.json`` of each run's last build; the runs never built, apart."""
    results, missing = [], []
    for run in runs:
        path = run_dir(root, *run) / "report.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
        else:
            missing.append(" ".join(r or "default" for r in run))
    return results, missing


def luts_table(report):
    """The LUT comparison of :mod:`ternac.fpga.luts` as markdown."""
    lines = ["| design | core LUT | MAC array LUT | P·N | array LUT per MAC/cycle | Yosys s |",
             "|---|---:|---:|---:|---:|---:|"]
    for design, d in report["designs"].items():
        lines.append(f"| {design} | {d['core']} | {d['blocks']['array']} | {d['macs_per_cycle']} | "
                     f"{d['array_luts_per_mac']} | {d['seconds']:.0f} |")
    lines += ["", (f"{report['family']}, {report['net']}: the dense baseline's MAC array needs "
              f"**{report['array_ratio']}x** the ternary array's LUTs for the same P·N dense-equivalent "
              f"MACs per cycle (whole core: {report['core_ratio']}x); with the decoder table in block RAM "
              f"{report.get('array_ratio_bram_decoder', '-')}x. Measured {report.get('date', '')} with "
              f"`{report['command']}`.")]
    return "\n".join(lines)


def run_all(runs, *, say=print, root=None):
    results = []
    for board, design, net, link in runs:
        say(f"{board} {design} {net} ({link or 'default'} link) ...")
        result = build(board, design, net, root=root, say=say, link=link)
        fmax = f"{result['fmax_mhz']:.1f} MHz" if result["fits"] else f"does not fit ({result['reason']})"
        say(f"  {board} {design} {net} ({result['link']} link): {fmax}, {result['build_seconds']:.0f} s")
        results.append(result)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ternac.fpga.report", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--quick", action="store_true", help="the 64-64-10 network only")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/fpga.md")
    parser.add_argument("--from-json", metavar="REPORT.json",
                        help="no builds: render the table of an earlier report.json")
    parser.add_argument("--collect", action="store_true",
                        help="no builds: the table of each run's last build (its report.json, e.g. from "
                        "single `ternac fpga` builds)")
    parser.add_argument("--compare", metavar="BEFORE.json",
                        help="also print each build beside the same build of an earlier report.json "
                        "(markdown: cycles, LUT, Fmax, inferences/s before and after)")
    parser.add_argument("--no-luts", action="store_true",
                        help="without the Yosys LUT comparison (python -m ternac.fpga.luts)")
    args = parser.parse_args(argv)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    root = build_root()
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        results, date, command = report["builds"], report["date"], report["command"]
    elif args.collect:
        results, missing = collect(QUICK if args.quick else RUNS, root)
        for run in missing:
            say(f"not built yet: {run}")
        date = max((r.get("date", "") for r in results), default="") or datetime.date.today().isoformat()
        command = "python -m ternac.fpga.report --collect" + (" --quick" if args.quick else "")
        report = {"date": date, "command": command, "seed": SEED, "builds": results, "not_built": missing}
    else:
        runs = QUICK if args.quick else RUNS
        started = time.monotonic()
        results = run_all(runs, say=say)
        date = datetime.date.today().isoformat()
        command = "python -m ternac.fpga.report" + (" --quick" if args.quick else "")
        report = {"date": date, "command": command, "seed": SEED,
                  "total_seconds": round(time.monotonic() - started, 1), "builds": results}
    if not args.from_json:
        if not args.no_luts:
            from .luts import count
            luts = count(say=say, root=root) if not args.collect else _last_luts(root)
            if luts:
                report["luts"] = luts
        root.mkdir(parents=True, exist_ok=True)
        (root / "report.json").write_text(json.dumps(report, indent=2))
    if not args.no_docs:
        docs = root.parent.parent / "docs" / "fpga.md"
        if docs.parent.is_dir():
            update_docs(docs, markdown_table(results, command=command, date=date,
                                             missing=report.get("not_built", ())))
            if report.get("luts"):
                update_docs(docs, luts_table(report["luts"]), markers=LUT_MARKERS)
    if args.compare:
        before = json.loads(Path(args.compare).read_text())["builds"]
        report["comparison"] = comparison_table(before, results)
        if not args.json:
            print(report["comparison"])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print()
        print(text_table(results))
        print(f"\nwrote {root / 'report.json'}")
    return report


if __name__ == "__main__":
    main()
