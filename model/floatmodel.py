"""An eager float module holding an imported :class:`importer.FloatNet` (BatchNorm folded).

It runs the float network exactly as imported -- the reference the ternary network is
measured against -- and is what ``ternac train --model`` retrains: the trunk is one
``nn.Sequential``, every output head another; ``forward`` returns a tensor, or a tuple with
one tensor per head.
"""

import torch
from torch import nn

from .codebook import TernacError

__all__ = ["FloatModel"]


def _module(op):
    if op.kind == "linear":
        layer = nn.Linear(op.weight.shape[1], op.weight.shape[0])
    elif op.kind == "conv2d":
        layer = nn.Conv2d(op.weight.shape[1], op.weight.shape[0], op.kernel, op.stride, op.padding)
    elif op.kind == "relu":
        return nn.ReLU()
    elif op.kind == "prelu":
        layer = nn.PReLU(len(op.slope))
        with torch.no_grad():
            layer.weight.copy_(op.slope)
        return layer
    elif op.kind == "flatten":
        return nn.Flatten()
    elif op.kind == "maxpool":
        return nn.MaxPool2d(op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode)
    elif op.kind == "avgpool":
        return nn.AvgPool2d(op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode,
                            count_include_pad=op.count_include_pad)
    else:
        raise TernacError(f"layer {op.name} ({op.kind}) cannot be rebuilt as a float module")
    with torch.no_grad():
        layer.weight.copy_(op.weight)
        layer.bias.copy_(op.bias if op.bias is not None else torch.zeros(op.weight.shape[0]))
    return layer


class FloatModel(nn.Module):
    """Float trunk (``self.trunk``) and heads (``self.heads``) of an imported network."""

    def __init__(self, net):
        super().__init__()
        self.trunk = nn.Sequential(*map(_module, net.ops))
        self.heads = nn.ModuleList(nn.Sequential(*map(_module, head)) for head in net.heads)

    def forward(self, x):
        x = self.trunk(x)
        return tuple(head(x) for head in self.heads) if len(self.heads) else x
