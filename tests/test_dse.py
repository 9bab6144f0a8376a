"""``ternac dse``: a tiny search end to end (front non-dominated, JSON schema, .tern files that
load and map as recorded), the predictor's rank correlation, the area model against its
source, the cycle formula against the lowering, Ray with a local instance, bad input."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ternac.fpga.build import synthetic_network
from ternac.model import cli
from ternac.model.codebook import Coding
from ternac.model.dse.area import COEFFICIENTS, MEASURED, estimate_luts, fit
from ternac.model.dse.front import dominates
from ternac.model.dse.objectives import MINIMISED, geometry_objectives, objectives, per_layer_cycles
from ternac.model.dse.predictor import Predictor, leave_one_out, rank_correlation
from ternac.model.dse.space import Point
from ternac.model.hw import lower, mapping_problem
from ternac.model.network import load_network
from ternac.model.reference import golden_predict

TINY = ["--dataset", "digits", "--codings", "8,1 8,2 16,3", "--widths", "16,24", "--lanes", "4,8",
        "--trainings", "4", "--warmup", "3", "--screen", "2", "--population", "4",
        "--float-epochs", "2", "--epochs", "1", "--workers", "1", "--no-progress"]
RECORD_KEYS = {"trial", "label", "codings", "widths", "lanes", "integer_accuracy", "error", "code_bits",
               "bits_per_weight", "energy_pj", "cycles", "cycles_exact", "luts", "luts_extrapolated",
               "rtl_mappable", "mapping_problem", "predicted_accuracy", "train_seconds"}


def run_cli(capsys, *argv):
    code = cli.main([*map(str, argv), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dse")
    proc = subprocess.run([sys.executable, "-m", "ternac.model.cli", "dse", *TINY, "--out", out,
                           "--materialize", "2", "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary, json.loads((out / "front.json").read_text())


def test_tiny_run_front_is_non_dominated_and_complete(tiny_run):
    summary, saved = tiny_run
    front, evaluated = saved["front"], saved["evaluated"]
    assert saved["minimised"] == list(MINIMISED)
    assert summary["predictor"]["trainings"] == 4 and len(evaluated) >= 4 and front
    for rec in front + evaluated:
        assert set(rec) == RECORD_KEYS
        assert rec["error"] == pytest.approx(1 - rec["integer_accuracy"])
    for a in front:
        assert not any(dominates(b, a) for b in evaluated), a["label"]
    labels = {r["label"] for r in front}
    for rec in evaluated:            # everything off the front is dominated by (or equals) a front point
        assert rec["label"] in labels or any(dominates(f, rec) for f in front), rec["label"]
    assert evaluated[0]["codings"] == ["8,2", "8,2"] and evaluated[0]["lanes"] == 8   # the baseline
    assert summary["vs_baseline"]["baseline"]["label"] == evaluated[0]["label"]
    assert os.path.getsize(summary["plot"]) > 10_000


def test_tiny_run_objectives_match_the_networks(tiny_run):
    """Materialized .tern files load, carry the point's codings and P, and re-evaluate to the
    recorded objectives (exact cycles from lower() when mappable)."""
    summary, saved = tiny_run
    assert len(summary["materialized"]) == 2
    by_trial = {r["trial"]: r for r in saved["evaluated"]}
    for m in summary["materialized"]:
        net = load_network(m["path"])
        rec = by_trial[m["trial"]]
        assert [str(layer.coding).strip("()") for layer in net.ternary_layers] == rec["codings"]
        assert net.lanes == rec["lanes"]
        assert (mapping_problem(net, rec["lanes"]) is None) == rec["rtl_mappable"] == m["rtl_mappable"]
        again = objectives(net, rec["lanes"], rec["integer_accuracy"])
        assert {k: again[k] for k in MINIMISED} == {k: rec[k] for k in MINIMISED}
        if rec["rtl_mappable"]:
            assert rec["cycles"] == lower(net, lanes=rec["lanes"]).cycles.total
        x = np.random.default_rng(0).integers(-128, 128, (4, *net.input_shape)).astype(np.int8)
        assert golden_predict(net, x).shape == (4,)


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (1, -1, 1, -1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert rank_correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert rank_correlation([1, 2], [1, 2]) is None
    assert rank_correlation([1, 1, 1], [1, 2, 3]) is None


def test_predictor_ranks_held_out_configurations():
    """On a target that falls with the bits removed, leave-one-out predictions keep the order."""
    rng = np.random.default_rng(0)
    menu = ["8,1", "8,2", "16,3", "8,8"]
    points = [Point((menu[rng.integers(4)], menu[rng.integers(4)]), (int(rng.choice([16, 32, 64])),), 8)
              for _ in range(14)]
    bits = {"8,1": 0.625, "8,2": 1.0, "16,3": 13 / 16, "8,8": 13 / 8}
    target = [0.5 + 0.1 * bits[p.codings[0]] + 0.2 * bits[p.codings[1]] + 0.02 * np.log2(p.widths[0])
              for p in points]
    assert rank_correlation(leave_one_out(points, target, 64, 10), target) > 0.9
    model = Predictor(64, 10).fit(points, target)
    assert model.predict(points).shape == (14,)


def test_area_model_is_the_fit_of_its_source():
    assert COEFFICIENTS == pytest.approx(fit(MEASURED), rel=1e-9)
    for p, n, k, lut in MEASURED:
        assert estimate_luts([(Coding(n, k), None)], p)["luts"] == pytest.approx(lut, rel=0.1)
    assert not estimate_luts([(Coding(8, 2), None)] * 2, 8)["extrapolated"]
    assert estimate_luts([(Coding(8, 2), None), (Coding(16, 3), None)], 8)["extrapolated"]


@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("coding", [(8, 2), (16, 3)])
def test_cycle_formula_equals_the_lowering(lanes, coding):
    sizes = [64, 40, 24, 10]
    net = synthetic_network(sizes, coding, lanes)
    shapes = [(a, b, coding[0]) for a, b in itertools.pairwise(sizes)]
    assert per_layer_cycles(shapes, lanes) == lower(net, lanes=lanes).cycles.total
    point = Point((f"{coding[0]},{coding[1]}",) * 3, (40, 24), lanes)
    geo = geometry_objectives(point, 64, 10)
    assert geo["cycles"] == lower(net, lanes=lanes).cycles.total
    assert geo["code_bits"] == sum(x.out_features * x.subvectors * x.codebook.code_bits
                                   for x in net.ternary_layers)


@pytest.mark.parametrize("argv,message", [
    (["--codings", "8,2 8,9"], "unknown coding '8,9'"),
    (["--codings", "8,2 learned12"], "learned12"),
    (["--codings", "8,2 learned6 learned4"], "one learned codebook size"),
    (["--widths", "16,x"], "invalid width menu"),
    (["--lanes", "0"], "invalid lanes menu"),
    (["--lanes", "300"], "lanes must be in 1..256"),
    (["--warmup", "1"], "--warmup must be at least 3"),
    (["--trainings", "0"], "--trainings must be at least 1"),
])
def test_bad_input_is_one_clear_error(capsys, tmp_path, argv, message):
    code, summary = run_cli(capsys, "dse", "--dataset", "digits", *argv, "--out", tmp_path)
    assert code == 2
    assert message in summary["error"]


@pytest.mark.slow
def test_ray_runs_each_training_as_a_task(tmp_path):
    """A local Ray head started here; the command connects to it by address and trains there."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        argv = TINY[: TINY.index("--workers")] + ["--trainings", "3", "--no-progress"]
        proc = subprocess.run([sys.executable, "-m", "ternac.model.cli", "dse", *argv, "--ray", address,
                               "--out", tmp_path, "--materialize", "1", "--json"],
                              capture_output=True, text=True, timeout=240, check=False)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["runner"] == "ray" and summary["workers"] == 2
        assert summary["predictor"]["trainings"] == 3
        assert load_network(summary["materialized"][0]["path"]).ternary_layers
    finally:
        ray.shutdown()


def test_ray_unreachable_is_one_clear_error(capsys, tmp_path):
    pytest.importorskip("ray")
    code, summary = run_cli(capsys, "dse", *TINY, "--ray", "127.0.0.1:1", "--out", tmp_path)
    assert code == 2 and "cannot connect to the Ray cluster" in summary["error"]
