"""The .tern file: round trip, and clear errors for truncated, corrupted and foreign files."""

import numpy as np
import pytest
from conftest import random_network
from ternac.model.codebook import TernacError
from ternac.model.network import load_network, save_network
from ternac.model.reference import golden_network


@pytest.mark.parametrize("codebook_bits", [None, 5])
def test_round_trip(tmp_path, codebook_bits):
    net = random_network([24, 16, 5], codebook_bits=codebook_bits)
    save_network(net, tmp_path / "n.tern")
    back = load_network(tmp_path / "n.tern")
    x = np.random.default_rng(0).integers(-128, 128, (8, 24)).astype(np.int8)
    assert (golden_network(back, x) == golden_network(net, x)).all()
    for a, b in zip(net.ternary_layers, back.ternary_layers):
        assert a.codebook == b.codebook and (a.codes == b.codes).all()


def test_truncated_foreign_corrupted(tmp_path, small_network):
    path = tmp_path / "n.tern"
    save_network(small_network, path)
    data = path.read_bytes()
    (tmp_path / "cut.tern").write_bytes(data[:-10])
    with pytest.raises(TernacError, match="truncated"):
        load_network(tmp_path / "cut.tern")
    (tmp_path / "cut2.tern").write_bytes(data[:20])
    with pytest.raises(TernacError, match="truncated"):
        load_network(tmp_path / "cut2.tern")
    (tmp_path / "foreign.tern").write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(TernacError, match="not a ternac network file"):
        load_network(tmp_path / "foreign.tern")
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    (tmp_path / "bad.tern").write_bytes(bytes(bad))
    with pytest.raises(TernacError, match="corrupted"):
        load_network(tmp_path / "bad.tern")
    with pytest.raises(TernacError, match="cannot read"):
        load_network(tmp_path / "missing.tern")
