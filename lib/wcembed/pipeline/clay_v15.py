"""The Clay v1.5 encoder: any bands by their wavelengths, a class token as the chip's embedding.

Written from the model's description (Clay-foundation/model ``claymodel/``, Apache-2.0): the patch embedding's
kernel is generated from the bands' central wavelengths (a DOFA-style dynamic embedding: sin/cos codes of the
wavelengths, a residual MLP, one transformer layer over 128 learnt weight tokens, the codes and a bias token),
then a sin/cos position code scaled by the ground sample distance with the chip's time and place appended,
a class token, and a pre-norm transformer. The module names follow the published checkpoint's
``model.encoder.*`` keys, so its tensors load strictly.

Inputs (see :meth:`ClayV15Encoder.forward`): pixels normalised per band, ``(B, C, H, W)``; wavelengths in
micrometres ``(C,)``; ground sample distance in metres; time ``(B, 4)`` ``[sin w, cos w, sin h, cos h]`` (ISO week
and hour); place ``(B, 4)`` ``[sin lat, cos lat, sin lon, cos lon]`` (radians). Checked against the original
code's output on a tiny configuration (``tests/data/clay_v15``): every token within 1e-5.

Example
-------
>>> encoder = ClayV15Encoder(ClayV15Config(dim=64, depth=2, heads=4, dim_head=16, mlp_ratio=2.0))
>>> tokens = encoder(torch.zeros(1, 4, 64, 64), torch.tensor(WAVES_UM), 10.0, torch.zeros(1, 4), torch.zeros(1, 4))
>>> tokens.shape  # the class token, then 8 x 8 patch tokens
torch.Size([1, 65, 64])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wcembed.pipeline.model import Attention, FeedForward, Transformer

WAVE_DIM = 128
"""Width of the wavelength codes and of the weight generator's tokens."""
WEIGHT_TOKENS = 128
"""Learnt tokens beside the wavelength codes in the weight generator."""
KERNEL_SCALE = 0.02
"""The generated patch kernel's scale."""
META_DIMS = 8
"""The last dimensions of each patch token: the raw time (4) and place (4) codes."""
WAVES_UM = (0.493, 0.56, 0.665, 0.842)
"""Central wavelengths of Sentinel-2 blue, green, red and nir (B02, B03, B04, B08), micrometres."""


@dataclass(frozen=True)
class ClayV15Config:
    """The encoder's size: ``clay_mae_large`` (Clay v1.5) is dim 1024, depth 24, 16 heads of 64, mlp ratio 4,
    patch 8."""

    dim: int = 1024
    depth: int = 24
    heads: int = 16
    dim_head: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 8

    @classmethod
    def from_mapping(cls, values: dict) -> ClayV15Config:
        """From a configuration's ``encoder`` entry (extra entries such as ``mask_ratio`` are not the encoder's
        size and are passed over)."""
        names = {"dim", "depth", "heads", "dim_head", "mlp_ratio", "patch_size"}
        return cls(**{k: v for k, v in values.items() if k in names})


def wave_codes(waves: torch.Tensor, dim: int = WAVE_DIM) -> torch.Tensor:
    """``(C, dim)`` sin/cos codes of wavelengths (micrometres): ``[sin(w ω_i), cos(w ω_i)]`` with
    ``ω_i = 10000^(-i / (dim/2 - 1))``."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float32, device=waves.device) / (half - 1))
    angle = waves.float()[:, None] * omega[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def position_codes(h: int, w: int, dim: int, gsd: float, device=None) -> torch.Tensor:
    """``(h * w, dim)`` sin/cos codes of the patches' grid positions (row-major), their frequencies scaled by the
    ground sample distance ``gsd`` (metres), as Clay v1.5 computes them."""
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    quarter = dim // 4
    q = torch.arange(quarter, dtype=torch.float32, device=device) / (quarter - 1)
    omega = 1.0 / 10000 ** (2 * q / dim) * gsd
    xs, ys = x.flatten().float()[:, None] * omega[None, :], y.flatten().float()[:, None] * omega[None, :]
    return torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1)


class _Residual(nn.Module):
    """``x + gelu(l2(gelu(l1(x))))`` over the wavelength codes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.l2(F.gelu(self.l1(x))))


class _WeightGenerator(nn.Module):
    """A patch kernel ``(C, P·P·D)`` and bias ``(D,)`` from the bands' wavelength codes."""

    def __init__(self, out_dim: int, patch: int) -> None:
        super().__init__()
        self.weight_tokens = nn.Parameter(torch.zeros(WEIGHT_TOKENS, WAVE_DIM))
        self.bias_token = nn.Parameter(torch.zeros(1, WAVE_DIM))
        layer = nn.TransformerEncoderLayer(
            d_model=WAVE_DIM, nhead=4, dim_feedforward=2048, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(WAVE_DIM, patch * patch * out_dim)
        self.fc_bias = nn.Linear(WAVE_DIM, out_dim)

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.weight_tokens, codes, self.bias_token], dim=0)  # one unbatched sequence
        out = self.encoder(x)
        n = WEIGHT_TOKENS
        return self.fc_weight(out[n:-1] + x[n:-1]), self.fc_bias(out[-1])


class _PatchEmbedding(nn.Module):
    """Patches ``(B, h·w, D)`` of a datacube through a kernel generated from its bands' wavelengths."""

    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.dim, self.patch = dim, patch
        self.weight_generator = _WeightGenerator(dim, patch)
        self.fclayer = _Residual(WAVE_DIM)

    def forward(self, pixels: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        weights, bias = self.weight_generator(self.fclayer(wave_codes(waves)))
        c, p = pixels.shape[1], self.patch
        kernel = weights.view(c, self.dim, p, p).permute(1, 0, 2, 3) * KERNEL_SCALE
        patches = F.conv2d(pixels, kernel, bias, stride=p)
        return patches.flatten(2).transpose(1, 2)


class _Attention(Attention):
    """v0's attention (pre-norm, no bias in ``to_qkv``), its output one linear without bias, as the v1.5
    checkpoint holds it (``to_out.weight``); the forward pass is v0's."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        nn.Module.__init__(self)  # the layout of v1.5's keys, not v0's
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)


class _FeedForward(FeedForward):
    """v0's feed-forward without its dropout slots (``net.0``, ``net.1``, ``net.3`` in the v1.5 checkpoint)."""

    def __init__(self, dim: int, hidden: int) -> None:
        nn.Module.__init__(self)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class _Transformer(Transformer):
    """v0's pre-norm transformer (its forward pass) with v1.5's layers."""

    def __init__(self, config: ClayV15Config) -> None:
        nn.Module.__init__(self)
        hidden = int(config.dim * config.mlp_ratio)
        self.layers = nn.ModuleList(
            nn.ModuleList([_Attention(config.dim, config.heads, config.dim_head), _FeedForward(config.dim, hidden)])
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)


class ClayV15Encoder(nn.Module):
    """The Clay v1.5 encoder (no masking: every patch, in order). ``forward`` returns every token ``(B, 1 + h·w,
    D)``, the class token first; :meth:`embedding` takes the chip's embedding from them."""

    def __init__(self, config: ClayV15Config | None = None) -> None:
        super().__init__()
        self.config = config = config or ClayV15Config()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.patch_embedding = _PatchEmbedding(config.dim, config.patch_size)
        self.transformer = _Transformer(config)

    def forward(
        self, pixels: torch.Tensor, waves: torch.Tensor, gsd: float, time: torch.Tensor, latlon: torch.Tensor
    ) -> torch.Tensor:
        """Tokens of normalised ``pixels`` ``(B, C, H, W)`` (H and W multiples of the patch size) of bands at
        ``waves`` (µm), ``gsd`` metres a pixel, ``time`` and ``latlon`` ``(B, 4)`` codes."""
        b, _, h, w = pixels.shape
        p, dim = self.config.patch_size, self.config.dim
        patches = self.patch_embedding(pixels, waves)
        pos = position_codes(h // p, w // p, dim - META_DIMS, float(gsd), device=pixels.device).to(patches.dtype)
        meta = torch.cat([time, latlon], dim=-1).to(patches.dtype)[:, None, :].expand(b, patches.shape[1], META_DIMS)
        patches = patches + torch.cat([pos.expand(b, -1, -1), meta], dim=-1)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1).to(patches.dtype), patches], dim=1)
        return self.transformer(tokens)

    @staticmethod
    def embedding(tokens: torch.Tensor) -> torch.Tensor:
        """The chip embedding: the class token, ``(B, D)``."""
        return tokens[:, 0, :]


def encode_time_v15(week: int, hour: int = 0) -> list[float]:
    """``[sin w, cos w, sin h, cos h]`` of an ISO week and an hour (w = week·2π/52, h = hour·2π/24)."""
    w, h = week * 2 * math.pi / 52, hour * 2 * math.pi / 24
    return [math.sin(w), math.cos(w), math.sin(h), math.cos(h)]


def encode_place_v15(lat: float, lon: float) -> list[float]:
    """``[sin φ, cos φ, sin λ, cos λ]`` of a latitude and longitude in degrees."""
    phi, lam = math.radians(lat), math.radians(lon)
    return [math.sin(phi), math.cos(phi), math.sin(lam), math.cos(lam)]
