"""Vision Transformers ViT-B/16 and ViT-B/32 with torchvision's state-dict names and shapes.

Keys follow torchvision (``class_token``, ``conv_proj.weight``, ``encoder.pos_embedding``,
``encoder.layers.encoder_layer_0.ln_1.weight``, ``...self_attention.in_proj_weight``,
``...self_attention.out_proj.weight``, ``...mlp.0.weight``, ``...mlp.3.weight``, ``encoder.ln.weight``,
``heads.head.weight``), so an ImageNet file loads with ``ferkit.models.pretrained.load_pretrained``.
Attention is computed with ``scaled_dot_product_attention`` on the same parameters torchvision's
``nn.MultiheadAttention`` holds.

Input sizes: the patch grid is fixed at construction, ``ceil(input_size / patch_size)`` per side, and the
position embeddings are sized for it (48 px with 16 px patches -> 3x3 grid + class token; 224 px -> 14x14).
An input whose side is not a multiple of the patch size is resized (bilinear) up to the next multiple, so
48 px runs with 32 px patches as a 2x2 grid and 197 px with 16 px patches as 13x13. An input whose grid
differs from the constructed one still runs: the position embeddings are interpolated to it on the fly.
ImageNet files (14x14 or 7x7 grids) are interpolated to the model's grid on load, bicubically with aligned
corners, as torchvision's ``interpolate_embeddings`` does; the class token's embedding is kept as is.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.models.registry import register_model


def resample_pos_embedding(pos: torch.Tensor, new_grid: tuple[int, int],
                           old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Interpolate (1, 1 + gh*gw, D) position embeddings to ``new_grid``; the class token's row is kept."""
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    if old_grid is None:
        side = math.isqrt(patch_pos.shape[1])
        if side * side != patch_pos.shape[1]:
            raise ValueError(f"cannot infer a square grid from {patch_pos.shape[1]} position embeddings")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos
    dim = pos.shape[-1]
    grid = patch_pos.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=True).to(pos.dtype)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([cls_pos, patch_pos], dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names (packed q/k/v projection)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(n, s, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(n, s, d))


class MLPBlock(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear -> Dropout (indices 0 and 3 hold the weights)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float):
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
                         nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, num_heads: int, dim: int, mlp_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = SelfAttention(dim, num_heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.ln_1(x)))
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, grid: tuple[int, int], num_layers: int, num_heads: int, dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float):
        super().__init__()
        self.grid = grid
        self.pos_embedding = nn.Parameter(torch.empty(1, grid[0] * grid[1] + 1, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)
        ))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embedding
        if grid != self.grid:
            pos = resample_pos_embedding(pos, grid, self.grid)
        return self.ln(self.layers(self.dropout(x + pos)))


class VisionTransformer(nn.Module):
    pretrained_cfg = {"first_conv": "conv_proj", "classifier": "heads.head"}

    def __init__(self, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                 num_classes: int = 7, in_chans: int = 1, input_size: int = 224, dropout: float = 0.0,
                 attention_dropout: float = 0.0):
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        side = math.ceil(input_size / patch_size)
        self.grid = (side, side)
        self.conv_proj = nn.Conv2d(in_chans, hidden_dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(self.grid, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        self.num_features = hidden_dim

        fan_in = in_chans * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        # A zero head starts every class at the same logit, as in the ViT paper's fine-tuning recipe.
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def layer_groups(self) -> list[list[str]]:
        stem = ["conv_proj", "class_token", "encoder.pos_embedding"]
        blocks = [[f"encoder.layers.{name}"] for name, _ in self.encoder.layers.named_children()]
        return [stem] + blocks + [["encoder.ln", "heads"]]

    def adapt_pretrained(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Interpolate a file's position embeddings to this model's patch grid."""
        pos = state_dict.get("encoder.pos_embedding")
        own = self.encoder.pos_embedding
        if pos is not None and pos.ndim == 3 and pos.shape[-1] == own.shape[-1] and pos.shape[1] != own.shape[1]:
            try:
                state_dict = dict(state_dict, **{"encoder.pos_embedding": resample_pos_embedding(pos, self.grid)})
            except ValueError:
                pass  # not a square grid: left as is, so the shape check names the key
        return state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            # Upsample to whole patches rather than cropping away the face's border.
            x = F.interpolate(x, size=(math.ceil(h / p) * p, math.ceil(w / p) * p), mode="bilinear",
                              align_corners=False)
        x = self.conv_proj(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.encoder(x, grid)
        return self.heads(x[:, 0])


@register_model("vit_b_16", default_input_size=224,
                description="ViT-B/16 (torchvision weights layout); position embeddings sized to the input grid")
def vit_b_16(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> VisionTransformer:
    return VisionTransformer(16, 12, 12, 768, 3072, num_classes, in_chans, input_size, **kwargs)


@register_model("vit_b_32", default_input_size=224,
                description="ViT-B/32 (torchvision weights layout); position embeddings sized to the input grid")
def vit_b_32(num_classes: int = 7, in_chans: int = 1, input_size: int = 224, **kwargs) -> VisionTransformer:
    return VisionTransformer(32, 12, 12, 768, 3072, num_classes, in_chans, input_size, **kwargs)
