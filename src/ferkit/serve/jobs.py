"""Video jobs: an upload becomes a temporary file and a job id; one thread works through the jobs in order and
deletes each file when its job ends, whatever the outcome. Finished jobs are forgotten after a while.

The analysis itself is one function, ``VideoAnalyzer``: (video path, the upload's name, progress callback) ->
JSON-ready result.
``video_analyzer`` builds it from ``ferkit.video`` when that module is part of the install, and returns None
otherwise, which the API reports as 501.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ferkit.errors import FerkitError
from ferkit.serve.limits import ApiError

log = logging.getLogger(__name__)

#: (path of the uploaded video, its name as uploaded, progress(fraction in [0, 1])) -> the job's result, plain JSON.
VideoAnalyzer = Callable[[Path, str, Callable[[float], None]], dict]

STATES = ("queued", "running", "done", "failed")


@dataclass
class Job:
    id: str
    path: Path
    name: str
    status: str = "queued"
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "progress": round(self.progress, 4),
                               "name": self.name}
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class JobManager:
    """At most ``max_jobs`` jobs queued or running; finished ones are kept ``ttl_s`` seconds."""

    def __init__(self, analyzer: VideoAnalyzer | None, *, max_jobs: int, ttl_s: float,
                 tmp_dir: str | Path | None = None):
        self.analyzer = analyzer
        self.max_jobs, self.ttl_s = max_jobs, ttl_s
        self.tmp_dir = Path(tmp_dir) if tmp_dir else None
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._reserved = 0  # uploads in progress count against max_jobs too
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self.analyzer is not None

    def start(self) -> None:
        if self.analyzer is None or self._thread is not None:
            return
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="ferkit-video", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the running job; queued jobs are dropped and their files deleted."""
        with self._cond:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in dropped:
            _delete(job.path)
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    # -- submitting --------------------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Claim room for one job before its upload is read (503 with Retry-After when there is none)."""
        with self._cond:
            self._expire()
            active = self._reserved + sum(j.status in ("queued", "running") for j in self._jobs.values())
            if active >= self.max_jobs:
                raise ApiError(503, f"{active} video jobs are queued or running, this server's limit; retry later",
                               {"Retry-After": "10"})
            self._reserved += 1

    def unreserve(self) -> None:
        with self._cond:
            self._reserved -= 1

    def new_file(self):
        """A named temporary file for an upload; the caller deletes it if the job is never created."""
        return tempfile.NamedTemporaryFile(prefix="ferkit-video-", suffix=".upload", dir=self.tmp_dir,
                                           delete=False)

    def create(self, path: Path, name: str) -> Job:
        """Queue a job for a reserved upload; the job now owns (and will delete) ``path``."""
        job = Job(uuid.uuid4().hex, Path(path), name)
        with self._cond:
            self._reserved -= 1
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify()
        return job

    def get(self, job_id: str) -> Job:
        with self._cond:
            self._expire()
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (unknown, or finished more than {self.ttl_s:.0f} s ago)")
        return job

    # -- working -----------------------------------------------------------------------------------------------
    def _expire(self) -> None:
        now = time.time()
        for jid in [j.id for j in self._jobs.values() if j.finished and now - j.finished > self.ttl_s]:
            del self._jobs[jid]

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(fraction: float) -> None:
            job.progress = min(max(float(fraction), 0.0), 1.0)

        try:
            job.result = self.analyzer(job.path, job.name, progress)
            job.progress, job.status = 1.0, "done"
        except FerkitError as exc:  # a video the analysis cannot read: the user's problem, said plainly
            # The temporary file's path means nothing to the client and is the server's business.
            job.error, job.status = str(exc).replace(str(job.path), job.name or "the video"), "failed"
        except Exception as exc:
            log.exception("video job %s failed", job.id)
            job.error, job.status = f"the analysis failed ({type(exc).__name__}: {exc})", "failed"
        finally:
            job.finished = time.time()
            _delete(job.path)


def _delete(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not delete the temporary upload %s (%s)", path, exc)


def video_analyzer(recognizer, *, max_frames: int | None = None) -> VideoAnalyzer | None:
    """The analysis of ``ferkit.video`` with this server's Recognizer, or None when the install has no video
    module. The result: the timeline (``Timeline.to_json``'s object), the per-track summary and the timeline
    plot as a base64 PNG (null without matplotlib). ``max_frames``: frames read at most."""
    try:
        from ferkit.video import analyze
        from ferkit.video.sources import open_video_file
    except ImportError:
        return None

    def run(path: Path, name: str, progress: Callable[[float], None]) -> dict:
        import base64
        import json

        from ferkit import deps

        source = open_video_file(path)  # a file, never a camera or a URL, whatever the upload contained
        source.name = name or "the video"  # in messages, the timeline and its plot: not the temporary file's path
        total = min(source.frame_count or 0, max_frames or 10 ** 12)

        def on_frame(frame) -> None:
            if total:
                progress((frame.index + 1) / total)

        with tempfile.TemporaryDirectory(prefix="ferkit-job-") as tmp:
            out_json, out_plot = Path(tmp) / "timeline.json", Path(tmp) / "timeline.png"
            plot = out_plot if deps.available("matplotlib") else None
            timeline = analyze(source, recognizer, json=out_json, plot=plot, on_frame=on_frame,
                               max_frames=max_frames)
            return {"timeline": json.loads(out_json.read_text()),
                    "summary": [s.to_dict() for s in timeline.summary()],
                    "plot_png": base64.b64encode(out_plot.read_bytes()).decode("ascii") if plot else None}

    return run
