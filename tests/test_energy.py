"""The energy model: the ternac row from the program's (or the RTL's measured) actions, the
decoder-table charge, and ``ternac energy --measured``."""

import json
import math

import numpy as np
import pytest
from conftest import CONV_CASES, random_cnn, random_network
from ternac.model import cli
from ternac.model.codebook import TernacError
from ternac.model.energy import (
    SRAM_64BIT_PJ,
    decoder_table,
    energy_report,
    sram_pj_per_bit,
    table_pj_per_bit,
)
from ternac.model.hw import ACTIONS, lower
from ternac.model.network import file_sha256, save_network


@pytest.fixture(scope="module")
def cnn():
    """Conv, max pool, conv, max pool, conv: every kind of pass."""
    return random_cnn(*CONV_CASES[5], seed=3)


def _ternac(report):
    return {a["action"]: a for a in report["designs"]["ternac"]["actions"]}


def test_actions_of_pooling_passes():
    """A pooling pass (max, or a packing of a convolution's rows) reads activation words
    (padding taps too) and writes N bytes per word; no weight read, decode, add or
    requantization. A fused max pooling requantizes once per pooled pixel."""
    from nets import two_head_network

    program = lower(two_head_network())
    rows = dict(program.pass_actions())
    pools = [d for d in program.layers if d.walk.pool]
    assert {d.walk.pool for d in pools} == {"max", "pack"}
    for d in pools:
        assert rows[d.name] == {**dict.fromkeys(ACTIONS, 0), "act_words_read": d.steps,
                                "bytes_written": d.out_words * 8}
    totals = program.actions()
    assert totals["act_words_read"] == totals["weight_words_read"] + sum(d.steps for d in pools)
    fused = lower(random_cnn(*CONV_CASES[6], seed=3))
    conv = fused.layers[0]
    assert conv.walk.window == (3, 3)
    assert dict(fused.pass_actions())[conv.name]["requantizations"] == conv.groups * 8 * conv.walk.pixels
    assert dict(fused.pass_actions())[conv.name]["weight_words_read"] == conv.steps


def test_decoder_table_charged_as_a_small_rom_with_the_sram_figure_as_bound(cnn):
    program = lower(cnn)
    entries, size = decoder_table(program.config)
    assert (entries, size) == (129, 129 * 10 / 8)               # (8,2): 129 patterns, 10-bit entries
    small = SRAM_64BIT_PJ[0][1] * math.sqrt(size / SRAM_64BIT_PJ[0][0]) / 64
    assert table_pj_per_bit(size) == pytest.approx(small)
    assert table_pj_per_bit(64 * 1024) == sram_pj_per_bit(0)   # never above the 8 KB figure
    report = energy_report(cnn)
    lookups = program.actions()["decoder_lookups"]
    decoder = [a for a in report["designs"]["ternac"]["actions"] if a["action"].startswith("decoder")]
    assert sum(a["count"] for a in decoder) == lookups
    assert all(a["pj_each"] == pytest.approx(10 * small) for a in decoder)
    bound = report["upper_bound"]["ternac_total_pj"]
    assert bound - report["designs"]["ternac"]["total_pj"] == pytest.approx(
        lookups * 10 * (sram_pj_per_bit(0) - small))
    assert report["upper_bound"]["ratios_vs_ternac"]["int8"] < report["ratios_vs_ternac"]["int8"]


def test_ternac_row_charges_the_program_actions(cnn):
    program = lower(cnn)
    report = energy_report(cnn)
    assert report["source"] == "program" and report["counts"] == program.actions()
    charged = {}
    for a in report["designs"]["ternac"]["actions"]:
        charged[a["action"]] = charged.get(a["action"], 0) + a["count"]
    counts, cfg = program.actions(), program.config
    assert charged["weight buffer read (bits)"] == counts["weight_words_read"] * cfg.weight_bits
    assert charged["activation read (bits)"] == counts["act_words_read"] * cfg.act_bits
    assert charged["activation write (bits)"] == counts["bytes_written"] * 8
    assert charged[f"{cfg.acc_bits}-bit add/sub"] == counts["nonzero_slots"]
    assert charged["requantize (multiply + round add + bias add)"] == counts["requantizations"]
    assert charged["max compare"] == (counts["act_words_read"] - counts["weight_words_read"]) * 8


def test_measured_counts_replace_the_program_counts(cnn):
    modelled = energy_report(cnn)
    same = energy_report(cnn, measured=lower(cnn).actions())
    assert same["source"] == "measured"
    assert same["designs"]["ternac"]["total_pj"] == pytest.approx(modelled["designs"]["ternac"]["total_pj"])
    more = dict(lower(cnn).actions(), nonzero_slots=lower(cnn).actions()["nonzero_slots"] + 1000)
    assert energy_report(cnn, measured=more)["designs"]["ternac"]["total_pj"] > same["designs"]["ternac"]["total_pj"]
    for bad, message in (({"weight_words_read": 1}, "must name exactly"),
                         (dict(more, idle_slots=-1), "idle_slots"),
                         (dict(more, input_words=1.5), "input_words"), ([1, 2], "must name exactly")):
        with pytest.raises(TernacError, match=message):
            energy_report(cnn, measured=bad)


def _sim_json(path, net_path, program, **changes):
    summary = {"net": str(net_path), "net_sha256": file_sha256(net_path), "config": program.config.summary(),
               "actions": program.actions(), "modelled_actions": program.actions(),
               "actions_exact": True, **changes}
    path.write_text(json.dumps(summary))
    return path


def test_energy_measured_cli(tmp_path, capsys, cnn):
    net_path = tmp_path / "cnn.tern"
    save_network(cnn, net_path)
    program = lower(cnn)
    sim = _sim_json(tmp_path / "sim.json", net_path, program)
    assert cli.main(["energy", str(net_path), "--measured", str(sim), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "measured" and report["counts"] == program.actions()
    assert {a["component"] for a in report["designs"]["ternac"]["actions"]} == {"accelerator (measured)"}

    other = tmp_path / "mlp.tern"
    save_network(random_network([20, 13, 7]), other)
    cases = [
        (_sim_json(tmp_path / "other.json", other, program), "measured on another network"),
        (_sim_json(tmp_path / "lanes.json", net_path, lower(cnn, lanes=4)), "another accelerator configuration"),
        (_sim_json(tmp_path / "none.json", net_path, program, actions=None), "no measured actions"),
        (_sim_json(tmp_path / "wrong.json", net_path, program, actions_exact=False), "differ from the program"),
        (_sim_json(tmp_path / "keys.json", net_path, program, actions={"bytes_written": 3}), "must name exactly"),
    ]
    (tmp_path / "broken.json").write_text("{not json")
    cases.append((tmp_path / "broken.json", "cannot read a JSON summary"))
    for path, message in cases:
        assert cli.main(["energy", str(net_path), "--measured", str(path), "--json"]) == 2
        assert message in json.loads(capsys.readouterr().out)["error"]


def test_fashion_mnist_mlp_shape_beats_int8_and_dense_ternary():
    """On a random 784-256-256-10 at (8,2) the ratios the docs state hold (the docs measure a trained one)."""
    report = energy_report(random_network([784, 256, 256, 10]))
    assert report["ratios_vs_ternac"]["int8"] >= 8 and report["ratios_vs_ternac"]["ternary-dense"] >= 1.5
    assert np.isfinite(report["upper_bound"]["ternac_total_pj"])
