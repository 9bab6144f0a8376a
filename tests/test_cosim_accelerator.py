"""Sign-off of the generated Verilog: Verilator and Icarus against the golden model, exactly.

Every test runs a *program* on one compiled accelerator (:mod:`ternac.cosim.accelerator_tb`):
networks are written through the ``load`` port, so one build per geometry serves every network
of that geometry (builds are cached under ``build/cosim`` by the Verilog's hash). The cocotb
bench compares every output value through the scoreboard, and every inference's cycles (first
``act_in`` to last ``act_out`` handshake, the on-chip counter, and each layer's phase) with
the cycle model; a failing check raises :exc:`CosimFailure` naming sample, layer and neuron.

Verilator builds: one per geometry of :data:`GEOMETRIES` (about 20 s each, done once).
Icarus: the P=8 (8,2) geometry, and one configuration with a trained network baked in.
"""

import fcntl
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import random_network
from ternac.cosim import runner
from ternac.cosim.accelerator_sim import (
    build_accelerator,
    capacity_config,
    golden_budget,
    golden_infer_step,
    golden_load_step,
    golden_outputs,
    golden_predicted,
    golden_reset_step,
    random_inputs,
    run_rtl_program,
    sim_network,
    union_config,
)
from ternac.model import cli
from ternac.model.codebook import TernacError
from ternac.model.hw import lower, size_config
from ternac.model.network import load_network, save_network
from ternac.model.reference import golden_predict

pytestmark = pytest.mark.cosim

#: Geometry name -> (capacity configuration, codebook_bits of its networks, network sizes).
#: Sizes exercise: V < P (the shadow-bank stall) and V > P, fan-in not a multiple of N,
#: outputs not a multiple of P or N, a single output, the largest fan-in the buffers take.
DEPTHS = {"act_depth": 16, "weight_depth": 512, "param_depth": 512}   # fan-in up to 16*N
GEOMETRIES = {
    # The main geometry: 8 lanes, (8,2), default-codebook ROM (8-bit codes).
    "p8-n8k2": ({"lanes": 8, "coding": (8, 2), **DEPTHS}, None,
                [[20, 13], [128, 9], [7, 1], [64, 40], [33, 17, 8], [100, 64, 32, 10],
                 [16, 128, 5]]),
    # P divides neither N nor the outputs; 6-bit codes.
    "p3-n4k2": ({"lanes": 3, "coding": (4, 2), **DEPTHS}, None,
                [[10, 7], [64, 2], [5, 13], [30, 20, 11], [9, 40, 4, 1]]),
    # Learned 5-bit codebooks in the writable decoder table (6-bit code field), K = 3.
    "p4-n8k3-learned": ({"lanes": 4, "coding": (8, 3), "codebook_depth": 256, "code_bits": 6,
                         **DEPTHS}, 5,
                        [[24, 10], [128, 6], [50, 30, 20, 6], [12, 3, 9]]),
    # N = 5 (not a power of two), K = 3, two lanes.
    "p2-n5k3": ({"lanes": 2, "coding": (5, 3), **DEPTHS}, None,
                [[11, 5], [80, 3], [37, 5, 9, 3]]),
    # (16,3): 13-bit codes, a 4993-entry default-codebook ROM. Verilator splits its C++ and
    # builds it with a precompiled header (toolchain.verilator_make_overrides).
    "p8-n16k3": ({"lanes": 8, "coding": (16, 3), **DEPTHS}, None,
                 [[40, 12], [200, 9], [50, 24, 10]]),
    # (16,3) with learned 6-bit codebooks in the writable decoder table (7-bit code field).
    "p8-n16k3-learned": ({"lanes": 8, "coding": (16, 3), "codebook_depth": 256, "code_bits": 7,
                          **DEPTHS}, 6,
                         [[40, 12], [100, 20, 10]]),
    # (8,1): one non-zero per sub-vector, 5-bit codes.
    "p8-n8k1": ({"lanes": 8, "coding": (8, 1), **DEPTHS}, None,
                [[20, 13], [64, 9], [33, 17, 8]]),
}

ICARUS_GEOMETRY = "p8-n8k2"


def geometry_config(name):
    return capacity_config(**GEOMETRIES[name][0])


def geometry_networks(name, kind):
    """Random networks of a geometry: single layers (``"layers"``) or deeper (``"networks"``)."""
    spec, codebook_bits, all_sizes = GEOMETRIES[name]
    config = geometry_config(name)
    chosen = [s for s in all_sizes if (len(s) == 2) == (kind == "layers")]
    nets = []
    for i, sizes in enumerate(chosen):
        net = random_network(sizes, coding=spec["coding"], lanes=spec["lanes"], seed=100 + i,
                             codebook_bits=codebook_bits)
        lower(net, config)         # fits the build
        nets.append(net)
    return config, nets


def program_for(networks, config, *, samples=6, layer_cycles=True, seed=0):
    steps, inputs = [], []
    for i, net in enumerate(networks):
        x = random_inputs(net, samples, seed=seed + i)
        steps += [golden_load_step(lower(net, config)),
                  golden_infer_step(net, lower(net, config), x, layer_cycles=layer_cycles, seed=seed + i)]
        inputs.append(x)
    return steps, inputs


def check_program_output(output, networks, inputs, config):
    """What the bench reports must agree with the golden model here too (belt and braces)."""
    infers = [step for step in output["steps"] if step["op"] == "infer"]
    assert len(infers) == len(networks)
    assert output["mismatches"] == 0 and not output["problems"]
    for step, net, x in zip(infers, networks, inputs):
        np.testing.assert_array_equal(np.array(step["outputs"]), golden_outputs(net, x))
        predicted = golden_predicted(lower(net, config))
        assert step["measured"] == step["onchip"] == [predicted["total"]] * len(x)
        phases = [predicted["input"], *predicted["layers"], predicted["output"]]
        assert step["layer_cycles"] == [phases] * len(x)
        assert step["actions"] == [lower(net, config).actions()] * len(x)     # activity counters


# -- random layers and networks over several geometries ---------------------------------------

@pytest.mark.parametrize("kind", ["layers", "networks"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_random_verilator(geometry, kind):
    config, nets = geometry_networks(geometry, kind)
    design = build_accelerator(config, sim="verilator")
    steps, inputs = program_for(nets, config)
    result = run_rtl_program(design, steps)
    check_program_output(result.output, nets, inputs, config)


@pytest.mark.parametrize("kind", ["layers", "networks"])
def test_random_icarus(kind):
    config, nets = geometry_networks(ICARUS_GEOMETRY, kind)
    nets = nets[:3]
    design = build_accelerator(config, sim="icarus")
    steps, inputs = program_for(nets, config, samples=5)
    result = run_rtl_program(design, steps)
    check_program_output(result.output, nets, inputs, config)


def test_simulators_agree():
    # Same program, same seed: identical outputs and cycle stamps on both simulators.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "networks")
    steps, _ = program_for(nets[:1], config, samples=3)
    outputs = []
    for sim in ("verilator", "icarus"):
        out = run_rtl_program(build_accelerator(config, sim=sim), steps, name=f"agree-{sim}").output
        outputs.append([{k: v for k, v in step.items() if k not in ("wall_seconds",)}
                        for step in out["steps"]])
    assert outputs[0] == outputs[1]


# -- a trained network --------------------------------------------------------------------

def trained_fixture_key():
    """Hash of everything that shapes the trained network's file.

    Training, quantization, codebooks, arithmetic, packing and the file format all live in
    ``model/`` and import one another, so every ``.py`` there counts (a change to, say,
    ``codebook.py`` must not reuse a stale network), and so do the versions of torch and
    numpy, whose kernels and random generators the training goes through.
    """
    import ternac.model
    import torch

    digest = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}".encode())
    root = Path(ternac.model.__file__).parent
    for source in sorted(root.rglob("*.py")):
        digest.update(source.relative_to(root).as_posix().encode() + b"\0")
        digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _trained_digits_path():
    """The digits MLP of ``ternac train`` (defaults), trained once and kept under build/cosim."""
    from ternac.model import train

    path = runner.build_root() / "fixtures" / f"digits-mlp-64-64-10-{trained_fixture_key()}.tern"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            net, _, _ = train.train_network(train.TrainOptions(progress=False),
                                            say=lambda *args: None)
            tmp = path.with_suffix(".tmp")
            save_network(net, tmp)
            tmp.replace(path)
    return path


@pytest.fixture(scope="module")
def digits_net_path():
    return _trained_digits_path()


@pytest.fixture(scope="module")
def digits_samples(digits_net_path):
    from ternac.model.convert import quantize_inputs
    from ternac.model.datasets import load_dataset

    net = load_network(digits_net_path)
    data = load_dataset("digits")
    x = np.asarray(quantize_inputs(net, data.x_test[:100]), dtype=np.int8).reshape(100, -1)
    return net, x, data.y_test[:100]


@pytest.mark.parametrize("sim,bake", [("verilator", False), ("icarus", True)])
def test_trained_digits_100_samples(digits_samples, sim, bake):
    net, x, labels = digits_samples
    # Verilator: loaded through the port (the build `ternac sim` uses); Icarus: baked in.
    config = size_config(net)
    run = sim_network(net, x, sim=sim, config=config, bake=bake, strict=True)
    assert run.bit_exact and run.mismatches == 0 and run.samples == 100
    assert run.cycles_exact and run.measured == [golden_predicted(lower(net, config))["total"]] * 100
    rtl_accuracy = np.mean(run.outputs.argmax(axis=1) == labels)
    reference_accuracy = np.mean(golden_predict(net, x.reshape((100,) + tuple(net.input_shape)))
                                 == labels)
    assert rtl_accuracy == reference_accuracy > 0.5


# -- back-pressure, idle cycles, reset ----------------------------------------------------------

def test_backpressure_and_idle_cycles():
    config, nets = geometry_networks(ICARUS_GEOMETRY, "networks")
    net = nets[1]                                    # 100-64-32-10: several output words
    x = random_inputs(net, 8, seed=5)
    steps = [golden_load_step(lower(net, config), idle_probability=0.3, seed=1),
             golden_infer_step(net, lower(net, config), x, seed=2),
             golden_infer_step(net, lower(net, config), x, idle_probability=0.4, max_idle=5,
                               stall_probability=0.6, layer_cycles=True, seed=3),
             golden_infer_step(net, lower(net, config), x, stall_probability=0.9, seed=4)]
    out = run_rtl_program(build_accelerator(config, sim="verilator"), steps).output
    free, *stalled = out["steps"][1:]
    total = golden_predicted(lower(net, config))["total"]
    assert free["measured"] == [total] * len(x)
    for step in stalled:
        # Nothing lost, duplicated or reordered (the bench also checks for extra beats).
        assert step["outputs"] == free["outputs"]
        assert step["onchip"] == step["measured"]
        assert all(m > total for m in step["measured"])         # it did stall
    # Stalls stretch the input and output phases only; the layers keep their cycles.
    phases = golden_predicted(lower(net, config))
    assert all(row[1:-1] == phases["layers"] for row in stalled[0]["layer_cycles"])
    assert out["checked"] == 3 * golden_outputs(net, x).size


def test_reset_mid_inference():
    # Resets while busy in the input, layer and output phases. The memories are block RAMs,
    # which reset does not clear: the network loaded before stays, and the next inference
    # (no reload) must be exact, in values and in cycles.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "networks")
    net = nets[1]
    total = golden_predicted(lower(net, config))["total"]
    x = random_inputs(net, 4, seed=9)
    steps = [golden_load_step(lower(net, config))]
    for i, after in enumerate([1, total // 2, total - 2]):
        steps += [golden_reset_step(lower(net, config), x[i], after_cycles=after),
                  golden_infer_step(net, lower(net, config), x, first_sample=4 * i, layer_cycles=True)]
    out = run_rtl_program(build_accelerator(config, sim="verilator"), steps).output
    resets = [step for step in out["steps"] if step["op"] == "reset"]
    assert [step["busy_after"] for step in resets] == [0, 0, 0]
    assert resets[0]["inputs_taken"] < len(golden_infer_step(net, lower(net, config), x[:1])["inputs"][0])
    assert resets[2]["discarded_outputs"] >= 1               # reset during the output phase
    expected = golden_outputs(net, x).tolist()
    for step in out["steps"][2::2]:
        assert step["outputs"] == expected and step["measured"] == [total] * len(x)


def test_waits_fail_within_their_budget():
    # A reset step waiting for `busy` longer than any inference lasts, and an infer step
    # expecting one output word more than the network has: both must fail at their budget,
    # naming what they waited for, not hang.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "layers")
    net = nets[0]
    x = random_inputs(net, 1)
    total = golden_predicted(lower(net, config))["total"]
    design = build_accelerator(config, sim="icarus")
    reset = golden_reset_step(lower(net, config), x[0], after_cycles=10 * total)
    with pytest.raises(runner.CosimFailure, match=(
            rf"reset step: 'busy' high for only {total - 1} of {10 * total} cycles within "
            rf"{golden_budget(total)} cycles at cycle \d+")):
        run_rtl_program(design, [golden_load_step(lower(net, config)), reset], name="budget-reset")
    infer = golden_infer_step(net, lower(net, config), x)
    n, words = config.coding.n, infer["out_words"]
    infer["expected"][0] += [0] * n                            # one more act_out word
    infer["positions"] += list(range(words * n, (words + 1) * n))
    infer["out_words"] = words + 1
    with pytest.raises(runner.CosimFailure, match=(
            rf"sample 0: inference not finished within {golden_budget(total)} cycles: stream "
            rf"'act_out': 2 of 3 beats after \d+ cycles \(budget\) at cycle \d+")):
        run_rtl_program(design, [golden_load_step(lower(net, config)), infer], name="budget-infer")


def test_trained_fixture_key_covers_model_sources(tmp_path, monkeypatch):
    # The trained network depends on codebook.py, arith.py, pack.py, ... and torch/numpy:
    # editing any of them must train afresh, not reuse a stale file.
    import ternac.model
    import torch

    copy = tmp_path / "model"
    copy.mkdir()
    for source in Path(ternac.model.__file__).parent.glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(ternac.model, "__file__", str(copy / "__init__.py"))
    keys = {trained_fixture_key()}
    for name in ("codebook.py", "arith.py", "pack.py", "network.py", "train.py"):
        with open(copy / name, "a") as file:
            file.write("\n# edited\n")
        keys.add(trained_fixture_key())
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    keys.add(trained_fixture_key())
    assert len(keys) == 7


def test_port_load_replaces_baked_network():
    # Network A baked in at elaboration, network B then written through the load port.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "layers")
    a, b = nets[0], nets[3]
    design = build_accelerator(config, sim="icarus", program=lower(a, config))
    xa, xb = random_inputs(a, 3, seed=1), random_inputs(b, 3, seed=2)
    steps = [golden_infer_step(a, lower(a, config), xa), golden_load_step(lower(b, config)),
             golden_infer_step(b, lower(b, config), xb)]
    out = run_rtl_program(design, steps).output
    assert out["steps"][0]["outputs"] == golden_outputs(a, xa).tolist()
    assert out["steps"][2]["outputs"] == golden_outputs(b, xb).tolist()


def test_mismatch_is_reported_not_hidden():
    # Expectations of another network: the scoreboard must name the first differing value.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "layers")
    x = random_inputs(nets[0], 2)
    step = golden_infer_step(nets[0], lower(nets[0], config), x)
    wrong = golden_outputs(nets[0], x)
    wrong[1, 2] ^= 1
    step["expected"] = wrong.astype(int).tolist()
    with pytest.raises(runner.CosimFailure, match=(
            r"1 of \d+ values differ .* first at sample 1, layer 0, neuron 2: "
            rf"expected {wrong[1, 2]}, got {wrong[1, 2] ^ 1}")):
        run_rtl_program(build_accelerator(config, sim="icarus"),
                        [golden_load_step(lower(nets[0], config)), step])


def test_activity_counter_mismatch_is_reported():
    # The bench compares the activity counters with the step's actions: a wrong expectation
    # (standing in for a counter or definition that drifted) fails the run, naming the action.
    config, nets = geometry_networks(ICARUS_GEOMETRY, "layers")
    program = lower(nets[0], config)
    step = golden_infer_step(nets[0], program, random_inputs(nets[0], 2))
    nonzero = step["actions"]["nonzero_slots"]
    step["actions"] = dict(step["actions"], nonzero_slots=nonzero + 1)
    with pytest.raises(runner.CosimFailure,
                       match=rf"sample 0: activity counters differ .*'nonzero_slots': \({nonzero}, {nonzero + 1}\)"):
        run_rtl_program(build_accelerator(config, sim="icarus"), [golden_load_step(program), step],
                        name="activity-mismatch")


# -- ternac sim ----------------------------------------------------------------------------

REQUIRED_KEYS = {"bit_exact", "samples", "mismatches", "cycles_per_inference",
                 "predicted_cycles", "simulator", "sim_cycles_per_second"}


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_ternac_sim_dataset_json(digits_net_path, sim, capsys):
    code = cli.main(["sim", str(digits_net_path), "--simulator", sim, "--samples", "12",
                     "--dataset", "digits", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert REQUIRED_KEYS <= summary.keys()
    assert summary["bit_exact"] is True and summary["mismatches"] == 0
    assert summary["samples"] == 12 and summary["simulator"] == sim
    assert summary["cycles_per_inference"] == summary["predicted_cycles"]
    assert summary["onchip_cycles"] == summary["predicted_cycles"]
    assert summary["layer_cycles"] == summary["predicted_layer_cycles"]
    assert summary["accuracy"] == summary["reference_accuracy"]
    assert summary["sim_cycles_per_second"] > 0
    net = load_network(digits_net_path)
    assert summary["actions"] == summary["modelled_actions"] == lower(net).actions()
    assert summary["actions_exact"] is True


def test_ternac_sim_random_inputs_waves_and_text(tmp_path, capsys):
    net = random_network([20, 13, 7])
    path = tmp_path / "net.tern"
    save_network(net, path)
    code = cli.main(["sim", str(path), "--simulator", "icarus", "--samples", "5", "--waves",
                     "--stall", "0.3"])
    captured = capsys.readouterr()
    assert code == 0
    assert "bit-exact: yes (5 samples, 0 of 35 values differ)" in captured.out
    wave = [line for line in captured.out.splitlines() if line.startswith("waveform: ")]
    assert wave and Path(wave[0].split(": ", 1)[1]).stat().st_size > 0


def test_ternac_sim_errors(tmp_path, capsys):
    net = random_network([20, 13, 7])
    path = tmp_path / "net.tern"
    save_network(net, path)
    assert cli.main(["sim", str(path), "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().err
    assert cli.main(["sim", str(path), "--dataset", "digits", "--json"]) == 2
    assert "the network expects 20, the data set digits gives 1x8x8" in capsys.readouterr().err
    with pytest.raises(TernacError):
        sim_network(net, np.zeros((1, 20), dtype=np.int16))


# -- helpers ------------------------------------------------------------------------------

def test_union_config_holds_every_network():
    nets = [random_network(sizes, seed=i) for i, sizes in enumerate([[20, 13, 7], [64, 40]])]
    config = union_config([size_config(net) for net in nets])
    for net in nets:
        lower(net, config)
    with pytest.raises(TernacError, match="different lanes"):
        union_config([size_config(nets[0]), size_config(nets[0], lanes=4)])


def test_simspeed_amaranth_smoke(tmp_path):
    from ternac.cosim import simspeed

    out = tmp_path / "speed.json"
    assert simspeed.main(["--simulators", "amaranth", "--amaranth-samples", "1",
                          "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["bit_exact"] and row["cycles_per_inference"] == row["predicted_cycles"]
    assert row["sim_cycles_per_second"] > 0


def test_ternac_sim_exits_1_on_mismatch(tmp_path, monkeypatch, capsys):
    # A run that differs (faked here; the planted-bug tests make real ones) fails the command.
    from ternac.cosim import accelerator_sim

    net = random_network([20, 13, 7])
    path = tmp_path / "net.tern"
    save_network(net, path)
    x = random_inputs(net, 2)
    expected = golden_outputs(net, x)
    wrong = expected.copy()
    wrong[1, 3] += 1
    fake = accelerator_sim.SimRun(
        simulator="icarus", expected=expected, outputs=wrong, measured=[44, 44], onchip=[44, 44],
        predicted={"input": 3, "layers": [24, 15], "output": 2, "total": 44}, layer_cycles=[],
        sim_cycles=88, sim_seconds=0.1, wall_seconds=1.0, build_seconds=0.5,
        first_mismatch="sample 1, layer 1, neuron 3: expected 1, got 2", error="scoreboard")
    monkeypatch.setattr(accelerator_sim, "sim_network", lambda *args, **kwargs: fake)
    assert cli.main(["sim", str(path), "--samples", "2", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is False and summary["bit_exact"] is False and summary["mismatches"] == 1
    assert summary["mismatched_samples"] == 1 and summary["first_mismatch"].startswith("sample 1")
