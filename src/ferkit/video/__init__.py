"""Video and webcam: faces tracked across frames, their expressions over time, annotated videos.

    >>> from ferkit.video import analyze
    >>> timeline = analyze("talk.mp4", out="annotated.mp4", csv="faces.csv")
    >>> timeline.summary()[0].dominant, timeline.to_pandas().head()

    >>> from ferkit.video import video_recognizer
    >>> for frame in video_recognizer().stream(0):             # camera 0; a file, folder or URL works too
    ...     print(frame.index, [(f.track_id, f.emotion_smooth) for f in frame.faces])

Where things are:

- ``sources``: the readers behind one capture interface: ``open_source`` (files, folders of frames, cameras,
  stream URLs), ``CaptureSource`` (anything shaped like ``cv2.VideoCapture``), ``FolderSource``, ``VideoError``
  and the checks on bad input (missing file, codec OpenCV cannot decode, no frames, frames too large).
- ``tracker``: ``IoUTracker``, track ids by IoU matching with an optimal assignment, motion prediction and a gap.
- ``smoothing``: ``EMASmoother``, each track's probabilities averaged over time.
- ``pipeline``: ``FrameReader`` (the reader thread), ``DetectionThread`` (the detector thread), ``FrameQueue``
  (the bounded queues between them, dropping the oldest frame for live sources), ``VideoStream`` (batched
  inference: tracking, one forward pass per batch of frames, smoothing), ``analyze`` (the stream into outputs),
  ``video_recognizer`` (a Recognizer with the video path's cheaper TTA and thread settings).
- ``timeline``: ``Timeline`` (one row per face per frame; CSV, JSON, Parquet, pandas; ``summary()``, ``plot()``).
- ``writers``: ``AnnotatedVideoWriter`` (the writer thread), ``Window`` (live display), ``draw_overlay``.

Nothing here imports PyTorch; SciPy is imported by the tracker, matplotlib, pyarrow and pandas only by the
outputs that need them.
"""
from __future__ import annotations

from ferkit.lazy import lazy_exports

_PUBLIC = {
    "analyze": "ferkit.video.pipeline",
    "stream": "ferkit.video.pipeline",
    "video_recognizer": "ferkit.video.pipeline",
    "VideoStream": "ferkit.video.pipeline",
    "VideoFrame": "ferkit.video.pipeline",
    "TrackedFace": "ferkit.video.pipeline",
    "Timeline": "ferkit.video.timeline",
    "TrackSummary": "ferkit.video.timeline",
    "IoUTracker": "ferkit.video.tracker",
    "EMASmoother": "ferkit.video.smoothing",
    "open_source": "ferkit.video.sources",
    "CaptureSource": "ferkit.video.sources",
    "VideoError": "ferkit.video.sources",
}

__all__ = list(_PUBLIC)


__getattr__ = lazy_exports(__name__, _PUBLIC)
