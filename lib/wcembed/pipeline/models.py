"""The models wcembed embeds with: one entry each, saying everything that belongs to the model.

A :class:`Model` says what its encoder is (:meth:`Model.build`), which WorldCover bands it reads and how they
become its inputs (normalisation statistics in the file's band order B04, B03, B02, B08; the date and place
codes, :meth:`Model.inputs`), how a chip becomes one vector (its *recipes*, :meth:`Model.embed`), the
embedding's dimension and where its weights come from. Two entries, :data:`CLAY_V0` and :data:`CLAY_V15`, are
listed in :data:`MODELS` by the id every command, notebook parameter, job environment and file header uses
(``clay-v0``, ``clay-v1.5``).

This module imports no torch (a job is checked and submitted without it): the encoders are imported when a
model is built or run.

Examples
--------
>>> get_model("clay-v1.5").dimension
1024
>>> get_model("clay-v1.5").recipe
'quarters'
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from wcembed.core.errors import BadParameterError
from wcembed.core.product import BANDS

if TYPE_CHECKING:
    import torch

COMPOSITE_DATE = (6, 1)
"""(month, day) an annual composite is dated with (the original scripts' convention), for every model."""
GSD_M = 10.0
"""Ground sample distance of the composites, metres (Sentinel-2's 10 m bands)."""


@dataclass(frozen=True)
class Model(ABC):
    """A model and the facts that go with it (see the module's description); each model is a subclass that
    defines :meth:`build`, :meth:`inputs`, :meth:`embed` and :meth:`patch_grid`.

    Attributes
    ----------
    id : str
        The name commands and files use: ``clay-v0``, ``clay-v1.5``.
    name, version : str
        E.g. ``"Clay v0.1"``, ``"v0.1"``.
    dimension : int
        Length of a chip's embedding.
    url : str
        Where the checkpoint is published; ``mirrors`` lists other copies, ``sha256`` its digest where known.
    mean, std : tuple of float
        Normalisation statistics per band of ``bands`` (the WorldCover files' order), digital numbers
        (reflectance x 10000).
    recipes : mapping of str to str
        How a chip becomes one vector, by recipe name: what each recipe computes (recorded in each file).
        The first is the default.
    other_prefixes : tuple of str
        Checkpoint keys outside the encoder that are passed over (decoder, teacher, ...); any other key
        outside ``model.encoder.`` means the file is not this model's checkpoint.
    """

    id: str
    name: str
    version: str
    dimension: int
    url: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    recipes: Mapping[str, str]
    other_prefixes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    license: str = "OpenRAIL-M"
    bands: tuple[str, ...] = BANDS

    @property
    def filename(self) -> str:
        """File name of the checkpoint (its name in the download cache)."""
        return Path(self.url.split("?")[0]).name

    @property
    def recipe(self) -> str:
        """The default recipe."""
        return next(iter(self.recipes))

    @property
    def weights_id(self) -> str:
        """What a file records as its trained weights (``clay-v0.1``, ``clay-v1.5``)."""
        return f"clay-{self.version}"

    def check_recipe(self, recipe: str | None) -> str:
        """``recipe``, or the default for None; :class:`BadParameterError` for one the model has not."""
        if recipe is None:
            return self.recipe
        if recipe not in self.recipes:
            raise BadParameterError(f"{self.id} has no recipe {str(recipe)[:40]!r}: one of {list(self.recipes)}")
        return recipe

    def describe(self, recipe: str) -> dict[str, Any]:
        """Bands, inputs, normalisation and recipe as recorded in each output file's metadata."""
        return {
            "model_id": self.id,
            "recipe": recipe,
            "bands": list(self.bands),
            "normalisation": {
                "mean": list(self.mean),
                "std": list(self.std),
                "order": ",".join(self.bands),
                "nodata": "band mean",
            },
        }

    # ------------------------------------------------------------------ what each model defines
    @abstractmethod
    def build(self, config: Any = None) -> torch.nn.Module:
        """The encoder with untrained weights, of ``config``'s size (the published size for None)."""

    @abstractmethod
    def inputs(self, lat: np.ndarray, lon: np.ndarray, years: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """The encoder's place and date inputs of chips centred at ``lat``, ``lon`` (degrees), of ``years``."""

    @abstractmethod
    def embed(self, encoder: torch.nn.Module, x: torch.Tensor, meta: tuple, recipe: str) -> torch.Tensor:
        """Embeddings ``(B, dimension)`` of normalised chips ``x`` ``(B, 4, H, W)`` (WorldCover band order)."""

    @abstractmethod
    def patch_grid(self, encoder: torch.nn.Module, x: torch.Tensor, meta: tuple, recipe: str) -> torch.Tensor:
        """The encoder's patch tokens as a grid ``(B, g, g, dimension)``, row-major from the north-west: what
        the embedding is pooled from."""


@dataclass(frozen=True)
class ClayV0(Model):
    """Clay v0.1 (:mod:`wcembed.pipeline.model`): rgb and nir band groups, the mean of the patch tokens."""

    def build(self, config: Any = None) -> torch.nn.Module:
        from wcembed.pipeline.model import ClayConfig, ClayEncoder

        return ClayEncoder(config or ClayConfig())

    def describe(self, recipe: str) -> dict[str, Any]:
        from wcembed.pipeline.model import ClayConfig

        config = ClayConfig()
        groups: dict = {g: list(ch) for g, ch in config.inputs}
        return {**super().describe(recipe), "band_groups": {**groups, "band_encoding_rows": config.band_encoding_rows}}

    def inputs(self, lat, lon, years):
        from wcembed.pipeline.inference import encode_latlon, encode_time

        return encode_latlon(lat, lon), encode_time(years)

    def embed(self, encoder, x, meta, recipe):
        return type(encoder).embedding(encoder(x, *meta))

    def patch_grid(self, encoder, x, meta, recipe):
        tokens = encoder(x, *meta)[:, :-2, :]  # the patch tokens, group-major
        g, groups = encoder.config.grid, len(encoder.config.inputs)
        return tokens.reshape(len(x), groups, g, g, -1).mean(dim=1)


def quarters(x: torch.Tensor) -> torch.Tensor:
    """The four quarters of chips ``(B, C, H, W)`` as one batch ``(4B, C, H/2, W/2)``, quarter-major: every chip's
    north-west quarter, then north-east, south-west, south-east."""
    import torch

    h, w = x.shape[2] // 2, x.shape[3] // 2
    return torch.cat([x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]])


@dataclass(frozen=True)
class ClayV15(Model):
    """Clay v1.5 (:mod:`wcembed.pipeline.clay_v15`): the four bands by their wavelengths, the class token.

    Trained on 256 px chips at patch 8: ``quarters`` embeds the four 256 px quarters of a 512 px chip (each
    with the chip's date and place) and averages their class tokens; ``whole`` embeds the chip as one
    sequence of 4,096 patches, positions the model never saw in training (docs: models).
    """

    waves_um: tuple[float, ...] = (0.665, 0.56, 0.493, 0.842)
    """Central wavelengths of the WorldCover bands B04, B03, B02, B08, micrometres."""
    gsd: float = GSD_M

    def build(self, config: Any = None) -> torch.nn.Module:
        from wcembed.pipeline.clay_v15 import ClayV15Config, ClayV15Encoder

        return ClayV15Encoder(config or ClayV15Config())

    def describe(self, recipe: str) -> dict[str, Any]:
        return {**super().describe(recipe), "waves_um": list(self.waves_um), "gsd_m": self.gsd}

    def inputs(self, lat, lon, years):
        import torch

        from wcembed.pipeline.clay_v15 import encode_place_v15, encode_time_v15

        month, day = COMPOSITE_DATE  # at hour 0
        time = [encode_time_v15(dt.date(int(y), month, day).isocalendar().week) for y in years]
        place = [encode_place_v15(float(a), float(o)) for a, o in zip(lat, lon, strict=True)]
        return torch.tensor(time), torch.tensor(place)

    def _tokens(self, encoder, x, meta, recipe) -> torch.Tensor:
        """Every token of the chips (``whole``) or of their quarters, quarter-major (``quarters``)."""
        import torch

        time, place = (m.to(x.device) for m in meta)
        waves = torch.tensor(self.waves_um, device=x.device)
        if recipe == "whole":
            return encoder(x, waves, self.gsd, time, place)
        return encoder(quarters(x), waves, self.gsd, time.repeat(4, 1), place.repeat(4, 1))

    def embed(self, encoder, x, meta, recipe):
        cls = self._tokens(encoder, x, meta, recipe)[:, 0, :]
        return cls if recipe == "whole" else cls.view(4, len(x), -1).mean(dim=0)

    def patch_grid(self, encoder, x, meta, recipe):
        tokens = self._tokens(encoder, x, meta, recipe)[:, 1:, :]
        p = encoder.config.patch_size
        if recipe == "whole":
            return tokens.reshape(len(x), x.shape[2] // p, x.shape[3] // p, -1)
        g = x.shape[2] // 2 // p
        q = tokens.reshape(2, 2, len(x), g, g, -1)  # (quarter row, quarter column, chip, row, column, dim)
        return q.permute(2, 0, 3, 1, 4, 5).reshape(len(x), 2 * g, 2 * g, -1)


CLAY_V0 = ClayV0(
    id="clay-v0",
    name="Clay v0.1",
    version="v0.1",
    dimension=768,
    url="https://huggingface.co/made-with-clay/Clay/resolve/main/Clay_v0.1_epoch-24_val-loss-0.46.ckpt",
    mirrors=("s3://clay-model-ckpt/v0/mae_epoch-24_val-loss-0.46.ckpt",),
    # Clay lists these as B02, B03, B04, B08 (blue 1369.03/2026.96, red 1741.10/2146.35):
    # here they are in the WorldCover file's order B04, B03, B02, B08.
    mean=(1741.10, 1597.68, 1369.03, 2858.43),
    std=(2146.35, 2011.88, 2026.96, 2016.38),
    recipes=MappingProxyType({"whole": "mean of patch tokens (rgb and nir groups; latlon and time tokens excluded)"}),
    other_prefixes=("model.decoder.",),
)
"""Clay v0.1, the original scripts' model (Hugging Face ``made-with-clay/Clay``, 511 MB, OpenRAIL-M)."""

CLAY_V15 = ClayV15(
    id="clay-v1.5",
    name="Clay v1.5",
    version="v1.5",
    dimension=1024,
    url="https://huggingface.co/made-with-clay/Clay/resolve/main/v1.5/clay-v1.5.ckpt",
    # Clay's Sentinel-2 L2A statistics (configs/metadata.yaml: blue 1105/1809, green 1355/1757, red 1552/1888,
    # nir 2743/1742), here in the WorldCover file's order B04, B03, B02, B08.
    mean=(1552.0, 1355.0, 1105.0, 2743.0),
    std=(1888.0, 1757.0, 1809.0, 1742.0),
    recipes=MappingProxyType(
        {
            "quarters": "mean of the class tokens of the chip's four 256 px quarters",
            "whole": "class token of the whole 512 px chip (4,096 patches)",
        }
    ),
    other_prefixes=("model.",),  # decoder, projection, teacher: everything of the module but its encoder
    license="Apache-2.0",
)
"""Clay v1.5 (Hugging Face ``made-with-clay/Clay``, folder ``v1.5``), ``clay_mae_large``: 311M encoder
parameters."""

MODELS: Mapping[str, Model] = MappingProxyType({m.id: m for m in (CLAY_V0, CLAY_V15)})
"""The models, by id."""


def get_model(model: str | Model) -> Model:
    """The model of an id (a :class:`Model` is returned as is); :class:`BadParameterError` for an unknown id."""
    if isinstance(model, Model):
        return model
    if model not in MODELS:
        raise BadParameterError(f"unknown model {str(model)[:40]!r}: one of {list(MODELS)}")
    return MODELS[model]
