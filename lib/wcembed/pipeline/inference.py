"""Inference: WorldCover chips in, embeddings out, batched and device-aware, for any model of
:mod:`wcembed.pipeline.models`.

Pixels are normalised as ``(x - mean) / std`` with the model's statistics in the file's band order; nodata
pixels are set to the band mean (0 after normalisation) (:func:`normalize`). The date and place inputs are
the model's own (:meth:`wcembed.pipeline.models.Model.inputs`); Clay v0's, as it was trained:

* ``latlon = [sin(lat), atan2(cos(lon), sin(lon))]`` of the chip centre (radians) (:func:`encode_latlon`);
* ``time = [f(2π(year-2012)/18), f(2π(month-1)/11), f(2π(day-1)/30)]`` with
  ``f(θ) = atan2(cos θ, sin θ)``; an annual composite is dated June 1 (:func:`encode_time`).

:class:`Embedder` picks the device and the precision and runs batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wcembed.core.errors import BadParameterError
from wcembed.core.product import NODATA
from wcembed.pipeline.job import PRECISIONS
from wcembed.pipeline.models import CLAY_V0, COMPOSITE_DATE, Model
from wcembed.pipeline.weights import LoadedModel

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- inputs


def normalize(pixels: torch.Tensor, valid: torch.Tensor | None = None, model: Model = CLAY_V0) -> torch.Tensor:
    """``(x - mean) / std`` per band with ``model``'s statistics, for chips ``(B, C, H, W)`` in WorldCover's
    band order (B04, B03, B02, B08).

    Nodata pixels (``valid`` False) become 0, the band mean. Returns float32.
    """
    n = len(model.bands)
    mean = torch.tensor(model.mean, device=pixels.device).view(1, n, 1, 1)
    std = torch.tensor(model.std, device=pixels.device).view(1, n, 1, 1)
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
    """``device`` if given (:class:`BadParameterError` if this machine's torch cannot run it), else CUDA, then
    MPS, then CPU."""
    if device and device != "auto":
        try:
            picked = torch.device(device)
        except (RuntimeError, TypeError):
            raise BadParameterError(f"unknown device {device!r}: cuda, mps or cpu") from None
        if picked.type == "cuda" and not torch.cuda.is_available():
            raise BadParameterError(f"device {device!r}: this torch ({torch.__version__}) has no CUDA device")
        if picked.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BadParameterError(f"device {device!r}: MPS is not available on this machine")
        return picked
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


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
"""CPU flags (``/proc/cpuinfo``) of bf16 matrix instructions: Intel AMX, AVX-512 BF16 (Intel Cooper Lake
and later, AMD Zen 4 and later), Arm's BF16 extension (e.g. AWS Graviton 3)."""


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """Which of :data:`BF16_CPU_FLAGS` this CPU has (empty where /proc/cpuinfo cannot be read)."""
    try:
        words = set(Path(cpuinfo).read_text().split())
    except OSError:
        return []
    return [f for f in BF16_CPU_FLAGS if f in words]


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


@dataclass(frozen=True)
class PrecisionCheck:
    """When a lower precision may replace float32: its embeddings of the same chips must agree with
    float32's within these bounds, for every chip of the checked batch.

    bf16 autocast of the full Clay v0 encoder on a 2-core AMD EPYC measured a relative L2 of
    3.3e-3 and a centred cosine of 0.9992; the bounds leave room for other chips and CPUs while
    rejecting e.g. 8-bit float weights (test_model). The raw cosine is not used: embeddings of
    *different* chips already have a cosine above 0.99.
    """

    max_rel_l2: float = 0.01
    min_centred_cosine: float = 0.99

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> dict:
        """The agreement figures, the bounds, and ``accepted``."""
        got = agreement(reference, candidate)
        ok = got["rel_l2"] <= self.max_rel_l2 and got["centred_cosine"] >= self.min_centred_cosine
        return {**got, **asdict(self), "chips": len(reference), "accepted": ok}


def calibration_batch(x: torch.Tensor, meta: tuple[torch.Tensor, ...], chips: int = 4):
    """The ``chips`` chips a precision check runs on, with their date and place inputs ``meta``: the first of
    the batch, completed where the batch is smaller by their 90/180/270 degree rotations (the centred cosine
    needs several distinct chips)."""
    x, meta = x[:chips], [m[:chips] for m in meta]
    turns = -(-chips // len(x))
    x = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(turns)])
    return x[:chips], tuple(m.repeat(turns, 1)[:chips] for m in meta)


# --------------------------------------------------------------------------- inference


class Embedder:
    """Batched, device-aware inference: WorldCover chips in, one vector each out (768 floats for Clay v0,
    1024 for Clay v1.5).

    Parameters
    ----------
    model : LoadedModel
    recipe : str, optional
        How a chip becomes one vector (:attr:`wcembed.pipeline.models.Model.recipes`); None: the model's default.
    device : str, optional
        ``"cuda"``, ``"mps"``, ``"cpu"`` or None/``"auto"`` (CUDA, then MPS, then CPU).
    precision : str
        ``"auto"``: bfloat16 autocast where the device has bf16 arithmetic (CUDA with
        bf16 support, MPS, CPUs with :data:`BF16_CPU_FLAGS`) and its embeddings of the
        first batch agree with float32's (:class:`PrecisionCheck`), else float32; the
        decision and its figures are kept in :attr:`check`. Or ``"float32"``,
        ``"bfloat16"``, ``"float16"``: used as given, unchecked.
    check : PrecisionCheck
        The bounds an ``"auto"`` decision applies.

    Examples
    --------
    >>> from wcembed.pipeline.weights import load_model
    >>> emb = Embedder(load_model(allow_untrained=True))  # doctest: +SKIP
    >>> emb(pixels_uint16, valid, [(-75.62, 37.675)], 2020).shape  # places: (lon, lat)  # doctest: +SKIP
    (B, 768)
    """

    def __init__(
        self,
        model: LoadedModel,
        device: str | None = None,
        precision: str = "auto",
        check: PrecisionCheck = PrecisionCheck(),
        recipe: str | None = None,
    ) -> None:
        self.model = model
        self.recipe = model.model.check_recipe(recipe)
        self.device = pick_device(device)
        if self.device.type == "cpu":
            set_cpu_threads()
        self.encoder = model.encoder.to(self.device).eval()
        if precision not in PRECISIONS:
            raise BadParameterError(f"unknown precision {precision!r}: one of {PRECISIONS}")
        self.precision = precision
        self.bounds = check
        self.check: dict = {"decision": "given" if precision != "auto" else "pending"}
        self._pinned: dict[tuple, torch.Tensor] = {}  # host staging buffers for CUDA copies

    def _autocast(self, dtype: str):
        if dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype))

    def _run(self, x: torch.Tensor, meta: tuple[torch.Tensor, ...], dtype: str) -> torch.Tensor:
        with torch.inference_mode(), self._autocast(dtype):
            return self.model.model.embed(self.encoder, x, meta, self.recipe).float()

    def __call__(
        self,
        pixels: np.ndarray | torch.Tensor,
        valid: np.ndarray | torch.Tensor | None,
        places: Sequence[tuple[float, float]],
        year: Sequence[int] | int,
    ) -> np.ndarray:
        """Embeddings ``(B, D)`` float32 of uint16 chips ``(B, 4, H, W)`` (B04, B03, B02, B08), whose centres
        are ``places``: ``(lon, lat)`` in degrees, the order :meth:`wcembed.core.grid.Grid.chip_center` gives.

        ``valid`` is the ``(B, H, W)`` mask of pixels with data; None derives it on the
        device from the pixels (a pixel is nodata where every band is 0).
        """
        x, meta = self._inputs(pixels, valid, places, year)
        if self.precision == "auto":
            self.precision = self._choose_precision(x, meta)
        return self._run(x, meta, self.precision).cpu().numpy()

    def patch_tokens(self, pixels, valid, places, year) -> np.ndarray:
        """The encoder's patch tokens of chips as a grid ``(B, g, g, dim)`` float32, row-major from the
        north-west (Clay v0: averaged over its rgb and nir groups, 16 x 16 for 512 px chips; Clay v1.5: 64 x 64).
        Same inputs as calling the embedder; the embedding is pooled from them."""
        x, meta = self._inputs(pixels, valid, places, year)
        dtype = "float32" if self.precision == "auto" else self.precision
        with torch.inference_mode(), self._autocast(dtype):
            grid = self.model.model.patch_grid(self.encoder, x, meta, self.recipe)
        return grid.float().cpu().numpy()

    def _inputs(self, pixels, valid, places, year) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Normalised pixels and the model's date and place inputs, on the device."""
        dev = self.device
        px = self.to_device(pixels)
        ok = None if valid is None else self.to_device(valid)
        with torch.inference_mode():
            if ok is None:
                bits = px.view(torch.int16) if px.dtype == torch.uint16 else px  # int16: every device has it
                ok = (bits != NODATA).any(1)
            x = normalize(px, ok, self.model.model)
        years = [year] * len(px) if isinstance(year, int) else year
        lon, lat = np.asarray(places, np.float64).reshape(-1, 2).T
        return x, tuple(m.to(dev) for m in self.model.model.inputs(lat, lon, years))

    def to_device(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``array`` on the device. To a GPU: a tensor in pinned memory is copied asynchronously as it is;
        anything else through a pinned host buffer reused from call to call (free again once the call's
        result came back to the host)."""
        t = torch.as_tensor(array)
        if t.device == self.device or self.device.type != "cuda":
            return t.to(self.device)
        if t.is_pinned():
            return t.to(self.device, non_blocking=True)
        key = (t.dtype, tuple(t.shape))
        buf = self._pinned.get(key)
        if buf is None:
            buf = self._pinned[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t)
        return buf.to(self.device, non_blocking=True)

    def bf16_support(self) -> str | None:
        """Why this device can run bf16 fast (e.g. ``"cpu: avx512_bf16"``), or None where it cannot."""
        kind = self.device.type
        if kind == "cuda":
            return f"cuda: {torch.cuda.get_device_name(self.device)}" if torch.cuda.is_bf16_supported() else None
        if kind == "mps":
            return "mps"
        flags = cpu_bf16_flags() if kind == "cpu" else []
        return f"cpu: {', '.join(flags)}" if flags else None

    def _choose_precision(self, x, meta) -> str:
        """bfloat16 if the device has bf16 arithmetic and the check on this batch accepts it, else float32."""
        support = self.bf16_support()
        if support is None:
            self.check = {"decision": "float32", "reason": f"no bf16 arithmetic on {self.device.type}"}
            return "float32"
        cx, cm = calibration_batch(x, meta)
        figures = self.bounds(self._run(cx, cm, "float32"), self._run(cx, cm, "bfloat16"))
        decision = "bfloat16" if figures["accepted"] else "float32"
        self.check = {"decision": decision, "candidate": "bfloat16", "reason": support, **figures}
        log.info("precision: %s (bf16 against float32 on the first batch: %s)", decision, self.check)
        return decision
