"""The accelerator's status word, and the load-transfer rule behind its error field.

One definition for the RTL (``rtl/buffers.py``, ``rtl/accelerator.py``), the benches and the
docs (``docs/architecture.md`` carries :func:`status_table` verbatim; a test checks it).

A load transfer (``model/hw/config.py``) is *rejected* when its header is invalid
(:func:`check_transfer`): its target is not a memory (4..15), names a memory this build does
not have (depth 0: the codebook on a ROM build), or ``address + count`` exceeds the memory's
depth. A rejected transfer writes nothing; its data beats are still consumed
(:func:`data_beats`), so the stream stays in step, and the port returns to its header state.
The rejection sets the sticky ``error`` bit and records the first rejection's
:class:`LoadError`; only ``rst`` clears them (the memories keep their contents over a reset).
"""

from dataclasses import dataclass
from enum import IntEnum

from ..codebook import TernacError
from .config import ADDRESS_BITS, LOAD_BITS, Target

__all__ = ["STATUS_BITS", "STATUS_FIELDS", "TARGET_VALUES", "LoadError", "StatusField",
           "beats_per_word", "check_transfer", "data_beats", "decode_status", "encode_status",
           "status_table", "transfer_beats"]

#: Width of the ``status`` port.
STATUS_BITS = 8
#: Values the 4-bit target field of a header can take (only :class:`Target` ones are memories).
TARGET_VALUES = 1 << (LOAD_BITS - ADDRESS_BITS)


class LoadError(IntEnum):
    """Why a load transfer was rejected (the ``error_code`` field)."""

    NONE = 0
    BAD_TARGET = 1          # target 4..15: no such memory
    NO_MEMORY = 2           # the target's memory is absent from this build (depth 0)
    OUT_OF_RANGE = 3        # address + count > the memory's depth


@dataclass(frozen=True)
class StatusField:
    name: str
    offset: int
    width: int
    meaning: str


#: Cycles by which the load port follows the ``load`` stream: a beat reaches it through a
#: register (``rtl/accelerator.py``), so ``load_busy`` describes the beat accepted this many
#: cycles before.
LOAD_PORT_LAG = 1
#: Cycles from a ``load`` transfer's last beat to the first cycle ``act_in`` may be taken: the
#: beat register, the memory write, the sequencer's registered view of the new descriptor
#: (``ahead``), then its registered input gate.
LOAD_TO_INPUT = LOAD_PORT_LAG + 3

#: The status word, LSB first; bits not listed read 0.
STATUS_FIELDS = (
    StatusField("busy", 0, 1, "an inference is running (the `busy` port)"),
    StatusField("load_busy", 1, 1, "a load transfer is between its header and its last data "
                                   "beat, as the load port sees the stream: one cycle behind "
                                   "`load` (`act_in` is not accepted)"),
    StatusField("error", 2, 1, "sticky: a load transfer was rejected since the last `rst` "
                               "(the `error` port)"),
    StatusField("error_code", 4, 4, "`LoadError` of the first rejected transfer since the last "
                                     "`rst`: 0 none, 1 bad target, 2 memory absent, "
                                     "3 address + count past the depth"),
)


def encode_status(**values):
    """The status word with the given field values (others 0)."""
    fields = {f.name: f for f in STATUS_FIELDS}
    word = 0
    for name, value in values.items():
        if name not in fields:
            raise TernacError(f"status word has no field {name!r}")
        field = fields[name]
        if not 0 <= int(value) < 1 << field.width:
            raise TernacError(f"status field {name}={value} does not fit {field.width} bits")
        word |= int(value) << field.offset
    return word


def decode_status(word):
    """The status word as a dict of field values."""
    return {f.name: (int(word) >> f.offset) & ((1 << f.width) - 1) for f in STATUS_FIELDS}


def status_table():
    """The status word as a Markdown table (the one in ``docs/architecture.md``)."""
    rows = ["| bits | field | meaning |", "|---|---|---|"]
    for f in STATUS_FIELDS:
        bits = f"{f.offset}" if f.width == 1 else f"{f.offset + f.width - 1}..{f.offset}"
        rows.append(f"| {bits} | `{f.name}` | {f.meaning} |")
    return "\n".join(rows)


def check_transfer(config, target, address, count):
    """The :class:`LoadError` the accelerator flags for a transfer header (``NONE``: accepted)."""
    if not 0 <= target < len(Target):
        return LoadError.BAD_TARGET
    depth = config.depth(Target(target))
    if not depth:
        return LoadError.NO_MEMORY
    if address + count > depth:
        return LoadError.OUT_OF_RANGE
    return LoadError.NONE


def beats_per_word(config, target):
    """Beats of one word of ``target``; one for a target that is not a memory."""
    return config.beats_per_word(Target(target)) if 0 <= target < len(Target) else 1


def data_beats(config, target, count):
    """Data beats a transfer of ``count`` words occupies, accepted or rejected."""
    return count * beats_per_word(config, target)


def transfer_beats(config, target, address, words, *, count=None):
    """One transfer: the two header beats, then each word split into beats, LSB first.

    ``count`` (default ``len(words)``) is what the header announces; ``words`` may be
    integers of any width (a rejected transfer's data is only counted).
    """
    if not (0 <= target < TARGET_VALUES and 0 <= address < 1 << ADDRESS_BITS):
        raise TernacError(f"header target {target} / address {address} does not fit the header beat")
    per_word = beats_per_word(config, target)
    mask = (1 << LOAD_BITS) - 1
    beats = [target << ADDRESS_BITS | address, len(words) if count is None else count]
    for word in words:
        beats += [(int(word) >> (LOAD_BITS * j)) & mask for j in range(per_word)]
    return beats
