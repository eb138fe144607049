"""PCA compression of cached faces: each colour channel projected onto the principal components that keep a
given share of its variance (one of the studies reduced AffectNet this way, keeping 95% per channel).

``PCACodec.fit`` learns the components from a sample of faces, ``encode`` turns faces into float16
coefficients (what is stored), ``decode`` rebuilds uint8 faces from them. ``compress_dataset`` is what
``load_dataset(pca=0.95)`` calls: it fits on the training split, keeps the codec and the coefficients in one
``.npz`` beside the cache, and hands back the dataset with its faces rebuilt from them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ferkit.batching import iter_batches
from ferkit.errors import DataError
from ferkit.paths import atomic_write

log = logging.getLogger(__name__)

FIT_SAMPLE = 4000  # faces the components are learnt from: enough for stable leading components, cheap to fit


@dataclass
class PCACodec:
    """Per channel c: ``mean[c]`` (D,) and ``components[c]`` (k_c x D), D = H * W pixels."""

    shape: tuple[int, ...]  # H, W[, C] of a face
    variance: float
    mean: list[np.ndarray]
    components: list[np.ndarray]

    @property
    def kept(self) -> list[int]:
        return [len(c) for c in self.components]

    @classmethod
    def fit(cls, images: np.ndarray, variance: float = 0.95, *, sample: int = FIT_SAMPLE,
            seed: int = 0) -> "PCACodec":
        if not 0 < variance < 1:
            raise DataError(f"pca: the share of variance to keep is in (0, 1), e.g. 0.95; got {variance}")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(images), min(sample, len(images)), replace=False))
        faces = _channels(np.asarray(images[pick]))
        mean, components = [], []
        for x in faces:  # N x D per channel
            mu = x.mean(0)
            xc = x - mu
            # Eigen-decomposition of the smaller of the two Gram matrices: D x D for small faces (48 px:
            # 2,304), N x N for large ones (112 px: 12,544 pixels, a 4,000-face sample).
            if xc.shape[1] <= xc.shape[0]:
                values, vectors = np.linalg.eigh(xc.T @ xc)
                values, basis = values[::-1], vectors[:, ::-1].T
            else:
                values, vectors = np.linalg.eigh(xc @ xc.T)
                values, vectors = values[::-1], vectors[:, ::-1]
                keep = values > values[0] * 1e-9
                values, vectors = values[keep], vectors[:, keep]
                basis = (xc.T @ vectors / np.sqrt(values)).T
            share = np.cumsum(np.clip(values, 0, None)) / max(float(np.clip(values, 0, None).sum()), 1e-12)
            k = int(np.searchsorted(share, variance) + 1)
            mean.append(mu.astype(np.float32))
            components.append(np.ascontiguousarray(basis[:k], dtype=np.float32))
        return cls(tuple(images.shape[1:]), float(variance), mean, components)

    def encode(self, images: np.ndarray, batch: int = 4096) -> list[np.ndarray]:
        """Per channel N x k_c float16 coefficients."""
        codes = [np.empty((len(images), len(c)), np.float16) for c in self.components]
        for sl in iter_batches(len(images), batch):
            for c, x in enumerate(_channels(np.asarray(images[sl]))):
                codes[c][sl] = (x - self.mean[c]) @ self.components[c].T
        return codes

    def decode(self, codes: list[np.ndarray], batch: int = 4096) -> np.ndarray:
        n = len(codes[0])
        out = np.empty((n, *self.shape), np.uint8)
        for sl in iter_batches(n, batch):
            planes = [codes[c][sl].astype(np.float32) @ self.components[c] + self.mean[c]
                      for c in range(len(self.components))]
            faces = np.stack(planes, -1).reshape(len(planes[0]), *self.shape[:2], len(planes))
            out[sl] = np.clip(np.rint(faces), 0, 255).astype(np.uint8).reshape(out[sl].shape)
        return out

    def save(self, path: Path, codes: list[np.ndarray]) -> None:
        arrays = {"shape": np.array(self.shape), "variance": np.array(self.variance)}
        for c, (mu, comp, code) in enumerate(zip(self.mean, self.components, codes)):
            arrays.update({f"mean{c}": mu, f"components{c}": comp, f"codes{c}": code})
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> tuple["PCACodec", list[np.ndarray]]:
        with np.load(path) as z:
            channels = sum(1 for k in z.files if k.startswith("mean"))
            codec = cls(tuple(int(v) for v in z["shape"]), float(z["variance"]),
                        [z[f"mean{c}"] for c in range(channels)], [z[f"components{c}"] for c in range(channels)])
            return codec, [z[f"codes{c}"] for c in range(channels)]


def _channels(images: np.ndarray) -> list[np.ndarray]:
    """N x H x W [x C] uint8 -> one N x (H * W) float32 matrix per channel."""
    x = images.astype(np.float32)
    if x.ndim == 3:
        return [x.reshape(len(x), -1)]
    return [x[..., c].reshape(len(x), -1) for c in range(x.shape[-1])]


def compress_dataset(ds, variance: float, store: Path | None, seed: int = 0):
    """``ds`` with its faces rebuilt from PCA coefficients (fitted on its train split, else on all faces), and
    a report {variance, components per channel, stored/raw size}. With ``store`` the codec and coefficients are
    kept there and read back next time instead of refitting."""
    if store is not None and store.is_file():
        codec, codes = PCACodec.load(store)
    else:
        train = ds.images[ds.splits == "train"] if (ds.splits == "train").any() else ds.images
        codec = PCACodec.fit(train, variance, seed=seed)
        codes = codec.encode(ds.images)
        if store is not None:
            codec.save(store, codes)
    stored = sum(c.nbytes for c in codes) + sum(m.nbytes + p.nbytes for m, p in zip(codec.mean, codec.components))
    report = {"variance": codec.variance, "components": codec.kept,
              "stored_share": round(stored / max(ds.images.nbytes, 1), 4)}
    log.info("pca %.2f: %s components per channel, stored in %.1f%% of the faces' bytes", variance, codec.kept,
             100 * report["stored_share"])
    return replace(ds, images=codec.decode(codes)), report
