"""Explain a match: where in a result chip it is like the query.

A chip's embedding is the mean of the encoder's patch tokens (16 x 16 patches of
32 px, each the mean of its rgb and nir tokens): the tokens say where. For a pair
(query, result) both chips are read with the reader and model the pipeline uses,
and each patch of the result gets a similarity to the query:

* ``"best"`` (the default): its highest cosine to any of the query's patches, so a
  part of the result that looks like *some* part of the query lights up;
* ``"embedding"``: its cosine to the query's embedding (the mean of its patches).

On the test's chip whose north-west quadrant is the query's imagery and the rest
another scene, ``"best"`` lit that quadrant clearly more than ``"embedding"``
(see the explorer page of the documentation); one pair takes seconds on a CPU.

Examples
--------
>>> explainer = MatchExplainer("outputs/sample", load_model(allow_untrained=True))  # doctest: +SKIP
>>> heat = explainer.explain("2020-1157-0288", "2020-1156-0289")  # doctest: +SKIP
>>> heat.shape  # doctest: +SKIP
(16, 16)
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np

from wcembed.core.errors import BadParameterError
from wcembed.core.grid import Grid, parse_chip_id
from wcembed.core.product import check_year
from wcembed.core.tileset import plan_grid

HOW = ("best", "embedding")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def patch_heatmap(query: np.ndarray, result: np.ndarray, how: str = "best") -> np.ndarray:
    """Similarity ``(g, g)`` of each patch of ``result`` to ``query`` (patch tokens ``(g, g, D)`` each), -1..1."""
    if how not in HOW:
        raise BadParameterError(f"unknown heatmap {how!r}: one of {HOW}")
    g = result.shape[0]
    r = _unit(result.reshape(g * g, -1))
    if how == "best":
        return (r @ _unit(query.reshape(-1, query.shape[-1])).T).max(axis=1).reshape(g, g)
    return (r @ _unit(query.reshape(-1, query.shape[-1]).mean(axis=0))).reshape(g, g)


def quadrant_means(heat: np.ndarray) -> dict[str, float]:
    """Mean of a heatmap over its north-west, north-east, south-west and south-east quarters."""
    h, w = heat.shape[0] // 2, heat.shape[1] // 2
    return {
        "nw": float(heat[:h, :w].mean()),
        "ne": float(heat[:h, w:].mean()),
        "sw": float(heat[h:, :w].mean()),
        "se": float(heat[h:, w:].mean()),
    }


class MatchExplainer:
    """Reads chips from a tile source and explains matches with an encoder.

    Parameters
    ----------
    tiles : str
        The tile source the embeddings were made from (folder, ``http(s)://`` or ``s3://``).
    model : wcembed.pipeline.weights.LoadedModel
        The encoder they were made with.
    device : str, optional
    """

    def __init__(self, tiles: str, model, device: str | None = None) -> None:
        # the pipeline's modules import torch: deferred, so that the explorer loads it only to explain a match
        from wcembed.pipeline.inference import Embedder

        self.tiles = str(tiles)
        self.untrained = bool(model.untrained)
        """Whether the weights are untrained (a heatmap shows the mechanism, not what Clay sees)."""
        self.embedder = Embedder(model, device=device, precision="float32")
        self._grids: dict[int, Grid] = {}
        self.read = functools.lru_cache(maxsize=8)(self._read)  # a result is read for its heatmap and its picture

    def grid(self, year: int) -> Grid:
        """The grid of a year's tiles (planned once)."""

        year = check_year(year)
        if year not in self._grids:
            self._grids[year] = plan_grid(year, self.tiles)
        return self._grids[year]

    def _read(self, chip: str):
        """The pixels of a chip (``(4, H, W)`` uint16) read as the pipeline reads them (as :meth:`read`, which
        keeps the last few)."""
        from wcembed.pipeline.bands import read_chips  # imports torch: deferred (see __init__)

        year, column, row = parse_chip_id(chip)
        return read_chips(self.grid(year), year, self.tiles, [(column, row)]).pixels[0]

    def patches(self, chips: Sequence[str], pixels: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Patch tokens ``(N, g, g, D)`` of chips (their pixels read, unless given)."""
        pixels = [self.read(c) for c in chips] if pixels is None else list(pixels)
        ids = [parse_chip_id(c) for c in chips]
        centres = [self.grid(y).chip_center(c, r) for y, c, r in ids]
        return self.embedder.patch_tokens(np.stack(pixels), None, centres, [y for y, _, _ in ids])

    def explain(
        self, query: str, result: str, how: str = "best", pixels: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """How much each patch of chip ``result`` is like chip ``query``: a ``(g, g)`` heatmap, -1..1
        (see :func:`patch_heatmap`); ``pixels`` gives the two chips' pixels instead of reading them."""
        q, r = self.patches([query, result], pixels)
        return patch_heatmap(q, r, how)

    def picture(self, result: str, heat: np.ndarray, size: int = 256, pixels: np.ndarray | None = None) -> bytes:
        """A PNG of the result chip (true colour) under the heatmap (inferno, half transparent)."""
        import matplotlib  # deferred: only to draw
        from PIL import Image

        px = self.read(result) if pixels is None else pixels
        rgb = px[:3].astype(np.float32)
        rgb = np.clip(rgb / max(float(np.percentile(rgb[rgb > 0], 98)) if (rgb > 0).any() else 1.0, 1.0), 0, 1)
        base = Image.fromarray((rgb.transpose(1, 2, 0) * 255).astype(np.uint8)).resize((size, size))
        lo, hi = float(heat.min()), float(heat.max())
        colours = matplotlib.colormaps["inferno"]((heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat))
        over = Image.fromarray((colours * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
        out = io.BytesIO()
        Image.blend(base.convert("RGBA"), over, 0.5).save(out, format="PNG")
        return out.getvalue()


def explainer_for(
    index, tiles: str | None, checkpoint: str | None = None, *, allow_untrained: bool | None = None
) -> MatchExplainer:
    """The explainer of an index's matches: the tile source and the weights its embeddings were made from.

    ``allow_untrained`` (default: whether the index holds untrained embeddings) lets untrained weights
    explain without a checkpoint; they show the mechanism, not what Clay sees. A package error says why
    there is none (no tile source, weights that cannot be loaded)."""
    from wcembed.pipeline.weights import load_model  # imports torch: deferred until a match is explained

    if not tiles:
        raise BadParameterError("no tile source: give the tiles the embeddings were made from (lab --tiles)")
    allow = index.untrained if allow_untrained is None else allow_untrained
    return MatchExplainer(tiles, load_model(checkpoint, allow_untrained=allow))
