"""Read a user's PyTorch network as a chain of float operations ternac can map.

Accepted: a whole ``nn.Module`` saved with ``torch.save`` (an ``nn.Sequential``, or a module
whose ``forward`` is a chain of supported layers, traced with ``torch.fx``), or a TorchScript
file of an ``nn.Sequential``. Supported layers: Linear, Conv2d (groups=1, dilation=1,
zero padding), ReLU, MaxPool2d, AvgPool2d (no padding), Flatten, and BatchNorm1d/2d directly
after a Linear or Conv2d (folded into it). Dropout and Identity are dropped (inference).
Anything else raises :class:`TernacError` naming the layer.
"""

import operator
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .codebook import TernacError

__all__ = ["SUPPORTED", "FloatOp", "float_ops", "load_torch_model"]

SUPPORTED = "Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, BatchNorm1d/2d (after Linear/Conv2d), Dropout"


@dataclass
class FloatOp:
    """One float operation of the chain: ``kind`` in linear, conv2d, relu, maxpool, avgpool, flatten."""

    kind: str
    name: str
    weight: torch.Tensor | None = None      # linear (O, I); conv2d (O, C, kh, kw)
    bias: torch.Tensor | None = None
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()


def load_torch_model(path):
    """Load a ``torch.save``-d module or a TorchScript file, with a clear error otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)     # TorchScript is still what users ship
            return torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError):
        pass
    except FileNotFoundError:
        raise TernacError(f"model file {path} does not exist") from None
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 -- torch raises many types for a bad file
        raise TernacError(f"{path} is neither a TorchScript file nor a torch.save-d nn.Module ({error})") from None
    if isinstance(model, dict):
        raise TernacError(f"{path} holds a state_dict, not a module: give the architecture too "
                          "(ternac train --arch ... or save the whole nn.Module)")
    if not isinstance(model, nn.Module):
        raise TernacError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    return model.eval()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _kind(module):
    """Layer type name for both eager modules and TorchScript modules."""
    if isinstance(module, torch.jit.ScriptModule):
        return module.original_name
    return type(module).__name__


def _module_op(name, module):
    kind = _kind(module)
    if kind == "Linear":
        return FloatOp("linear", name, module.weight.detach().float(),
                       None if module.bias is None else module.bias.detach().float())
    if kind == "Conv2d":
        if module.groups != 1 or _pair(module.dilation) != (1, 1) or module.padding_mode != "zeros" \
                or isinstance(module.padding, str):
            raise TernacError(f"layer {name} (Conv2d): only groups=1, dilation=1, numeric zero padding "
                              "are supported")
        return FloatOp("conv2d", name, module.weight.detach().float(),
                       None if module.bias is None else module.bias.detach().float(),
                       _pair(module.kernel_size), _pair(module.stride), _pair(module.padding))
    if kind == "ReLU":
        return FloatOp("relu", name)
    if kind in ("MaxPool2d", "AvgPool2d"):
        if _pair(module.padding) != (0, 0) or getattr(module, "ceil_mode", False) \
                or _pair(getattr(module, "dilation", 1)) != (1, 1):
            raise TernacError(f"layer {name} ({kind}): only padding=0, dilation=1, ceil_mode=False are supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return FloatOp("maxpool" if kind == "MaxPool2d" else "avgpool", name,
                       kernel=_pair(module.kernel_size), stride=_pair(stride))
    if kind == "Flatten":
        if module.start_dim != 1 or module.end_dim != -1:
            raise TernacError(f"layer {name} (Flatten): only start_dim=1, end_dim=-1 is supported")
        return FloatOp("flatten", name)
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        return FloatOp("batchnorm", name, weight=module)
    if kind in ("Dropout", "Identity"):
        return None
    raise TernacError(f"layer {name} ({kind}) cannot be mapped to ternac; supported: {SUPPORTED}")


def _chain_modules(model):
    """(name, module) pairs of the forward chain."""
    if _kind(model) == "Sequential":
        out = []
        for name, child in model.named_children():
            out += [(f"{name}.{n}" if n else name, m) for n, m in _chain_modules(child)]
        return out
    if isinstance(model, torch.jit.ScriptModule):
        if not list(model.children()):
            return [("", model)]
        raise TernacError(f"TorchScript module {model.original_name} is not an nn.Sequential; "
                          "script an nn.Sequential or save the eager module with torch.save")
    if not list(model.children()):
        return [("", model)]
    return _traced_chain(model)


_RELU_FUNCS = {torch.relu, nn.functional.relu, torch.nn.functional.relu}
_FLATTEN_FUNCS = {torch.flatten}


def _traced_chain(model):
    """Trace a non-Sequential module with torch.fx and check it is a chain of modules."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # noqa: BLE001 -- fx raises many types
        raise TernacError(f"{type(model).__name__}.forward cannot be traced as a chain of layers ({error})") from None
    modules = dict(model.named_modules())
    out, previous = [], None
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if previous is not None and args[:1] != [previous]:
            raise TernacError(f"{type(model).__name__}.forward is not a simple chain at {node.name}: "
                              "ternac maps chains of layers only")
        if node.op == "call_module":
            out += [(node.target, modules[node.target])]
        elif node.op == "call_function" and node.target in _RELU_FUNCS:
            out += [(node.name, nn.ReLU())]
        elif (node.op == "call_function" and node.target in _FLATTEN_FUNCS) or \
                (node.op == "call_method" and node.target in ("flatten", "view", "reshape")):
            out += [(node.name, nn.Flatten())]
        elif node.op == "call_method" and node.target == "relu":
            out += [(node.name, nn.ReLU())]
        elif node.op == "call_function" and node.target is operator.getitem:
            raise TernacError(f"{type(model).__name__}.forward indexes a tensor at {node.name}; not supported")
        else:
            raise TernacError(f"operation {node.name} ({node.op} {getattr(node.target, '__name__', node.target)}) "
                              f"in {type(model).__name__}.forward cannot be mapped; supported: {SUPPORTED}")
        previous = node
    return out


def _fold_batchnorm(op, bn, name):
    if op is None or op.kind not in ("linear", "conv2d"):
        raise TernacError(f"layer {name} (BatchNorm) must directly follow a Linear or Conv2d to be folded")
    gamma = bn.weight.detach().float() if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias.detach().float() if bn.bias is not None else torch.zeros_like(bn.running_mean)
    factor = gamma / torch.sqrt(bn.running_var.float() + bn.eps)
    shape = (-1,) + (1,) * (op.weight.dim() - 1)
    op.weight = op.weight * factor.reshape(shape)
    bias = op.bias if op.bias is not None else torch.zeros_like(factor)
    op.bias = (bias - bn.running_mean.float()) * factor + beta


def float_ops(model):
    """The model as a list of :class:`FloatOp`, BatchNorm folded, Dropout dropped."""
    ops = []
    for name, module in _chain_modules(model):
        op = _module_op(name or type(model).__name__, module)
        if op is None:
            continue
        if op.kind == "batchnorm":
            _fold_batchnorm(ops[-1] if ops else None, op.weight, op.name)
            continue
        ops.append(op)
    if not any(op.kind in ("linear", "conv2d") for op in ops):
        raise TernacError("the model has no Linear or Conv2d layer to quantize")
    return ops
