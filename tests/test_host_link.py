"""The host link: frames, CRC, the UART, and the whole board design through a simulated serial port.

The cosim tests run the host driver (the code ``ternac run`` uses on a board) against the
Verilated design (UART, frame checker, accelerator with SPRAM weights) through a bit-level
UART model and a pseudo-terminal; every output is checked against the golden model and every
inference's on-chip cycles against the cycle model. Broken frames must get an ERROR reply and
change nothing.
"""

import struct

import numpy as np
import pytest
from conftest import random_network
from ternac.cosim.accelerator_sim import capacity_config, random_inputs
from ternac.model.codebook import TernacError
from ternac.model.host_driver import HostLinkDriver, LinkRefused, run_network
from ternac.model.host_link import (
    COMMIT_FORMAT,
    SYNC,
    LinkError,
    Request,
    crc16,
    encode_frame,
)
from ternac.model.hw import lower
from ternac.rtl.uart import baud_divisor

CONFIG = capacity_config(8, (8, 2), act_depth=16, weight_depth=512, param_depth=512)


def test_crc16_and_frame():
    assert crc16(b"123456789") == 0x29B1                     # the CRC-16/CCITT-FALSE check value
    frame = encode_frame(Request.LOAD, b"\x01\x02\x03\x04")
    assert frame[0] == SYNC and frame[1] == Request.LOAD and frame[2:4] == b"\x04\x00"
    assert struct.unpack("<H", frame[-2:])[0] == crc16(frame[1:-2])


def test_baud_divisor():
    assert baud_divisor(30e6, 1_000_000) == 30
    assert baud_divisor(30e6, 3_000_000) == 10
    assert baud_divisor(12e6, 115_200) == 104
    with pytest.raises(TernacError, match="off"):
        baud_divisor(35e6, 3_000_000)                        # 35 MHz / 12 = 2.92 Mbaud: 2.8 % off
    with pytest.raises(TernacError, match="at least"):
        baud_divisor(8e6, 3_000_000)


@pytest.fixture(scope="module")
def link():
    from ternac.cosim.uart_link_sim import simulated_port
    with simulated_port(CONFIG, name="test-host-link", max_cycles=20_000_000) as port:
        yield HostLinkDriver(port, timeout=120)


def _refused(driver, code):
    with pytest.raises(LinkRefused) as info:
        driver.expect(Request.STATUS)
    assert info.value.code == code, info.value


def _check_run(driver, net, samples, seed):
    summary = run_network(driver, net, lower(net, CONFIG), random_inputs(net, samples, seed=seed))
    assert summary["bit_exact"], summary["first_mismatch"]
    assert summary["cycles_exact"], (summary["cycles_per_inference"], summary["predicted_cycles"])
    return summary


def _infer_ok(driver, net, x):
    from ternac.model.reference import golden_network
    out, cycles = driver.infer(lower(net, CONFIG), x)
    np.testing.assert_array_equal(out, golden_network(net, x.reshape(1, -1)).reshape(-1))
    return cycles


@pytest.mark.cosim
def test_host_link_end_to_end_and_broken_frames(link):
    net = random_network([100, 64, 32, 10], seed=3)
    assert not link.status().committed
    # INFER before any network: refused.
    link.send_raw(encode_frame(Request.INFER, bytes(13 * 8)))
    _refused(link, LinkError.STATE)
    summary = _check_run(link, net, 3, seed=1)
    x = random_inputs(net, 5, seed=7)[4]
    cycles = _infer_ok(link, net, x)
    assert cycles == summary["predicted_cycles"] == link.status().cycles

    # A corrupted frame (one payload bit flipped): CRC error, nothing changes.
    frame = bytearray(encode_frame(Request.LOAD, bytes(64)))
    frame[10] ^= 0x10
    link.send_raw(frame)
    _refused(link, LinkError.CRC)
    # Unknown type, wrong length, LOAD outside a load: refused.
    link.send_raw(encode_frame(0x42, b""))
    _refused(link, LinkError.TYPE)
    link.send_raw(encode_frame(Request.INFER, bytes(7)))
    _refused(link, LinkError.LENGTH)
    link.send_raw(encode_frame(Request.LOAD, bytes(8)))
    _refused(link, LinkError.STATE)
    # Truncated: the frame stops half-way; the receiver times out and answers, then idles.
    link.send_raw(encode_frame(Request.INFER, bytes(13 * 8))[:40])
    _refused(link, LinkError.TIMEOUT)
    status = link.status()
    assert status.committed and not status.loading
    assert _infer_ok(link, net, x) == cycles                # the network is still there

    # A load cut off half-way: the old network is no longer usable, nothing runs on a half one.
    other = random_network([33, 17, 8], seed=4)
    link.request(Request.BEGIN)
    link.request(Request.LOAD, struct.pack("<4I", 0, 5, 1, 2))
    link.send_raw(encode_frame(Request.INFER, bytes(13 * 8)))
    _refused(link, LinkError.STATE)
    # A COMMIT that does not match what arrived: refused, still unusable.
    link.send_raw(encode_frame(Request.COMMIT, struct.pack(COMMIT_FORMAT, 9999, 0, 5, 1)))
    _refused(link, LinkError.COMMIT)
    assert not link.status().committed
    # A full load of another network works on the same design.
    _check_run(link, other, 3, seed=2)
