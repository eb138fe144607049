"""A model's own config: what inference needs to build it and feed it. Plain data, no torch, so the ONNX
backend (which embeds it in each export) reads it too."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ferkit.labels import EMOTIONS
from ferkit.transforms.views import crop_side


@dataclass
class ModelConfig:
    """Everything inference needs to build a model and feed it: the checkpoint describes itself."""

    arch: str
    num_classes: int = 7
    in_chans: int = 1
    input_size: int = 48
    labels: list[str] = field(default_factory=lambda: list(EMOTIONS))
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Inference settings chosen at training time: test-time augmentation and the calibration temperature.
    tta: str = "none"  # one of ferkit.transforms.views.TTA_MODES
    temperature: float = 1.0
    # Face crop the model was trained on: square box side = face box side * (1 + 2 * crop_margin).
    crop_margin: float = 0.0
    # Centre share of each face crop the model sees, at input_size: 40/48 gives the classic FER2013 40-of-48
    # px crops at native resolution; 1.0 feeds the whole crop, resized.
    face_crop: float = 1.0

    @property
    def crop_size(self) -> int:
        """Side of the face crops to feed: its centre ``face_crop`` is then exactly ``input_size`` pixels."""
        return crop_side(self.input_size, self.face_crop)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
