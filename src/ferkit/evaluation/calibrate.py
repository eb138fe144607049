"""Temperature scaling (Guo et al., 2017): one scalar that makes a classifier's confidences honest.

Fitted on held-out probabilities by minimising the negative log-likelihood; ``log(p)`` serves as logits
because softmax ignores a constant shift, so any saved probabilities can be recalibrated.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(probs: np.ndarray, y_true: np.ndarray, current: float = 1.0) -> float:
    """The temperature T minimising NLL of softmax(logits / T), where probs = softmax(logits / current)."""
    logits = torch.log(torch.as_tensor(probs, dtype=torch.float64).clamp_min(1e-12)) * current
    y = torch.as_tensor(y_true, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def rescale(probs: np.ndarray, old_temperature: float, new_temperature: float) -> np.ndarray:
    """Probabilities computed at one temperature, re-expressed at another."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) * old_temperature / new_temperature
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)
