"""The baseline CNN of the FER studies: two conv blocks, one dense layer (1,199,495 parameters at 48x48x1)."""
from __future__ import annotations

import torch.nn as nn

from ferkit.models.registry import register_model


class BaselineCNN(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, input_size: int = 48, dropout: float = 0.25):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("baseline_cnn", description="2 conv blocks (32, 64) + dense 128; the studies' baseline")
def baseline_cnn(num_classes: int = 7, in_chans: int = 1, input_size: int = 48, **kwargs) -> nn.Module:
    return BaselineCNN(num_classes, in_chans, input_size, **kwargs)
