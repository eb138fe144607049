"""FERNet: ferkit's own residual network for small grayscale faces (48x48).

Design, measured on the 2-core CPU this project trains on (BENCHMARKS.md):
- full-resolution stem and first stage: expressions live in small details (mouth corners, brow furrows)
  that early striding throws away at 48 px;
- four stages (48, 24, 12, 6 px) of ResNet basic blocks with squeeze-and-excitation, which re-weights
  channels for almost no compute;
- global average pooling and dropout before one linear classifier, so any input size works.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ferkit.models.registry import register_model


def conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, se: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        # No zero-init of bn2 (Goyal et al.'s trick for deep ResNets): in a net this shallow it made every block
        # start as identity and FER2013 training stalled near the majority-class rate for epochs (BENCHMARKS.md).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class FERNet(nn.Module):
    first_conv = "stem.0"
    classifier = "head.2"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: tuple[int, ...] = (1, 1, 2, 1), se: bool = True, dropout: float = 0.3, **_):
        super().__init__()
        self.stem = conv_bn(in_chans, widths[0])
        stages, cin = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, blocks)):
            layers = [BasicBlock(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, se)
                      for j in range(depth)]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)


@register_model("fernet", description="ferkit's own ResNet-SE for 48x48 faces: the shipped default")
def fernet(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> nn.Module:
    kwargs.setdefault("widths", (32, 64, 128, 256))
    kwargs.setdefault("blocks", (1, 1, 2, 1))
    return FERNet(num_classes, in_chans, **kwargs)


@register_model("fernet_s", description="a narrower FERNet for real-time use: the shipped 'fast' model")
def fernet_s(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> nn.Module:
    kwargs.setdefault("widths", (16, 32, 64, 128))
    kwargs.setdefault("blocks", (1, 1, 1, 1))
    return FERNet(num_classes, in_chans, **kwargs)


@register_model("fernet_m", description="FERNet with wider deep stages (32-64-192-384, about 3.3M parameters): "
                                     "about 1.5x fernet's training time on a CPU")
def fernet_m(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> nn.Module:
    # Width goes to the 10 px and 5 px stages, where a CPU runs convolutions most efficiently per FLOP; the
    # full-resolution stages stay as narrow as fernet's.
    kwargs.setdefault("widths", (32, 64, 192, 384))
    kwargs.setdefault("blocks", (1, 1, 2, 1))
    return FERNet(num_classes, in_chans, **kwargs)


@register_model("fernet_l", description="a wider FERNet (64-512 channels, about 6.5M parameters) for GPU training")
def fernet_l(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> nn.Module:
    kwargs.setdefault("widths", (64, 128, 256, 512))
    kwargs.setdefault("blocks", (1, 2, 2, 1))
    return FERNet(num_classes, in_chans, **kwargs)
