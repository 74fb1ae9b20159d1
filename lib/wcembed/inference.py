"""Inference: WorldCover chips in, Clay v0 embeddings out, batched and device-aware.

Inputs are encoded as the model was trained (see :func:`normalize`,
:func:`encode_latlon`, :func:`encode_time`):

* pixels normalised as ``(x - mean) / std`` with the weights' statistics in the
  file's band order; nodata pixels are set to the band mean (0 after normalisation);
* ``latlon = [sin(lat), atan2(cos(lon), sin(lon))]`` of the chip centre (radians);
* ``time = [f(2π(year-2012)/18), f(2π(month-1)/11), f(2π(day-1)/30)]`` with
  ``f(θ) = atan2(cos θ, sin θ)``; an annual composite is dated June 1.

:class:`Embedder` picks the device and the precision and runs batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wcembed.errors import BadParameterError
from wcembed.job import PRECISIONS
from wcembed.model import ClayEncoder
from wcembed.weights import CLAY_V01, ClayWeights, LoadedModel

log = logging.getLogger(__name__)

COMPOSITE_DATE = (6, 1)
"""(month, day) an annual composite is dated with (the seed's convention)."""

# --------------------------------------------------------------------------- inputs


def normalize(pixels: torch.Tensor, valid: torch.Tensor | None = None, weights: ClayWeights = CLAY_V01) -> torch.Tensor:
    """``(x - mean) / std`` per band for chips ``(B, C, H, W)`` in the weights' band order
    (WorldCover's B04, B03, B02, B08).

    Nodata pixels (``valid`` False) become 0, the band mean. Returns float32.
    """
    n = len(weights.bands)
    mean = torch.tensor(weights.mean, device=pixels.device).view(1, n, 1, 1)
    std = torch.tensor(weights.std, device=pixels.device).view(1, n, 1, 1)
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


def encode_time(
    year: int | Sequence[int], month: int = COMPOSITE_DATE[0], day: int = COMPOSITE_DATE[1]
) -> torch.Tensor:
    """Clay's time input ``(B, 3)`` for a date (default June 1, the composites' convention)."""
    y = np.atleast_1d(np.asarray(year, np.float64))
    m, d = np.full_like(y, month), np.full_like(y, day)
    angles = [2 * math.pi * (y - 2012) / 18, 2 * math.pi * (m - 1) / 11, 2 * math.pi * (d - 1) / 30]
    return torch.as_tensor(np.stack([np.arctan2(np.cos(a), np.sin(a)) for a in angles], axis=1)).float()


# --------------------------------------------------------------------------- devices


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


# --------------------------------------------------------------------------- inference


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
    >>> from wcembed.weights import load_model
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
        if precision not in PRECISIONS:
            raise BadParameterError(f"unknown precision {precision!r}: one of {PRECISIONS}")
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
            x = normalize(px, ok, self.model.weights)
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
