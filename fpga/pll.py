"""The design's clock from the board's PLL: settings from ``yowasp-icepll`` / ``yowasp-ecppll``.

A bitstream runs at the clock it reports: :class:`PllDomain` makes the ``sync`` domain from
an ``SB_PLL40_PAD`` (iCE40, fed straight from the clock pad) or an ``EHXPLLL`` (ECP5) whose
parameters the Project IceStorm / Trellis calculators chose for the requested frequency,
holds the domain in reset until the PLL has locked, and constrains the PLL output at the
frequency it really makes (which nextpnr then reports Fmax against).
"""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from ternac.model.codebook import TernacError

__all__ = ["PllDomain", "PllSettings", "pll_at_most", "pll_settings"]

_BLOCK = re.compile(r"#\((.*?)\)\s*\w+\s*\(", re.DOTALL)
_PARAM = re.compile(r"\.([A-Z_0-9]+)\(\s*(\"[^\"]*\"|\d+'b[01]+|\d+)\s*\)")
_ATTR = re.compile(r"\(\*\s*([A-Z_]+)=\"([^\"]*)\"\s*\*\)")
_ICE40_OUT = re.compile(r"Achieved output frequency:\s*([0-9.]+)\s*MHz")
_ECP5_OUT = re.compile(r"output clkout0,\s*//\s*([0-9.]+)\s*MHz")


@dataclass(frozen=True)
class PllSettings:
    """One PLL configuration: the primitive, its parameters and attributes, what it makes."""

    primitive: str          # "SB_PLL40_PAD" or "EHXPLLL"
    input_mhz: float
    requested_mhz: float
    output_mhz: float       # what the PLL really makes (the calculator's "achieved")
    params: dict
    attrs: dict
    tool: str

    def summary(self):
        return {"primitive": self.primitive, "input_mhz": self.input_mhz,
                "requested_mhz": self.requested_mhz, "output_mhz": self.output_mhz,
                "params": self.params, "tool": self.tool}


def _value(text):
    if text.startswith('"'):
        return text.strip('"')
    if "'b" in text:
        return int(text.split("'b")[1], 2)
    return int(text)


def pll_settings(family, input_mhz, output_mhz):
    """Run the family's PLL calculator for ``output_mhz`` from ``input_mhz``; parse its Verilog."""
    from ternac.fpga.build import _which
    tool = {"ice40": "yowasp-icepll", "ecp5": "yowasp-ecppll"}[family]
    path = _which(tool)
    if not path:
        raise TernacError(f"{tool} not found: install the FPGA tools (pip install -e '.[fpga]')")
    with tempfile.TemporaryDirectory() as tmp:
        # The WebAssembly tools see the working directory: write the file there.
        if family == "ice40":
            args = [path, "-i", f"{input_mhz:g}", "-o", f"{output_mhz:g}", "-p", "-m", "-q", "-f", "pll.v"]
        else:
            args = [path, "-i", f"{input_mhz:g}", "-o", f"{output_mhz:g}", "-f", "pll.v"]
        run = subprocess.run(args, check=False, cwd=tmp, capture_output=True, text=True, timeout=300)
        verilog = Path(tmp, "pll.v")
        if run.returncode or not verilog.is_file():
            raise TernacError(f"{tool} found no PLL setting for {output_mhz:g} MHz from "
                              f"{input_mhz:g} MHz: {(run.stderr or run.stdout).strip()[-200:]}")
        text = verilog.read_text()
    made = (_ICE40_OUT if family == "ice40" else _ECP5_OUT).search(text)
    block = _BLOCK.search(text)[1]                  # "#( .NAME(value), ... ) instance ("
    params = {name: _value(value) for name, value in _PARAM.findall(block)}
    attrs = {name: value for name, value in _ATTR.findall(text) if not name.startswith("FREQUENCY_PIN")}
    return PllSettings("SB_PLL40_PAD" if family == "ice40" else "EHXPLLL", float(input_mhz),
                       float(output_mhz), float(made[1]), params, attrs, tool)


class PllDomain(Elaboratable):
    """The ``sync`` clock domain from the board clock through a PLL, around ``core``.

    ``sync`` is held in reset (synchronously released) until the PLL reports lock.
    """

    def __init__(self, core, settings, *, clock_resource):
        self.core = core
        self._settings = settings
        self._clock = clock_resource

    def elaborate(self, platform):
        m = Module()
        s = self._settings
        # No clock constraint here: nextpnr derives the output's from the PLL's parameters
        # and the board clock's (both families). One set on the clock signal named a net
        # that synthesis had merged into `clk`, and nextpnr ignored it with a warning.
        m.domains.sync = sync = ClockDomain("sync")
        clock, locked = sync.clk, Signal(name="pll_locked")
        pin = platform.request(self._clock, 0, dir="-")
        params = {f"p_{name}": value for name, value in s.params.items()}
        attrs = {f"a_{name}": value for name, value in s.attrs.items()}
        if s.primitive == "SB_PLL40_PAD":
            m.submodules.pll = Instance("SB_PLL40_PAD", **params, i_PACKAGEPIN=pin.io,
                                        i_RESETB=1, i_BYPASS=0,
                                        o_PLLOUTGLOBAL=clock, o_LOCK=locked)
        else:
            m.submodules.clock_buffer = buffer = io.Buffer("i", pin)
            m.submodules.pll = Instance(
                "EHXPLLL", **params, **attrs,
                a_FREQUENCY_PIN_CLKI=f"{s.input_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{s.output_mhz:g}",
                i_CLKI=buffer.i, i_CLKFB=clock, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clock, o_LOCK=locked)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        m.submodules.core = self.core
        return m


def pll_at_most(family, input_mhz, limit_mhz, *, step_mhz=0.25, tries=40):
    """The PLL setting closest below ``limit_mhz`` (the calculators round to the nearest)."""
    request = limit_mhz
    for _ in range(tries):
        settings = pll_settings(family, input_mhz, round(request, 3))
        if settings.output_mhz <= limit_mhz:
            return settings
        request -= step_mhz
    raise TernacError(f"no {family} PLL setting at or below {limit_mhz:g} MHz from {input_mhz:g} MHz")
