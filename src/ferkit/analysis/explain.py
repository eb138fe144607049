"""Where does the model look? Saliency, SmoothGrad, Grad-CAM, occlusion sensitivity and feature maps.

Every method takes any ferkit model and a *normalised* batch ``x`` (N x C x H x W, as made by
``ferkit.transforms.preprocess.faces_to_tensor``) and returns heatmaps as a float32 numpy array N x H x W in [0, 1] at
the model's input size, each map scaled so its maximum is 1 (an all-zero map stays zero). ``METHODS`` is the one
table of methods by name, with the options each takes; ``explain`` does the preprocessing from uint8 faces and
adds the prediction. ``explain_faces.explain_image`` explains the faces of a photo as a Recognizer finds them,
``emotion_maps.explain_dataset`` a dataset split (mean map per emotion).

The target class is the predicted one unless ``target`` names one: an index, an emotion name from the
model's labels, or one per face (a sequence of indices, e.g. the true labels).

Grad-CAM of an ensemble sums each member's map at that member's last spatial layer.

The model is used in eval mode and left as found: hooks are removed, parameters' ``requires_grad`` and
each module's train/eval flag are restored, no parameter gradient is computed.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.batching import iter_batches
from ferkit.errors import DataError, FerkitError
from ferkit.labels import canonical_label
from ferkit.models.config import ModelConfig
from ferkit.models.ensemble import Ensemble

Target = int | str | Sequence[int] | np.ndarray | torch.Tensor | None
LAYER_JOIN = "+"  # Grad-CAM over several layers ("members.0.layer4+members.1.layer4"): the sum of their maps


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a 4-D spatial map, and that output's shape for one input."""

    name: str
    shape: tuple[int, ...]


@dataclass
class Explanation:
    """Heatmaps for a batch of faces plus the prediction they explain."""

    method: str
    maps: np.ndarray  # N x H x W float32 in [0, 1]
    probs: np.ndarray  # N x K (temperature-scaled softmax of the unaugmented view)
    target: np.ndarray  # N, class index each map explains
    labels: list[str]
    layer: str | None = None  # Grad-CAM / feature layer
    features: np.ndarray | None = None  # N x K x h x w raw activations, method "features" only
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    def face(self, i: int) -> "Explanation":
        """The explanation of face ``i`` alone (arrays with N = 1)."""
        keep = slice(i, i + 1)
        return Explanation(self.method, self.maps[keep], self.probs[keep], self.target[keep], self.labels,
                           self.layer, None if self.features is None else self.features[keep], dict(self.options))

    def face_json(self, i: int, decimals: int = 4) -> dict[str, Any]:
        """Plain data for face ``i``: prediction, target, method and the raw map (rounded)."""
        pred = int(self.predicted[i])
        return {
            "emotion": self.labels[pred], "score": round(float(self.probs[i, pred]), decimals),
            "probs": {name: round(float(p), decimals) for name, p in zip(self.labels, self.probs[i])},
            "method": self.method, "target": self.labels[int(self.target[i])], "layer": self.layer,
            "map": np.round(self.maps[i].astype(np.float64), decimals).tolist(),
        }


# ----------------------------------------------------------------------------------------- plumbing
@contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode, no parameter gradients, grad enabled (even inside a caller's inference_mode); restored."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)  # gradients w.r.t. inputs/activations only: cheaper, and no .grad left behind
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _logits(out: Any) -> torch.Tensor:
    # Some architectures (Inception with aux heads) return a tuple; the main logits come first.
    return (out[0] if isinstance(out, (tuple, list)) else out).float()


def _normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each N x H x W map to max 1; negative values are clipped (all methods report positive heat)."""
    maps = maps.clamp_min(0)
    peak = maps.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x h x w -> N x H x W, bilinear (the usual Grad-CAM upsampling)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def resolve_target(target: Target, logits: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
    """Class index per sample (N, long): predicted if None, else an index, a label name or one per sample."""
    n, k = logits.shape
    names = list(labels) if labels is not None else [str(i) for i in range(k)]
    if target is None:
        return logits.argmax(1)
    if isinstance(target, str):
        key = target.strip().lower()
        if key.isdigit():
            target = int(key)
        else:
            try:  # accept common spellings ("happiness", "anger") for models with canonical labels
                key = canonical_label(key)
            except DataError:
                pass
            if key not in names:
                raise FerkitError(f"unknown target emotion {target!r}; this model's classes: {', '.join(names)}")
            return torch.full((n,), names.index(key), dtype=torch.long, device=logits.device)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise FerkitError(f"expected one target or {n} targets (one per face), got {tuple(t.shape)}")
    if bool(((t < 0) | (t >= k)).any()):
        raise FerkitError(f"target index out of range; this model has {k} classes: {', '.join(names)}")
    return t.contiguous()


# --------------------------------------------------------------------------------------- layers
def _trace(model: nn.Module, x: torch.Tensor) -> tuple[Any, list[tuple[str, torch.Tensor]]]:
    """Forward with a hook on every module; returns the output and (name, output) in firing order."""
    fired: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                fired.append((name, out))
        handles.append(module.register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, fired


def _is_spatial(t: torch.Tensor) -> bool:
    return t.ndim == 4 and t.shape[-2] * t.shape[-1] > 1


def spatial_layers(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """Modules producing a 4-D map with spatial size > 1, in forward order (traced on the first sample)."""
    with _explaining(model), torch.no_grad():
        _, fired = _trace(model, x[:1])
    last: dict[str, tuple[int, ...]] = {}
    for name, out in fired:  # a module called twice keeps its last output, at its last position
        if _is_spatial(out):
            last.pop(name, None)
            last[name] = tuple(out.shape)
    return [LayerInfo(n, s) for n, s in last.items()]


# Adaptive pools only resample the last feature map to the head's fixed grid (VGG's 7 x 7): explaining the
# map they read is sharper and is what Grad-CAM's authors used.
_RESAMPLERS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _pick_layer(model: nn.Module, fired: list[tuple[str, torch.Tensor]]) -> tuple[str, torch.Tensor]:
    """The last module producing a spatial map; refuse token models whose spatial map feeds a transformer."""
    modules = dict(model.named_modules())
    index = next((i for i in range(len(fired) - 1, -1, -1)
                  if _is_spatial(fired[i][1]) and not isinstance(modules[fired[i][0]], _RESAMPLERS)), None)
    arch = type(model).__name__
    if index is None:
        raise FerkitError(
            f"{arch} has no layer with a spatial N x C x H x W output, so Grad-CAM and feature maps do not "
            f"apply; use --method saliency, smoothgrad or occlusion"
        )
    name, act = fired[index]
    tokens = [n for n, out in fired[index + 1:] if out.ndim == 3]
    if tokens:
        raise FerkitError(
            f"{arch} has no spatial layer for Grad-CAM: its last spatial map ({name}, "
            f"{tuple(act.shape[1:])}) is cut into tokens for transformer blocks ({tokens[0]}, ...), as in a "
            f"vision transformer. Use --method saliency, smoothgrad or occlusion (or pass --layer {name} to "
            f"use the patch embedding anyway)"
        )
    return name, act


def _layer_error(model: nn.Module, x: torch.Tensor, layer: str, why: str) -> FerkitError:
    valid = [info.name for info in spatial_layers(model, x)]
    return FerkitError(
        f"layer {layer!r} {why}; layers with a spatial output in {type(model).__name__}: "
        f"{', '.join(valid) if valid else '(none)'}"
    )


def _forward_capture(model: nn.Module, x: torch.Tensor,
                     layers: Sequence[str] | None) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
    """One forward pass returning logits and (name, output) of each chosen layer, outputs part of the autograd
    graph: the named ``layers``, or by default the last spatial one (``_default_picks``)."""
    if layers is None:
        out, fired = _trace(model, x)
        return _logits(out), _default_picks(model, fired)
    modules = dict(model.named_modules())
    for layer in layers:
        if not layer or layer not in modules:
            raise _layer_error(model, x, layer, "is not a module of this model")
    captured: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = []
    for layer in layers:
        def hook(_m: nn.Module, _i: Any, out: Any, layer: str = layer) -> Any:
            if isinstance(out, torch.Tensor):
                # Hand the rest of the network a copy, so an in-place op after this layer (ReLU(inplace=True))
                # cannot overwrite the activations we explain.
                captured[layer].append(out)
                return out.clone()
            return None
        handles.append(modules[layer].register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    picks = []
    for layer in layers:
        if not captured[layer]:
            raise _layer_error(model, x, layer, "did not produce a tensor in the forward pass")
        act = captured[layer][-1]
        if not _is_spatial(act):
            raise _layer_error(model, x, layer, f"outputs shape {tuple(act.shape)}, not a spatial map")
        picks.append((layer, act))
    return _logits(out), picks


def _default_picks(model: nn.Module, fired: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """The default layer(s) among a traced pass's outputs: the last spatial one; in an ensemble
    (``ferkit.models.ensemble``) each member's own, since the ensemble's answer is all of its members'."""
    if not isinstance(model, Ensemble):
        return [_pick_layer(model, fired)]
    return [_pick_layer(model, [(n, out) for n, out in fired if n.startswith(f"members.{i}.")])
            for i in range(len(model.members))]


# -------------------------------------------------------------------------------------- methods
@dataclass
class _Maps:
    maps: torch.Tensor  # N x H x W, normalised
    logits: torch.Tensor
    target: torch.Tensor
    layer: str | None = None
    features: torch.Tensor | None = None


@dataclass(frozen=True)
class _Pass:
    """What every method is handed besides its own options."""

    labels: Sequence[str] | None = None
    temperature: float = 1.0  # occlusion measures drops in the calibrated probability
    batch_size: int = 64  # images per forward pass, for the methods that make many copies of each face


def _saliency(model: nn.Module, x: torch.Tensor, target: Target, run: _Pass) -> _Maps:
    x = x.clone().detach().requires_grad_(True)  # clone first: also turns an inference tensor into a normal one
    logits = _logits(model(x))
    t = resolve_target(target, logits, run.labels)
    # Samples are independent in eval mode, so the gradient of the summed scores is each face's own gradient.
    (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
    return _Maps(_normalize(grad.abs().amax(1)), logits.detach(), t)  # Simonyan et al.: max |grad| over channels


def _smoothgrad(model: nn.Module, x: torch.Tensor, target: Target, run: _Pass, *, samples: int = 25,
                noise: float = 0.15, generator: torch.Generator | None = None) -> _Maps:
    x = x.detach()
    with torch.no_grad():
        logits = _logits(model(x))
    t = resolve_target(target, logits, run.labels)
    # Noise sigma is a fraction of each image's value range (Smilkov et al. 2017 recommend 10-20%).
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1)
    total = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
    per_pass = max(1, run.batch_size // max(1, x.shape[0]))  # noisy copies per forward pass
    gen_device = generator.device if generator is not None else x.device
    for sl in iter_batches(samples, per_pass):
        k = sl.stop - sl.start
        eps = torch.randn((k, *x.shape), generator=generator, device=gen_device)
        noisy = (x[None] + eps.to(x.device, x.dtype) * noise * span[None]).flatten(0, 1).requires_grad_(True)
        out = _logits(model(noisy))
        (grad,) = torch.autograd.grad(out.gather(1, t.repeat(k)[:, None]).sum(), noisy)
        # Average |grad|: signed gradients of a ReLU net flip sign between noisy copies and cancel out.
        total += grad.abs().amax(1).view(k, x.shape[0], *x.shape[-2:]).sum(0)
    return _Maps(_normalize(total / samples), logits, t)


def _gradcam(model: nn.Module, x: torch.Tensor, target: Target, run: _Pass, *, layer: str | None = None) -> _Maps:
    # The input must require grad for the graph to reach the layer (parameters are frozen meanwhile); the
    # backward pass stops at the layer, so its cost is the head's, not the whole network's. Several layers (an
    # ensemble's members, or names joined by LAYER_JOIN) share the pass, and their maps are summed.
    x = x.clone().detach().requires_grad_(True)
    logits, picks = _forward_capture(model, x, layer.split(LAYER_JOIN) if layer else None)
    t = resolve_target(target, logits, run.labels)
    grads = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), [act for _, act in picks])
    total = 0
    for grad, (_, act) in zip(grads, picks):
        weights = grad.float().mean((2, 3), keepdim=True)  # Selvaraju et al.: channel weight = mean gradient
        total = total + _upsample(F.relu((weights * act.float()).sum(1)).detach(), x.shape[-2:])
    return _Maps(_normalize(total), logits.detach(), t, layer=LAYER_JOIN.join(name for name, _ in picks))


def _features(model: nn.Module, x: torch.Tensor, target: Target, run: _Pass, *, layer: str | None = None) -> _Maps:
    with torch.no_grad():
        logits, picks = _forward_capture(model, x.detach(), None if layer is None else [layer])
    name, act = picks[-1]  # an ensemble's default: its last member's layer
    t = resolve_target(target, logits, run.labels)
    # As one heatmap per face: the mean activation magnitude over channels (target-independent).
    heat = _upsample(act.float().abs().mean(1), x.shape[-2:])
    return _Maps(_normalize(heat), logits, t, layer=name, features=act.float())


def _patch_positions(size: int, patch: int, stride: int) -> list[int]:
    """Patch origins along one side, the last flush with the edge so every pixel is covered."""
    pos = list(range(0, size - patch + 1, stride))
    if pos[-1] != size - patch:
        pos.append(size - patch)
    return pos


def default_patch(size: int) -> tuple[int, int]:
    """Default occlusion patch and stride for an input side: a sixth of the side, half-overlapping (8/4 at 48)."""
    patch = max(1, round(size / 6))
    return patch, max(1, patch // 2)


def _occlusion(model: nn.Module, x: torch.Tensor, target: Target, run: _Pass, *, patch: int | None = None,
               stride: int | None = None, fill: float | str = "mean", normalize: bool = True) -> _Maps:
    x = x.detach()
    n, _, h, w = x.shape
    p_default, s_default = default_patch(min(h, w))
    patch = patch or p_default
    stride = stride or (s_default if patch == p_default else max(1, patch // 2))
    if not 0 < patch <= min(h, w) or stride < 1:
        raise FerkitError(f"occlusion patch must be 1..{min(h, w)} pixels and stride >= 1; got {patch}, {stride}")
    ys, xs = _patch_positions(h, patch, stride), _patch_positions(w, patch, stride)
    masks = torch.zeros(len(ys) * len(xs), h, w, device=x.device)
    for i, (y0, x0) in enumerate((y, x_) for y in ys for x_ in xs):
        masks[i, y0:y0 + patch, x0:x0 + patch] = 1
    hide = masks.bool()[:, None]
    with torch.no_grad():
        logits = _logits(model(x))
        t = resolve_target(target, logits, run.labels)
        base = F.softmax(logits / run.temperature, 1).gather(1, t[:, None])[:, 0]
        # All (face, patch) pairs in flat order, batch_size occluded images per forward pass.
        npatch = len(masks)
        drops = torch.empty(n * npatch, device=x.device)
        if fill == "mean":  # each image's own mean per channel: a patch of it adds no new brightness or edge
            fill_t = x.mean((2, 3), keepdim=True)
        else:
            fill_t = torch.tensor(float(fill), dtype=x.dtype, device=x.device).expand(n, 1, 1, 1)
        for sl in iter_batches(n * npatch, run.batch_size):
            idx = torch.arange(sl.start, sl.stop, device=x.device)
            face, which = idx // npatch, idx % npatch
            batch = torch.where(hide[which], fill_t[face], x[face])
            prob = F.softmax(_logits(model(batch)) / run.temperature, 1).gather(1, t[face][:, None])[:, 0]
            drops[idx] = base[face] - prob
        drops = drops.view(n, npatch).clamp_min(0)  # heat = evidence removed; a rise in probability is not heat
        # Each pixel gets the mean drop over the patches covering it.
        heat = torch.einsum("np,phw->nhw", drops, masks) / masks.sum(0).clamp_min(1)
    return _Maps(_normalize(heat) if normalize else heat, logits, t)


# ------------------------------------------------------------------------------------ dispatch table
@dataclass(frozen=True)
class Method:
    """An explanation method: the function computing its maps and the options it takes. ``explain`` and
    ``explain_tensor`` refuse any other option, so a setting is never silently ignored."""

    name: str
    run: Callable[..., _Maps]  # (model, x, target, _Pass, **options) -> _Maps
    options: tuple[str, ...]
    summary: str


#: Every method ``explain`` and ``ferkit explain --method`` accept, by name, in the order help lists them.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gradcam", _gradcam, ("layer",),
           "Grad-CAM (Selvaraju et al. 2017): a spatial layer's activations weighted by their mean gradient"),
    Method("saliency", _saliency, (), "gradient saliency (Simonyan et al. 2014): max over channels of |d score / d x|"),
    Method("smoothgrad", _smoothgrad, ("samples", "noise", "generator"),
           "SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the face"),
    Method("occlusion", _occlusion, ("patch", "stride", "fill"),
           "occlusion sensitivity (Zeiler & Fergus 2014): probability lost when a patch is hidden"),
    Method("features", _features, ("layer",), "a layer's activations (mean magnitude over channels as the map)"),
)}

# Options that count things must be positive; noise is a standard deviation.
_POSITIVE = ("samples", "patch", "stride")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise FerkitError(f"unknown explanation method {method!r}; valid methods: {', '.join(METHODS)}")
    return method


def method_options(methods: str | Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The options each of ``methods`` takes from ``options`` (None means not given).

    Raises FerkitError for an unknown method, an unknown option, an option that none of ``methods`` takes (it
    would be silently ignored: ``layer`` with occlusion alone) and a count or noise level out of range. An
    option some of the methods take goes to those only (``layer`` with gradcam and occlusion: Grad-CAM's).
    """
    chosen = [check_method(m) for m in ([methods] if isinstance(methods, str) else methods)]
    given = {k: v for k, v in options.items() if v is not None}
    for name, value in given.items():
        takers = [m.name for m in METHODS.values() if name in m.options]
        if not takers:
            known = sorted({o for m in METHODS.values() for o in m.options})
            raise FerkitError(f"unknown explanation option {name!r}; options: {', '.join(known)}")
        if not set(takers) & set(chosen):
            raise FerkitError(f"--{name} applies to {' and '.join(takers)} only, not to {', '.join(chosen)}")
        if name in _POSITIVE and not (isinstance(value, Integral) and not isinstance(value, bool) and value >= 1):
            raise FerkitError(f"--{name} must be a whole number of 1 or more, got {value!r}")
        if name == "noise" and not (isinstance(value, (int, float)) and value >= 0):
            raise FerkitError(f"--noise is a fraction of each face's value range, 0 or more; got {value!r}")
    return {m: {k: v for k, v in given.items() if k in METHODS[m].options} for m in chosen}


# ------------------------------------------------------------------------------------ one method each
def saliency(model: nn.Module, x: torch.Tensor, target: Target = None, *,
             labels: Sequence[str] | None = None) -> np.ndarray:
    """Vanilla gradient saliency (Simonyan et al. 2014): max over channels of |d score / d input|."""
    with _explaining(model):
        return _saliency(model, x, target, _Pass(labels)).maps.cpu().numpy()


def smoothgrad(model: nn.Module, x: torch.Tensor, target: Target = None, *, samples: int = 25,
               noise: float = 0.15, generator: torch.Generator | None = None, batch_size: int = 64,
               labels: Sequence[str] | None = None) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over ``samples`` noisy copies of each face.

    ``noise`` is the noise standard deviation as a fraction of each image's value range; the noisy copies
    run batched, about ``batch_size`` images per forward pass.
    """
    with _explaining(model):
        return _smoothgrad(model, x, target, _Pass(labels, batch_size=batch_size), samples=samples, noise=noise,
                           generator=generator).maps.cpu().numpy()


def gradcam(model: nn.Module, x: torch.Tensor, target: Target = None, *, layer: str | None = None,
            labels: Sequence[str] | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default: the last spatial layer; see ``default_layer``).

    One forward and one partial backward pass. Raises FerkitError for models without a spatial layer
    (vision transformers) and for an unknown ``layer``, listing the valid ones.
    """
    with _explaining(model):
        return _gradcam(model, x, target, _Pass(labels), layer=layer).maps.cpu().numpy()


def occlusion_sensitivity(model: nn.Module, x: torch.Tensor, target: Target = None, *, patch: int | None = None,
                          stride: int | None = None, fill: float | str = "mean", batch_size: int = 64,
                          temperature: float = 1.0, normalize: bool = True,
                          labels: Sequence[str] | None = None) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): drop in target probability when a patch is hidden.

    A ``patch`` x ``patch`` square (default a sixth of the side: 8 px at 48) slides with ``stride``
    (default half the patch); each pixel gets the mean drop over the patches covering it. ``fill`` is
    ``"mean"`` (each image's own mean per channel: the patch removes detail without adding a bright or dark
    square the model could react to) or a value in normalised units (0 = the normalisation mean, mid-grey
    for ferkit's defaults). All occluded copies run batched, ``batch_size`` per forward pass.
    ``normalize=False`` keeps the raw probability drops (still within [0, 1]).
    """
    with _explaining(model):
        return _occlusion(model, x, target, _Pass(labels, temperature, batch_size), patch=patch, stride=stride,
                          fill=fill, normalize=normalize).maps.cpu().numpy()


@dataclass
class FeatureMaps:
    layer: str
    maps: np.ndarray  # N x K x h x w activations


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> FeatureMaps:
    """The activations of ``layer`` (default: the last spatial layer) for a batch: N x K x h x w."""
    with _explaining(model):
        m = _features(model, x, None, _Pass(), layer=layer)
    return FeatureMaps(m.layer or "", m.features.cpu().numpy())


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer Grad-CAM uses by default: the last module producing a spatial (h x w > 1) 4-D output,
    adaptive pooling layers aside (they only resample the map before them); for an ensemble, each member's,
    joined by ``+``."""
    with _explaining(model), torch.no_grad():
        _, fired = _trace(model, x[:1])
    return LAYER_JOIN.join(name for name, _ in _default_picks(model, fired))


# ----------------------------------------------------------------------------------------- any method
def explain_tensor(model: nn.Module, x: torch.Tensor, method: str = "gradcam", target: Target = None, *,
                   labels: Sequence[str] | None = None, temperature: float = 1.0, batch_size: int = 64,
                   **options: Any) -> Explanation:
    """Any method on one normalised batch, with the prediction (probabilities from the same forward pass).

    ``options`` are the method's own (``METHODS[method].options``: layer, samples, noise, generator, patch,
    stride, fill); one the method does not take is refused.
    """
    opts = method_options(method, options)[method]
    with _explaining(model):
        m = METHODS[method].run(model, x, target, _Pass(labels, temperature, batch_size), **opts)
    k = m.logits.shape[1]
    return Explanation(
        method=method, maps=m.maps.float().cpu().numpy(),
        probs=F.softmax(m.logits.float() / temperature, 1).cpu().numpy(),
        target=m.target.cpu().numpy(), labels=list(labels) if labels is not None else [str(i) for i in range(k)],
        layer=m.layer, features=None if m.features is None else m.features.cpu().numpy(),
        options={k: v for k, v in opts.items() if k != "generator"},
    )


def explain(model: nn.Module, faces: np.ndarray | torch.Tensor, config: ModelConfig, method: str = "gradcam",
            target: Target = None, *, device: str | torch.device = "cpu", batch_size: int = 64,
            progress: bool = False, **options: Any) -> Explanation:
    """Explain uint8 faces (N x H x W or N x H x W x 3, any size) with ``method`` for a ferkit model.

    Preprocessing follows the checkpoint's ``config`` (``faces_to_tensor``); probabilities use its
    temperature but no test-time augmentation, since a map explains one view. Faces run in batches of
    ``batch_size``; ``options`` are the method's own (see ``explain_tensor``).
    """
    from ferkit.transforms.preprocess import faces_to_tensor

    opts = method_options(method, options)[method]  # refused before any work
    n = len(faces)
    per_face = None
    if target is not None and not isinstance(target, str) and np.ndim(target) > 0:
        per_face = torch.as_tensor(np.asarray(target), dtype=torch.long)
        if per_face.shape != (n,):
            raise FerkitError(f"expected {n} targets (one per face), got {tuple(per_face.shape)}")
    batches = iter_batches(n, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(list(batches), desc=f"explain {method}", unit="batch", leave=False)
    parts: list[Explanation] = []
    for sl in batches:
        x = faces_to_tensor(faces[sl], config, device)
        t = per_face[sl] if per_face is not None else target
        parts.append(explain_tensor(model, x, method, t, labels=config.labels, temperature=config.temperature,
                                    batch_size=batch_size, **opts))
    if not parts:
        raise FerkitError("no faces to explain")
    first = parts[0]
    return Explanation(
        method=method, maps=np.concatenate([p.maps for p in parts]), probs=np.concatenate([p.probs for p in parts]),
        target=np.concatenate([p.target for p in parts]), labels=first.labels, layer=first.layer,
        features=None if first.features is None else np.concatenate([p.features for p in parts]),
        options=first.options,
    )


def check_explanation(model: nn.Module, config: ModelConfig, methods: Sequence[str], target: str | int | None = None,
                      *, device: str | torch.device = "cpu", **options: Any) -> dict[str, dict[str, Any]]:
    """Refuse a bad request before any face is read: unknown methods or options, an option no chosen method
    takes, a target the model does not know, a layer it does not have (or no spatial layer at all) and an
    occlusion patch larger than the input. Returns ``method_options(methods, options)``."""
    per_method = method_options(methods, options)
    if target is not None:
        resolve_target(target, torch.zeros(1, config.num_classes), config.labels)
    for method, opts in per_method.items():
        if method in ("gradcam", "features"):  # one forward pass of a blank face finds the layer
            probe = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=device)
            feature_maps(model, probe, opts.get("layer"))
        if opts.get("patch", 0) > config.input_size:
            raise FerkitError(f"--patch must be at most the model's input size, {config.input_size} px; "
                              f"got {opts['patch']}")
    return per_method


def heat_shares(maps: np.ndarray) -> dict[str, np.ndarray]:
    """Share of heat in the upper/lower and left/right (viewer's) halves of each N x H x W map.

    The halves use the cuts of ``ferkit.transforms.occlusion`` (rows < H // 2 are upper, columns < W // 2 are left), so
    shares line up with the masks of an occlusion study. A map without heat gets NaN shares.
    """
    maps = np.asarray(maps, dtype=np.float64)
    h, w = maps.shape[-2:]
    total = maps.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = maps[..., : h // 2, :].sum((-2, -1)) / total
        left = maps[..., :, : w // 2].sum((-2, -1)) / total
    return {"upper": upper, "lower": 1 - upper, "left": left, "right": 1 - left}
