"""Model weights: where a checkpoint comes from, and loading its encoder strictly.

As in TorchGeo, the architectures (:mod:`wcembed.pipeline.model`, :mod:`wcembed.pipeline.clay_v15`) are
separate from the weights; what belongs to a model's trained weights (download URL, mirrors, expected sha256,
normalisation statistics) is its entry in :mod:`wcembed.pipeline.models`.

Checkpoints are untrusted input: they are read with ``torch.load(weights_only=True)``, memory-mapped (the
checkpoint is not read into memory beside the model; only the encoder's tensors are copied into it), and
loaded into the encoder strictly.
Downloads are cached; a network failure is a
:class:`~wcembed.core.errors.CheckpointDownloadError` (transient: an AWS Batch job
exits 75 and is retried), a missing or unreadable file a
:class:`~wcembed.core.errors.CheckpointError` (permanent).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from wcembed.core.errors import CheckpointDownloadError, CheckpointError, UntrainedWeightsError, failure_kind
from wcembed.core.store import exclusive, split_s3
from wcembed.pipeline.models import CLAY_V0, Model, get_model

log = logging.getLogger(__name__)

ENCODER_PREFIX = "model.encoder."
UNTRAINED = "untrained"
"""Checkpoint identity recorded when no real weights were used."""


# --------------------------------------------------------------------------- files


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


def _download(url: str, part: Path) -> None:
    """Download ``url`` into ``part``; over http(s), a ``part`` already there is resumed with a Range request
    (``If-Range`` the validator its first response gave, where it gave one, so that a file changed on the
    server since is fetched whole; the sha256, where known, is checked after)."""
    if url.startswith("s3://"):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        bucket, key = split_s3(url)
        signed = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
        s3 = boto3.client("s3", config=None if signed else Config(signature_version=UNSIGNED))
        s3.download_file(bucket, key, str(part))
        return
    validator = part.with_name(part.name + ".validator")
    offset = part.stat().st_size if part.exists() and validator.exists() else 0
    tag = validator.read_text() if offset else ""
    headers = ({"Range": f"bytes={offset}-"} | ({"If-Range": tag} if tag else {})) if offset else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:  # 416: the part is not a beginning of the file: start again
            raise
        part.unlink()
        return _download(url, part)
    with resp:
        resumed = offset > 0 and resp.status == 206
        if resumed:
            expected = int(resp.headers["Content-Range"].rsplit("/", 1)[1])
        else:
            length = resp.headers.get("Content-Length")
            expected = None if length is None else int(length)
            # what a resumed request names (where the server gave one), so that it gets the same file or all of it
            validator.write_text(resp.headers.get("ETag") or resp.headers.get("Last-Modified") or "")
        with open(part, "ab" if resumed else "wb") as fh:
            shutil.copyfileobj(resp, fh, 1 << 22)
    if expected is not None and part.stat().st_size != expected:
        raise http.client.IncompleteRead(b"", expected - part.stat().st_size)
    validator.unlink(missing_ok=True)


def fetch_checkpoint(
    location: str | Path,
    cache_dir: str | Path | None = None,
    *,
    sha256: str | None = None,
    retries: int = 2,
    backoff: float = 1.0,
) -> Path:
    """A local path for a checkpoint given as a path, an https URL or an s3 URL.

    Downloads go to ``cache_dir/checkpoints/`` under a temporary name (``<name>.part``: a download cut short by
    the network or a killed process is resumed where it ended, over http(s)), are checked
    (length against ``Content-Length``, sha256 against ``sha256`` when given) and
    moved into place when complete, with their sha256 beside them. Processes that
    share the cache take turns through a lock file: the first downloads, the
    others find its file. A cached file is reused when its recorded sha256 is the
    one asked for, else downloaded again. Network failures (also a body cut short)
    are retried ``retries`` times (backoff doubling from ``backoff`` seconds), then
    raise :class:`~wcembed.core.errors.CheckpointDownloadError` (transient); a location
    that does not exist, or a download whose sha256 is not ``sha256``, raises
    :class:`~wcembed.core.errors.CheckpointError`.
    """
    loc = str(location)
    if "://" not in loc:
        if Path(loc).is_dir():
            raise CheckpointError(f"checkpoint {loc} is a directory, not a checkpoint file")
        if not Path(loc).is_file():
            raise CheckpointError(f"checkpoint file not found: {loc}")
        return Path(loc)
    cache = Path(cache_dir or default_cache_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / Path(loc.split("?")[0]).name
    locks = cache.parent / "locks"  # beside the cache, so that checkpoints/ holds only checkpoints
    locks.mkdir(exist_ok=True)
    with exclusive(locks / f"{target.name}.lock"):
        if target.exists() and (sha256 is None or _cached_digest(target) == sha256):
            return target
        return _download_into(loc, target, sha256, retries, backoff)


def _cached_digest(target: Path) -> str:
    """The sha256 of a cached checkpoint, from the file beside it (computed and written when missing)."""
    side = target.with_name(target.name + ".sha256")
    if side.exists():
        return side.read_text().strip()
    digest = sha256_file(target)
    side.write_text(digest + "\n")
    return digest


def _download_into(loc: str, target: Path, sha256: str | None, retries: int, backoff: float) -> Path:
    """Download ``loc`` to ``target`` through ``<name>.part``, retrying network failures, each retry (and a later
    run, after a process was killed) resuming where the part ends (see fetch_checkpoint)."""
    part = target.with_name(f"{target.name}.part")  # one downloader at a time: under the cache's lock
    for attempt in range(retries + 1):
        try:
            log.info("downloading %s%s", loc, f" from byte {part.stat().st_size}" if part.exists() else "")
            _download(loc, part)
            break
        except Exception as exc:
            if failure_kind(exc) != "transient":
                part.unlink(missing_ok=True)
                raise CheckpointError(f"cannot download checkpoint {loc}: {exc}") from exc
            if attempt == retries:
                raise CheckpointDownloadError(
                    f"cannot download checkpoint {loc} after {retries + 1} attempts (network): {exc}"
                ) from exc
            delay = backoff * 2**attempt
            log.warning("download of %s failed (%s), retrying in %.1fs", loc, exc, delay)
            time.sleep(delay)
    digest = sha256_file(part)
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"checkpoint {loc} has sha256 {digest}, expected {sha256}")
    part.replace(target)
    target.with_name(target.name + ".sha256").write_text(digest + "\n")
    return target


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a Lightning ``.ckpt`` (``torch.load(weights_only=True)``) or a ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        try:  # memory-mapped: tensors are read from the file as they are copied, not held twice
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # a file of torch's legacy (not zip) format cannot be mapped
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated, corrupt or not a checkpoint): {exc}") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return dict(state)


def encoder_state(state: Mapping[str, torch.Tensor], model: Model = CLAY_V0) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a checkpoint state dict, prefix stripped; the keys of ``model.other_prefixes``
    (decoder, ...) passed over by name, any other key refused."""
    enc = {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    foreign = [k for k in state if not k.startswith((ENCODER_PREFIX, *model.other_prefixes))]
    if not enc or foreign:
        sample = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise CheckpointError(
            f"not a {model.name} checkpoint: {len(enc)} '{ENCODER_PREFIX}*' tensors"
            + (f", {len(foreign)} unexpected keys ({sample})" if foreign else "")
        )
    return enc


def load_encoder_state(encoder: torch.nn.Module, state: Mapping[str, torch.Tensor], model: Model = CLAY_V0) -> None:
    """Load ``model``'s encoder tensors strictly, with an error that lists what is missing, unexpected or
    misshaped."""
    own = encoder.state_dict()
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
        raise CheckpointError(f"checkpoint does not match the {model.name} encoder: " + "; ".join(parts))
    encoder.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """An encoder with the identity of its weights (``sha256`` of the checkpoint file, or ``"untrained"``)."""

    encoder: torch.nn.Module
    checkpoint: str
    sha256: str
    model: Model = CLAY_V0

    @property
    def untrained(self) -> bool:
        return self.sha256 == UNTRAINED


def load_model(
    checkpoint: str | Path | None = None,
    *,
    model: str | Model = CLAY_V0,
    config: object | None = None,
    allow_untrained: bool = False,
    cache_dir: str | Path | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build ``model``'s encoder (an id of :data:`~wcembed.pipeline.models.MODELS` or a
    :class:`~wcembed.pipeline.models.Model`) and load its weights from ``checkpoint`` (path, https or s3 URL).

    ``config`` is the encoder's size where it is not the published one (small encoders for
    tests). Without a checkpoint, untrained weights (seeded, reproducible) are
    used only when ``allow_untrained`` is True, with a loud warning; they are
    recorded as ``"untrained"`` wherever embeddings are written.
    """
    model = get_model(model)
    if not checkpoint:
        if not allow_untrained:
            raise UntrainedWeightsError(
                f"no checkpoint given: pass the {model.name} checkpoint (path, https or s3 URL), "
                "or allow_untrained=True to run with random weights (NOT Clay embeddings)"
            )
        msg = "UNTRAINED WEIGHTS: these embeddings are NOT Clay embeddings (random encoder, for demos and tests only)"
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        torch.manual_seed(seed)
        return LoadedModel(model.build(config).eval(), UNTRAINED, UNTRAINED, model)
    expected = model.sha256 if str(checkpoint) in (model.url, *model.mirrors) else None
    path = fetch_checkpoint(checkpoint, cache_dir, sha256=expected)
    sidecar = path.with_name(path.name + ".sha256")
    digest = sidecar.read_text().strip() if sidecar.exists() else sha256_file(path)
    encoder = model.build(config)
    load_encoder_state(encoder, encoder_state(read_state_dict(path), model), model)
    return LoadedModel(encoder.eval(), str(checkpoint), digest, model)
