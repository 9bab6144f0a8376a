"""cocotb bench of the host link: a bit-level UART between the design's pins and a pseudo-terminal.

Runs inside the simulator, started by :func:`ternac.cosim.uart_link_sim.simulated_port`. The
bench knows nothing of frames or networks: it opens a pseudo-terminal, tells the pytest
process its name (``data["pty_file"]``), and from then on turns every byte the host writes
there into start bit, 8 data bits and stop bit on ``rx`` (``divisor`` clock cycles each),
and every character the design sends on ``tx`` back into a byte for the host. The host runs
the ordinary driver (:mod:`ternac.model.host.driver`) on the other end with pyserial, and
checks everything. The bench ends when ``data["stop_file"]`` appears; it fails if that has
not happened within ``data["max_cycles"]`` or if a character on ``tx`` has a low stop bit.
"""

import os
import tty
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, Timer

from .runner import load_data, save_output
from .streams import clock_and_reset

CLOCK_NS = 10


async def send_byte(dut, value, bit_ns):
    for bit in [0, *((value >> i) & 1 for i in range(8)), 1]:
        dut.rx.value = bit
        await Timer(bit_ns, unit="ns")


async def receive(dut, master, bit_ns, log):
    """Sample each character on ``tx`` in the middle of its bits; hand the byte to the host."""
    while True:
        await FallingEdge(dut.tx)
        await Timer(bit_ns // 2, unit="ns")
        value = 0
        for i in range(8):
            await Timer(bit_ns, unit="ns")
            value |= int(dut.tx.value) << i
        await Timer(bit_ns, unit="ns")
        if int(dut.tx.value) != 1:
            log["framing_errors"] += 1
        log["received"] += 1
        os.write(master, bytes([value]))


@cocotb.test()
async def uart_bridge(dut):
    data = load_data()
    bit_ns = data["divisor"] * CLOCK_NS
    dut.rx.value = 1
    counter = await clock_and_reset(dut, period_ns=CLOCK_NS)
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    pty_file = Path(data["pty_file"])
    pty_file.with_suffix(".tmp").write_text(os.ttyname(slave))
    pty_file.with_suffix(".tmp").rename(pty_file)
    stop = Path(data["stop_file"])
    log = {"sent": 0, "received": 0, "framing_errors": 0}
    task = cocotb.start_soon(receive(dut, master, bit_ns, log))
    try:
        while not stop.exists():
            assert counter.count < data["max_cycles"], (
                f"uart bridge: no stop after {data['max_cycles']} cycles "
                f"({log['sent']} bytes to rx, {log['received']} from tx)")
            try:
                chunk = os.read(master, 4096)
            except BlockingIOError:
                chunk = b""
            for value in chunk:
                await send_byte(dut, value, bit_ns)
                log["sent"] += 1
            if not chunk:
                await Timer(10 * bit_ns, unit="ns")      # one character time, then look again
    finally:
        task.cancel()
        log["cycles"] = counter.count
        save_output(log)
        os.close(master)
        os.close(slave)
    assert not log["framing_errors"], f"{log['framing_errors']} characters on tx with a low stop bit"
