"""What the server accepts: request bodies read with a size cap and a deadline, multipart parsed in memory
(Starlette's form parser spools files over 1 MB to disk; uploads must not touch the disk), and images and
videos recognised from their bytes, never from a file name or a Content-Type header."""
from __future__ import annotations

import asyncio
import io
import re
import time
from dataclasses import dataclass, field
from typing import IO, Callable

import numpy as np

from ferkit.errors import DataError

# Pillow formats the server decodes, by signature. Pillow opens many more (EPS runs Ghostscript, for one);
# anything outside this list is refused before Pillow sees it.
IMAGE_TYPES = "JPEG, PNG, WebP, BMP, GIF or TIFF"


class ApiError(Exception):
    """An answer other than 200: the HTTP status, one readable message, and headers (Retry-After, ...)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def image_type(data: bytes) -> str | None:
    """The Pillow format name of encoded image bytes, from their signature; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def video_type(head: bytes) -> str | None:
    """The container of a video from its first bytes: mp4 (also MOV, 3GP), webm/mkv, avi; None otherwise."""
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "avi"
    return None


def describe_bytes(data: bytes) -> str:
    """A hint at what was sent instead of an image, for the error message."""
    if not data:
        return "an empty body"
    head = data[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        text = head.lstrip().lower()
        if text.startswith((b"http://", b"https://", b"file:", b"/", b"url=", b"path=")):
            return "a URL or a path: send the file's bytes; the server never fetches or opens anything"
        if text.startswith((b"<", b"{", b"[")):
            return "text, HTML, XML or JSON"
        return "text"
    return f"{len(data):,} bytes starting {data[:8].hex(' ')}"


def decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Encoded bytes -> H x W x 3 RGB uint8, or ApiError: 400 empty, 415 not an accepted image type, 422 too
    many pixels (checked from the header, before decoding) or corrupt/truncated data. ``name`` (a multipart
    file name, or "" for a raw body) starts the messages."""
    from PIL import Image

    from ferkit.inference.imageio import decode_bytes

    prefix = f"{name}: " if name else ""
    if not data:
        raise ApiError(400, f"{prefix}empty upload; send the image file's bytes (a multipart field or the raw body)")
    fmt = image_type(data)
    if fmt is None:
        raise ApiError(415, f"{prefix}not a {IMAGE_TYPES} image ({describe_bytes(data)})")
    too_big = f"this server accepts images up to {max_pixels:,} pixels (--max-pixels)"
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit: it refuses to open at all
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"
        raise ApiError(422, f"{prefix}the header promises {size}; {too_big}") from exc
    except Exception as exc:  # Pillow's plugins raise OSError, ValueError, SyntaxError on bad headers
        raise ApiError(422, f"{prefix}corrupt {fmt} header ({exc})") from exc
    if width * height > max_pixels:
        raise ApiError(422, f"{prefix}{width} x {height} = {width * height:,} pixels; {too_big}")
    try:
        return decode_bytes(data, name=name or "the image", max_pixels=max_pixels)
    except DataError as exc:
        raise ApiError(422, str(exc)) from exc


# ------------------------------------------------------------------------------------------- request bodies
@dataclass
class Upload:
    """One file of a request: the raw body, or one multipart part. Its bytes are kept as the chunks that
    arrived and joined once, by ``take``, unless the part went to a file ``sink`` (video uploads)."""

    form_field: str | None
    filename: str | None
    content_type: str | None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    sink: IO[bytes] | None = None
    head: bytes = b""  # the first bytes, kept for type sniffing when the data goes to a sink

    def write(self, chunk: bytes) -> None:
        if len(self.head) < 64:
            self.head += chunk[:64 - len(self.head)]
        self.size += len(chunk)
        if self.sink is not None:
            self.sink.write(chunk)
        else:
            self.chunks.append(bytes(chunk))

    def take(self) -> bytes:
        """The bytes, handed over: the upload keeps no copy."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        return data

    @property
    def name(self) -> str:
        return self.filename or self.form_field or ""


SinkFactory = Callable[[], IO[bytes]]


async def read_uploads(request, *, limit: int, deadline: float, max_files: int,
                       sink: SinkFactory | None = None) -> list[Upload]:
    """The files of a request: each multipart part that carries a file name, or the raw body as one file.

    Enforces ``limit`` bytes (413; a Content-Length over it is refused before reading) and ``deadline``
    (``time.monotonic()``; 408 when the body is still arriving then), at most ``max_files`` files (413).
    ``sink`` makes a writable file per upload instead of keeping it in memory.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {int(length):,} bytes; this server accepts up to {limit:,} "
                            f"bytes (--max-upload-mb)")
    ctype = request.headers.get("content-type", "")
    parser = _Multipart(ctype, max_files, sink) if ctype.lower().startswith("multipart/") else None
    raw = None if parser else Upload(None, None, ctype or None, sink=sink() if sink else None)
    received = 0
    stream = request.stream().__aiter__()
    while True:
        remaining = deadline - time.monotonic()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(remaining, 0.001))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, "the request body did not arrive in time (request timeout)") from None
        if not chunk:
            continue
        received += len(chunk)
        if received > limit:
            raise ApiError(413, f"the request body exceeds {limit:,} bytes (--max-upload-mb)")
        if parser:
            parser.feed(chunk)
        else:
            raw.write(chunk)
    if parser:
        return parser.finish()
    return [raw]


class _Multipart:
    """multipart/form-data parsed as it arrives (python-multipart's push parser), file parts only."""

    def __init__(self, content_type: str, max_files: int, sink: SinkFactory | None):
        from python_multipart.multipart import MultipartParser, parse_options_header

        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError(400, "multipart body without a boundary in its Content-Type")
        self._parse_options = parse_options_header
        self.max_files, self.sink = max_files, sink
        self.files: list[Upload] = []
        self._current: Upload | None = None
        self._skip = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_header_field": self._header_field_data, "on_header_value": self._header_value_data,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
        })

    def _part_begin(self) -> None:
        self._headers, self._current = {}, None

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_done(self) -> None:
        _, opts = self._parse_options(self._headers.get(b"content-disposition", b""))
        if b"filename" not in opts:
            self._skip = True  # a plain form field (e.g. a method name sent with the file): not a file
            return
        self._skip = False
        if len(self.files) >= self.max_files:
            raise ApiError(413, f"more than {self.max_files} file{'s' if self.max_files != 1 else ''} in one request")
        ctype = self._headers.get(b"content-type")
        self._current = Upload(opts.get(b"name", b"").decode("utf-8", "replace") or None,
                               opts[b"filename"].decode("utf-8", "replace") or None,
                               ctype.decode("latin-1") if ctype else None,
                               sink=self.sink() if self.sink else None)
        self.files.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._skip and self._current is not None:
            self._current.write(data[start:end])

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except ApiError:
            raise
        except Exception as exc:  # python-multipart raises its own MultipartParseError
            raise ApiError(400, f"malformed multipart body ({exc})") from exc

    def finish(self) -> list[Upload]:
        try:
            self.parser.finalize()
        except Exception as exc:
            raise ApiError(400, f"malformed multipart body ({exc})") from exc
        if not self.files:
            raise ApiError(400, "the multipart body has no file; send the image as a file field "
                                "(curl -F file=@photo.jpg)")
        return self.files
