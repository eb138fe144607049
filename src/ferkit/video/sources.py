"""Frame sources: video files, folders of frames, cameras and network streams behind one capture interface.

- ``FrameSource``: what the pipeline reads. ``read()`` gives the next ``Frame`` (index, time, BGR image) or None
  at the end; ``fps``, ``size``, ``frame_count`` (None when unknown) and ``live`` describe it.
- ``CaptureSource``: wraps anything shaped like ``cv2.VideoCapture`` (``read``, ``get``, ``release``): files,
  cameras, URLs, and the fake cameras the tests use.
- ``FolderSource``: the image files of a folder, in name order, at a given frame rate.
- ``open_source``: SOURCE as the CLI takes it (a path, a folder, a camera index, a URL) -> a FrameSource, with the
  checks that turn bad input into one clear ``VideoError``: a missing file, a codec OpenCV cannot decode (named by
  its FourCC, with the ffmpeg line that converts it), a file without frames, frames over the size limit, a
  camera that cannot be opened.

Live sources (cameras, streams) are read as fast as they deliver; the pipeline drops what it cannot keep up
with. Files and folders are read at the consumer's pace and never drop a frame.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import cv2
import numpy as np

from ferkit.errors import FerkitError

log = logging.getLogger(__name__)

#: Frames whose longer side exceeds this are refused (8K frames are 100 MB each; the queues hold a few dozen).
DEFAULT_MAX_FRAME_SIDE = 4096
#: Frame rate assumed for folders of frames and for sources that report none.
DEFAULT_FPS = 30.0

CONVERT_HINT = "ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4"


class VideoError(FerkitError):
    """A video source or output that cannot be used: missing, undecodable, empty, too large, unavailable."""


@dataclass
class Frame:
    """One decoded frame: ``index`` counts frames read from the source (0-based; gaps mean dropped frames),
    ``time_s`` is its time in the video (files) or since the first frame (live), ``image`` BGR uint8."""

    index: int
    time_s: float
    image: np.ndarray


class FrameSource(Protocol):
    name: str
    fps: float
    size: tuple[int, int] | None  # (width, height), None when unknown until the first frame
    frame_count: int | None
    live: bool

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """A ``cv2.VideoCapture``-like object as a FrameSource.

    ``live``: frames arrive in real time (camera, stream), so the time of a frame is the wall time since the
    first one, and a failing read ends the stream (with a warning) instead of being an error. ``fps`` overrides what the
    capture reports (0 or missing: ``DEFAULT_FPS``).
    """

    def __init__(self, capture: Any, *, name: str = "capture", live: bool = False, fps: float | None = None,
                 max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE):
        self.capture = capture
        self.name = name
        self.live = live
        self.max_frame_side = max_frame_side
        reported = _prop(capture, cv2.CAP_PROP_FPS)
        self.fps = float(fps or (reported if reported and 0 < reported < 1000 else DEFAULT_FPS))
        count = _prop(capture, cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if not live and count and count > 0 else None
        w, h = _prop(capture, cv2.CAP_PROP_FRAME_WIDTH), _prop(capture, cv2.CAP_PROP_FRAME_HEIGHT)
        self.size = (int(w), int(h)) if w and h and w > 0 and h > 0 else None
        if self.size:
            check_frame_size(self.size, max_frame_side, name)
        self._next = 0
        self._t0: float | None = None  # a live clock starts at the first frame, not when the source opened

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok or image is None:
            return None
        if image.ndim == 2 or image.shape[2] != 3:  # some cameras and codecs give gray or BGRA frames
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
        if self._next == 0:
            self.size = (image.shape[1], image.shape[0])
            check_frame_size(self.size, self.max_frame_side, self.name)
        index = self._next
        self._next += 1
        if self.live:
            now = time.monotonic()
            self._t0 = now if self._t0 is None else self._t0
            t = now - self._t0
        else:
            # The container's timestamp where it gives one (variable frame rate phone videos), else index / fps.
            ms = _prop(self.capture, cv2.CAP_PROP_POS_MSEC)
            t = ms / 1000.0 if ms > 0 else index / self.fps
        return Frame(index, t, image)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.capture.release()


class FolderSource:
    """The image files of a folder (not its sub-folders), in name order, as frames at ``fps``. A file that does not
    decode is skipped with a warning; its index stays taken, so frame numbers keep matching file positions."""

    live = False

    def __init__(self, folder: str | Path, *, fps: float | None = None,
                 max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE):
        from ferkit.inference.imageio import IMAGE_SUFFIXES

        self.folder = Path(folder)
        self.name = str(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoError(f"{folder} holds no image files to read as frames "
                             f"(expected e.g. frame_0001.png, frame_0002.png, ...)")
        self.fps = float(fps or DEFAULT_FPS)
        self.frame_count = len(self.files)
        self.max_frame_side = max_frame_side
        self.size: tuple[int, int] | None = None
        self._next = 0

    def read(self) -> Frame | None:
        while self._next < len(self.files):
            index, path = self._next, self.files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping %s: not an image OpenCV can decode", path)
                continue
            check_frame_size((image.shape[1], image.shape[0]), self.max_frame_side, str(path))
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            return Frame(index, index / self.fps, image)
        return None

    def close(self) -> None:
        pass


def open_source(source: Any, *, fps: float | None = None,
                max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE) -> FrameSource:
    """A FrameSource for ``source``: a FrameSource (returned as it is), an int (camera index), a URL
    (``rtsp://``, ``http://``, ...: a live stream), a folder of frames or a video file. ``fps`` sets the rate of
    a folder (default 30) or overrides what a file reports."""
    if hasattr(source, "read") and hasattr(source, "close") and hasattr(source, "live"):
        return source
    if isinstance(source, bool) or not isinstance(source, (int, str, Path)):
        raise VideoError(f"expected a video file, a folder of frames, a camera index or a stream URL; "
                         f"got {type(source).__name__}")
    if isinstance(source, int):
        return open_camera(source, fps=fps, max_frame_side=max_frame_side)
    text = str(source)
    if "://" in text:
        return open_stream(text, fps=fps, max_frame_side=max_frame_side)
    path = Path(text).expanduser()
    if path.is_dir():
        return FolderSource(path, fps=fps, max_frame_side=max_frame_side)
    return open_video_file(path, fps=fps, max_frame_side=max_frame_side)


def open_video_file(path: str | Path, *, fps: float | None = None,
                    max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE) -> CaptureSource:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if not path.is_file():
        raise VideoError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path} is empty (0 bytes)")
    with quiet_opencv():  # FFmpeg's own error lines would come on top of ours
        cap = cv2.VideoCapture(str(path))
        opened = cap.isOpened()
        first = cap.read() if opened else (False, None)
    if not opened:
        codec = probe_codec(path)
        kind = None if codec else _container(path)
        if kind:
            raise VideoError(f"{path} is an {kind} file without a video stream (no frames)")
        raise VideoError(_unreadable_message(path, codec))
    if not first[0]:
        count = _prop(cap, cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        if not count:
            raise VideoError(f"{path} has no video frames")
        raise VideoError(_unreadable_message(path, _fourcc(cap) or probe_codec(path)))
    cap.release()  # reopened, rather than seeking back: seeking is approximate in many containers
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path))
    return CaptureSource(cap, name=str(path), live=False, fps=fps, max_frame_side=max_frame_side)


def open_camera(index: int, *, fps: float | None = None,
                max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE) -> CaptureSource:
    with quiet_opencv():
        cap = cv2.VideoCapture(index)
        opened = cap.isOpened()
    if not opened:
        found = sorted(glob.glob("/dev/video*"))
        where = (f"cameras present: {', '.join(found)}" if found else "no camera devices found") \
            if Path("/dev").is_dir() else "check that it is connected and not used by another program"
        raise VideoError(f"cannot open camera {index} ({where})")
    return CaptureSource(cap, name=f"camera {index}", live=True, fps=fps, max_frame_side=max_frame_side)


def open_stream(url: str, *, fps: float | None = None,
                max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE) -> CaptureSource:
    with quiet_opencv():
        cap = cv2.VideoCapture(url)
        opened = cap.isOpened()
    if not opened:
        raise VideoError(f"cannot open stream {url}: no answer, or not a video stream OpenCV's FFmpeg can read")
    return CaptureSource(cap, name=url, live=True, fps=fps, max_frame_side=max_frame_side)


def check_frame_size(size: tuple[int, int], max_side: int | None, name: str) -> None:
    if max_side and max(size) > max_side:
        w, h = size
        raise VideoError(f"{name}: frames are {w}x{h}, larger than the limit of {max_side} px on the longer side; "
                         f"downscale first (ffmpeg -i IN -vf scale=1920:-2 -c:v libx264 -pix_fmt yuv420p OUT.mp4) "
                         f"or raise the limit (--max-frame-side)")


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's log while probing a source: a failed open is reported once, as a VideoError, not under
    OpenCV's own lines. The level is process-wide, so it is restored right after. FFmpeg's messages are set
    to fatal-only through OPENCV_FFMPEG_LOGLEVEL, which OpenCV reads once, when its FFmpeg backend first starts
    (so only if the process has not opened a video yet, and never over the user's own setting)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is None:
        yield
        return
    before = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(before)


# ---------------------------------------------------------------------------------------------------------------
# Naming the codec of a file OpenCV cannot open


# Codec FourCCs people meet, with the names they know them by.
_CODEC_NAMES = {
    "avc1": "H.264", "h264": "H.264", "hvc1": "H.265/HEVC", "hev1": "H.265/HEVC", "hevc": "H.265/HEVC",
    "av01": "AV1", "vp08": "VP8", "vp09": "VP9", "apch": "Apple ProRes 422 HQ", "apcn": "Apple ProRes 422",
    "apcs": "Apple ProRes 422 LT", "apco": "Apple ProRes 422 Proxy", "ap4h": "Apple ProRes 4444",
    "mjpg": "Motion JPEG", "mp4v": "MPEG-4 Part 2", "xvid": "MPEG-4 Part 2 (Xvid)", "divx": "MPEG-4 Part 2 (DivX)",
    "dvhe": "Dolby Vision (HEVC)", "dvh1": "Dolby Vision (HEVC)", "cfhd": "GoPro CineForm", "dnxh": "Avid DNxHD",
}
_MKV_CODECS = {b"V_MPEGH/ISO/HEVC": "hevc", b"V_MPEG4/ISO/AVC": "avc1", b"V_AV1": "av01", b"V_VP9": "vp09",
               b"V_VP8": "vp08", b"V_PRORES": "apch", b"V_MJPEG": "mjpg", b"V_MPEG4/ISO/ASP": "mp4v",
               b"V_MPEG4/ISO/SP": "mp4v"}


def probe_codec(path: str | Path, limit: int = 4 << 20) -> str | None:
    """The video codec FourCC a container declares (MP4/MOV sample entry, AVI stream header, Matroska codec id),
    read from the file's first and last ``limit`` bytes; None when none is found. Only for error messages: it
    reads headers, it does not validate them."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(limit)
            tail = b""
            if size > limit:  # an MP4's index (moov) is often at the end
                f.seek(max(limit, size - limit))
                tail = f.read(limit)
    except OSError:
        return None
    for data in (head, tail):
        code = _probe_mp4(data) or _probe_avi(data) or _probe_mkv(data)
        if code:
            return code
    return None


def _container(path: Path) -> str | None:
    """"MP4", "AVI" or "Matroska" from the file's magic bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[4:8] == b"ftyp":
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return "Matroska" if head[:4] == b"\x1a\x45\xdf\xa3" else None


def _probe_mp4(data: bytes) -> str | None:
    # stsd: size(4) 'stsd' version/flags(4) entry_count(4) | entry: size(4) format(4); the video track's entry is
    # the one followed by the VisualSampleEntry layout, but the first printable one is a good enough guess.
    start = 0
    while (at := data.find(b"stsd", start)) >= 4:
        fmt = data[at + 16:at + 20]
        if len(fmt) == 4 and all(32 <= b < 127 for b in fmt) and fmt not in (b"mp4a", b"ac-3", b"ec-3", b"Opus",
                                                                               b"tx3g", b"text", b"tmcd"):
            return fmt.decode("ascii")
        start = at + 4
    return None


def _probe_avi(data: bytes) -> str | None:
    if data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    # The video stream's header: 'strh' size(4) 'vids' fccHandler(4) ...; then 'strf' size(4) and a
    # BITMAPINFOHEADER whose biCompression (at byte 16) is the codec itself (fccHandler is often blank).
    at = data.find(b"vids")
    if at < 8 or data[at - 8:at - 4] != b"strh":
        return None
    strf = data.find(b"strf", at)
    for fcc in ((data[strf + 24:strf + 28] if strf >= 0 else b""), data[at + 4:at + 8]):
        if len(fcc) == 4 and all(32 <= b < 127 for b in fcc) and fcc.strip(b"\0 "):
            return fcc.decode("ascii")
    return None


def _probe_mkv(data: bytes) -> str | None:
    if data[:4] != b"\x1a\x45\xdf\xa3":  # EBML magic (Matroska, WebM)
        return None
    for key, code in _MKV_CODECS.items():
        if key in data:
            return code
    return None


def _unreadable_message(path: Path, fourcc: str | None) -> str:
    if fourcc:
        known = _CODEC_NAMES.get(fourcc.lower().strip())
        what = f"its video codec is {fourcc!r}" + (f" ({known})" if known else "")
        return f"cannot decode {path}: {what}, which this OpenCV build cannot read; convert it: {CONVERT_HINT}"
    return (f"cannot read {path}: not a video file OpenCV can open (no video stream it recognises); if it is a "
            f"video, convert it: {CONVERT_HINT}")


def _fourcc(cap: Any) -> str | None:
    code = int(_prop(cap, cv2.CAP_PROP_FOURCC) or 0)
    text = code.to_bytes(4, "little").decode("ascii", "replace") if code > 0 else ""
    return text if text.strip("\0 ") and text.isprintable() else None


def _prop(capture: Any, prop: int) -> float:
    try:
        value = float(capture.get(prop))
    except Exception:  # a capture-like object that does not know the property
        return 0.0
    return value if math.isfinite(value) else 0.0
