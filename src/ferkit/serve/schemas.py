"""The API's JSON shapes, for the OpenAPI document at /docs. Handlers build plain dicts (the ``predict --json``
face contract comes from ``FaceResult.to_dict``); these models describe them and are not run per request."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class Error(BaseModel):
    error: str = Field(description="what was wrong and how to fix it")


class Face(BaseModel):
    """One face, exactly as `ferkit predict --json` reports it."""

    box: list[int] = Field(description="x, y, width, height in image pixels")
    score: float = Field(description="the face detector's confidence")
    landmarks: Optional[list[list[float]]] = Field(
        description="5 points (eyes, nose, mouth corners), x, y; null for detectors without landmarks")
    emotion: Optional[str] = Field(description="the most probable expression; null for a face too small to classify")
    probs: dict[str, float] = Field(description="probability per expression label")


class Prediction(BaseModel):
    faces: list[Face]
    width: int
    height: int


class BatchItem(BaseModel):
    name: str = Field(description="the part's file name")
    faces: Optional[list[Face]] = None
    width: Optional[int] = None
    height: Optional[int] = None
    error: Optional[str] = Field(None, description="why this image could not be read (the others still are)")


class BatchPrediction(BaseModel):
    results: list[BatchItem]


class Overlay(BaseModel):
    method: str
    target: str = Field(description="the expression the map explains: the face's predicted one")
    layer: Optional[str] = Field(description="the layer Grad-CAM used")
    png: str = Field(description="the face with the heatmap blended on it, PNG, base64")


class ExplainedFace(Face):
    explanation: Optional[Overlay] = Field(None, description="absent for a face too small to classify")


class ExplainResult(BaseModel):
    faces: list[ExplainedFace]
    width: int
    height: int


class Card(BaseModel):
    name: str
    split: Optional[str] = Field(description="the split the reported numbers come from (FER2013 publictest)")
    n: Optional[int]
    tta: str
    accuracy: Optional[float] = Field(description="accuracy with the test-time augmentation this server runs")
    accuracy_by_tta: dict[str, float]
    macro_f1: Optional[float]
    ece: Optional[float]


class ModelInfo(BaseModel):
    model: str
    arch: Optional[str]
    labels: list[str]
    input_size: int
    backend: str
    tta: str
    classifier: str
    detector: str
    card: Optional[Card] = Field(description="the model card's numbers; null for a model without them")


class Health(BaseModel):
    status: str = Field(description="ok")
    ready: bool = Field(description="the model is loaded and the inference threads run")
    version: str
    model: str
    pool: dict[str, int]
    explain: bool
    video: bool


class JobAccepted(BaseModel):
    id: str
    status: str
    url: str = Field(description="poll this for progress and the result")


class JobStatus(BaseModel):
    id: str
    status: str = Field(description="queued, running, done or failed")
    progress: float = Field(description="0 to 1")
    name: str
    result: Optional[dict] = Field(None, description="when done: timeline, summary (per track), plot_png (base64)")
    error: Optional[str] = None
