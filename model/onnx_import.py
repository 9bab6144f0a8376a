"""Front end for ONNX files (as ``torch.onnx.export`` writes them): nodes as canonical calls.

Initializers and ``Constant`` nodes are constants; ``Shape`` and everything computed only
from shapes and constants is :data:`importer.SHAPE` (a dynamic-batch ``x.view(x.size(0), -1)``
becomes ``Shape -> Gather -> Concat -> Reshape``). The ONNX defaults differ from PyTorch's
in places (pooling stride 1, ``count_include_pad=0``); they are applied here.
"""

import torch

from .codebook import TernacError
from .importer import SHAPE, Call, Graph

__all__ = ["capture_onnx"]

_SIMPLE = {"Relu": "relu", "Softmax": "softmax", "LogSoftmax": "softmax", "Dropout": "identity",
           "Identity": "identity"}


def capture_onnx(path):
    """The :class:`importer.Graph` of an ONNX file."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise TernacError("reading ONNX files needs the onnx package: .venv/bin/pip install onnx") from None
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise TernacError(f"model file {path} does not exist") from None
    except Exception as error:  # noqa: BLE001 -- protobuf raises many types
        raise TernacError(f"{path} is not a readable ONNX file ({error})") from None
    graph = model.graph
    consts = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if not inputs:
        raise TernacError(f"{path}: the ONNX graph has no input")
    data, calls = {inputs[0].name}, []
    for extra in inputs[1:]:
        calls.append(Call(extra.name, None, [extra.name], extra.name, what="a second network input"))
    for index, node in enumerate(graph.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        reads = [name for name in node.input if name in data]
        if node.op_type == "Constant":
            consts[node.output[0]] = torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy())
        elif not reads or node.op_type in ("Shape", "Size"):
            consts.update({name: SHAPE for name in node.output})
        else:
            data.add(node.output[0])
            name = "/".join(node.name.strip("/").split("/")[:-1]) or node.name.strip("/") or \
                f"{node.op_type}_{index}"
            args = [consts.get(i) for i in node.input]
            op, params = _translate(node.op_type, attrs, args)
            calls.append(Call(name, op, reads, node.output[0], params if op else {},
                              what="" if op else params))
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    shape = tuple(dims[1:]) if len(dims) > 1 and all(d > 0 for d in dims[1:]) else None
    return Graph(inputs[0].name, calls, [o.name for o in graph.output], shape)


def _pads(attrs, name="pads"):
    """Symmetric ``(top, left)`` padding, or None when begin and end differ."""
    pads = list(attrs.get(name, [0, 0, 0, 0]))
    return tuple(pads[:2]) if pads[:2] == pads[2:] else None


def _translate(op_type, attrs, args):
    """``(canonical op, params)``, or ``(None, why)``."""
    if op_type in _SIMPLE:
        return _SIMPLE[op_type], {}
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        return None, f"{op_type} with auto_pad={attrs['auto_pad']}"
    if op_type == "Conv":
        pads = _pads(attrs)
        if pads is None:
            return None, "Conv with asymmetric padding"
        return "conv2d", {"weight": args[1], "bias": args[2] if len(args) > 2 else None,
                          "stride": attrs.get("strides", [1, 1]), "padding": pads,
                          "dilation": attrs.get("dilations", [1, 1]), "groups": attrs.get("group", 1)}
    if op_type in ("Gemm", "MatMul"):
        weight = args[1]
        if not isinstance(weight, torch.Tensor) or attrs.get("transA", 0):
            return None, f"{op_type} of two computed tensors"
        weight = weight if attrs.get("transB", 0) else weight.T
        bias = args[2] if len(args) > 2 else None
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        return "linear", {"weight": weight * alpha if alpha != 1 else weight,
                          "bias": bias * beta if bias is not None and beta != 1 else bias}
    if op_type == "BatchNormalization":
        return "batch_norm", {"weight": args[1], "bias": args[2], "running_mean": args[3],
                              "running_var": args[4], "eps": attrs.get("epsilon", 1e-5)}
    if op_type == "PRelu":
        return "prelu", {"weight": args[1]}
    if op_type == "LeakyRelu":
        return "leaky_relu", {"negative_slope": attrs.get("alpha", 0.01)}
    if op_type in ("MaxPool", "AveragePool"):
        pads = _pads(attrs)
        if pads is None:
            return None, f"{op_type} with asymmetric padding"
        params = {"kernel_size": attrs["kernel_shape"], "stride": attrs.get("strides", [1, 1]),
                  "padding": pads, "ceil_mode": bool(attrs.get("ceil_mode", 0))}
        if op_type == "MaxPool":
            return "max_pool2d", params | {"dilation": attrs.get("dilations", [1, 1])}
        return "avg_pool2d", params | {"count_include_pad": bool(attrs.get("count_include_pad", 0))}
    if op_type == "Flatten":
        return "flatten", {"start_dim": attrs.get("axis", 1), "end_dim": -1}
    if op_type == "Reshape":
        target = args[1]
        return "reshape", {"shape": target.tolist() if isinstance(target, torch.Tensor) else [SHAPE, SHAPE]}
    if op_type == "Transpose":
        return "permute", {"dims": attrs["perm"]}
    return None, op_type
