"""The inference pool behind `ferkit serve`: images queued together are classified together, each request gets
its own answer, admission is bounded, and a closed pool cancels what is still queued."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ferkit.assets import sample_image_path
from ferkit.inference.recognizer import Recognizer
from ferkit.serve.limits import ApiError
from ferkit.serve.pool import InferencePool


class SpyRecognizer:
    """The real recognizer, recording how many images each predict_decoded call got."""

    def __init__(self, rec: Recognizer):
        self.rec, self.calls = rec, []

    def predict_decoded(self, images):
        self.calls.append(len(images))
        return self.rec.predict_decoded(images)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(detector="haar")


def encoded(width: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(sample_image_path()).resize((width, width * 600 // 512)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_images_queued_behind_a_busy_thread_share_one_batch_and_keep_their_own_answers(recognizer):
    spy = SpyRecognizer(recognizer)
    pool = InferencePool(spy, threads=1, queue=8, max_batch=8, max_pixels=10**8)
    pool.start()
    try:
        gate = threading.Event()
        blocker = pool.submit(lambda: gate.wait(10))  # the only thread is busy while the images queue up
        sizes = [512, 256, 384, b"broken", 320]
        futures = pool.submit_images([(encoded(s) if isinstance(s, int) else s, f"img{i}")
                                      for i, s in enumerate(sizes)])
        gate.set()
        assert blocker.result(10) is True
        results = [f.exception(10) or f.result(10) for f in futures]
    finally:
        pool.close()
    assert spy.calls == [4]  # the four readable images in one call; the broken one never reached the model
    assert isinstance(results[3], ApiError) and results[3].status == 415
    for size, res in zip(sizes, results):
        if isinstance(size, int):
            faces, shape = res
            alone = recognizer.predict(encoded(size))
            assert shape == (size * 600 // 512, size)
            assert [f.box for f in faces] == [f.box for f in alone]
            np.testing.assert_allclose([list(f.probs.values()) for f in faces],
                                       [list(f.probs.values()) for f in alone], atol=1e-5)


def test_a_batch_of_large_photos_is_classified_in_parts_to_bound_memory(recognizer):
    spy = SpyRecognizer(recognizer)
    pool = InferencePool(spy, threads=1, queue=8, max_batch=8, max_pixels=10**8, batch_pixels=400_000)
    pool.start()
    try:
        gate = threading.Event()
        pool.submit(lambda: gate.wait(10))
        futures = pool.submit_images([(encoded(w), f"img{w}") for w in (512, 256, 384, 320)])
        gate.set()
        shapes = [f.result(10)[1] for f in futures]
    finally:
        pool.close()
    # 307,200 + 76,800 + 172,800 pixels reach the limit: those three go together, the fourth alone.
    assert spy.calls == [3, 1]
    assert shapes == [(600, 512), (300, 256), (450, 384), (375, 320)]


def test_admission_stops_at_threads_plus_queue_and_slots_come_back(recognizer):
    pool = InferencePool(recognizer, threads=1, queue=1, max_batch=4, max_pixels=10**8)
    a, b = pool.admit(), pool.admit()
    with pytest.raises(ApiError) as busy:
        pool.admit()
    assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "1"}
    a.release()
    pool.admit().release()
    b.release()
    assert pool.stats()["admitted"] == 0


def test_closing_the_pool_cancels_queued_work(recognizer):
    pool = InferencePool(recognizer, threads=1, queue=4, max_batch=1, max_pixels=10**8)
    pool.start()
    gate, started = threading.Event(), threading.Event()
    running = pool.submit(lambda: started.set() or gate.wait(10))
    queued = pool.submit(lambda: "never")
    assert started.wait(10)
    closer = threading.Thread(target=pool.close)
    closer.start()
    while pool.running:  # closed (queue emptied) while the thread is still busy
        threading.Event().wait(0.01)
    gate.set()
    closer.join(10)
    assert running.result(1) is True and queued.cancelled()
    with pytest.raises(ApiError) as stopped:
        pool.submit(lambda: None)
    assert stopped.value.status == 503


def test_freed_heap_is_handed_back_every_few_dozen_images(recognizer, monkeypatch):
    import ferkit.serve.pool as pool_module

    trims = []
    monkeypatch.setattr(pool_module, "TRIM_EVERY", 4)
    monkeypatch.setattr(pool_module, "_trim_heap", lambda: trims.append(1))
    pool = InferencePool(recognizer, threads=1, queue=16, max_batch=1, max_pixels=10**8)
    pool.start()
    try:
        photo = encoded(128)
        for f in pool.submit_images([(photo, f"img{i}") for i in range(9)]):
            f.result(10)
    finally:
        pool.close()
    assert len(trims) == 2  # after the 4th and the 8th image, not the 9th

