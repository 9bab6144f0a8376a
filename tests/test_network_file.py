"""The .tern file: round trip, clear errors for truncated, corrupted, foreign and malformed
files, every record checked against the schema, version 1 files migrated, the doc generated."""

import dataclasses
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import random_network
from ternac.model import network as network_module
from ternac.model import schema
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


# --------------------------------------------------------------------------------------------
# The schema: every field checked on load, older versions migrated, the doc generated from it

DATA = Path(__file__).parent / "data"


def rewrite(src, dst, edit, version=None):
    """Copy a .tern file, letting ``edit(header, arrays)`` change its header and its arrays
    (``{key: ndarray}``); the payload, index and CRC are rebuilt so only the edit is wrong."""
    data = Path(src).read_bytes()
    _, file_version, size = struct.unpack_from("<8sII", data)
    header = json.loads(data[16:16 + size])
    payload = data[16 + size:]
    arrays = {key: np.frombuffer(payload[s["offset"]: s["offset"] + s["nbytes"]], dtype=s["dtype"]).reshape(s["shape"])
              for key, s in header["arrays"].items()}
    edit(header, arrays)
    blob, header["arrays"] = bytearray(), {}
    for key, a in arrays.items():
        header["arrays"][key] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": len(blob), "nbytes": a.nbytes}
        blob += a.tobytes()
    header.update(payload_bytes=len(blob), payload_crc32=zlib.crc32(blob))
    text = json.dumps(header).encode()
    Path(dst).write_bytes(struct.pack("<8sII", network_module.MAGIC, file_version if version is None else version, len(text)) + text + blob)
    return dst


def first_array(header, field):
    return header["layers"][0][field]["array"]


@pytest.mark.parametrize("name", ["mlp_learned", "cnn"])
def test_version_1_files_still_load(name):
    """Files written by the version 1 writer (vars(layer) records) run as they did then."""
    expected = np.load(DATA / "v1_expected.npz")
    net = load_network(DATA / f"v1_{name}.tern")
    x = expected[f"{name}_x"].reshape((-1, *net.input_shape))
    assert (golden_network(net, x) == expected[f"{name}_y"]).all()


def test_writes_the_current_version(tmp_path, small_network):
    save_network(small_network, tmp_path / "n.tern")
    assert struct.unpack_from("<I", (tmp_path / "n.tern").read_bytes(), 8)[0] == schema.FORMAT_VERSION == 2


def test_learned_pattern_array_is_named_codebook_patterns(tmp_path):
    save_network(random_network([24, 16, 5], codebook_bits=5), tmp_path / "n.tern")
    data = (tmp_path / "n.tern").read_bytes()
    header = json.loads(data[16:16 + struct.unpack_from("<I", data, 12)[0]])
    ref = header["layers"][0]["codebook"]["patterns"]["array"]
    assert ref.endswith(".codebook.patterns")
    assert header["arrays"][ref]["dtype"] == "|i1" and header["arrays"][ref]["shape"] == [32, 8]


@pytest.mark.parametrize("field,edit,found", [
    ("scale", lambda a: a.astype(np.float32), "found float32 (13,)"),
    ("bias", lambda a: a[:12], "found int64 (12,)"),
    ("codes", lambda a: a.astype(np.int64), "found int64 (13, 3)"),
    ("mult", lambda a: a.reshape(13, 1), "found int64 (13, 1)"),
])
def test_every_array_dtype_and_shape_is_checked(tmp_path, small_network, field, edit, found):
    save_network(small_network, tmp_path / "n.tern")

    def change(header, arrays):
        key = first_array(header, field)
        arrays[key] = edit(arrays[key])

    rewrite(tmp_path / "n.tern", tmp_path / "bad.tern", change)
    expected_dtype = {"scale": "float64", "codes": "uint16"}.get(field, "int64")
    expected_shape = "(13, 3)" if field == "codes" else "(13,)"
    message = f"layer {small_network.layers[0].name}, field {field}: expected {expected_dtype} {expected_shape}, {found}"
    with pytest.raises(TernacError) as info:
        load_network(tmp_path / "bad.tern")
    assert message in str(info.value)


def test_learned_patterns_shape_is_checked(tmp_path):
    save_network(random_network([24, 16, 5], codebook_bits=5), tmp_path / "n.tern")

    def change(header, arrays):
        key = header["layers"][0]["codebook"]["patterns"]["array"]
        arrays[key] = arrays[key][:, :4]

    rewrite(tmp_path / "n.tern", tmp_path / "bad.tern", change)
    with pytest.raises(TernacError, match=r"field codebook, field patterns: expected int8 \(\*, 8\), found int8 \(32, 4\)"):
        load_network(tmp_path / "bad.tern")


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.update(relu="yes"), 'field relu: expected bool, found "yes"'),
    (lambda r: r.pop("mult"), "field mult: missing"),
    (lambda r: r.update(weight_scale=1.0), "unknown field weight_scale"),
    (lambda r: r.update(kind="prelu"), "unknown layer kind 'prelu'"),
    (lambda r: r["codebook"].update(k=12), r"invalid \(N,K\) coding \(8,12\)"),
])
def test_record_errors_name_layer_and_field(tmp_path, small_network, edit, message):
    save_network(small_network, tmp_path / "n.tern")
    rewrite(tmp_path / "n.tern", tmp_path / "bad.tern", lambda header, arrays: edit(header["layers"][0]))
    with pytest.raises(TernacError, match=message):
        load_network(tmp_path / "bad.tern")


def test_optional_fields_take_their_defaults(tmp_path, small_network):
    """A record written before an optional field existed loads with the field's default."""
    small_network.lanes, small_network.meta = 4, {"x": 1}
    save_network(small_network, tmp_path / "n.tern")

    def drop(header, arrays):
        del header["lanes"], header["meta"], header["layers"][0]["conv"]

    back = load_network(rewrite(tmp_path / "n.tern", tmp_path / "old.tern", drop))
    assert back.lanes == 8 and back.meta == {} and back.layers[0].conv is None


@pytest.mark.parametrize("version", [0, 3])
def test_unknown_version_names_both_versions(tmp_path, small_network, version):
    save_network(small_network, tmp_path / "n.tern")
    rewrite(tmp_path / "n.tern", tmp_path / "v.tern", lambda h, a: None, version=version)
    with pytest.raises(TernacError, match=f"is a version {version} .tern file; this ternac reads versions 1, 2"):
        load_network(tmp_path / "v.tern")


@pytest.mark.parametrize("cls,kind", [(network_module.TernaryLayer, "ternary"), (network_module.PoolLayer, "pool"),
                                      (network_module.ReluLayer, "relu"), (network_module.FlattenLayer, "flatten"),
                                      (network_module.ConvGeometry, "conv")])
def test_schema_and_classes_agree(cls, kind):
    """Renaming a dataclass field without its schema row (or the reverse) fails here, not on disk."""
    table = schema.LAYERS.get(kind) or schema.RECORDS[kind]
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == [f.name for f in table]
    for f, row in zip(fields, table):
        assert row.optional == (f.default is not dataclasses.MISSING)
        if row.optional:
            assert f.default == row.default


def test_network_header_fields_match_network():
    fields = {f.name: f for f in dataclasses.fields(network_module.Network)}
    assert set(fields) - {"layers", "heads"} == {f.name for f in schema.NETWORK}   # chains: records


def test_format_doc_tables_are_generated_from_the_schema():
    doc = (Path(__file__).parents[1] / "docs" / "format.md").read_text()
    assert schema.markdown() in doc
    assert schema.with_tables(doc) == doc, "run: python -m ternac.model.schema --write docs/format.md"


def test_heads_and_new_fields_round_trip(tmp_path):
    # A two-head network with PReLU slopes and ceil_mode padded pooling survives the file.
    from nets import two_head_network

    net = two_head_network()
    save_network(net, tmp_path / "h.tern")
    back = load_network(tmp_path / "h.tern")
    assert len(back.heads) == len(net.heads) >= 2
    x = np.random.default_rng(0).integers(-128, 128, (3, *net.input_shape)).astype(np.int8)
    for a, b in zip(golden_network(net, x), golden_network(back, x)):
        np.testing.assert_array_equal(a, b)
