"""Video jobs of `ferkit serve`: upload -> job id -> progress -> timeline, summary and plot; the temporary upload
is deleted when the job ends, whatever the outcome; the job queue is bounded. The job machinery runs against a
stand-in analysis (held mid-run by the test), and once against ferkit.video on a clip made from the sample photo."""
from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("python_multipart", reason="the serve extra is not installed")
try:
    from fastapi.testclient import TestClient
except RuntimeError as exc:  # Starlette's TestClient needs httpx2 (or httpx)
    pytest.skip(str(exc), allow_module_level=True)

from ferkit.assets import sample_image_path  # noqa: E402
from ferkit.errors import FerkitError  # noqa: E402
from ferkit.inference.recognizer import Recognizer  # noqa: E402
from ferkit.serve import ServeSettings, create_app  # noqa: E402

API = "/api/v1"
# The first bytes of an MP4 file (an ISO base media "ftyp" box); the stand-in analysis never decodes it.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(detector="haar")


class HeldAnalysis:
    """Records what the job saw, reports half-way progress, then waits for ``go``."""

    def __init__(self):
        self.go, self.running = threading.Event(), threading.Event()
        self.seen: list[tuple[Path, bytes, str]] = []

    def __call__(self, path: Path, name: str, progress) -> dict:
        self.seen.append((path, path.read_bytes(), name))
        progress(0.5)
        self.running.set()
        assert self.go.wait(30)
        return {"timeline": {"rows": []}, "summary": [], "plot_png": None}


@pytest.fixture
def serve(recognizer, tmp_path):
    opened = []

    def make(analysis=None, **settings) -> TestClient:
        app = create_app(ServeSettings(detector="haar", **settings), recognizer=recognizer, video=analysis)
        app.state.jobs.tmp_dir = tmp_path  # where the uploads go, so the test can see them come and go
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.__exit__(None, None, None)


def wait_for(client, job_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"{API}/jobs/{job_id}").json()
        if body["status"] == status:
            return body
        if body["status"] in ("done", "failed"):
            break  # finished otherwise: no use waiting
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {status}: {body}")


def test_a_job_goes_from_queued_to_done_and_its_upload_is_deleted(serve, tmp_path):
    analysis = HeldAnalysis()
    c = serve(analysis)
    r = c.post(f"{API}/video", files={"file": ("talk.mp4", MP4_HEAD, "video/mp4")})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued" and job["url"] == f"{API}/jobs/{job['id']}" and len(job["id"]) == 32
    assert analysis.running.wait(10)
    running = wait_for(c, job["id"], "running")
    assert running["progress"] == 0.5 and running["name"] == "talk.mp4" and "result" not in running
    path, data, name = analysis.seen[0]
    assert data == MP4_HEAD and name == "talk.mp4" and path.parent == tmp_path and path.exists()
    analysis.go.set()
    done = wait_for(c, job["id"], "done")
    assert done["progress"] == 1.0 and done["result"] == {"timeline": {"rows": []}, "summary": [], "plot_png": None}
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_failed_job_says_why_without_the_servers_path_and_deletes_its_upload(serve, tmp_path):
    def undecodable(path, name, progress):  # the library names the file it was given: the temporary one
        raise FerkitError(f"{path}: OpenCV cannot decode this video")

    c = serve(undecodable)
    job = c.post(f"{API}/video", content=MP4_HEAD).json()
    failed = wait_for(c, job["id"], "failed")
    assert failed["error"] == "the video: OpenCV cannot decode this video"
    assert list(tmp_path.iterdir()) == []


def test_the_job_queue_is_bounded(serve):
    analysis = HeldAnalysis()
    c = serve(analysis, video_jobs=1)
    first = c.post(f"{API}/video", content=MP4_HEAD)
    assert first.status_code == 202
    full = c.post(f"{API}/video", content=MP4_HEAD)
    assert full.status_code == 503 and full.headers["Retry-After"] == "10" and "1 video jobs" in full.json()["error"]
    analysis.go.set()
    wait_for(c, first.json()["id"], "done")
    assert c.post(f"{API}/video", content=MP4_HEAD).status_code == 202


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty upload"),
    (b"\xff\xd8\xff\xe0 a JPEG, not a video", 415, "not an MP4/MOV, WebM/MKV or AVI video"),
    (MP4_HEAD + b"\x00" * 20_000, 413, "exceeds"),
])
def test_a_refused_upload_leaves_no_file_and_no_job(serve, tmp_path, body, status, words):
    analysis = HeldAnalysis()
    analysis.go.set()
    c = serve(analysis, video_max_mb=0.01)
    chunks = iter([body[i:i + 4096] for i in range(0, len(body), 4096)] or [b""])  # no Content-Length
    r = c.post(f"{API}/video", content=chunks)
    assert r.status_code == status and words in r.json()["error"]
    assert list(tmp_path.iterdir()) == []
    assert c.post(f"{API}/video", content=MP4_HEAD).status_code == 202  # the reservation was given back


def test_unknown_jobs_are_404(serve):
    c = serve(HeldAnalysis())
    assert c.get(f"{API}/jobs/{'0' * 32}").status_code == 404
    assert "32 hex digits" in c.get(f"{API}/jobs/not-a-job").json()["error"]


def test_without_video_analysis_the_endpoint_says_so(serve):
    c = serve()
    c.app.state.jobs.analyzer = None  # a build without ferkit.video
    r = c.post(f"{API}/video", content=MP4_HEAD)
    assert r.status_code == 501 and "not available in this build" in r.json()["error"]
    assert c.get(f"{API}/health").json()["video"] is False


def test_a_real_video_gives_a_timeline_summary_and_plot(serve, tmp_path):
    pytest.importorskip("ferkit.video", reason="ferkit.video is not part of this build")
    pytest.importorskip("matplotlib")
    import cv2
    from PIL import Image

    frame = cv2.imread(str(sample_image_path()))
    clip = tmp_path.parent / f"{tmp_path.name}-clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for k in range(8):
        writer.write(np.roll(frame, 2 * k, axis=1))  # the face moves a little: one track
    writer.release()
    c = serve()
    assert c.get(f"{API}/health").json()["video"] is True
    job = c.post(f"{API}/video", files={"file": ("hopper.mp4", clip.read_bytes(), "video/mp4")}).json()
    done = wait_for(c, job["id"], "done", timeout=60)
    timeline, summary = done["result"]["timeline"], done["result"]["summary"]
    assert timeline["frames"] == 8 and timeline["source"] == "hopper.mp4" and len(timeline["rows"]) == 8
    assert [s["track_id"] for s in summary] == [timeline["rows"][0]["track_id"]] and summary[0]["frames"] == 8
    plot = Image.open(io.BytesIO(base64.b64decode(done["result"]["plot_png"])))
    assert plot.format == "PNG" and plot.width > 200
    assert list(tmp_path.iterdir()) == []
