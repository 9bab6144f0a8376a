"""The design review of one network (``ternac report``): one HTML page and its Markdown twin.

:func:`collect.collect` gathers every section into a JSON-able dict (measuring what it is
asked to, reading saved results, marking the rest MISSING with the command that would
produce it); :func:`write_report` draws the plots and writes ``report.html`` (self-contained),
``report.md`` with the PNG files beside it, and ``report.json`` (the collected dict).
"""

import json
from pathlib import Path

from .collect import collect, load_sim_json
from .document import SECTIONS, blocks, section_status
from .plots import plot_accuracy, plot_cycles, plot_energy_breakdown
from .render_html import render_html
from .render_md import render_md

__all__ = ["collect", "load_sim_json", "write_report"]

PLOTS = {"energy": plot_energy_breakdown, "accuracy": plot_accuracy, "cycles": plot_cycles}


def write_report(report, out):
    """Write the page into directory ``out``; returns the summary (paths, sections)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, plot in PLOTS.items():
        path = plot(report, out / f"{name}.png")
        images[name] = path.name if path else None
    content = blocks(report, images)
    paths = {"html": out / "report.html", "markdown": out / "report.md", "json": out / "report.json"}
    paths["html"].write_text(render_html(content, out, SECTIONS))
    paths["markdown"].write_text(render_md(content))
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    status = section_status(report)
    return {**{key: str(path) for key, path in paths.items()},
            "images": [str(out / name) for name in images.values() if name],
            "sections": status,
            "present": [name for name, state in status.items() if state == "present"],
            "signoff": {sim: value.get("status", "MISSING")
                        for sim, value in report["signoff"]["simulators"].items()},
            "missing": report["missing"]}
