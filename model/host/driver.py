"""The host side of the host link: load a network, run samples, check them against the golden model.

:class:`HostLinkDriver` talks to anything with pyserial's ``read``/``write``: a board on
``/dev/ttyUSB1`` (``ternac run``), or the simulated design through a pseudo-terminal and a
bit-level UART model (``ternac sim --link uart``, :mod:`ternac.cosim.uart_link_sim`): the same
code either way. Frames: :mod:`ternac.model.host.frames`.
"""

import struct
import time

import numpy as np

from ..codebook import TernacError
from ..pack import unpack_activations
from ..reference import golden_network
from .frames import (
    COMMIT_FORMAT,
    ERROR,
    OUTPUT_CYCLES_FORMAT,
    SYNC,
    LinkError,
    Request,
    crc16,
    decode_status,
    encode_frame,
    reply_type,
)

__all__ = ["HostLinkDriver", "LinkRefused", "run_network"]


class LinkRefused(TernacError):
    """The device answered a request with an ERROR frame."""

    def __init__(self, code, request):
        self.code = LinkError(code) if code in LinkError._value2member_map_ else code
        self.request = request
        name = self.code.name if isinstance(self.code, LinkError) else f"code {code}"
        super().__init__(f"host link refused request 0x{request:02x}: {name}")


class HostLinkDriver:
    """Requests and replies over a serial port (``port``: a pyserial ``Serial`` or alike).

    Parameters
    ----------
    port
        Has ``write(bytes)`` and ``read(n)`` returning fewer bytes on timeout.
    timeout : float
        Seconds to wait for a reply (the port's own read timeout should be shorter).
    """

    def __init__(self, port, *, timeout=5.0):
        self.port = port
        self.timeout = timeout

    # -- frames ---------------------------------------------------------------------------------

    def _read(self, count, deadline):
        data = b""
        while len(data) < count:
            if time.monotonic() > deadline:
                raise TernacError(f"host link: no reply within {self.timeout:g} s "
                                  f"({len(data)} of {count} bytes)")
            try:
                data += self.port.read(count - len(data))
            except OSError as error:            # serial.SerialException: the port went away
                raise TernacError(f"host link: reading the port failed: {error}") from None
        return data

    def read_reply(self):
        """The next reply frame as ``(type, payload)``; :class:`TernacError` if broken or late."""
        deadline = time.monotonic() + self.timeout
        while self._read(1, deadline)[0] != SYNC:
            pass
        head = self._read(3, deadline)
        kind, length = head[0], struct.unpack("<H", head[1:])[0]
        payload = self._read(length, deadline)
        (crc,) = struct.unpack("<H", self._read(2, deadline))
        if crc != crc16(head + payload):
            raise TernacError(f"host link: reply 0x{kind:02x} has a bad CRC")
        return kind, payload

    def send_raw(self, data):
        """Write raw bytes (a frame, or a broken one on purpose)."""
        try:
            self.port.write(bytes(data))
            if hasattr(self.port, "flush"):
                self.port.flush()
        except OSError as error:
            raise TernacError(f"host link: writing the port failed: {error}") from None

    def request(self, kind, payload=b""):
        """Send a request, return the reply's payload; :class:`LinkRefused` on an ERROR reply."""
        self.send_raw(encode_frame(kind, payload))
        return self.expect(kind)

    def expect(self, kind):
        reply, payload = self.read_reply()
        if reply == ERROR:
            raise LinkRefused(payload[0], payload[1])
        if reply != reply_type(kind):
            raise TernacError(f"host link: expected reply 0x{reply_type(kind):02x}, got 0x{reply:02x}")
        return payload

    # -- operations -----------------------------------------------------------------------------

    def status(self):
        return decode_status(self.request(Request.STATUS))

    def load(self, program, *, max_payload=None):
        """BEGIN, the program's load stream in LOAD frames, COMMIT: returns the bytes sent."""
        max_payload = max_payload or self.status().max_payload
        stream = b"".join(struct.pack("<I", beat) for beat in program.load_beats())
        chunk = max_payload - max_payload % 4
        self.request(Request.BEGIN)
        for start in range(0, len(stream), chunk):
            self.request(Request.LOAD, stream[start:start + chunk])
        self.request(Request.COMMIT, struct.pack(COMMIT_FORMAT, len(stream), crc16(stream),
                                                 program.input_words, program.output_words))
        return len(stream)

    def infer(self, program, x):
        """One int8 sample ``x`` in: its int8 outputs (golden order) and the on-chip cycles."""
        n = program.config.coding.n
        payload = self.request(Request.INFER, _word_bytes(program.input_stream(x), n))
        body, tail = payload[:-4], payload[-4:]
        (cycles,) = struct.unpack(OUTPUT_CYCLES_FORMAT, tail)
        out = [int.from_bytes(body[i:i + n], "little") for i in range(0, len(body), n)]
        return unpack_activations(out, len(out) * n, n)[program.output_positions()], cycles


def _word_bytes(words, n):
    return b"".join(int(word).to_bytes(n, "little") for word in words)


def run_network(driver, network, program, x, *, say=None, progress=None):
    """Load ``program`` (``network`` lowered), run int8 samples ``x``, check each against the
    golden model.

    Returns a summary dict: mismatches, cycles (measured on chip, predicted), inferences per
    second over the link, seconds for the load.
    """
    say = say or (lambda text: None)
    x = np.asarray(x, dtype=np.int8).reshape(len(x), -1)
    started = time.monotonic()
    load_bytes = driver.load(program)
    load_seconds = time.monotonic() - started
    say(f"loaded {load_bytes} bytes of load stream in {load_seconds:.2f} s")
    expected = golden_network(network, x.reshape((len(x),) + tuple(network.input_shape)))
    expected = np.asarray(expected[program.head] if network.heads else expected).reshape(len(x), -1)
    predicted = program.cycles.total
    outputs = np.zeros_like(expected)
    cycles = []
    started = time.monotonic()
    for i, row in enumerate(x):
        outputs[i], measured = driver.infer(program, row)
        cycles.append(int(measured))
        if progress:
            progress(i + 1)
    seconds = time.monotonic() - started
    mismatched = (outputs != expected).any(axis=1)
    first = int(np.argmax(mismatched)) if mismatched.any() else None
    return {
        "samples": len(x), "bit_exact": not mismatched.any(),
        "mismatches": int(np.count_nonzero(outputs != expected)),
        "mismatched_samples": int(mismatched.sum()),
        "first_mismatch": (f"sample {first}: expected {expected[first].tolist()}, got "
                           f"{outputs[first].tolist()}") if first is not None else None,
        "cycles_per_inference": sorted(set(cycles)), "predicted_cycles": predicted,
        "cycles_exact": all(c == predicted for c in cycles),
        "inferences_per_s": len(x) / seconds if seconds else None,
        "load_bytes": load_bytes, "load_seconds": load_seconds,
        "outputs": outputs, "expected": expected,
    }
