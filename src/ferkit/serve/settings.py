"""What a ``ferkit serve`` process is allowed to do: model, detector, limits, token. One frozen record, checked
once, and carried to uvicorn's worker processes as JSON in an environment variable."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from ferkit.errors import FerkitError

#: The bearer token when ``--token`` is not given.
TOKEN_ENV = "FERKIT_TOKEN"
#: How the CLI hands the settings to uvicorn's worker processes (``--workers N`` > 1).
SETTINGS_ENV = "FERKIT_SERVE_SETTINGS"

EXPLAIN_METHODS = ("gradcam", "saliency", "occlusion")
MB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server. model ... tta are the Recognizer's arguments (the same faces and probabilities
    as ``ferkit predict`` with the same flags). Limits bound the memory a client can make the server hold:

    max_upload_mb: largest request body for images (413 beyond it); a batch request shares it.
    max_pixels: largest decoded image (width x height); 12,000 x 8,000 photos pass, crafted headers that
        promise 100,000 x 100,000 do not.
    threads: inference threads per worker process; queue: requests admitted beyond those running (503 with
        Retry-After when full); max_batch: images one thread decodes and classifies together when requests
        pile up (their faces share forward passes).
    request_timeout_s: a request that has not finished by then gets 408 (body still arriving) or 504.
    max_batch_images: images in one ``/predict/batch`` request.
    video_max_mb, video_jobs, video_max_frames: largest video upload; video jobs queued or running at once (503
        beyond); frames analysed at most (10 minutes at 30 fps), the rest of a longer video is left out.
    job_ttl_s: how long a finished job's result stays available.
    token: when set, every /api/v1 request but /health needs ``Authorization: Bearer <token>`` (401).
    cors_origins: origins allowed to call the API from a browser; empty = no CORS headers (same origin only).
    """

    model: str = "default"
    detector: str = "auto"
    detector_model: str | None = None
    backend: str = "auto"
    device: str = "auto"
    min_face: int = 20
    max_side: int | None = 480
    crop_margin: float | None = None
    tta: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 2
    queue: int = 32
    max_batch: int = 8
    max_upload_mb: float = 10.0
    max_pixels: int = 50_000_000
    max_batch_images: int = 16
    request_timeout_s: float = 30.0
    video_max_mb: float = 100.0
    video_jobs: int = 4
    video_max_frames: int = 18_000
    job_ttl_s: float = 900.0
    token: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        positive = {"port": self.port, "workers": self.workers, "threads": self.threads,
                    "max_batch": self.max_batch, "max_upload_mb": self.max_upload_mb, "max_pixels": self.max_pixels,
                    "max_batch_images": self.max_batch_images, "request_timeout_s": self.request_timeout_s,
                    "video_max_mb": self.video_max_mb, "video_jobs": self.video_jobs,
                    "video_max_frames": self.video_max_frames, "job_ttl_s": self.job_ttl_s}
        bad = [f"{k}={v}" for k, v in positive.items() if not v > 0]
        if self.queue < 0:
            bad.append(f"queue={self.queue}")
        if bad:
            raise FerkitError(f"serve settings must be positive (queue may be 0); got {', '.join(bad)}")
        if not 0 < self.port < 65536:
            raise FerkitError(f"port must be 1-65535, got {self.port}")
        if self.token is not None and not self.token.strip():
            raise FerkitError("the token is empty; give a non-empty --token (or FERKIT_TOKEN), or none at all")
        if any("*" == o for o in self.cors_origins) and self.token:
            # A wildcard origin with a bearer token lets any web page a user visits spend that user's token.
            raise FerkitError("--cors '*' cannot be combined with a token; list the allowed origins instead")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def video_max_bytes(self) -> int:
        return int(self.video_max_mb * MB)

    def replace(self, **changes) -> "ServeSettings":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        data = json.loads(text)
        data["cors_origins"] = tuple(data.get("cors_origins", ()))
        return cls(**data)


def settings_from_env() -> ServeSettings:
    """The settings a uvicorn worker process was started with (see ``SETTINGS_ENV``)."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise FerkitError(f"{SETTINGS_ENV} is not set; start the server with `ferkit serve`")
    return ServeSettings.from_json(text)
