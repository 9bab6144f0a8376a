"""Front end for eager ``nn.Module`` s: ``torch.fx`` symbolic tracing to canonical calls.

Leaf modules (Linear, Conv2d, ...) become calls through :func:`importer.module_call`;
functional calls and tensor methods through :data:`FUNCTIONS` / :data:`METHODS`. Values
computed from shapes (``x.size(0)``, ``x.shape[0]``, arithmetic on them) are
:data:`importer.SHAPE`, so ``x.view(x.size(0), -1)`` reads as a flatten.
"""

import builtins
import operator

import torch
from torch.nn import functional as F

from .codebook import TernacError
from .importer import SHAPE, SIGNATURES, Call, Graph, bind, module_call

__all__ = ["FUNCTIONS", "METHODS", "capture_fx"]

FUNCTIONS = {
    F.relu: "relu", torch.relu: "relu", F.prelu: "prelu", torch.prelu: "prelu", F.leaky_relu: "leaky_relu",
    F.max_pool2d: "max_pool2d", torch.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d",
    torch.flatten: "flatten", torch.reshape: "reshape", torch.permute: "permute",
    F.linear: "linear", F.conv2d: "conv2d", torch.conv2d: "conv2d", F.batch_norm: "batch_norm",
    F.softmax: "softmax", F.log_softmax: "softmax", torch.softmax: "softmax", torch.log_softmax: "softmax",
    F.dropout: "identity", F.dropout2d: "identity",
}
METHODS = {"view": "reshape", "reshape": "reshape", "flatten": "flatten", "permute": "permute",
           "relu": "relu", "softmax": "softmax", "log_softmax": "softmax", "contiguous": "identity"}
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ARITHMETIC = {operator.getitem, operator.mul, operator.floordiv, operator.add, builtins.getattr}


def capture_fx(model):
    """The :class:`importer.Graph` of an eager module."""
    name = type(model).__name__
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 -- fx raises many types
        raise TernacError(f"{name}.forward cannot be traced with torch.fx "
                          f"({str(error).splitlines()[0]}); save it as TorchScript (torch.jit.trace) "
                          "or ONNX (torch.onnx.export) instead") from None
    modules = dict(traced.named_modules())
    values, calls, graph_input, outputs = {}, [], None, []

    def value(arg):
        if isinstance(arg, torch.fx.Node):
            return values[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(value(a) for a in arg)
        return arg

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if graph_input is not None:
                calls.append(Call(node.name, None, [node], node, what="a second network input"))
            graph_input = graph_input or node
            values[node] = node
        elif node.op == "get_attr":
            values[node] = traced.get_parameter(node.target) if "." not in node.target \
                else operator.attrgetter(node.target)(traced)
        elif node.op == "output":
            result = node.args[0]
            outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        else:
            args, kwargs = value(node.args), value(node.kwargs)
            data = [a for a in node.all_input_nodes if isinstance(values[a], torch.fx.Node)]
            if _is_shape(node, args):
                values[node] = SHAPE
                continue
            values[node] = node
            calls.append(_call(node, modules, args, kwargs, data))
    return Graph(graph_input, calls, outputs)


def _is_shape(node, args):
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target in _SHAPE_ARITHMETIC:
        return any(a is SHAPE or (isinstance(a, str) and a == "shape") for a in args)
    return False


def _call(node, modules, args, kwargs, data):
    if node.op == "call_module":
        op, params = module_call(modules[node.target])
        if op is None:
            return Call(node.target, None, data, node, what=params)
        return Call(node.target, op, data, node, params)
    op = (FUNCTIONS if node.op == "call_function" else METHODS).get(node.target)
    if op is None:
        what = getattr(node.target, "__name__", str(node.target))
        return Call(node.name, None, data, node, what=f"{'method ' if node.op == 'call_method' else ''}{what}")
    params = bind(SIGNATURES[op], args, kwargs, node.name)
    return Call(node.name, op, data, node, params)
