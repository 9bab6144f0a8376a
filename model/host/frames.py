"""The host link's frame format (``docs/format.md``, "Host link frames"): one definition for the
RTL (``ternac.rtl.host_link``) and the host driver (``ternac.model.host.driver``).

A frame, in both directions::

    SYNC (0xA5) | TYPE (1 byte) | LEN (2 bytes, LE) | PAYLOAD (LEN bytes) | CRC (2 bytes, LE)

CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
XOR) over TYPE, LEN and PAYLOAD. The host sends one request and waits for its reply.
"""

import struct
from enum import IntEnum
from typing import NamedTuple

from ..codebook import TernacError

__all__ = [
    "COMMIT_FORMAT",
    "CRC_INIT",
    "CRC_POLY",
    "ERROR",
    "OUTPUT_CYCLES_FORMAT",
    "STATUS_FORMAT",
    "SYNC",
    "LinkError",
    "Request",
    "Status",
    "crc16",
    "decode_status",
    "encode_frame",
    "reply_type",
]

SYNC = 0xA5
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
#: COMMIT payload: load bytes (u32), CRC-16 of all LOAD payload bytes since BEGIN (u16),
#: input words and output words per inference (u16 each).
COMMIT_FORMAT = "<IHHH"
#: STATUS reply payload: flags (bit 0 committed, bit 1 loading), N (int8 per word), largest
#: payload (u16), cycles of the last inference (u32).
STATUS_FORMAT = "<BBHI"
#: OUTPUT reply payload: the output words (N bytes each), then the cycles (u32).
OUTPUT_CYCLES_FORMAT = "<I"


class Request(IntEnum):
    """Frame types the host sends; the device answers ``type | 0x80`` or :data:`ERROR`."""

    STATUS = 0x01       # empty                       -> STATUS reply
    BEGIN = 0x02        # empty: start a network load -> ACK (the network is unusable until COMMIT)
    LOAD = 0x03         # load beats (4 bytes each, LE) of AcceleratorProgram.load_beats -> ACK
    COMMIT = 0x04       # COMMIT_FORMAT               -> ACK if everything arrived, else ERROR
    INFER = 0x05        # one sample's act_in words   -> OUTPUT reply


#: Reply type of an error; payload: error code (:class:`LinkError`), the request's type.
ERROR = 0xEE


class LinkError(IntEnum):
    CRC = 1             # the frame's CRC does not check
    LENGTH = 2          # LEN wrong for the type (or larger than the frame buffer)
    TYPE = 3            # unknown type
    TIMEOUT = 4         # the frame stopped arriving (truncated): the receiver went back to idle
    STATE = 5           # LOAD/COMMIT without BEGIN, INFER without a committed network
    COMMIT = 6          # COMMIT's byte count or CRC differs from what the LOAD frames carried


def reply_type(request):
    return int(request) | 0x80


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data`` (bytes), continuing from ``crc``."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_frame(kind, payload=b""):
    """A whole frame of type ``kind`` (an int) carrying ``payload``."""
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise TernacError(f"frame payload of {len(payload)} bytes exceeds 65535")
    body = bytes([int(kind)]) + struct.pack("<H", len(payload)) + payload
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


class Status(NamedTuple):
    """A decoded STATUS reply."""

    committed: bool
    loading: bool
    n: int
    max_payload: int
    cycles: int


def decode_status(payload):
    flags, n, max_payload, cycles = struct.unpack(STATUS_FORMAT, payload)
    return Status(bool(flags & 1), bool(flags & 2), n, max_payload, cycles)
