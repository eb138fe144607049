"""The FastAPI app: the REST API under /api/v1, the page at /, the OpenAPI docs at /docs.

    >>> from ferkit.serve import ServeSettings, create_app
    >>> app = create_app(ServeSettings(detector="haar"))     # loads the model once; run it with uvicorn

Every request that carries an upload is admitted by the inference pool before its body is read (503 with
Retry-After beyond its capacity), read with a size cap (413) and a deadline (408), and its images are decoded
and classified on the pool's threads (504 past the deadline), so the event loop only moves bytes. Errors are
``{"error": message}`` with a 4xx/5xx status; nothing takes a URL or a server path.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferkit import __version__
from ferkit.errors import FerkitError
from ferkit.serve import schemas
from ferkit.serve.explain import Explainer, check_method
from ferkit.serve.jobs import JobManager, video_analyzer
from ferkit.serve.limits import IMAGE_TYPES, ApiError, Upload, decode_image, read_uploads, video_type
from ferkit.serve.model_info import model_info
from ferkit.serve.pool import InferencePool
from ferkit.serve.settings import EXPLAIN_METHODS, ServeSettings, settings_from_env

log = logging.getLogger(__name__)

API = "/api/v1"
STATIC = Path(str(resources.files("ferkit.serve") / "static"))
# The page and its scripts come from this server only; inline scripts and remote assets are refused.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _errors(status: int, *more: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": schemas.Error} for code in (status, *more)}


def _file_body(description: str, multiple: bool = False) -> dict[str, Any]:
    """The request body as OpenAPI describes it: multipart file field(s), or the file's bytes as the body."""
    field = {"type": "array", "items": {"type": "string", "format": "binary"}} if multiple \
        else {"type": "string", "format": "binary"}
    name = "files" if multiple else "file"
    return {"requestBody": {"required": True, "description": description, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {name: field}, "required": [name]}},
        **({} if multiple else {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                                "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}),
    }}}


def load_recognizer(settings: ServeSettings):
    """The Recognizer the settings describe. On ONNX Runtime each inference runs on one thread: the pool's
    threads are the parallelism, and ONNX Runtime's own thread pool would spin on the same cores."""
    from ferkit.inference.classifier import resolve_backend
    from ferkit.inference.recognizer import Recognizer

    model: Any = settings.model
    if resolve_backend(model, settings.backend, settings.device) == "onnx":
        from ferkit.inference.onnx_backend import load_onnx_classifier

        model = load_onnx_classifier(model, tta=settings.tta, device=settings.device, threads=1)
    return Recognizer(model=model, detector=settings.detector, device=settings.device,
                      backend=settings.backend, detector_model=settings.detector_model, min_face=settings.min_face,
                      max_side=settings.max_side, crop_margin=settings.crop_margin, tta=settings.tta)


def create_app(settings: ServeSettings | None = None, *, recognizer=None, video=None) -> FastAPI:
    """The app for ``settings``. The model loads here, once (a FerkitError for a bad model or detector);
    ``recognizer`` reuses a loaded one, ``video`` replaces the video analysis (see ``ferkit.serve.jobs``).
    The inference and video threads run while the app's lifespan does (uvicorn, or ``with TestClient(app)``)."""
    settings = settings or ServeSettings()
    rec = recognizer if recognizer is not None else load_recognizer(settings)
    pool = InferencePool(rec, threads=settings.threads, queue=settings.queue, max_batch=settings.max_batch,
                         max_pixels=settings.max_pixels)
    analyzer = video if video is not None else video_analyzer(rec, max_frames=settings.video_max_frames)
    jobs = JobManager(analyzer, max_jobs=settings.video_jobs, ttl_s=settings.job_ttl_s)
    explainer = Explainer(rec, settings.model)
    explaining = asyncio.Semaphore(1)
    can_explain = explainer.unavailable() is None  # installed packages do not change while the server runs
    info = model_info(rec, settings.model)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        pool.start()
        jobs.start()
        try:
            yield
        finally:
            pool.close()
            jobs.close()

    app = FastAPI(
        title="ferkit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Facial expression recognition: faces, expressions and explanations for photos, and "
                    "expression timelines for videos. Images are sent as their bytes (a multipart file field or "
                    f"the raw body; {IMAGE_TYPES}); nothing takes a URL or a path.",
    )
    app.state.settings, app.state.recognizer, app.state.pool, app.state.jobs = settings, rec, pool, jobs
    _install_error_handlers(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    app.add_middleware(_SecurityHeaders)

    bearer = HTTPBearer(auto_error=False, description="the server's --token (or FERKIT_TOKEN)")

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            why = "wrong token" if credentials else "this server needs a token"
            raise ApiError(401, f"{why}: send the header 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    # -- the page and the docs ---------------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    _install_docs(app)

    # -- the API -----------------------------------------------------------------------------------------------
    @app.get(f"{API}/health", response_model=schemas.Health, tags=["server"],
             summary="Liveness and readiness", responses=_errors(503))
    async def health() -> JSONResponse:
        stats = pool.stats()
        ready = pool.running
        body = {"status": "ok" if ready else "starting", "ready": ready, "version": __version__,
                "model": settings.model, "pool": stats, "explain": can_explain,
                "video": jobs.available}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(f"{API}/models", response_model=schemas.ModelInfo, dependencies=guarded, tags=["server"],
             summary="The loaded model: labels, input size, backend, the accuracy from its card",
             responses=_errors(401))
    async def models() -> JSONResponse:
        return JSONResponse(info)

    @app.post(f"{API}/predict", response_model=schemas.Prediction, dependencies=guarded, tags=["images"],
              summary="Faces and expressions in one image", openapi_extra=_file_body("one image"),
              responses=_errors(400, 401, 408, 413, 415, 422, 503, 504))
    async def predict(request: Request) -> JSONResponse:
        _only_params(request, ())
        deadline = time.monotonic() + settings.request_timeout_s
        ticket = pool.admit()
        try:
            upload = _one(await _read_images(request, deadline))
            (faces, shape), = await _wait(pool.submit_images([(upload.take(), upload.name)]), ticket, deadline)
            return JSONResponse(_prediction(faces, shape))
        finally:
            ticket.release()

    @app.post(f"{API}/predict/batch", response_model=schemas.BatchPrediction, dependencies=guarded, tags=["images"],
              summary="Several images in one request: their faces share batched forward passes",
              openapi_extra=_file_body(f"up to {settings.max_batch_images} images as multipart file fields",
                                       multiple=True),
              responses=_errors(400, 401, 408, 413, 503, 504))
    async def predict_batch(request: Request) -> JSONResponse:
        _only_params(request, ())
        deadline = time.monotonic() + settings.request_timeout_s
        ticket = pool.admit()
        try:
            uploads = await _read_images(request, deadline)
            futures = pool.submit_images([(u.take(), u.name) for u in uploads])
            outcomes = await _wait(futures, ticket, deadline, per_item=True)
            results = []
            for u, out in zip(uploads, outcomes):
                if isinstance(out, ApiError):
                    results.append({"name": u.name, "error": out.message})
                elif isinstance(out, BaseException):
                    raise out
                else:
                    results.append({"name": u.name, **_prediction(*out)})
            return JSONResponse({"results": results})
        finally:
            ticket.release()

    @app.post(f"{API}/explain", response_model=schemas.ExplainResult, dependencies=guarded, tags=["images"],
              summary="Per face: the result and a heatmap overlay of where the model looked",
              openapi_extra=_file_body("one image"), responses=_errors(400, 401, 408, 413, 415, 422, 501, 503, 504))
    async def explain(request: Request,
                      method: str | None = Query(None, description=" | ".join(EXPLAIN_METHODS))) -> JSONResponse:
        _only_params(request, ("method",))
        check_method(method)
        loop = asyncio.get_running_loop()
        why = explainer.unavailable()
        if why:
            raise ApiError(501, why)
        deadline = time.monotonic() + settings.request_timeout_s
        ticket = pool.admit()
        holding = False  # the explanation semaphore
        try:
            upload = _one(await _read_images(request, deadline))
            data = upload.take()
            # One explanation at a time (they share the PyTorch model), waiting here rather than on a pool
            # thread, so explanations never take more than one thread from predictions.
            try:
                await asyncio.wait_for(explaining.acquire(), timeout=max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                raise ApiError(504, "another explanation took the time this request had (request timeout); "
                                    "retry") from None
            holding = True

            def work() -> dict[str, Any]:
                image = decode_image(data, upload.name, settings.max_pixels)
                h, w = image.shape[:2]
                return {"faces": explainer(image, method), "width": w, "height": h}

            future = pool.submit(work)
            future.add_done_callback(lambda _f: loop.call_soon_threadsafe(explaining.release))
            holding = False  # the work releases it when it ends, even past this request's deadline
            result, = await _wait([future], ticket, deadline)
            return JSONResponse(result)
        finally:
            if holding:
                explaining.release()
            ticket.release()

    @app.post(f"{API}/video", response_model=schemas.JobAccepted, status_code=202, dependencies=guarded,
              tags=["video"], summary="Upload a short video; returns a job id to poll",
              openapi_extra=_file_body("one video (MP4/MOV, WebM/MKV or AVI)"),
              responses=_errors(400, 401, 408, 413, 415, 501, 503))
    async def video_upload(request: Request) -> JSONResponse:
        _only_params(request, ())
        if not jobs.available:
            raise ApiError(501, "video analysis is not available in this build of ferkit (no ferkit.video module); "
                                "photos work: POST /api/v1/predict")
        jobs.reserve()
        files: list = []

        def sink():
            f = jobs.new_file()
            files.append(f)
            return f

        created = False
        try:
            deadline = time.monotonic() + max(settings.request_timeout_s, 120.0)  # videos take longer to send
            uploads = await read_uploads(request, limit=settings.video_max_bytes, deadline=deadline, max_files=1,
                                         sink=sink)
            upload = uploads[0]
            for f in files:
                f.close()
            if upload.size == 0:
                raise ApiError(400, "empty upload; send the video file's bytes (a multipart field or the raw body)")
            if video_type(upload.head) is None:
                raise ApiError(415, f"{upload.name or 'the upload'}: not an MP4/MOV, WebM/MKV or AVI video")
            job = jobs.create(Path(upload.sink.name), upload.name)
            created = True
            return JSONResponse({"id": job.id, "status": job.status, "url": f"{API}/jobs/{job.id}"}, status_code=202)
        finally:
            if not created:
                jobs.unreserve()
                for f in files:
                    f.close()
                    Path(f.name).unlink(missing_ok=True)

    @app.get(f"{API}/jobs/{{job_id}}", response_model=schemas.JobStatus, dependencies=guarded, tags=["video"],
             summary="A video job's progress, then its timeline, per-track summary and plot",
             responses=_errors(401, 404))
    async def job_status(job_id: str) -> JSONResponse:
        if not _JOB_ID.match(job_id):
            raise ApiError(404, f"no job {job_id!r} (job ids are 32 hex digits)")
        return JSONResponse(jobs.get(job_id).to_dict())

    async def _read_images(request: Request, deadline: float) -> list[Upload]:
        uploads = await read_uploads(request, limit=settings.max_upload_bytes, deadline=deadline,
                                     max_files=settings.max_batch_images)
        if not uploads:
            raise ApiError(400, "no image in the request")
        return uploads

    return app


class _SecurityHeaders:
    """Every answer says: do not guess content types, send no Referer onwards (plain ASGI: no per-request
    wrapping of the response as Starlette's function middleware does)."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _one(uploads: Sequence[Upload]) -> Upload:
    if len(uploads) != 1:
        raise ApiError(400, f"{len(uploads)} files sent; this endpoint takes one image (several: /api/v1/predict/batch)")
    return uploads[0]


def _only_params(request: Request, allowed: Sequence[str]) -> None:
    """Refuse unknown query parameters: a ``?url=`` or ``?path=`` is never silently ignored."""
    extra = sorted(set(request.query_params) - set(allowed))
    if extra:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no query parameters"
        raise ApiError(400, f"unknown query parameter {', '.join(extra)}; this endpoint {takes} (images are sent "
                            f"as bytes; no URLs or paths)")


async def _wait(futures, ticket, deadline: float, per_item: bool = False) -> list:
    """The futures' results (exceptions in their place with ``per_item``), or 504 at the deadline; the ticket
    keeps the request's slot until the work is really done."""
    ticket.hold(futures)
    waiting = [asyncio.wrap_future(f) for f in futures]
    try:
        results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=per_item),
                                         timeout=max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        for f in futures:
            f.cancel()
        raise ApiError(504, "the image was not processed in time (request timeout); retry, or send a smaller "
                            "image") from None
    return list(results)


def _prediction(faces, shape) -> dict[str, Any]:
    return {"faces": [f.to_dict() for f in faces], "width": int(shape[1]), "height": int(shape[0])}


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"not found: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return JSONResponse({"error": message.get(exc.status_code, str(exc.detail))}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=400)

    async def ferkit_error(_request: Request, exc: FerkitError) -> JSONResponse:
        # A problem the library names in the input (an image the detector cannot use, ...): the client's.
        return JSONResponse({"error": str(exc)}, status_code=422)

    async def server_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return JSONResponse({"error": f"internal server error ({type(exc).__name__}); see the server log"},
                            status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(FerkitError, ferkit_error)
    app.add_exception_handler(Exception, server_error)


def _install_docs(app: FastAPI) -> None:
    """Swagger UI from files on this machine (fastapi-offline ships them), never from a CDN."""
    try:
        offline = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        offline = None

    if offline is None or not (offline / "swagger-ui-bundle.js").is_file():
        @app.get("/docs", include_in_schema=False)
        async def docs_missing() -> HTMLResponse:
            return HTMLResponse("<!doctype html><title>ferkit API</title><p>The interactive docs need the "
                                "<code>fastapi-offline</code> package (<code>pip install 'ferkit[serve]'</code>); "
                                "the schema is at <a href='/openapi.json'>/openapi.json</a>.</p>")
        return

    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-static", StaticFiles(directory=offline), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="ferkit API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon.png")


def app_from_env() -> FastAPI:
    """The app factory uvicorn calls in each worker process (``--workers N``): settings from SETTINGS_ENV."""
    return create_app(settings_from_env())


def run_server(settings: ServeSettings, *, access_log: bool = True, log_level: str = "info") -> None:
    """Serve until interrupted. One worker runs the app built here; N workers each build their own (each loads
    the model once) from the settings passed in the environment."""
    import os

    import uvicorn

    from ferkit.serve.settings import SETTINGS_ENV

    common = dict(host=settings.host, port=settings.port, log_level=log_level, access_log=access_log,
                  timeout_keep_alive=5, timeout_graceful_shutdown=10, server_header=False)
    import cv2

    # Same reason as ONNX Runtime's threads (load_recognizer): OpenCV's detectors and resizes run on the pool.
    cv2.setNumThreads(1)
    where = f"http://{settings.host}:{settings.port}"
    if settings.workers == 1:
        app = create_app(settings)
        rec = app.state.recognizer
    else:
        app = None
        rec = load_recognizer(settings)  # a bad model or detector fails here, once, with its one-line message
    log.info("ferkit serve: %s, detector %s; the page at %s/, the API at %s%s, its docs at %s/docs%s",
             rec.classifier.description, rec.detector_description, where, where, API, where,
             "; token required" if settings.token else "")
    if app is not None:
        uvicorn.run(app, **common)
        return
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run("ferkit.serve.app:app_from_env", factory=True, workers=settings.workers, **common)
