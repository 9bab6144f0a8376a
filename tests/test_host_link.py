"""The host link: frames, CRC, the UART, and the whole board design through a simulated serial port.

The cosim tests run the host driver (the code ``ternac run`` uses on a board) against the
Verilated design (UART, frame checker, accelerator; the SPRAMs hold the weights of an MLP or
the frame buffer of a small CNN, :func:`ternac.rtl.spram.spram_holds`) through a bit-level
UART model and a pseudo-terminal; every output is checked against the golden model and every
inference's on-chip cycles against the cycle model. Broken frames must get an ERROR reply and
change nothing.
"""

import struct

import numpy as np
import pytest
from conftest import random_cnn, random_network
from ternac.cosim.accelerator_sim import capacity_config, random_inputs, union_config
from ternac.model.codebook import TernacError
from ternac.model.host.driver import HostLinkDriver, LinkRefused, run_network
from ternac.model.host.frames import (
    COMMIT_FORMAT,
    SYNC,
    LinkError,
    Request,
    crc16,
    encode_frame,
)
from ternac.model.hw import lower, size_config
from ternac.rtl.host_link import frame_words
from ternac.rtl.spram import spram_holds
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


def _check_run(driver, net, samples, seed, config=CONFIG):
    summary = run_network(driver, net, lower(net, config), random_inputs(net, samples, seed=seed))
    assert summary["bit_exact"], summary["first_mismatch"]
    assert summary["cycles_exact"], (summary["cycles_per_inference"], summary["predicted_cycles"])
    return summary


def _infer_ok(driver, net, x, config=CONFIG):
    from ternac.model.reference import golden_network
    out, cycles = driver.infer(lower(net, config), x)
    np.testing.assert_array_equal(out, golden_network(net, x.reshape(1, *net.input_shape)).reshape(-1))
    return cycles


@pytest.mark.cosim
def test_host_link_end_to_end_and_broken_frames(link):
    assert spram_holds(CONFIG) == "weights"
    _end_to_end_and_broken_frames(link, CONFIG, random_network([100, 64, 32, 10], seed=3),
                                  random_network([33, 17, 8], seed=4))


def _end_to_end_and_broken_frames(link, config, net, other):
    """Two networks through the link, broken frames between them: each refused, nothing changed."""
    in_words = lower(net, config).input_words
    assert not link.status().committed
    # INFER before any network: refused.
    link.send_raw(encode_frame(Request.INFER, bytes(in_words * 8)))
    _refused(link, LinkError.STATE)
    summary = _check_run(link, net, 3, seed=1, config=config)
    x = random_inputs(net, 5, seed=7)[4]
    cycles = _infer_ok(link, net, x, config)
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
    link.send_raw(encode_frame(Request.INFER, bytes(in_words * 8))[:40])
    _refused(link, LinkError.TIMEOUT)
    status = link.status()
    assert status.committed and not status.loading
    assert _infer_ok(link, net, x, config) == cycles        # the network is still there

    # A load cut off half-way: the old network is no longer usable, nothing runs on a half one.
    payload = struct.pack("<4I", 0, 5, 1, 2)
    link.request(Request.BEGIN)
    link.request(Request.LOAD, payload)
    link.send_raw(encode_frame(Request.INFER, bytes(in_words * 8)))
    _refused(link, LinkError.STATE)
    # A COMMIT that does not match what arrived, in any one byte of its count or CRC: refused,
    # still unusable; each refusal ends the load.
    count, crc = len(payload), crc16(payload)
    for wrong in [(9999, 0), (count + (1 << 8), crc), (count + (1 << 16), crc), (count + (1 << 24), crc),
                  (count, crc ^ 0x0001), (count, crc ^ 0x0100)]:
        link.send_raw(encode_frame(Request.COMMIT, struct.pack(COMMIT_FORMAT, *wrong, 5, 1)))
        _refused(link, LinkError.COMMIT)
        assert not link.status().committed
        link.request(Request.BEGIN)
        link.request(Request.LOAD, payload)
    # A full load of another network works on the same design.
    _check_run(link, other, 3, seed=2, config=config)


@pytest.mark.cosim
@pytest.mark.parametrize("coding", [(4, 2), (16, 3)])
def test_host_link_with_one_and_four_load_beats_per_word(coding):
    """N = 4: each frame-buffer word is one load beat; N = 16: four. The link steps its word on
    a word's last beat (`word_end`), so a load that stepped too early or too late is not
    the network that runs: every output is checked."""
    from ternac.cosim.uart_link_sim import simulated_port
    config = capacity_config(4, coding, act_depth=16, weight_depth=1024, param_depth=256)
    net = random_network([40, 24, 10], coding=coding, lanes=4, seed=8)
    with simulated_port(config, name=f"test-host-link-n{coding[0]}", max_cycles=20_000_000) as port:
        _check_run(HostLinkDriver(port, timeout=120), net, 2, seed=5, config=config)


@pytest.mark.cosim
def test_host_link_with_a_registered_frame_buffer():
    """The ECP5 builds' link (``weight_register``): the frame buffer read in two cycles, a word
    ahead in its pipeline, which holds while the core takes none (two load beats per word
    here); every buffer of the accelerator registered too. Bit- and cycle-exact, broken
    frames refused."""
    from ternac.cosim.uart_link_sim import simulated_port
    config = CONFIG.replace(weight_register=True)
    with simulated_port(config, name="test-host-link-registered", max_cycles=20_000_000) as port:
        _end_to_end_and_broken_frames(HostLinkDriver(port, timeout=120), config,
                                      random_network([100, 64, 32, 10], seed=3),
                                      random_network([33, 17, 8], seed=4))


def _frame_nets():
    """A small CNN whose 20 x 20 input map (400 words) is larger than its weights (about 60
    words), and an MLP; on their union the SPRAMs hold the frame buffer."""
    cnn = random_cnn((1, 20, 20), [(4, 3, 1, 1), ("max", 2, 2), (8, 3, 1, 1), ("max", 2, 2)], 10, seed=5)
    mlp = random_network([40, 24, 10], seed=6)
    return cnn, mlp, union_config([size_config(cnn), size_config(mlp)])


@pytest.fixture(scope="module")
def frame_link():
    from ternac.cosim.uart_link_sim import simulated_port
    cnn, mlp, config = _frame_nets()
    with simulated_port(config, name="test-host-link-frames", max_cycles=20_000_000) as port:
        yield HostLinkDriver(port, timeout=60), cnn, mlp, config


@pytest.mark.cosim
def test_host_link_with_the_frame_buffer_in_spram(frame_link):
    """The frame buffer in the four SPRAMs (byte-masked writes, one address), the weights in
    block RAM: the same protocol, bit-exact and cycle-exact, broken frames refused."""
    link, cnn, mlp, config = frame_link
    assert spram_holds(config) == "frames"
    assert lower(cnn, config).input_words == 400 and frame_words(config) >= 400
    assert link.status().max_payload == frame_words(config) * 8
    _end_to_end_and_broken_frames(link, config, cnn, mlp)
    # The CNN again after the MLP: its input words above 255 went through the whole SPRAM address.
    _check_run(link, cnn, 2, seed=3, config=config)


def test_cycle_budget_covers_the_wire_and_the_inferences():
    from ternac.cosim.uart_link_sim import SIM_DIVISOR, cycle_budget
    program = lower(random_network([20, 13, 7], lanes=8), CONFIG)
    one, more = cycle_budget(program, 1), cycle_budget(program, 11)
    per_sample = (program.input_words + program.output_words) * 8 * 10 * SIM_DIVISOR + program.cycles.total
    assert more - one >= 2 * 10 * per_sample                 # doubled, frames on top


@pytest.mark.cosim
def test_a_simulated_board_out_of_cycles_fails_naming_its_budget():
    # The bench stops at its budget, amid the inferences: the driver's closed port is not
    # what is reported, the cause is.
    from ternac.cosim.runner import CosimFailure
    from ternac.cosim.uart_link_sim import simulated_port
    net = random_network([20, 13, 7], lanes=8)
    program, x = lower(net, CONFIG), random_inputs(net, 1)[0]
    with (pytest.raises(CosimFailure, match="no stop after 100000 cycles"),
          simulated_port(CONFIG, name="test-host-link-budget", max_cycles=100_000) as port):
        driver = HostLinkDriver(port, timeout=60)
        driver.load(program)
        for _ in range(200):                                  # about 2,000 cycles each
            driver.infer(program, x)


def test_a_board_that_differs_is_reported_not_ok():
    # `ternac run` / `ternac sim --link uart`: "ok" false and why; the command line exits 1.
    from types import SimpleNamespace

    from ternac.model.host.cmd import report
    base = {"outputs": np.zeros((2, 3)), "expected": np.zeros((2, 3)), "samples": 2, "mismatches": 0,
            "first_mismatch": None, "cycles_per_inference": [10], "predicted_cycles": 10,
            "bit_exact": True, "cycles_exact": True, "inferences_per_s": 1.0, "load_bytes": 4,
            "load_seconds": 0.1}
    args = SimpleNamespace(dataset=None, json=True)
    assert report(args, dict(base), None, lambda text: None)["ok"]
    bad = report(args, {**base, "bit_exact": False, "mismatches": 3, "cycles_exact": False,
                        "cycles_per_inference": [11]}, None, lambda text: None)
    assert bad["ok"] is False
    assert bad["failed"] == ("3 output values differ from the golden model; cycles per inference "
                             "[11] differ from the predicted 10")
