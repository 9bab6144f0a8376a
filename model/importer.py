"""Read a user's float network as the layer graph ternac maps (:class:`FloatNet`).

Three front ends capture the graph, each into the same canonical calls (:class:`Call`):

* an eager ``nn.Module`` saved with ``torch.save``: traced with ``torch.fx``
  (:mod:`fx_import`), so functional calls (``F.relu``, ``F.max_pool2d``, ...) and flatten
  idioms (``x.view(x.size(0), -1)``, ``torch.flatten(x, 1)``) are read as written;
* a TorchScript file, traced or scripted: its frozen graph (:mod:`jit_import`);
* an ONNX file as ``torch.onnx.export`` writes it (:mod:`onnx_import`).

:func:`lower` turns the calls into :class:`FloatOp` chains: the trunk, and one chain per
output when the network has several (:attr:`FloatNet.heads`). Along the way BatchNorm is
folded into the Linear/Conv2d before it (always exact) or after it (exact unless that layer
zero-pads and the BatchNorm shift is non-zero), a ``permute`` before a Linear is folded into
the Linear's columns (activations stay C-major), Dropout/Identity are dropped, and a trailing
Softmax/LogSoftmax is dropped with a note (the argmax is unchanged). Every operation that
cannot be mapped is listed in one :class:`TernacError`.
"""

import ast
import pickle
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .codebook import TernacError
from .network import pool_output_size

__all__ = ["SHAPE", "SUPPORTED", "Call", "FloatNet", "FloatOp", "Graph", "bind",
           "import_model", "load_torch_model", "lower", "module_call"]

SUPPORTED = ("Linear, Conv2d, ReLU, PReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten/view/reshape to "
             "(batch, -1), permute before a Linear, BatchNorm1d/2d (folded), Dropout, trailing Softmax")

SHAPE = "<shape>"          # a value computed from a tensor's shape (x.size(0), x.shape[0])

# Canonical operations and their parameters in call order (``=`` default, ``*`` rest):
# the order of torch.nn.functional and of the matching aten operators.
SIGNATURES = {
    "linear": "input weight bias=None",
    "conv2d": "input weight bias=None stride=1 padding=0 dilation=1 groups=1",
    "batch_norm": "input running_mean running_var weight=None bias=None training=False momentum=0.1 eps=1e-05",
    "relu": "input *rest",
    "prelu": "input weight",
    "leaky_relu": "input negative_slope=0.01 *rest",
    "max_pool2d": "input kernel_size stride=None padding=0 dilation=1 ceil_mode=False return_indices=False",
    "avg_pool2d": "input kernel_size stride=None padding=0 ceil_mode=False count_include_pad=True "
                  "divisor_override=None",
    "flatten": "input start_dim=0 end_dim=-1",
    "reshape": "input *shape",
    "permute": "input *dims",
    "softmax": "input *rest",
    "identity": "input *rest",
}


def bind(signature, args, kwargs=None, what=""):
    """Parameters of a call as a dict, by a :data:`SIGNATURES`-style parameter list."""
    args, kwargs, out = list(args), dict(kwargs or {}), {}
    for spec in signature.split():
        if spec.startswith("*"):
            rest = args if len(args) != 1 or not isinstance(args[0], (list, tuple)) else list(args[0])
            out[spec[1:]], args = list(rest), []
            continue
        key, has_default, default = spec.partition("=")
        if args:
            out[key] = args.pop(0)
        elif key in kwargs:
            out[key] = kwargs.pop(key)
        elif has_default:
            out[key] = ast.literal_eval(default)
        else:
            raise TernacError(f"{what}: missing argument {key}")
    return out


@dataclass
class Call:
    """One operation of a captured graph in canonical form.

    ``op`` is a key of :data:`SIGNATURES` or ``None`` (not mappable; ``what`` says why);
    ``data`` are the ids of the tensors it reads, ``out`` the id of the one it writes.
    """

    name: str
    op: str | None
    data: list
    out: object
    params: dict = field(default_factory=dict)
    what: str = ""


@dataclass
class Graph:
    """A captured graph: calls in execution order from one input to one or more outputs."""

    input: object
    calls: list
    outputs: list
    input_shape: tuple | None = None        # per sample, when the file records it


@dataclass
class FloatOp:
    """One float operation: ``kind`` in linear, conv2d, relu, prelu, maxpool, avgpool, flatten."""

    kind: str
    name: str
    weight: torch.Tensor | None = None      # linear (O, I); conv2d (O, C, kh, kw)
    bias: torch.Tensor | None = None
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    ceil_mode: bool = False
    count_include_pad: bool = True          # avgpool
    slope: torch.Tensor | None = None       # prelu: (1,) or (C,) float32 negative slopes
    extra: dict = field(default_factory=dict)   # batchnorm / permute / reshape parameters while lowering


@dataclass
class FloatNet:
    """The float network: trunk chain, one chain per output when there are several, notes."""

    ops: list
    heads: list = field(default_factory=list)
    input_shape: tuple | None = None
    notes: list = field(default_factory=list)

    @property
    def chains(self):
        return [self.ops, *self.heads]

    @property
    def weight_ops(self):
        return [op for chain in self.chains for op in chain if op.kind in ("linear", "conv2d")]


def _pair(v):
    v = v.tolist() if isinstance(v, torch.Tensor) else v
    return tuple(int(x) for x in v) * (2 if len(v) == 1 else 1) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _tensor(v):
    return None if v is None else torch.as_tensor(v).detach().float()


# ---------------------------------------------------------------------------------------------
# loading

def load_torch_model(path):
    """A TorchScript module or a ``torch.save``-d ``nn.Module`` from a file, clear errors otherwise."""
    if not Path(path).exists():
        raise TernacError(f"model file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)     # TorchScript is still what users ship
            return torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError):
        pass
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError, pickle.UnpicklingError) as error:
        if isinstance(error, pickle.UnpicklingError) and "find class" not in str(error):
            raise TernacError(f"{path} is neither a TorchScript file nor a torch.save-d nn.Module ({error})") \
                from None
        raise TernacError(_unpickle_message(path, error)) from None
    except Exception as error:  # noqa: BLE001 -- torch raises many types for a bad file
        raise TernacError(f"{path} is neither a TorchScript file nor a torch.save-d nn.Module ({error})") from None
    if isinstance(model, dict):
        raise TernacError(f"{path} holds a state_dict, not a module: give the architecture too "
                          "(ternac train --arch ... or save the whole nn.Module)")
    if not isinstance(model, nn.Module):
        raise TernacError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    return model.eval()


def _unpickle_message(path, error):
    """One line naming the class (and module) a pickled module needs but cannot import."""
    found = re.search(r"attribute '([^']+)' on <module '([^']+)'", str(error))
    if found:                                       # "Can't get attribute 'Net' on <module '__main__' ...>"
        main = sys.modules["__main__"]                 # its repr may carry the spec's name ("pytest.__main__")
        module = "__main__" if found[2] in ("__main__", getattr(main.__spec__, "name", None)) else found[2]
        what = f"class {found[1]} of module {module}"
    else:
        what = f"module {getattr(error, 'name', None) or error}"
    hint = ("it was defined in the script that saved it" if "__main__" in what
            else "that module is not importable here")
    return (f"{path}: cannot unpickle the model: {what} cannot be imported ({hint}); save it as "
            "TorchScript (torch.jit.trace(model, x).save(...)) or ONNX (torch.onnx.export), or make "
            "the module importable (pip install it or add it to PYTHONPATH)")


def import_model(source, input_shape=None):
    """:class:`FloatNet` of a model file (``.pt``/``.pth`` module or TorchScript, ``.onnx``) or module.

    ``input_shape`` (per sample) is needed for a network that starts with a convolution unless
    the file records it (ONNX); a network starting with a Linear infers it.
    """
    if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        from .onnx_import import capture_onnx
        graph = capture_onnx(source)
    else:
        model = load_torch_model(source) if isinstance(source, (str, Path)) else source
        if isinstance(model, torch.jit.ScriptModule):
            from .jit_import import capture_jit
            graph = capture_jit(model)
        else:
            from .fx_import import capture_fx
            graph = capture_fx(model)
    return lower(graph, input_shape)


# ---------------------------------------------------------------------------------------------
# modules (eager modules traced by fx) as canonical calls

def module_call(module):
    """``(op, params)`` of a leaf ``nn.Module``; ``(None, why)`` when it cannot be mapped."""
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        return "linear", {"weight": module.weight, "bias": module.bias}
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return None, f"Conv2d with padding_mode={module.padding_mode!r}"
        return "conv2d", {"weight": module.weight, "bias": module.bias, "stride": module.stride,
                          "padding": module.padding, "dilation": module.dilation, "groups": module.groups}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if module.running_mean is None:
            return None, f"{kind} without running statistics"
        return "batch_norm", {"running_mean": module.running_mean, "running_var": module.running_var,
                              "weight": module.weight, "bias": module.bias, "eps": module.eps}
    if isinstance(module, nn.ReLU):
        return "relu", {}
    if isinstance(module, nn.PReLU):
        return "prelu", {"weight": module.weight}
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", {"negative_slope": module.negative_slope}
    if isinstance(module, nn.MaxPool2d):
        return "max_pool2d", {k: getattr(module, k) for k in ("kernel_size", "stride", "padding", "dilation",
                                                               "ceil_mode", "return_indices")}
    if isinstance(module, nn.AvgPool2d):
        return "avg_pool2d", {k: getattr(module, k) for k in ("kernel_size", "stride", "padding", "ceil_mode",
                                                               "count_include_pad", "divisor_override")}
    if isinstance(module, nn.Flatten):
        return "flatten", {"start_dim": module.start_dim, "end_dim": module.end_dim}
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return "softmax", {}
    if isinstance(module, (nn.Dropout, nn.Dropout2d, nn.Identity)):
        return "identity", {}
    return None, kind


# ---------------------------------------------------------------------------------------------
# lowering: canonical calls -> FloatOp chains

def _float_op(call):
    """FloatOp of one canonical call, ``None`` for one that is dropped, or a reason string."""
    p, name = call.params, call.name
    if call.op == "linear":
        return FloatOp("linear", name, _tensor(p["weight"]), _tensor(p["bias"]))
    if call.op == "conv2d":
        if isinstance(p["padding"], str):
            if p["padding"] != "valid":
                return f"Conv2d with padding={p['padding']!r}"
            p["padding"] = 0
        weight = _tensor(p["weight"])
        if p["groups"] != 1 or _pair(p["dilation"]) != (1, 1) or weight.dim() != 4:
            return "Conv2d with groups or dilation (only groups=1, dilation=1)"
        return FloatOp("conv2d", name, weight, _tensor(p["bias"]), _pair(weight.shape[2:]),
                       _pair(p["stride"]), _pair(p["padding"]))
    if call.op == "batch_norm":
        return FloatOp("batchnorm", name, extra={k: _tensor(p[k]) for k in
                                                  ("running_mean", "running_var", "weight", "bias")}
                       | {"eps": float(p["eps"])})
    if call.op == "relu":
        return FloatOp("relu", name)
    if call.op in ("prelu", "leaky_relu"):
        slope = p["weight"] if call.op == "prelu" else [p["negative_slope"]]
        return FloatOp("prelu", name, slope=_tensor(slope).reshape(-1))
    if call.op in ("max_pool2d", "avg_pool2d"):
        kernel = _pair(p["kernel_size"])
        stride = _pair(p["stride"]) if p["stride"] not in (None, [], ()) else kernel
        padding = _pair(p["padding"])
        if _pair(p.get("dilation", 1)) != (1, 1) or p.get("return_indices") or p.get("divisor_override"):
            return "pooling with dilation, return_indices or divisor_override"
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            return "pooling with padding above half the kernel"
        return FloatOp("maxpool" if call.op == "max_pool2d" else "avgpool", name, kernel=kernel,
                       stride=stride, padding=padding, ceil_mode=bool(p["ceil_mode"]),
                       count_include_pad=p.get("count_include_pad") is not False)
    if call.op == "flatten":
        return FloatOp("reshape", name, extra={"start_dim": p["start_dim"], "end_dim": p["end_dim"]})
    if call.op == "reshape":
        return FloatOp("reshape", name, extra={"shape": list(p["shape"])})
    if call.op == "permute":
        return FloatOp("permute", name, extra={"dims": [int(d) for d in p["dims"]]})
    if call.op == "softmax":
        return FloatOp("softmax", name)
    return None


def _chains(graph):
    """Trunk calls and one call chain per output (a tree: one fork, at the trunk's end)."""
    consumers = {}
    for call in graph.calls:
        for value in call.data:
            consumers.setdefault(value, []).append(call)

    def follow(value, chain, fork_ok):
        while True:
            users = consumers.get(value, [])
            if len(users) == 1 and value not in graph.outputs:
                chain.append(users[0])
                value = users[0].out
                continue
            if not users:
                return chain, value, []
            if not fork_ok:
                raise TernacError(f"{chain[-1].name if chain else 'the input'} feeds several operations "
                                  "inside a head: ternac maps one trunk with one chain per output")
            return chain, value, users

    trunk, end, users = follow(graph.input, [], True)
    if not users:
        return trunk, []
    heads = {}
    for call in users:
        chain, out, _ = follow(call.out, [call], False)
        heads[out] = chain
    if end in graph.outputs:
        heads[end] = []
    missing = [out for out in graph.outputs if out not in heads]
    if missing or len(heads) != len(graph.outputs):
        raise TernacError("the network's outputs are not one chain per output after a shared trunk")
    return trunk, [heads[out] for out in graph.outputs]


def lower(graph, input_shape=None):
    """:class:`FloatNet` of a captured :class:`Graph` (see the module docstring)."""
    bad = [f"layer {c.name} ({c.what})" for c in graph.calls if c.op is None]
    bad += [f"layer {c.name} (reads {len(c.data)} tensors: residual/concat)" for c in graph.calls
            if c.op is not None and len(c.data) != 1]
    if bad:
        raise TernacError(f"{len(bad)} operation{'s' if len(bad) > 1 else ''} cannot be mapped to ternac: "
                          f"{', '.join(bad)}; supported: {SUPPORTED}")
    trunk, heads = _chains(graph)
    notes, chains = [], []
    for calls in [trunk, *heads]:
        ops = []
        for call in calls:
            op = _float_op(call)
            if isinstance(op, str):
                bad.append(f"layer {call.name} ({op})")
            elif op is not None:
                ops.append(op)
        chains.append(ops)
    if bad:
        raise TernacError(f"{len(bad)} operation{'s' if len(bad) > 1 else ''} cannot be mapped to ternac: "
                          f"{', '.join(bad)}; supported: {SUPPORTED}")
    for ops in chains:
        if ops and ops[-1].kind == "softmax":
            notes.append(f"dropped the trailing {ops.pop().name} (softmax): the outputs are logits, "
                         "their argmax is unchanged")
        for op in ops:
            if op.kind == "softmax":
                raise TernacError(f"layer {op.name} (Softmax) is not the last operation: not supported")
        _fold_batchnorms(ops)
    net = FloatNet(chains[0], chains[1:], None, notes)
    if not net.weight_ops:
        raise TernacError("the model has no Linear or Conv2d layer to quantize")
    net.input_shape = _input_shape(net, input_shape or graph.input_shape)
    _resolve_shapes(net)
    _linear_over_map_as_conv(net)
    return net


def _linear_over_map_as_conv(net):
    """A Linear reading a flattened C x H x W feature map becomes the equal Conv2d with an
    H x W kernel (then a Flatten of its 1x1 output).

    Same function; but the conv's coded columns run (y, x, channel) (``model/layout.py``), the
    order in which the accelerator stores a map, so the layer is mappable. A Flatten of the
    network's input is left alone: the input arrives as a vector.
    """
    shape, seen_map_op = tuple(net.input_shape), False
    chains = [(net.ops, shape)]
    while chains:
        ops, shape = chains.pop()
        for i, op in enumerate(ops):
            if op.kind == "flatten" and len(shape) == 3 and shape[1] * shape[2] > 1 and seen_map_op:
                followers = [ops[i + 1]] if i + 1 < len(ops) else [head[0] for head in net.heads if head]
                if followers and all(f.kind == "linear" for f in followers):
                    for linear in followers:
                        linear.kind, linear.kernel = "conv2d", shape[1:]
                        linear.stride, linear.padding = (1, 1), (0, 0)
                        linear.weight = linear.weight.reshape(linear.weight.shape[0], *shape)
                    ops.remove(op)
                    _insert_flatten_after(net, ops, followers, op)
                    return _linear_over_map_as_conv(net)            # shapes changed: walk again
            seen_map_op = seen_map_op or op.kind in ("conv2d", "maxpool", "avgpool")
            shape = shape_after(op, shape)
        if ops is net.ops:
            chains += [(head, shape) for head in net.heads]


def _insert_flatten_after(net, ops, convs, flatten):
    """Put ``flatten`` (now of a 1x1 map) after each new conv and its activation, if any."""
    for conv in convs:
        chain = next(c for c in net.chains if conv in c)
        at = chain.index(conv) + 1
        if at < len(chain) and chain[at].kind in ("relu", "prelu"):
            at += 1
        chain.insert(at, FloatOp("flatten", f"{flatten.name}", extra={}))


# ---------------------------------------------------------------------------------------------
# BatchNorm folding

def _bn_affine(bn):
    """Per-channel ``(factor, shift)`` of an eval-mode BatchNorm: ``y = factor * x + shift``."""
    e = bn.extra
    gamma = e["weight"] if e["weight"] is not None else torch.ones_like(e["running_mean"])
    beta = e["bias"] if e["bias"] is not None else torch.zeros_like(e["running_mean"])
    return gamma / torch.sqrt(e["running_var"] + e["eps"]), beta


def _fold_batchnorms(ops):
    """Fold every BatchNorm of a chain into the Linear/Conv2d before it, else the one after it."""
    i = 0
    while i < len(ops):
        bn = ops[i]
        if bn.kind != "batchnorm":
            i += 1
            continue
        factor, beta = _bn_affine(bn)
        if i > 0 and ops[i - 1].kind in ("linear", "conv2d"):
            # the formula torch.onnx.export uses, so all front ends give identical float32 weights
            op = ops[i - 1]
            op.weight = op.weight * factor.reshape((-1,) + (1,) * (op.weight.dim() - 1))
            bias = op.bias if op.bias is not None else torch.zeros_like(factor)
            op.bias = (bias - bn.extra["running_mean"]) * factor + beta
        else:
            _fold_forward(ops, i, factor, beta - bn.extra["running_mean"] * factor)
        del ops[i]


def _fold_forward(ops, i, factor, shift):
    """Fold ``x -> factor * x + shift`` (per input channel) into the next Linear/Conv2d."""
    bn = ops[i]
    nxt = next((op for op in ops[i + 1:] if op.kind != "reshape"), None)
    if nxt is None or nxt.kind not in ("linear", "conv2d"):
        raise TernacError(f"layer {bn.name} (BatchNorm) can be folded only next to a Linear or Conv2d "
                          f"(directly before, or after it with only a flatten between); it is followed by "
                          f"{nxt.kind + ' ' + nxt.name if nxt else 'nothing'}")
    if nxt.kind == "conv2d" and any(nxt.padding) and bool((shift != 0).any()):
        raise TernacError(f"layer {bn.name} (BatchNorm) cannot be folded into {nxt.name}: {nxt.name} pads "
                          "its input with zeros and the BatchNorm shift is non-zero, so the padded border would "
                          "change; put the BatchNorm before the activation (after the Conv2d) or use padding=0")
    w = nxt.weight
    channels = len(factor)
    if w.shape[1] % channels:
        raise TernacError(f"layer {bn.name} (BatchNorm, {channels} channels) does not match {nxt.name}'s "
                          f"{w.shape[1]} inputs")
    repeat = w.shape[1] // channels if nxt.kind == "linear" else 1       # Linear after a C-major flatten
    scale_in, shift_in = factor.repeat_interleave(repeat), shift.repeat_interleave(repeat)
    shape = (1, -1) + (1,) * (w.dim() - 2)
    bias = nxt.bias if nxt.bias is not None else torch.zeros(w.shape[0])
    nxt.bias = bias + (w * shift_in.reshape(shape)).flatten(1).sum(1)
    nxt.weight = w * scale_in.reshape(shape)


# ---------------------------------------------------------------------------------------------
# shapes: input shape, flatten checks, permute folding

def _input_shape(net, given):
    if given:
        return tuple(int(v) for v in given)
    first = next(op for op in net.ops + (net.heads or [[]])[0] if op.kind not in ("reshape", "permute"))
    if first.kind == "linear":
        return (first.weight.shape[1],)
    raise TernacError(f"the first layer {first.name} is a {first.kind}: give the input shape "
                      "(ternac pack --input-shape C,H,W)")


def shape_after(op, shape):
    """Per-sample output shape of one :class:`FloatOp`."""
    if op.kind == "flatten":
        return (int(np.prod(shape)),)
    if op.kind in ("maxpool", "avgpool"):
        return (shape[0],) + tuple(pool_output_size(s, k, st, p, op.ceil_mode)
                                   for s, k, st, p in zip(shape[1:], op.kernel, op.stride, op.padding))
    if op.kind == "conv2d":
        (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
        return (op.weight.shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1)
    if op.kind == "linear":
        return (op.weight.shape[0],)
    return shape


def _is_flatten(op, shape):
    """True when a reshape/flatten op maps (B, *shape) to (B, prod(shape))."""
    e, size = op.extra, int(np.prod(shape))
    if "shape" not in e:
        rank = len(shape) + 1
        return e["start_dim"] % rank == 1 and e["end_dim"] % rank == rank - 1
    target = e["shape"]
    if len(target) != 2:
        return False
    batch, rest = target
    return rest in (-1, size, SHAPE) or (batch == -1 and rest == size)


def _resolve_shapes(net):
    """Check every chain's geometry, turn reshapes into flattens, fold permutes into Linears."""
    trunk = _resolve_chain(net.ops, tuple(net.input_shape))
    for head in net.heads:
        _resolve_chain(head, trunk)


def _resolve_chain(ops, shape):
    permute = None
    for op in list(ops):
        if op.kind == "permute":
            dims = op.extra["dims"]
            if sorted(dims) != list(range(len(shape) + 1)) or dims[0] != 0:
                raise TernacError(f"layer {op.name} (permute {dims}) must keep the batch dimension first")
            permute, shape = (op, shape, dims), tuple(shape[d - 1] for d in dims[1:])
            ops.remove(op)
            continue
        if op.kind == "reshape":
            if not _is_flatten(op, shape):
                raise TernacError(f"layer {op.name} reshapes {shape} to {op.extra.get('shape', op.extra)}: only a "
                                  "flatten to (batch, -1) is supported")
            op.kind, op.extra = "flatten", {}
            if len(shape) == 1:
                ops.remove(op)                          # already flat
                continue
        elif permute is not None:
            if op.kind != "linear":
                raise TernacError(f"layer {permute[0].name} (permute) must be followed by a flatten and a "
                                  f"Linear to be folded; it is followed by {op.name}")
            _fold_permute(op, *permute)
            permute = None
        _check_input(op, shape)
        shape = shape_after(op, shape)
    if permute is not None:
        raise TernacError(f"layer {permute[0].name} (permute) must be followed by a flatten and a Linear")
    return shape


def _check_input(op, shape):
    if op.kind == "conv2d" and (len(shape) != 3 or shape[0] != op.weight.shape[1]):
        raise TernacError(f"layer {op.name} (Conv2d, {op.weight.shape[1]} input channels) gets input {shape}")
    if op.kind in ("maxpool", "avgpool") and len(shape) != 3:
        raise TernacError(f"layer {op.name} ({op.kind}) needs a (C, H, W) input, gets {shape}")
    if op.kind == "linear" and int(np.prod(shape)) != op.weight.shape[1]:
        raise TernacError(f"layer {op.name} (Linear, {op.weight.shape[1]} inputs) gets "
                          f"{int(np.prod(shape))} values {shape}")
    if op.kind == "prelu" and len(op.slope) not in (1, shape[0]):
        raise TernacError(f"layer {op.name} (PReLU, {len(op.slope)} slopes) gets {shape[0]} channels")


def _fold_permute(linear, permute, shape, dims):
    """Reorder a Linear's columns so that it reads the un-permuted, C-major flattened input."""
    order = torch.arange(int(np.prod(shape))).reshape(shape).permute([d - 1 for d in dims[1:]]).flatten()
    weight = torch.empty_like(linear.weight)
    weight[:, order] = linear.weight            # column j of the permuted input is C-major index order[j]
    linear.weight = weight
