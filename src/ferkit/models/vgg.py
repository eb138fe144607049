"""VGG family: ``vgg_fer`` for 48x48 faces and torchvision-compatible ``vgg16`` / ``vgg16_bn``.

``vgg_fer`` follows the VGG-style network of the FER2013 studies: four stages of two 3x3 conv + batch norm +
ReLU (64, 128, 256, 512 filters), each closed by 2x2 max-pooling and dropout, then a 4096-unit dense layer
with dropout and the class logits (softmax is applied at inference, the loss works on logits). The studies put
an L2 penalty on the dense layer; here that is the optimiser's weight decay, and the model carries the value
it was tuned with as ``recommended_weight_decay`` (PyTorch's coupled weight decay ``wd`` equals a Keras
``l2(wd / 2)`` penalty). An adaptive average pool to 3x3 before the dense layer is the identity at 48 px and
lets other sizes run with the same weights.

``vgg16`` / ``vgg16_bn`` have torchvision's state-dict names and shapes (``features.0.weight``,
``classifier.0.weight`` ... ``classifier.6.weight``), so an ImageNet file loads with
``ferkit.models.pretrained.load_pretrained``. As in torchvision, the classifier follows an adaptive average
pool to 7x7, so any input size fits the 25088-input dense layer. Small inputs: five 2x2 max-pools reduce a
48 px face to 1x1; below 112 px the last max-pool is skipped (it has no weights), keeping a 3x3 map.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ferkit.models.registry import register_model

SMALL_INPUT = 112
# torchvision's configuration "D": conv widths, "M" for a 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                     512, 512, 512, "M")


class VGGFer(nn.Module):
    pretrained_cfg = {"first_conv": "features.0", "classifier": "classifier.4"}
    recommended_weight_decay = 1e-4  # L2 on the weights, applied by the optimiser

    def __init__(self, num_classes: int = 7, in_chans: int = 1, input_size: int = 48,
                 widths: tuple[int, ...] = (64, 128, 256, 512), hidden: int = 4096, dropout: float = 0.5,
                 conv_dropout: float = 0.25):
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                chans = width
            layers += [nn.MaxPool2d(2), nn.Dropout(conv_dropout)]
        self.features = nn.Sequential(*layers)
        # 48 px / 2^4 = 3: the pool is a no-op at the native size and keeps the dense layer's shape elsewhere.
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.num_features = chans * 9
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(self.num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def layer_groups(self) -> list[list[str]]:
        return _stage_groups(self.features, (nn.Dropout,)) + [["classifier.1"], ["classifier.4"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class VGG(nn.Module):
    pretrained_cfg = {"first_conv": "features.0", "classifier": "classifier.6"}

    def __init__(self, cfg: tuple[int | str, ...] = _VGG16_CFG, batch_norm: bool = False, num_classes: int = 7,
                 in_chans: int = 1, input_size: int = 224, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for i, v in enumerate(cfg):
            if v == "M":
                last = i == len(cfg) - 1
                layers.append(nn.Identity() if last and input_size < SMALL_INPUT else nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(chans, int(v), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            chans = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(chans * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def layer_groups(self) -> list[list[str]]:
        stages = _stage_groups(self.features, (nn.MaxPool2d, nn.Identity))
        return stages + [["classifier.0"], ["classifier.3"], ["classifier.6"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _stage_groups(features: nn.Sequential, stage_end: tuple[type[nn.Module], ...]) -> list[list[str]]:
    """One group per stage: consecutive layers of ``features`` up to and including a ``stage_end`` layer."""
    groups: list[list[str]] = [[]]
    for i, layer in enumerate(features):
        groups[-1].append(f"features.{i}")
        if isinstance(layer, stage_end):
            groups.append([])
    return [g for g in groups if g]


@register_model("vgg_fer", default_input_size=48,
                description="VGG-style FER net: 4x(2 conv3x3+BN) 64-512, max-pool, dropout, dense 4096")
def vgg_fer(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> VGGFer:
    return VGGFer(num_classes, in_chans, input_size, **kwargs)


@register_model("vgg16", default_input_size=224,
                description="VGG-16 (torchvision weights layout); last max-pool skipped below 112 px")
def vgg16(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> VGG:
    return VGG(_VGG16_CFG, False, num_classes, in_chans, input_size, **kwargs)


@register_model("vgg16_bn", default_input_size=224,
                description="VGG-16 with batch norm (torchvision weights layout); last max-pool skipped below 112 px")
def vgg16_bn(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> VGG:
    return VGG(_VGG16_CFG, True, num_classes, in_chans, input_size, **kwargs)
