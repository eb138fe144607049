"""The bounded inference pool: a fixed number of threads, a fixed number of admitted requests.

Requests are admitted before their body is read (so at most ``capacity`` bodies are ever in memory) and
refused with 503 + Retry-After beyond it. Admitted work waits in one FIFO; a thread that picks up an image
also takes the images queued right behind it (up to ``max_batch``) and runs them through the Recognizer
together, so under load the faces of many requests share one forward pass, and an idle server adds no
waiting. Decoding happens on these threads too: the event loop only moves bytes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ferkit.serve.limits import ApiError, decode_image

log = logging.getLogger(__name__)

# Images between heap trims. Decoded photos are freed into per-thread glibc arenas that glibc keeps rather than
# returning, so a server's RSS climbs with every new image size it meets; malloc_trim hands that memory back.
# It costs about a millisecond, so once per this many images is free next to their inference.
TRIM_EVERY = 32


def _heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim(0), or a no-op where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


_trim_heap = _heap_trimmer()


@dataclass
class _Image:
    data: bytes
    name: str
    future: Future


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future


class Ticket:
    """One admitted request. Its slot is released when the request is finished *and* the work it queued is
    done: a request that timed out while its image was being classified keeps the slot until the thread is
    free, so the pool never holds more than ``capacity`` requests' work."""

    def __init__(self, pool: "InferencePool"):
        self._pool = pool
        self._pending = 1  # the request itself
        self._lock = threading.Lock()

    def hold(self, futures: Sequence[Future]) -> None:
        with self._lock:
            self._pending += len(futures)
        for f in futures:
            f.add_done_callback(lambda _f: self._done())

    def release(self) -> None:
        """The request is finished (answered, failed or timed out)."""
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._pool._release()


class InferencePool:
    """``threads`` workers over one Recognizer; at most ``threads + queue`` requests admitted at once."""

    def __init__(self, recognizer, *, threads: int, queue: int, max_batch: int, max_pixels: int,
                 batch_pixels: int = 16_000_000):
        self.recognizer = recognizer
        self.threads, self.capacity = threads, threads + queue
        self.max_batch, self.max_pixels = max_batch, max_pixels
        # Decoded pixels one thread holds before classifying them: detection sees each image at 480 px anyway,
        # so batching large photos saves nothing and costs their full-size arrays.
        self.batch_pixels = batch_pixels
        self._tasks: deque[_Image | _Call] = deque()
        self._cond = threading.Condition()
        self._admitted = 0
        self._busy = 0
        self._closed = False
        self._workers: list[threading.Thread] = []
        self.served = 0  # images classified, for /health

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._workers:
                return
            self._closed = False
            self._workers = [threading.Thread(target=self._work, name=f"ferkit-infer-{i}", daemon=True)
                             for i in range(self.threads)]
        for t in self._workers:
            t.start()

    def close(self) -> None:
        """Stop the threads after the task each is running; queued work is cancelled."""
        with self._cond:
            self._closed = True
            pending = list(self._tasks)
            self._tasks.clear()
            self._cond.notify_all()
        for task in pending:
            task.future.cancel()
        for t in self._workers:
            t.join(timeout=30)
        self._workers = []

    @property
    def running(self) -> bool:
        with self._cond:
            return bool(self._workers) and not self._closed

    # -- admission ---------------------------------------------------------------------------------------------
    def admit(self) -> Ticket:
        """A slot for one request, or ApiError 503 with a Retry-After estimate when all are taken."""
        with self._cond:
            if self._admitted >= self.capacity:
                raise ApiError(503, f"the server is busy ({self._admitted} requests in progress, its limit); "
                                    f"retry shortly", {"Retry-After": "1"})
            self._admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._cond:
            self._admitted -= 1

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"threads": self.threads, "busy": self._busy, "queued": len(self._tasks),
                    "admitted": self._admitted, "capacity": self.capacity, "images_served": self.served}

    # -- work --------------------------------------------------------------------------------------------------
    def submit_images(self, images: Sequence[tuple[bytes, str]]) -> list[Future]:
        """Each (encoded bytes, name) -> a Future of (list[FaceResult], (height, width)) or ApiError."""
        tasks = [_Image(data, name, Future()) for data, name in images]
        self._push(tasks)
        return [t.future for t in tasks]

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on a pool thread (explanations, anything else that must not block the event loop)."""
        task = _Call(fn, Future())
        self._push([task])
        return task.future

    def _push(self, tasks: list) -> None:
        with self._cond:
            if self._closed or not self._workers:
                raise ApiError(503, "the server is not running its inference threads (starting or shutting down)",
                               {"Retry-After": "1"})
            self._tasks.extend(tasks)
            self._cond.notify(len(tasks))

    def _take(self) -> list | None:
        with self._cond:
            while not self._tasks and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._tasks.popleft()
            batch = [first]
            if isinstance(first, _Image):
                while self._tasks and isinstance(self._tasks[0], _Image) and len(batch) < self.max_batch:
                    batch.append(self._tasks.popleft())
            self._busy += 1
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                # A future cancelled while queued (its request timed out) is skipped, not computed.
                live = [t for t in batch if t.future.set_running_or_notify_cancel()]
                if live and isinstance(live[0], _Call):
                    _run_call(live[0])
                elif live:
                    self._run_images(live)
            finally:
                with self._cond:
                    self._busy -= 1

    def _run_images(self, tasks: list[_Image]) -> None:
        """Decode, then classify together; a run is cut short once its decoded pixels reach ``batch_pixels``, so
        a batch of large photos holds at most about that many pixels plus one photo per thread."""
        decoded: list = []
        ready: list[_Image] = []
        pixels = 0
        for t in tasks:
            try:
                image = decode_image(t.data, t.name, self.max_pixels)
            except ApiError as exc:
                t.future.set_exception(exc)
                continue
            finally:
                t.data = b""  # the encoded bytes are no longer needed; do not keep them while classifying
            decoded.append(image)
            ready.append(t)
            pixels += image.shape[0] * image.shape[1]
            if pixels >= self.batch_pixels:
                self._classify(ready, decoded)
                decoded, ready, pixels = [], [], 0
        if ready:
            self._classify(ready, decoded)

    def _classify(self, tasks: list[_Image], images: list) -> None:
        try:
            results = self.recognizer.predict_decoded(images)
        except Exception as exc:
            log.exception("inference failed on %d image(s)", len(tasks))
            for t in tasks:
                t.future.set_exception(exc)
            return
        with self._cond:
            before = self.served
            self.served += len(tasks)
            trim = self.served // TRIM_EVERY != before // TRIM_EVERY
        if trim:
            _trim_heap()
        for t, image, faces in zip(tasks, images, results):
            t.future.set_result((faces, image.shape[:2]))


def _run_call(task: _Call) -> None:
    try:
        task.future.set_result(task.fn())
    except BaseException as exc:  # delivered to the request, which turns it into an answer
        task.future.set_exception(exc)
