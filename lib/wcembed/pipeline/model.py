"""Clay v0 (v0.1) encoder: the architecture, an exact pure-PyTorch port.

The encoder reproduces ``src/model_clay.py`` ``Encoder`` of
Clay-foundation/model at 4c5c7a9 (with ``vit_pytorch`` 1.6.x's Transformer),
the code that trained the published ``Clay_v0.1_epoch-24_val-loss-0.46.ckpt``:
its ``state_dict`` has the same keys, shapes and order, so the checkpoint's
``model.encoder.*`` tensors load with ``strict=True``. It is verified against a
reference case produced by the original code (``tests/data/clay_v0``).

WorldCover gives two of Clay's six band groups: ``rgb`` (B04, B03, B02 = file
bands 1-3 in R, G, B order, as trained) and ``nir`` (B08). Each group keeps its
band-encoding row among the six (rgb 0, nir 2); the original scripts' two-group rebuild
gave nir row 1 (rededge's code).

The embedding of a chip is the mean of the encoder's patch tokens (all groups,
not the latlon and time tokens): 768 floats.

Where the weights come from is :mod:`wcembed.pipeline.weights`; how chips are turned
into model inputs and run is :mod:`wcembed.pipeline.inference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wcembed.core.errors import BadParameterError

CLAY_BAND_GROUPS = (("rgb", 3), ("rededge", 4), ("nir", 1), ("swir", 2), ("sar", 2), ("dem", 1))
"""Clay v0.1's six band groups and their channel counts, in band-encoding order."""
WORLDCOVER_INPUTS = (("rgb", (0, 1, 2)), ("nir", (3,)))
"""Which chip channels (B04, B03, B02, B08) feed which band group."""


@dataclass(frozen=True)
class ClayConfig:
    """Size of a Clay v0 encoder. Defaults are v0.1 (``clay_small``).

    ``band_groups`` lists every group the weights hold, in the order that
    defines each group's band-encoding row; ``inputs`` maps the groups used at
    run time to the input channels that feed them.
    """

    dim: int = 768
    depth: int = 12
    heads: int = 12
    dim_head: int = 64
    mlp_ratio: int = 4
    image_size: int = 512
    patch_size: int = 32
    band_groups: tuple[tuple[str, int], ...] = CLAY_BAND_GROUPS
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = field(default=WORLDCOVER_INPUTS)

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def band_encoding_rows(self) -> dict[str, int]:
        """Band-encoding row of each input group: its place among all the groups of the weights."""
        rows = {g: i for i, (g, _) in enumerate(self.band_groups)}
        return {g: rows[g] for g, _ in self.inputs if g in rows}


def posemb_sincos_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D position code, ``(h*w, dim)``: [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)], float32."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = torch.arange(dim // 4) / (dim // 4 - 1)
    omega = 1.0 / (temperature**omega)
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1).float()


def posemb_sincos_1d(n: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 1D code of positions ``0..n-1``, ``(n, dim)``: [sin(g·ω), cos(g·ω)], float32."""
    omega = torch.arange(dim // 2) / (dim // 2 - 1)
    omega = 1.0 / (temperature**omega)
    pos = torch.arange(n)[:, None] * omega[None, :]
    return torch.cat((pos.sin(), pos.cos()), dim=1).float()


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))  # B, L (row-major), D


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (h d) split
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(d)) v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(hidden, dim),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head), FeedForward(dim, mlp_dim)]) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class ClayEncoder(nn.Module):
    """The Clay v0 encoder (mask ratio 0, no shuffling), state-dict compatible with v0.1.

    ``forward(pixels, latlon, time)`` takes normalised pixels ``(B, C, H, W)``
    whose channels feed the groups of ``config.inputs``, ``latlon (B, 2)`` and
    ``time (B, 3)``, and returns every token ``(B, G·L + 2, dim)``: the patch
    tokens group-major, then the latlon and time tokens.
    """

    def __init__(self, config: ClayConfig = ClayConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.latlon_embedding = nn.Linear(2, c.dim)
        self.time_embedding = nn.Linear(3, c.dim)
        self.patch_embedding = nn.ModuleDict({g: PatchEmbed(n, c.dim, c.patch_size) for g, n in c.band_groups})
        self.transformer = Transformer(c.dim, c.depth, c.heads, c.dim_head, c.dim * c.mlp_ratio)
        self.register_buffer("pos_encoding", posemb_sincos_2d(c.grid, c.grid, c.dim // 2), persistent=False)
        self.register_buffer("band_encoding", posemb_sincos_1d(len(c.band_groups), c.dim // 2), persistent=False)
        rows = c.band_encoding_rows
        unknown = [g for g, _ in c.inputs if g not in rows]
        if unknown:
            raise BadParameterError(
                f"input groups {unknown} are not band groups of the model {[g for g, _ in c.band_groups]}"
            )
        self.input_rows = [rows[g] for g, _ in c.inputs]

    def forward(self, pixels: torch.Tensor, latlon: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        tokens = []
        for (group, channels), row in zip(self.config.inputs, self.input_rows, strict=True):
            x = self.patch_embedding[group](pixels[:, list(channels)])
            band = self.band_encoding[row].expand(x.shape[1], -1)
            tokens.append(x + torch.cat((self.pos_encoding, band), dim=1).to(x.dtype))
        meta = [self.latlon_embedding(latlon)[:, None], self.time_embedding(time)[:, None]]
        return self.transformer(torch.cat([*tokens, *meta], dim=1))

    @staticmethod
    def embedding(encoded: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens (every group; not latlon and time): ``(B, dim)``."""
        return encoded[:, :-2, :].mean(dim=1)
