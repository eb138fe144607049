"""The REST API of `ferkit serve`, in process (FastAPI's TestClient): every endpoint, and every bad input getting
its status code and one readable {"error": ...} line. The bundled photo and OpenCV's Haar cascade only."""
from __future__ import annotations

import base64
import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("python_multipart", reason="the serve extra is not installed")
try:
    from fastapi.testclient import TestClient
except RuntimeError as exc:  # Starlette's TestClient needs httpx2 (or httpx)
    pytest.skip(str(exc), allow_module_level=True)

from ferkit.assets import sample_image_path  # noqa: E402
from ferkit.inference.recognizer import Recognizer  # noqa: E402
from ferkit.serve import ServeSettings, create_app  # noqa: E402

API = "/api/v1"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(detector="haar")


@pytest.fixture(scope="module")
def photo() -> bytes:
    return sample_image_path().read_bytes()


@pytest.fixture
def make_client(recognizer):
    """A client for an app with the given settings (detector haar), its threads running while in use."""
    clients = []

    def make(rec=None, **settings) -> TestClient:
        app = create_app(ServeSettings(detector="haar", **settings), recognizer=rec or recognizer)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header promises width x height pixels (valid signature and CRC, almost no data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    return body["error"]


# ----------------------------------------------------------------------------------------------- predict
def test_predict_gives_the_recognizers_faces_in_the_predict_json_contract(client, recognizer, photo):
    r = client.post(f"{API}/predict", content=photo)
    assert r.status_code == 200
    body = r.json()
    expected = [f.to_dict() for f in recognizer.predict(sample_image_path())]
    assert body == {"faces": expected, "width": 512, "height": 600}
    assert len(body["faces"]) == 1 and set(body["faces"][0]) == {"box", "score", "landmarks", "emotion", "probs"}


def test_predict_takes_a_multipart_file_field_too(client, photo):
    raw = client.post(f"{API}/predict", content=photo).json()
    form = client.post(f"{API}/predict", files={"file": ("hopper.jpg", photo, "image/jpeg")},
                       data={"note": "plain form fields are ignored"})
    assert form.status_code == 200 and form.json() == raw


def test_the_image_type_comes_from_the_bytes_not_the_name_or_header(client, photo):
    png = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(png, "PNG")
    r = client.post(f"{API}/predict", files={"file": ("photo.txt", png.getvalue(), "text/plain")})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    msg = error_of(client.post(f"{API}/predict", files={"file": ("photo.jpg", b"<html>hi</html>", "image/jpeg")}),
                   415)
    assert msg.startswith("photo.jpg: not a JPEG, PNG, WebP, BMP, GIF or TIFF image") and "HTML" in msg


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty upload"),
    (b"just some text\n", 415, "not a JPEG, PNG, WebP, BMP, GIF or TIFF image (text)"),
    (b"%PDF-1.7 ...", 415, "not a JPEG, PNG"),
    (b"https://example.com/face.jpg", 415, "never fetches"),
    (b"/etc/passwd", 415, "never fetches"),
])
def test_bad_bodies_get_a_status_and_a_reason(client, body, status, words):
    assert words in error_of(client.post(f"{API}/predict", content=body), status)


def test_a_truncated_image_is_422(client, photo):
    assert "truncated" in error_of(client.post(f"{API}/predict", content=photo[:3000]), 422)


def test_huge_dimensions_are_refused_from_the_header_before_decoding(client):
    msg = error_of(client.post(f"{API}/predict", content=png_claiming(100_000, 100_000)), 422)
    assert "10,000,000,000 pixels" in msg and "up to 50,000,000 pixels (--max-pixels)" in msg
    msg = error_of(client.post(f"{API}/predict", content=png_claiming(10_000, 6_000)), 422)  # under Pillow's limit
    assert msg == "10000 x 6000 = 60,000,000 pixels; this server accepts images up to 50,000,000 pixels (--max-pixels)"


def test_the_pixel_limit_is_a_setting(make_client, photo):
    small = make_client(max_pixels=512 * 600 - 1)
    assert "--max-pixels" in error_of(small.post(f"{API}/predict", content=photo), 422)


def test_an_oversized_upload_is_413_whether_or_not_it_declares_its_length(make_client, photo):
    c = make_client(max_upload_mb=0.01)  # 10,485 bytes; the photo is larger
    assert "accepts up to 10,485 bytes" in error_of(c.post(f"{API}/predict", content=photo), 413)
    chunks = (photo[i:i + 4096] for i in range(0, len(photo), 4096))  # chunked: no Content-Length
    assert "exceeds 10,485 bytes" in error_of(c.post(f"{API}/predict", content=chunks), 413)
    assert c.get(f"{API}/health").json()["pool"]["admitted"] == 0  # refused requests give their slot back


def test_no_urls_or_paths_are_taken_as_parameters(client, photo):
    for query in ("url=http://example.com/a.jpg", "path=/etc/passwd"):
        msg = error_of(client.post(f"{API}/predict?{query}", content=photo), 400)
        assert "unknown query parameter" in msg and "no URLs or paths" in msg


def test_predict_takes_one_image(client, photo):
    two = [("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))]
    assert "/api/v1/predict/batch" in error_of(client.post(f"{API}/predict", files=two), 400)
    # A form field is just bytes that are no image (curl --data-binary sends files with the form's type).
    msg = error_of(client.post(f"{API}/predict", data={"url": "http://example.com/a.jpg"}), 415)
    assert "never fetches" in msg
    form_typed = client.post(f"{API}/predict", content=photo,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form_typed.status_code == 200 and len(form_typed.json()["faces"]) == 1


def test_a_multipart_body_without_a_file_is_400(client):
    r = client.post(f"{API}/predict", content=b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xyz--\r\n",
                    headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert "no file" in error_of(r, 400)


# ------------------------------------------------------------------------------------------------- batch
def test_batch_answers_per_image_and_a_bad_one_does_not_fail_the_others(client, recognizer, photo):
    sky = io.BytesIO()
    Image.new("RGB", (120, 90), (30, 120, 200)).save(sky, "PNG")
    files = [("files", ("hopper.jpg", photo)), ("files", ("notes.jpg", b"not a picture")),
             ("files", ("sky.png", sky.getvalue()))]
    r = client.post(f"{API}/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["name"] for x in results] == ["hopper.jpg", "notes.jpg", "sky.png"]
    assert results[0]["faces"] == [f.to_dict() for f in recognizer.predict(sample_image_path())]
    assert "not a JPEG" in results[1]["error"] and "faces" not in results[1]
    assert results[2] == {"name": "sky.png", "faces": [], "width": 120, "height": 90}


def test_batch_refuses_more_images_than_its_limit(make_client, photo):
    c = make_client(max_batch_images=2)
    files = [("files", (f"{i}.jpg", photo)) for i in range(3)]
    assert "more than 2 files" in error_of(c.post(f"{API}/predict/batch", files=files), 413)


# ----------------------------------------------------------------------------------------------- explain
@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion"])
def test_explain_gives_each_face_its_result_and_an_overlay_png(client, recognizer, photo, method):
    pytest.importorskip("torch")
    r = client.post(f"{API}/explain?method={method}", content=photo)
    assert r.status_code == 200, r.text
    faces = r.json()["faces"]
    expected = [f.to_dict() for f in recognizer.predict(sample_image_path())]
    assert [{k: v for k, v in f.items() if k != "explanation"} for f in faces] == expected
    e = faces[0]["explanation"]
    assert e["method"] == method and e["target"] == expected[0]["emotion"]
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(e["png"]))))
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and min(overlay.shape[:2]) >= 40
    assert overlay.std() > 5  # a picture, not a blank square


@pytest.mark.parametrize("query, words", [("", "no method"), ("?method=smile", "method 'smile'"),
                                          ("?method=gradcam&layer=x", "unknown query parameter layer")])
def test_explain_names_the_methods_it_takes(client, photo, query, words):
    msg = error_of(client.post(f"{API}/explain{query}", content=photo), 400)
    assert words in msg and ("gradcam | saliency | occlusion" in msg or "takes only method" in msg)


def test_explain_says_what_is_missing_for_an_onnx_file(recognizer):
    from ferkit.serve.explain import Explainer

    why = Explainer(recognizer, "exports/model.onnx").unavailable()
    assert "PyTorch checkpoint" in why and "--model" in why


# ---------------------------------------------------------------------------------------- health, models
def test_health_reports_liveness_readiness_and_the_pool(client):
    body = client.get(f"{API}/health").json()
    assert body["status"] == "ok" and body["ready"] is True and body["model"] == "default"
    assert body["pool"]["threads"] == 2 and body["pool"]["capacity"] == 2 + 32
    assert body["video"] is client.app.state.jobs.available


def test_health_is_not_ready_outside_the_apps_lifespan(recognizer):
    r = TestClient(create_app(ServeSettings(detector="haar"), recognizer=recognizer)).get(f"{API}/health")
    assert r.status_code == 503 and r.json()["ready"] is False


def test_models_describes_the_model_with_its_cards_accuracy(client):
    torch = pytest.importorskip("torch")
    from ferkit.paths import WEIGHTS_DIR

    body = client.get(f"{API}/models").json()
    assert body["labels"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert body["input_size"] == 40 and body["backend"] == "onnx" and body["arch"] == "fernet"
    shipped = torch.load(WEIGHTS_DIR / "default.pt", weights_only=True)  # what the torch-free reader read
    tta = shipped["config"]["tta"]
    assert body["card"]["accuracy"] == pytest.approx(shipped["meta"]["accuracy_by_tta"][tta])
    assert body["card"]["split"] == "publictest" and body["card"]["tta"] == tta
    assert body["card"]["accuracy"] >= 0.71  # the model card's promise for the shipped settings


# ------------------------------------------------------------------------------------------------- token
def test_a_token_guards_the_api_but_not_health(make_client, photo):
    c = make_client(token="s3cret")
    r = c.post(f"{API}/predict", content=photo)
    assert "needs a token" in error_of(r, 401) and r.headers["WWW-Authenticate"] == "Bearer"
    wrong = c.get(f"{API}/models", headers={"Authorization": "Bearer guess"})
    assert "wrong token" in error_of(wrong, 401)
    assert c.get(f"{API}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    ok = c.post(f"{API}/predict", content=photo, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and len(ok.json()["faces"]) == 1
    assert c.get(f"{API}/health").status_code == 200


# ------------------------------------------------------------------------------------ queue and timeouts
class BlockingRecognizer:
    """The real recognizer, except that predicting waits for ``go``: a request that stays in progress."""

    def __init__(self, rec: Recognizer):
        self.rec, self.go, self.started = rec, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.rec, name)

    def predict_decoded(self, images):
        self.started.set()
        assert self.go.wait(30)
        return self.rec.predict_decoded(images)


def test_a_full_queue_answers_503_with_retry_after(make_client, recognizer, photo):
    blocking = BlockingRecognizer(recognizer)
    c = make_client(rec=blocking, threads=1, queue=0)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=c.post(f"{API}/predict", content=photo)))
    t.start()
    assert blocking.started.wait(10)
    busy = c.post(f"{API}/predict", content=photo)
    assert "busy" in error_of(busy, 503) and busy.headers["Retry-After"] == "1"
    blocking.go.set()
    t.join(30)
    assert first["r"].status_code == 200
    assert c.post(f"{API}/predict", content=photo).status_code == 200  # the slot came back


def test_a_timed_out_request_is_504_and_keeps_its_slot_until_the_work_is_done(make_client, recognizer, photo):
    blocking = BlockingRecognizer(recognizer)
    c = make_client(rec=blocking, threads=1, queue=0, request_timeout_s=1.0)
    answer: dict = {}
    t = threading.Thread(target=lambda: answer.update(r=c.post(f"{API}/predict", content=photo)))
    t.start()
    assert blocking.started.wait(10)  # the image is being classified...
    t.join(30)
    assert "request timeout" in error_of(answer["r"], 504)  # ...and the answer did not wait for it
    # The thread is still classifying that image: no new request may pile more work on it.
    assert c.get(f"{API}/health").json()["pool"]["admitted"] == 1
    assert c.post(f"{API}/predict", content=photo).status_code == 503
    blocking.go.set()
    for _ in range(100):
        if c.get(f"{API}/health").json()["pool"]["admitted"] == 0:
            break
        threading.Event().wait(0.05)
    assert c.post(f"{API}/predict", content=photo).status_code == 200


# -------------------------------------------------------------------------------------- page, docs, CORS
def test_the_page_and_everything_it_loads_come_from_this_server(client):
    import re

    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Referrer-Policy"] == "no-referrer"
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    for ref in refs:
        assert client.get(ref).status_code == 200, ref
    script = client.get("/static/app.js").text
    assert "http://" not in script and "https://" not in script


def test_the_api_docs_are_served_offline(client):
    pytest.importorskip("fastapi_offline", reason="the offline Swagger UI assets (fastapi-offline) are not installed")
    import re

    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs.text)
    assert assets and all(a.startswith("/docs-static/") for a in assets), assets
    assert all(client.get(a).status_code == 200 for a in assets)
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {f"{API}/{p}" for p in ("health", "models", "predict", "predict/batch", "explain", "video",
                                                 "jobs/{job_id}")}


def test_cors_is_off_unless_origins_are_configured(make_client):
    origin = {"Origin": "http://elsewhere.test"}
    assert "access-control-allow-origin" not in make_client().get(f"{API}/health", headers=origin).headers
    allowed = make_client(cors_origins=("http://elsewhere.test",)).get(f"{API}/health", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "http://elsewhere.test"


def test_unknown_routes_and_methods_answer_json(client):
    assert error_of(client.get(f"{API}/nothing"), 404) == "not found: /api/v1/nothing"
    assert "GET is not allowed" in error_of(client.get(f"{API}/predict"), 405)


# ------------------------------------------------------------------------------------------------ settings
def test_settings_refuse_what_would_make_an_unsafe_or_broken_server():
    from ferkit.errors import FerkitError

    assert ServeSettings().host == "127.0.0.1" and ServeSettings().cors_origins == ()
    with pytest.raises(FerkitError, match="threads=0"):
        ServeSettings(threads=0)
    with pytest.raises(FerkitError, match="token is empty"):
        ServeSettings(token="  ")
    with pytest.raises(FerkitError, match="cannot be combined with a token"):
        ServeSettings(cors_origins=("*",), token="t")
    s = ServeSettings(token="t", cors_origins=("http://a.test",), max_upload_mb=2.5)
    assert ServeSettings.from_json(s.to_json()) == s
