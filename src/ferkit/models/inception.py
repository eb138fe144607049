"""Inception-v3 with torchvision's state-dict names and shapes.

Keys follow torchvision (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.conv.weight``,
``Mixed_7c.branch_pool.bn.running_var``, ``AuxLogits.fc.weight``, ``fc.weight``), so an ImageNet file loads
with ``ferkit.models.pretrained.load_pretrained``. Differences from torchvision's module:

- ``aux_logits`` defaults to False, so the model returns plain logits like every ferkit model. With
  ``aux_logits=True`` a training-mode forward returns ``(logits, aux_logits)``; eval returns logits only.
  When the auxiliary head is absent, a file's ``AuxLogits.*`` keys are dropped on load.
- There is no ``transform_input``: ferkit normalises inputs from the checkpoint config.

Small inputs: torchvision's network needs at least 75 px (at 48 px ``Mixed_7a`` would see a 1x1 map).
Below 75 px the first conv runs at stride 1 and the first max-pool is skipped, so a 48 px face flows as
46 -> 44 -> 42 -> 20 (Mixed_5) -> 9 (Mixed_6) -> 4 (Mixed_7); the smallest input is then 23 px. The auxiliary
head pools its 17x17 input to 5x5 with a 5x5/3 window; for smaller maps it pools adaptively to 5x5 instead.
Parameter shapes never change, so ImageNet weights load at any size.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.models.registry import register_model

SMALL_INPUT = 75  # torchvision's documented minimum side


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as in the TensorFlow original) -> ReLU."""

    def __init__(self, in_chans: int, out_chans: int, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_chans, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    """35x35 grid block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_chans: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_chans, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_chans, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_chans, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: strided 3x3, strided double 3x3, max-pool."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_chans, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, b3d, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 grid block: 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_chans: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_chans, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_chans, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_chans, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_chans, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = conv(b7d)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b7, b7d, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_chans, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_chans, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 grid block with expanded filter banks (parallel 1x3 and 3x1 outputs)."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_chans, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_chans, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_chans, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b3, b3d, bp], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid, used only as an extra training loss."""

    def __init__(self, in_chans: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_chans, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)
        # Smaller init scales for the side branch (read by Inception3's init loop).
        self.conv1.conv.stddev = 0.01  # type: ignore[assignment]
        self.fc.stddev = 0.001  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv1 needs a 5x5 map: the original window gives it at 17x17; smaller maps are pooled adaptively.
        x = F.avg_pool2d(x, 5, stride=3) if min(x.shape[-2:]) >= 17 else F.adaptive_avg_pool2d(x, 5)
        x = self.conv1(self.conv0(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Inception3(nn.Module):
    # ImageNet files carry the auxiliary head; ours has it only with aux_logits=True.
    pretrained_cfg = {"first_conv": "Conv2d_1a_3x3.conv", "classifier": ("fc", "AuxLogits.fc"),
                      "optional": ("AuxLogits.",)}
    _STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
    _MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
              "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, num_classes: int = 7, in_chans: int = 1, input_size: int = 299, aux_logits: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        small = input_size < SMALL_INPUT
        self.Conv2d_1a_3x3 = BasicConv2d(in_chans, 32, kernel_size=3, stride=1 if small else 2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.Identity() if small else nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.num_features = 2048
        self.fc = nn.Linear(2048, num_classes)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = float(getattr(m, "stddev", 0.1))
                nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def layer_groups(self) -> list[list[str]]:
        groups = [[name] for name in self._STEM + self._MIXED]
        head = ["fc"] + (["AuxLogits"] if self.AuxLogits is not None else [])
        return groups + [head]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x))))
        for name in self._MIXED[:8]:
            x = getattr(self, name)(x)
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        for name in self._MIXED[8:]:
            x = getattr(self, name)(x)
        x = self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))
        return (x, aux) if aux is not None else x


@register_model("inception_v3", default_input_size=299,
                description="Inception-v3 (torchvision weights layout); stride-1 stem, no first pool below 75 px")
def inception_v3(num_classes: int = 7, in_chans: int = 1, input_size: int = 299, **kwargs) -> Inception3:
    return Inception3(num_classes, in_chans, input_size, **kwargs)
