"""Training flow on digits: QAT, schedules, learned codebooks, export, import paths, commands."""

import json

import numpy as np
import pytest
import torch
from ternac.model import cli
from ternac.model.arch import build_arch, parse_arch
from ternac.model.codebook import Coding, TernacError
from ternac.model.datasets import load_dataset
from ternac.model.network import load_network, save_network
from ternac.model.qat import (
    Schedule,
    gradual_stages,
    normalise_channels,
    qat_forward,
    refine_codebook,
)
from ternac.model.quantize import learn_codebook, project
from ternac.model.train import TrainOptions, float_accuracy, integer_accuracy, train_network
from torch import nn

ARCH = "mlp:64-32-10"


def options(**changes):
    base = {"dataset": "digits", "arch": ARCH, "float_epochs": 15, "qat_epochs": 6, "progress": False,
                "calibration": 512, "threads": 1}
    base.update(changes)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("float-cache")


def quiet(_text):
    pass


def max_nonzeros(net):
    """Largest number of non-zeros in any (N)-sub-vector of the network's ternary layers."""
    worst = 0
    for layer in net.ternary_layers:
        n = layer.coding.n
        w = layer.weights()
        w = np.pad(w, ((0, 0), (0, (-w.shape[1]) % n))).reshape(w.shape[0], -1, n)
        worst = max(worst, int((w != 0).sum(-1).max()))
    return worst


def test_arch_strings():
    assert parse_arch("mlp:784-256-256-10") == ("mlp", [784, 256, 256, 10], [], [])
    assert parse_arch("cnn:16-32-fc64") == ("cnn", [16, 32], [64], [3, 3])
    assert parse_arch("cnn:16k5-32") == ("cnn", [16, 32], [], [5, 3])
    assert build_arch("cnn:4k5-8", (1, 8, 8), 10)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    cnn = build_arch("cnn:4-8", (1, 8, 8), 10)
    assert cnn(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    for bad in ("mlp", "rnn:1-2", "mlp:64-x-10", "cnn:fc3-4", "cnn:8k4", "cnn:8kx"):
        with pytest.raises(TernacError, match="invalid architecture"):
            parse_arch(bad)
    with pytest.raises(TernacError, match="must start with the input size 64"):
        build_arch("mlp:784-10", (1, 8, 8), 10)
    with pytest.raises(TernacError, match="too many 2x2 poolings"):
        build_arch("cnn:4-4-4-4", (1, 8, 8), 10)


def test_gradual_stages():
    assert gradual_stages(Coding(8, 2)) == [8, 4, 2]
    assert gradual_stages(Coding(16, 3)) == [16, 8, 4, 3]
    assert gradual_stages(Coding(8, 8)) == [8]
    s = Schedule("stochastic", Coding(8, 2), 100)
    assert s.fraction_at(0) == pytest.approx(1 / 75) and s.fraction_at(50) < 1 and s.fraction_at(80) == 1


def test_retraining_beats_projection_and_export_matches_shadow(cache, tmp_path):
    _, _, none = train_network(options(qat_epochs=0), say=quiet, float_cache=cache)
    net, model, qat = train_network(options(), say=quiet, float_cache=cache)
    assert qat["float_accuracy"] == none["float_accuracy"]             # same cached float model
    assert qat["integer_accuracy"] > none["integer_accuracy"] + 0.02
    assert qat["integer_accuracy"] > 0.75
    # the exported ternary weights are the projection used in training, bit for bit
    layers = [m for m in model if isinstance(m, nn.Linear)]
    for m, layer in zip(layers, net.ternary_layers):
        ternary, scale = project(m.weight.detach(), Coding(8, 2))
        assert np.array_equal(ternary.numpy().astype(np.int8), layer.weights())
        assert np.allclose(scale.numpy(), layer.scale)
    # the saved .tern gives the accuracy train_network reported
    path = tmp_path / "net.tern"
    save_network(net, path)
    data = load_dataset("digits")
    assert integer_accuracy(load_network(path), data.x_test, data.y_test) == qat["integer_accuracy"]
    assert qat["bits_per_weight_codes"] == 1.0


@pytest.mark.parametrize("schedule,coding", [("gradual", "8,2"), ("stochastic", "8,2"),
                                             ("gradual", "16,3")])
def test_schedules_end_fully_structured(cache, schedule, coding):
    net, _, summary = train_network(options(schedule=schedule, coding=coding), say=quiet,
                                    float_cache=cache)
    c = Coding.parse(coding)
    assert net.coding == c and max_nonzeros(net) <= c.k
    assert summary["integer_accuracy"] > 0.5
    assert abs(summary["integer_accuracy"] - summary["shadow_accuracy"]) < 0.05


def test_learned_codebook(cache):
    net, model, summary = train_network(options(codebook_bits=6), say=quiet, float_cache=cache)
    assert summary["bits_per_weight_codes"] == pytest.approx(0.75, abs=0.02)   # 6 bits / 8 weights
    for layer in net.ternary_layers:
        assert layer.codebook.learned and len(layer.codebook) == 64
        assert (np.count_nonzero(layer.codebook.patterns, axis=1) <= 2).all()
    assert summary["integer_accuracy"] > 0.6
    w = next(m for m in model if isinstance(m, nn.Linear)).weight.detach()
    book = learn_codebook(w, Coding(8, 2), 4)
    refined = refine_codebook(w, book)
    assert len(refined) == 16 and (refined.patterns[0] == 0).all()
    assert len({row.tobytes() for row in refined.patterns}) == 16


def test_normalisation_preserves_the_function():
    torch.manual_seed(0)
    model = build_arch("cnn:4-8-fc16", (1, 8, 8), 10)
    x = torch.rand(64, 1, 8, 8)
    before = model(x)
    normalise_channels(model, x)
    assert torch.allclose(model(x), before, atol=1e-4, rtol=1e-4)


def test_stochastic_quantizer_mixes_float_and_ternary():
    model = build_arch(ARCH, (1, 8, 8), 10)
    schedule = Schedule("stochastic", Coding(8, 2), 100)
    quantizers = schedule.make_quantizers(model)
    schedule.update(30, model, quantizers)
    w = model[1].weight
    mixed = quantizers[0](w, torch.Generator().manual_seed(0))
    full = quantizers[0].quantized(w)
    share = float((mixed == full).float().mean())
    assert 0.2 < share < 0.8
    mixed.sum().backward()                                   # straight-through gradient
    assert torch.equal(w.grad, torch.ones_like(w))
    out = qat_forward(model, torch.rand(3, 1, 8, 8), quantizers)
    assert out.shape == (3, 10)


class Chain(nn.Module):
    """A module whose forward is a chain of layers (not a Sequential)."""

    def __init__(self, seq):
        super().__init__()
        self.fc1, self.fc2 = seq[1], seq[3]

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def _trained_float(cache):
    from ternac.model.train import _float_cache_key
    opts = options()
    model = build_arch(ARCH, (1, 8, 8), 10)
    path = cache / f"float-{_float_cache_key(opts)}.pt"
    if not path.exists():
        train_network(options(qat_epochs=0), say=quiet, float_cache=cache)
    model.load_state_dict(torch.load(path)["state_dict"])
    return model


def test_import_state_dict_torchscript_and_module(cache, tmp_path):
    model = _trained_float(cache)
    data = load_dataset("digits")
    expect = float_accuracy(model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test))

    paths = {"state_dict": tmp_path / "sd.pt", "torchscript": tmp_path / "ts.pt",
             "module": tmp_path / "module.pt"}
    torch.save(model.state_dict(), paths["state_dict"])
    torch.jit.script(model).save(str(paths["torchscript"]))
    torch.save(Chain(model), paths["module"])
    for kind, path in paths.items():
        opts = options(float_epochs=0, qat_epochs=1, arch=ARCH if kind == "state_dict" else "")
        _, _, summary = train_network(opts, say=quiet, init=str(path))
        assert summary["float_accuracy"] == pytest.approx(expect), kind
    with pytest.raises(TernacError, match="state_dict: give its architecture"):
        train_network(options(float_epochs=0, arch=""), say=quiet, init=str(paths["state_dict"]))
    with pytest.raises(TernacError, match="does not match architecture"):
        train_network(options(float_epochs=0, arch="mlp:64-16-10"), say=quiet,
                      init=str(paths["state_dict"]))


def test_train_and_eval_commands(tmp_path, capsys):
    out = tmp_path / "d.tern"
    assert cli.main(["train", "--dataset", "digits", "--arch", "mlp:64-16-10", "--float-epochs", "8",
                     "--epochs", "3", "--out", str(out), "--json", "--no-progress", "--threads", "1"]) == 0
    trained = json.loads(capsys.readouterr().out)
    for key in ("float_accuracy", "integer_accuracy", "bits_per_weight_codes",
                "bits_per_weight_all_in", "train_seconds"):
        assert key in trained
    assert cli.main(["eval", str(out), "--dataset", "digits", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["integer_accuracy"] == trained["integer_accuracy"]
    assert cli.main(["train", "--dataset", "digits", "--json"]) == 2
    assert "give --arch" in capsys.readouterr().err


def test_edge_layers_at_higher_precision(cache):
    opts = options(arch="mlp:64-32-32-10", coding="8,1", edge_coding="8,8", qat_epochs=3)
    net, _, summary = train_network(opts, say=quiet, float_cache=cache)
    codings = [str(layer.coding) for layer in net.ternary_layers]
    assert codings == ["(8,8)", "(8,1)", "(8,8)"]
    assert summary["edge_coding"] == "8,8" and summary["integer_accuracy"] > 0.5


@pytest.fixture(scope="module")
def user_cnn(tmp_path_factory):
    """The two-head test CNN saved eager, and 320 unlabelled inputs of its shape as an .npz."""
    from nets import TwoHeadCNN
    root = tmp_path_factory.mktemp("user")
    torch.save(TwoHeadCNN(), root / "cnn.pt")
    np.savez(root / "x.npz", x=np.random.default_rng(0).random((320, 1, 13, 13)).astype(np.float32))
    return root


def test_retrain_by_distillation_on_unlabelled_data(user_cnn):
    """No labels: the ternary shadow learns the float model's outputs (both heads)."""
    def run(epochs):
        opts = options(data=str(user_cnn / "x.npz"), float_epochs=0, qat_epochs=epochs, batch=64)
        return train_network(opts, say=quiet, init=str(user_cnn / "cnn.pt"))

    _, _, before = run(0)
    net, _, after = run(5)
    assert len(net.heads) == 2 and after["labels"] == "float model (distillation)"
    assert after["retrain_loss_last"] < 0.5 * after["retrain_loss_first"]
    for error_before, error_after in zip(before["float_comparison"]["relative_rms_error"],
                                         after["float_comparison"]["relative_rms_error"]):
        assert error_after < 0.85 * error_before
    assert after["float_comparison"]["agreement"] >= before["float_comparison"]["agreement"]
    assert after["warnings"] == []
    with pytest.raises(TernacError, match="no labels"):
        train_network(options(data=str(user_cnn / "x.npz"), float_epochs=2), say=quiet,
                      init=str(user_cnn / "cnn.pt"))
    with pytest.raises(TernacError, match="give the float model to distil from"):
        train_network(options(data=str(user_cnn / "x.npz")), say=quiet)


def test_train_command_on_a_labelled_image_folder(tmp_path, capsys):
    """One sub-folder per class gives the labels; the CLI retrains a given model on them."""
    from PIL import Image
    from ternac.model.datasets import load_user_data
    data = load_dataset("digits")
    for label in (0, 1):
        (tmp_path / "img" / f"class{label}").mkdir(parents=True)
        for i, image in enumerate(data.x_train[data.y_train == label][:30]):
            Image.fromarray((image[0] * 255).astype(np.uint8)).save(tmp_path / "img" / f"class{label}" / f"{i}.png")
    loaded = load_user_data(tmp_path / "img")
    assert loaded.input_shape == (1, 8, 8) and loaded.classes == 2 and len(loaded.x_train) == 48
    assert set(loaded.y_test) <= {0, 1} and loaded.x_train.max() <= 1.0
    torch.save(build_arch("mlp:64-16-2", (1, 8, 8), 2, seed=0), tmp_path / "m.pt")
    assert cli.main(["train", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "img"), "--epochs", "2",
                     "--batch", "16", "--json", "--no-progress", "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == "given" and summary["retrain_loss_first"] > 0 and summary["warnings"] == []
    assert cli.main(["train", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "img"),
                     "--dataset", "digits", "--json"]) == 2
    assert "one of --dataset NAME or --data DATA" in capsys.readouterr().err
