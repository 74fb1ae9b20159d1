"""Clay v0 (v0.1) encoder: an exact pure-PyTorch port, checkpoint loading, inference.

The encoder reproduces ``src/model_clay.py`` ``Encoder`` of
Clay-foundation/model at 4c5c7a9 (with ``vit_pytorch`` 1.6.x's Transformer),
the code that trained the published ``Clay_v0.1_epoch-24_val-loss-0.46.ckpt``:
its ``state_dict`` has the same keys, shapes and order, so the checkpoint's
``model.encoder.*`` tensors load with ``strict=True``. It is verified against a
reference case produced by the original code (``tests/data/clay_v0``).

WorldCover gives two of Clay's six band groups: ``rgb`` (B04, B03, B02 = file
bands 1-3 in R, G, B order, as trained) and ``nir`` (B08). Each group keeps its
band-encoding row among the six (rgb 0, nir 2); the seed's two-group rebuild
gave nir row 1 (rededge's code).

Inputs (see :func:`normalize`, :func:`encode_latlon`, :func:`encode_time`):

* pixels normalised as ``(x - mean) / std`` with Clay's statistics in the file's
  band order; nodata pixels are set to the band mean (0 after normalisation);
* ``latlon = [sin(lat), atan2(cos(lon), sin(lon))]`` of the chip centre (radians);
* ``time = [f(2π(year-2012)/18), f(2π(month-1)/11), f(2π(day-1)/30)]`` with
  ``f(θ) = atan2(cos θ, sin θ)``; an annual composite is dated June 1.

The embedding of a chip is the mean of the encoder's patch tokens (all groups,
not the latlon and time tokens): 768 floats.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wcembed.errors import CheckpointError, UntrainedWeightsError

log = logging.getLogger(__name__)

CLAY_V01_URL = "https://huggingface.co/made-with-clay/Clay/resolve/main/Clay_v0.1_epoch-24_val-loss-0.46.ckpt"
"""Published Clay v0.1 checkpoint (Hugging Face, 511 MB, OpenRAIL-M)."""
CLAY_V01_S3 = "s3://clay-model-ckpt/v0/mae_epoch-24_val-loss-0.46.ckpt"
"""The same weights as used by the original WorldCover script."""
ENCODER_PREFIX = "model.encoder."
DECODER_PREFIX = "model.decoder."
UNTRAINED = "untrained"
"""Checkpoint identity recorded when no real weights were used."""

# Clay v0 statistics, listed in the WorldCover file's band order B04, B03, B02, B08
# (Clay lists them as B02, B03, B04, B08: blue 1369.03/2026.96, red 1741.10/2146.35).
MEAN = (1741.10, 1597.68, 1369.03, 2858.43)
STD = (2146.35, 2011.88, 2026.96, 2016.38)
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
        return self.image_size // self.patch_size


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
        rows = {g: i for i, (g, _) in enumerate(c.band_groups)}
        unknown = [g for g, _ in c.inputs if g not in rows]
        if unknown:
            raise ValueError(f"input groups {unknown} are not band groups of the model {list(rows)}")
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


# --------------------------------------------------------------------------- inputs


def normalize(pixels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``(x - mean) / std`` per band for WorldCover chips ``(B, 4, H, W)`` in B04, B03, B02, B08 order.

    Nodata pixels (``valid`` False) become 0, the band mean. Returns float32.
    """
    mean = torch.tensor(MEAN, device=pixels.device).view(1, 4, 1, 1)
    std = torch.tensor(STD, device=pixels.device).view(1, 4, 1, 1)
    x = (pixels.float() - mean) / std
    if valid is not None:
        x = x * valid[:, None].to(x.dtype)
    return x


def encode_latlon(lat: float | Sequence[float], lon: float | Sequence[float]) -> torch.Tensor:
    """Clay's lat/lon input ``(B, 2)``: ``[sin(lat), atan2(cos(lon), sin(lon))]``, angles in degrees in.

    Computed in float64, returned as float32 (as the original datamodule does).
    """
    lat_r, lon_r = np.radians(np.atleast_1d(np.asarray(lat, np.float64))), np.radians(np.atleast_1d(lon))
    return torch.as_tensor(np.stack([np.sin(lat_r), np.arctan2(np.cos(lon_r), np.sin(lon_r))], axis=1)).float()


def encode_time(year: int | Sequence[int], month: int = 6, day: int = 1) -> torch.Tensor:
    """Clay's time input ``(B, 3)`` for a date (default June 1, the composites' convention)."""
    y = np.atleast_1d(np.asarray(year, np.float64))
    m, d = np.full_like(y, month), np.full_like(y, day)
    angles = [2 * math.pi * (y - 2012) / 18, 2 * math.pi * (m - 1) / 11, 2 * math.pi * (d - 1) / 30]
    return torch.as_tensor(np.stack([np.arctan2(np.cos(a), np.sin(a)) for a in angles], axis=1)).float()


# --------------------------------------------------------------------------- checkpoints


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$WCEMBED_CACHE`` or ``~/.cache/wcembed``."""
    return Path(os.environ.get("WCEMBED_CACHE", Path.home() / ".cache" / "wcembed"))


def fetch_checkpoint(location: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local path for a checkpoint given as a path, an https URL or an s3 URL.

    Downloads go to ``cache_dir/checkpoints/`` under a temporary name and are
    moved into place when complete, with their sha256 beside them; a cached
    file is reused.
    """
    loc = str(location)
    if "://" not in loc:
        if not Path(loc).is_file():
            raise CheckpointError(f"checkpoint file not found: {loc}")
        return Path(loc)
    cache = Path(cache_dir or default_cache_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / Path(loc.split("?")[0]).name
    if target.exists():
        return target
    part = target.with_suffix(target.suffix + ".part")
    try:
        if loc.startswith("s3://"):
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            bucket, key = loc[5:].split("/", 1)
            signed = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
            s3 = boto3.client("s3", config=None if signed else Config(signature_version=UNSIGNED))
            s3.download_file(bucket, key, str(part))
        else:
            log.info("downloading %s", loc)
            with urllib.request.urlopen(loc, timeout=60) as resp, open(part, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 22)
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"cannot download checkpoint {loc}: {exc}") from exc
    part.replace(target)
    target.with_name(target.name + ".sha256").write_text(sha256_file(target) + "\n")
    return target


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a Lightning ``.ckpt`` (``torch.load(weights_only=True)``) or a ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated, corrupt or not a checkpoint): {exc}") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return dict(state)


def encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a checkpoint state dict, prefix stripped; decoder keys ignored by name."""
    enc = {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    foreign = [k for k in state if not k.startswith((ENCODER_PREFIX, DECODER_PREFIX))]
    if not enc or foreign:
        sample = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise CheckpointError(
            f"not a Clay v0 checkpoint: {len(enc)} '{ENCODER_PREFIX}*' tensors"
            + (f", {len(foreign)} unexpected keys ({sample})" if foreign else "")
        )
    return enc


def load_encoder_state(model: ClayEncoder, state: Mapping[str, torch.Tensor]) -> None:
    """Load encoder tensors strictly, with an error that lists what is missing, unexpected or misshaped."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or misshaped:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
            if keys
        ]
        raise CheckpointError("checkpoint does not match the Clay v0 encoder: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


@dataclass
class LoadedModel:
    """An encoder with the identity of its weights (``sha256`` of the checkpoint file, or ``"untrained"``)."""

    encoder: ClayEncoder
    checkpoint: str
    sha256: str

    @property
    def untrained(self) -> bool:
        return self.sha256 == UNTRAINED


def load_model(
    checkpoint: str | Path | None = None,
    *,
    config: ClayConfig = ClayConfig(),
    allow_untrained: bool = False,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build the encoder and load Clay weights from ``checkpoint`` (path, https or s3 URL).

    Without a checkpoint, untrained weights (seeded, reproducible) are used only
    when ``allow_untrained`` is True, with a loud warning; they are recorded as
    ``"untrained"`` wherever embeddings are written.
    """
    if not checkpoint:
        if not allow_untrained:
            raise UntrainedWeightsError(
                "no checkpoint given: pass the Clay v0.1 checkpoint (path, https or s3 URL), "
                "or allow_untrained=True to run with random weights (NOT Clay embeddings)"
            )
        msg = "UNTRAINED WEIGHTS: these embeddings are NOT Clay embeddings (random encoder, for demos and tests only)"
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        torch.manual_seed(seed)
        return LoadedModel(ClayEncoder(config).eval(), UNTRAINED, UNTRAINED)
    path = fetch_checkpoint(checkpoint, cache_dir)
    sidecar = path.with_name(path.name + ".sha256")
    digest = sidecar.read_text().strip() if sidecar.exists() else sha256_file(path)
    model = ClayEncoder(config)
    load_encoder_state(model, encoder_state(read_state_dict(path)))
    return LoadedModel(model.eval(), str(checkpoint), digest)


# --------------------------------------------------------------------------- inference


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA, then MPS, then CPU."""
    if device and device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_cpu_threads() -> int:
    """Use every core this process may run on for torch's CPU kernels, unless ``OMP_NUM_THREADS`` says otherwise.

    (Inside a container torch may see the host's cores rather than the job's
    share; the scheduler affinity is the job's share.)
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX bf16 matrix units (``amx_bf16`` in /proc/cpuinfo)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How closely two batches of embeddings agree, per chip (worst chip reported).

    ``cosine``: raw cosine similarity; ``centred_cosine``: after subtracting the
    reference batch's mean embedding (raw cosine hides errors because all
    embeddings are alike); ``rel_l2``: ``|a - b| / |a|``.
    """
    a, b = reference.double(), other.double()
    mu = a.mean(0, keepdim=True)
    return {
        "cosine": float(F.cosine_similarity(a, b, dim=1).min()),
        "centred_cosine": float(F.cosine_similarity(a - mu, b - mu, dim=1).min()) if len(a) > 1 else 1.0,
        "rel_l2": float(((a - b).norm(dim=1) / a.norm(dim=1)).max()),
    }


class Embedder:
    """Batched, device-aware inference: WorldCover chips in, 768-float embeddings out.

    Parameters
    ----------
    model : LoadedModel
    device : str, optional
        ``"cuda"``, ``"mps"``, ``"cpu"`` or None/``"auto"`` (CUDA, then MPS, then CPU).
    precision : str
        ``"auto"`` (bfloat16 autocast on CUDA/MPS; on CPU only with AMX bf16 and
        after the first batch is checked against float32, cosine >= 0.999 per
        chip), ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Examples
    --------
    >>> emb = Embedder(load_model(allow_untrained=True))  # doctest: +SKIP
    >>> emb(pixels_uint16, valid, lat, lon, year).shape  # doctest: +SKIP
    (B, 768)
    """

    def __init__(self, model: LoadedModel, device: str | None = None, precision: str = "auto") -> None:
        self.model = model
        self.device = pick_device(device)
        if self.device.type == "cpu":
            set_cpu_threads()
        self.encoder = model.encoder.to(self.device).eval()
        if precision not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"unknown precision {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if self.device.type in ("cuda", "mps") else "auto-cpu"
        self.precision = precision
        self.check: dict[str, float] | None = None

    def _autocast(self, dtype: str):
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype))

    def _run(self, x: torch.Tensor, latlon: torch.Tensor, time: torch.Tensor, dtype: str) -> torch.Tensor:
        with torch.inference_mode(), self._autocast(dtype):
            return ClayEncoder.embedding(self.encoder(x, latlon, time)).float()

    def __call__(
        self,
        pixels: np.ndarray | torch.Tensor,
        valid: np.ndarray | torch.Tensor | None,
        lat: Sequence[float],
        lon: Sequence[float],
        year: Sequence[int] | int,
    ) -> np.ndarray:
        """Embeddings ``(B, 768)`` float32 of uint16 chips ``(B, 4, H, W)`` (B04, B03, B02, B08)."""
        dev = self.device
        px = torch.as_tensor(pixels).to(dev, non_blocking=True)
        ok = None if valid is None else torch.as_tensor(valid).to(dev, non_blocking=True)
        with torch.inference_mode():
            x = normalize(px, ok)
        latlon = encode_latlon(lat, lon).to(dev)
        years = [year] * len(px) if isinstance(year, int) else year
        time = encode_time(years).to(dev)
        if self.precision == "auto-cpu":
            self.precision = self._choose_cpu_precision(x, latlon, time)
        return self._run(x, latlon, time, self.precision).cpu().numpy()

    def _choose_cpu_precision(self, x, latlon, time) -> str:
        if not cpu_has_amx_bf16():
            return "float32"
        ref = self._run(x, latlon, time, "float32")
        self.check = agreement(ref, self._run(x, latlon, time, "bfloat16"))
        ok = self.check["cosine"] >= 0.999
        log.info("bf16 on CPU %s float32: %s", "agrees with" if ok else "does not agree with", self.check)
        return "bfloat16" if ok else "float32"
