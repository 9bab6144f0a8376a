"""Float networks written the way people write them, for the importer tests."""

import torch
from torch import nn
from torch.nn import functional as F


class TwoHeadCNN(nn.Module):
    """A small CNN with BatchNorm, PReLU, ceil_mode max pooling and two heads (1x13x13 input).

    BatchNorm both right after a convolution (``bn1``, ``bn2``) and after an activation and
    pooling (``bn3``, folded into ``fc``); functional calls and ``x.view(x.size(0), -1)``;
    a class head (log-softmax, dropped on import) and a box-regression head.
    """

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 12, 3)
        self.bn2 = nn.BatchNorm2d(12)
        self.bn3 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 3 * 3, 24)
        self.cls = nn.Linear(24, 5)
        self.box = nn.Linear(24, 4)
        with torch.no_grad():                       # trained-looking statistics and slopes
            for bn in (self.bn1, self.bn2, self.bn3):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.2, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.3, 0.3)
            self.act1.weight.uniform_(-0.2, 0.4)
        self.eval()

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))                           # 13x13
        x = F.max_pool2d(x, 2, ceil_mode=True)                           # 7x7 (6x6 without ceil_mode)
        x = F.leaky_relu(self.bn2(self.conv2(x)), 0.1)                   # 5x5
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)      # 3x3
        x = self.bn3(x)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc(x))
        return F.log_softmax(self.cls(x), dim=1), self.box(x)


def two_head_network(seed=0):
    """:class:`TwoHeadCNN` quantized at (8,2), calibrated on uniform inputs."""
    from ternac.model.codebook import Coding
    from ternac.model.convert import quantize_network

    calibration = torch.rand(64, 1, 13, 13, generator=torch.Generator().manual_seed(seed))
    return quantize_network(TwoHeadCNN(seed), Coding(8, 2), calibration, input_shape=(1, 13, 13))
