"""Front end for TorchScript modules (traced or scripted): the frozen graph as canonical calls.

``torch.jit.freeze(..., optimize_numerics=False)`` inlines every submodule, turns weights
into constants and removes the eval-mode branches, without folding BatchNorm itself (so the
fold is the importer's, the same for every front end). aten operators map to the canonical
calls by :data:`ATEN`; operators on shapes (``aten::size``) give :data:`importer.SHAPE`.
"""

import warnings
from pathlib import Path

import torch

from .codebook import TernacError
from .importer import SHAPE, SIGNATURES, Call, Graph, bind

__all__ = ["ATEN", "capture_jit"]

# aten operator -> (canonical op, its parameter order when it differs from SIGNATURES)
ATEN = {
    "linear": ("linear", None), "conv2d": ("conv2d", None),
    "_convolution": ("conv2d", "input weight bias stride padding dilation transposed output_padding groups *rest"),
    "batch_norm": ("batch_norm", "input weight bias running_mean running_var training momentum eps *rest"),
    "relu": ("relu", None), "prelu": ("prelu", None), "leaky_relu": ("leaky_relu", None),
    "max_pool2d": ("max_pool2d", None), "avg_pool2d": ("avg_pool2d", None),
    "flatten": ("flatten", None), "view": ("reshape", None), "reshape": ("reshape", None),
    "permute": ("permute", None), "softmax": ("softmax", None), "log_softmax": ("softmax", None),
    "dropout": ("identity", None), "feature_dropout": ("identity", None), "contiguous": ("identity", None),
}


def capture_jit(module):
    """The :class:`importer.Graph` of a TorchScript module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(module.eval(), optimize_numerics=False).graph
    except Exception as error:  # noqa: BLE001 -- the JIT raises many types
        raise TernacError(f"TorchScript module {module.original_name} cannot be frozen for import "
                          f"({str(error).splitlines()[0]}); export it to ONNX instead") from None
    inputs = list(graph.inputs())[1:]                   # the first is the module itself
    data = {v.unique() for v in inputs[:1]}
    values, calls, counts = {}, [], {}
    for extra in inputs[1:]:
        calls.append(Call(extra.debugName(), None, [extra.unique()], extra.unique(), what="a second network input"))
    for node in graph.nodes():
        kind, outs = node.kind(), list(node.outputs())
        reads = [v.unique() for v in node.inputs() if v.unique() in data]
        if kind == "prim::Constant":
            values[outs[0].unique()] = outs[0].toIValue()
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            items = [v.unique() if v.unique() in data else values.get(v.unique(), SHAPE) for v in node.inputs()]
            values[outs[0].unique()] = items
        elif not reads or not any(isinstance(v.type(), torch.TensorType) for v in outs):
            for v in outs:                              # shapes, dims, checks on them
                values[v.unique()] = SHAPE
        else:
            data.add(outs[0].unique())
            calls.append(_call(node, kind, outs[0].unique(), reads, values, counts))
    result = next(iter(graph.outputs())).unique()
    outputs = [result] if result in data else list(values.get(result, [result]))     # a tuple of outputs
    return Graph(inputs[0].unique(), calls, outputs, _traced_shape(module))


def _name(node, op, counts):
    scope = node.scopeName().split("/")[-1].replace("__module.", "")
    if scope:
        return scope
    for v in node.inputs():
        parts = v.debugName().split(".")
        if parts[0] == "self" and len(parts) > 2:
            return ".".join(parts[1:-1])
    counts[op] = counts.get(op, -1) + 1
    return op if counts[op] == 0 else f"{op}_{counts[op]}"


def _call(node, kind, out, reads, values, counts):
    namespace, _, op_name = kind.partition("::")
    op_name = op_name[:-1] if op_name.endswith("_") and not op_name.startswith("_") else op_name
    entry = ATEN.get(op_name) if namespace == "aten" else None
    name = _name(node, op_name, counts)
    if entry is None or list(node.blocks()):
        where = node.sourceRange().split("\n")[0].strip()
        return Call(name, None, reads, out, what=f"{kind}{' at ' + Path(where).name if where else ''}")
    op, signature = entry
    args = [v.unique() if v.unique() in reads else values.get(v.unique(), SHAPE) for v in node.inputs()]
    params = bind(signature or SIGNATURES[op], args, what=name)
    if params.get("transposed"):
        return Call(name, None, reads, out, what="ConvTranspose2d")
    return Call(name, op, reads, out, params)


def _traced_shape(module):
    """Per-sample input shape recorded by tracing, if the graph still holds it."""
    try:
        sizes = list(module.graph.inputs())[1].type().sizes()
    except (RuntimeError, AttributeError, IndexError):
        return None
    return tuple(sizes[1:]) if sizes and all(s is not None for s in sizes) else None
