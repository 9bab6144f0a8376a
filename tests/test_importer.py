"""The importer: eager (torch.fx), TorchScript (traced, scripted) and ONNX give one integer network."""

import json
import sys
import warnings

import numpy as np
import pytest
import torch
from nets import TwoHeadCNN
from ternac.model.cli import main
from ternac.model.codebook import Coding, TernacError
from ternac.model.convert import float_forward, float_pool, quantize_inputs, quantize_network
from ternac.model.floatmodel import FloatModel
from ternac.model.importer import import_model
from ternac.model.network import PoolLayer, TernaryLayer, load_network, save_network
from ternac.model.reference import golden_layer, golden_network
from torch import nn
from torch.nn import functional as F

SHAPE = (1, 13, 13)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """TwoHeadCNN saved eager, traced, scripted and as ONNX, with calibration inputs."""
    root = tmp_path_factory.mktemp("nets")
    model = TwoHeadCNN()
    x = torch.rand((128,) + SHAPE, generator=torch.Generator().manual_seed(1))
    paths = {kind: root / name for kind, name in
             [("eager", "e.pt"), ("traced", "t.pt"), ("scripted", "s.pt"), ("onnx", "m.onnx")]}
    torch.save(model, paths["eager"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, x[:2]).save(str(paths["traced"]))
        torch.jit.script(model).save(str(paths["scripted"]))
        torch.onnx.export(model, (x[:2],), str(paths["onnx"]), dynamo=False)
    return model, x, paths


def _arrays(net):
    return [(layer.name, {k: v for k, v in vars(layer).items() if isinstance(v, np.ndarray)})
            for layer in net.all_layers]


def test_every_capture_gives_the_same_integer_network(saved):
    model, x, paths = saved
    nets = {}
    for kind, path in paths.items():
        float_net = import_model(path, None if kind == "onnx" else SHAPE)
        assert float_net.input_shape == SHAPE
        # The Linear reading the flattened 12x3x3 map is the equal 3x3 Conv2d (mappable).
        assert [op.kind for op in float_net.ops] == ["conv2d", "prelu", "maxpool", "conv2d", "prelu", "maxpool",
                                                     "conv2d", "relu", "flatten"], kind
        assert [[op.kind for op in head] for head in float_net.heads] == [["linear"], ["linear"]]
        assert "log_softmax" in float_net.notes[0].lower().replace("logsoftmax", "log_softmax")
        # the folded float network is the user's (BatchNorm before and after activations)
        cls, box = FloatModel(float_net)(x)
        want_cls, want_box = model(x)
        torch.testing.assert_close(torch.log_softmax(cls, 1), want_cls, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(box, want_box, atol=1e-5, rtol=1e-5)
        nets[kind] = quantize_network(None, Coding(8, 2), x, ops=float_net)
    base = nets["eager"]
    xq = quantize_inputs(base, x.numpy())
    for kind, net in nets.items():
        assert net.input_scale == base.input_scale
        for (_, got), (name, want) in zip(_arrays(net), _arrays(base)):
            assert got.keys() == want.keys(), (kind, name)
            assert all(np.array_equal(got[k], want[k]) for k in want), (kind, name)
        for got, want in zip(golden_network(net, xq), golden_network(base, xq)):
            np.testing.assert_array_equal(got, want)
    outs = golden_network(base, xq)
    assert [o.shape for o in outs] == [(128, 5), (128, 4)]
    assert any(layer.neg_mult is not None and (layer.neg_mult < 0).any() for layer in base.ternary_layers)


def test_golden_agrees_with_float_per_layer_and_survives_the_file(saved, tmp_path):
    """Each layer on the same int8 input: |integer - round(float)| <= 1 LSB, < 1 % differ;
    pooling (padding, ceil_mode) exactly PyTorch's on the int8 values."""
    _, x, paths = saved
    net = quantize_network(None, Coding(8, 2), x, ops=import_model(paths["eager"], SHAPE))
    xq = quantize_inputs(net, x.numpy())
    mismatched = total = 0

    def run(layers, a):
        nonlocal mismatched, total
        for layer in layers:
            got = golden_layer(layer, a).astype(np.int64)
            if isinstance(layer, TernaryLayer):
                want = np.clip(np.floor(float_forward(layer, a) + 0.5), -128, 127)
                assert np.abs(got - want).max() <= 1, layer.name
                mismatched, total = mismatched + int((got != want).sum()), total + got.size
            elif isinstance(layer, PoolLayer):
                want = float_pool(layer, torch.as_tensor(a, dtype=torch.float64).reshape((len(a),) + layer.in_shape()))
                np.testing.assert_array_equal(got, want.numpy())
            a = got.astype(np.int8)
        return a

    trunk = run(net.layers, xq)
    for head in net.heads:
        run(head, trunk)
    assert mismatched < 0.01 * total
    save_network(net, tmp_path / "n.tern")
    back = load_network(tmp_path / "n.tern")
    assert len(back.heads) == 2 and back.layers[1].ceil_mode and back.layers[3].padding == (1, 1)
    for got, want in zip(golden_network(back, xq), golden_network(net, xq)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode,include_pad", [("max", True), ("avg", True), ("avg", False)])
@pytest.mark.parametrize("kernel,stride,padding,ceil", [(2, 2, 0, True), (3, 2, 1, True), (3, 2, 1, False),
                                                        (2, 1, 1, True), (3, 3, 1, True)])
def test_pool_padding_and_ceil_mode_exact(mode, include_pad, kernel, stride, padding, ceil):
    """Golden pooling against torch in float64 on int8 values: max exact, avg round-half-up of
    PyTorch's mean, with and without count_include_pad."""
    x = np.random.default_rng(kernel * 10 + padding).integers(-128, 128, (3, 2, 7, 8)).astype(np.int8)
    layer = PoolLayer("p", mode, 2, 7, 8, (kernel, kernel), (stride, stride), (padding, padding), ceil,
                      include_pad)
    xt = torch.as_tensor(x, dtype=torch.float64)
    if mode == "max":
        want = F.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil)
    else:
        want = torch.floor(F.avg_pool2d(xt, kernel, stride, padding, ceil_mode=ceil,
                                        count_include_pad=include_pad) + 0.5)
    got = golden_layer(layer, x)
    assert got.shape[1:] == tuple(layer.out_shape()) == tuple(want.shape[1:])
    np.testing.assert_array_equal(got, want.numpy())


class Styles(nn.Module):
    """One network, written with a chosen flatten idiom and activation style."""

    def __init__(self, flatten, act):
        super().__init__()
        torch.manual_seed(0)
        self.flatten, self.act = flatten, act
        self.conv = nn.Conv2d(2, 4, 3)
        self.slope = nn.Parameter(torch.tensor([0.1, -0.2, 0.3, 0.05]))
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = self.conv(x)
        x = {"F.relu": F.relu, "torch.relu": torch.relu, "method": lambda t: t.relu(),
             "F.prelu": lambda t: F.prelu(t, self.slope), "F.leaky_relu": F.leaky_relu}[self.act](x)
        x = F.avg_pool2d(x, 2)
        if self.flatten == "view":
            x = x.view(x.size(0), -1)
        elif self.flatten == "reshape":
            x = x.reshape(x.shape[0], -1)
        elif self.flatten == "torch.flatten":
            x = torch.flatten(x, 1)
        else:
            x = x.permute(0, 2, 3, 1).reshape(x.size(0), -1)     # HWC order: folded into fc
        return self.fc(x)


@pytest.mark.parametrize("flatten,act", [("view", "F.relu"), ("reshape", "torch.relu"),
                                         ("torch.flatten", "method"), ("permute", "F.prelu"),
                                         ("view", "F.leaky_relu")])
def test_flatten_idioms_functional_forms_and_permute(flatten, act):
    model = Styles(flatten, act).eval()
    net = import_model(model, (2, 6, 6))
    assert "permute" not in [op.kind for op in net.ops] and "flatten" in [op.kind for op in net.ops]
    x = torch.randn(16, 2, 6, 6)
    torch.testing.assert_close(FloatModel(net)(x), model(x), atol=1e-5, rtol=1e-5)
    traced = torch.jit.trace(model, x[:2])
    torch.testing.assert_close(FloatModel(import_model(traced, (2, 6, 6)))(x), model(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_after_activation_folds_forward_or_says_why():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(8, 1, 8, 8)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), bn, nn.Conv2d(4, 2, 3), nn.Flatten()).eval()
    torch.testing.assert_close(FloatModel(import_model(model, (1, 8, 8)))(x), model(x), atol=1e-5, rtol=1e-5)
    padded = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), bn, nn.Conv2d(4, 2, 3, padding=1)).eval()
    with pytest.raises(TernacError, match=r"layer 2 \(BatchNorm\) cannot be folded into 3: 3 pads its input"):
        import_model(padded, (1, 8, 8))
    with pytest.raises(TernacError, match=r"layer 2 \(BatchNorm\) can be folded only next to a Linear"):
        import_model(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4)).eval())


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        y = torch.sigmoid(self.fc1(x))
        return self.fc2(torch.tanh(y) + y)


def test_unsupported_operations_are_listed_together():
    with pytest.raises(TernacError) as error:
        import_model(Unsupported())
    text = str(error.value)
    assert text.startswith("3 operations cannot be mapped to ternac:")
    for part in ("layer sigmoid (sigmoid)", "layer tanh (tanh)", "layer add (add)"):
        assert part in text


def test_unpickling_errors_name_the_class_and_module(tmp_path, monkeypatch, capsys):
    class Net(nn.Sequential):
        pass

    Net.__module__, Net.__qualname__ = "__main__", "Net"
    monkeypatch.setattr(sys.modules["__main__"], "Net", Net, raising=False)
    torch.save(Net(nn.Linear(4, 2)), tmp_path / "main.pt")
    monkeypatch.delattr(sys.modules["__main__"], "Net")
    Net.__module__ = "gone_module"
    monkeypatch.setitem(sys.modules, "gone_module", type(sys)("gone_module"))
    sys.modules["gone_module"].Net = Net
    torch.save(Net(nn.Linear(4, 2)), tmp_path / "gone.pt")
    monkeypatch.delitem(sys.modules, "gone_module")
    for name, what in [("main.pt", "class Net of module __main__ cannot be imported"),
                       ("gone.pt", "module gone_module cannot be imported")]:
        code = main(["pack", str(tmp_path / name), "--coding", "8,2", "--out", str(tmp_path / "n.tern"), "--json"])
        error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
        assert code == 2 and what in error and "TorchScript" in error and "\n" not in error, error


def test_pack_cli_traced_sequential_and_onnx_heads(saved, tmp_path, capsys):
    _, _, paths = saved
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    torch.jit.trace(seq, torch.rand(2, 1, 8, 8)).save(str(tmp_path / "seq.pt"))
    assert main(["pack", str(tmp_path / "seq.pt"), "--coding", "8,2", "--input-shape", "1,8,8",
                 "--out", str(tmp_path / "seq.tern"), "--json"]) == 0
    capsys.readouterr()
    assert main(["pack", str(paths["onnx"]), "--coding", "8,2", "--out", str(tmp_path / "m.tern"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["outputs"] == 2 and summary["input_shape"] == list(SHAPE)
    assert "LogSoftmax" in summary["notes"][0]
    assert [layer["name"] for layer in summary["layers"]] == ["conv1", "conv2", "fc", "cls", "box"]
