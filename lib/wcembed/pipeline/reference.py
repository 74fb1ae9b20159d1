"""An encoder checked against a reference case that the original code computed.

A reference case is a folder holding ``config.json`` (the encoder's configuration: ``encoder`` for Clay v1.5,
``encoder_config`` and ``band_groups`` for Clay v0) and one ``.safetensors`` file with the encoder's tensors
under ``model.encoder.``, the inputs (``input.*``) and the original's outputs (``output.encoded``: every token;
``output.embedding``: the chip embedding). :func:`check_reference` builds the encoder from the configuration,
loads the tensors strictly, runs the inputs in float32 and gives the largest errors (``wcembed check-model``).

Example
-------
>>> check_reference("clay-v1.5", "tests/data/clay_v15").passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from wcembed.core.errors import BadParameterError
from wcembed.pipeline.clay_v15 import ClayV15Config, ClayV15Encoder
from wcembed.pipeline.model import ClayConfig, ClayEncoder
from wcembed.pipeline.models import get_model

TOLERANCE = 1e-5
"""The largest error a faithful encoder may have on a reference case (CPU, float32)."""


@dataclass(frozen=True)
class Check:
    """The largest absolute errors of every token and of the chip embedding against the original's."""

    model: str
    tokens_error: float
    embedding_error: float

    @property
    def passed(self) -> bool:
        return max(self.tokens_error, self.embedding_error) <= TOLERANCE

    def __str__(self) -> str:
        verdict = "within" if self.passed else "ABOVE"
        return (f"{self.model}: largest error {self.tokens_error:.3g} over every token, {self.embedding_error:.3g} "
                f"of the embedding: {verdict} {TOLERANCE:g}")  # fmt: skip


def _case(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    folder = Path(folder)
    tensors = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not (folder / "config.json").is_file() or len(tensors) != 1:
        raise BadParameterError(f"{folder}: a reference case is a folder of config.json and one .safetensors file")
    try:
        return json.loads((folder / "config.json").read_text()), load_file(tensors[0])
    except (OSError, ValueError) as exc:
        raise BadParameterError(f"{folder}: cannot read the reference case: {exc}") from None


def check_reference(model: str, folder: str | Path) -> Check:
    """Run ``model``'s encoder (``clay-v0`` or ``clay-v1.5``) on a reference case; :class:`BadParameterError`
    for an unknown model, or a folder that is not a case of it."""
    model = get_model(model).id  # an unknown one refused, naming the models
    config, case = _case(folder)
    state = {k[len("model.encoder.") :]: v for k, v in case.items() if k.startswith("model.encoder.")}
    try:
        if model == "clay-v1.5":
            encoder = ClayV15Encoder(ClayV15Config.from_mapping(config["encoder"]))
            inputs = [case["input.pixels"], case["input.waves"], float(case["input.gsd"][0]), case["input.time"],
                      case["input.latlon"]]  # fmt: skip
        else:
            encoder = ClayEncoder(_v0_config(config))
            inputs = [case["input.pixels"], case["input.latlon"], case["input.time"]]
        encoder.load_state_dict(state, strict=True)
        want_tokens, want_embedding = case["output.encoded"], case["output.embedding"]
    except (KeyError, RuntimeError) as exc:
        raise BadParameterError(f"{folder} is not a reference case of {model}: {exc}") from None
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # true float32, whatever the process set
    try:
        with torch.inference_mode():
            tokens = encoder.eval()(*inputs)
    finally:
        torch.set_float32_matmul_precision(precision)
    embedding = type(encoder).embedding(tokens)
    return Check(model, float((tokens - want_tokens).abs().max()), float((embedding - want_embedding).abs().max()))


def _v0_config(config: dict) -> ClayConfig:
    """A Clay v0 case's encoder: its size and the band groups the original was built with."""
    size, groups = config["encoder_config"], config["band_groups"]
    return ClayConfig(
        dim=size["dim"], depth=size["depth"], heads=size["heads"], dim_head=size["dim_head"],
        mlp_ratio=size["mlp_ratio"], image_size=size["image_size"], patch_size=size["patch_size"],
        band_groups=tuple((name, len(bands)) for name, bands in groups.items()),
        inputs=tuple((name, tuple(bands)) for name, bands in groups.items()),
    )  # fmt: skip
