"""Region layers as the map shows them: each with its own threshold and opacity, kept by what it was made from.

A :class:`RegionLayer` knows what it was made from (:class:`LayerKey`: its kind, its year or pair of years, its
query or examples, its set) and keeps its own threshold and opacity: a new layer starts at its own defaults,
whatever was set on another layer, and a layer shown again comes back as it was left. :class:`RegionLayers`
keeps the layers by key (the least recently shown dropped past :data:`MAX_LAYERS`) and holds the one shown.

Example
-------
>>> layers = RegionLayers()  # doctest: +SKIP
>>> layer = layers.get(LayerKey("change", (2020, 2021)), make)  # made once, kept  # doctest: +SKIP
>>> layers.show(layer)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from traitlets import HasTraits, Instance, Unicode, validate

from wcembed.explore.compute.layers import ChipRaster
from wcembed.explore.data.table import DEFAULT_SET
from wcembed.explore.state.traits import Checked, fraction, number

MAX_LAYERS = 12
"""Region layers kept for a switch back (least recently shown dropped first; a CONUS layer is ~3 MB)."""
DEFAULT_OPACITY = 0.7
"""The opacity a new layer starts with."""


@dataclass(frozen=True)
class LayerKey:
    """What a region layer was made from.

    Attributes
    ----------
    kind : str
        The kind of region layer (similarity, scores, change, changed like, embedding colours, agreement,
        neighbour agreement).
    years : tuple of int
        The year of its chips, or the two years of a change.
    source : tuple of str
        The query chip(s), ``+``/``-`` prefixed examples, the classifier's training round, or the set compared
        with (and ``k {k}``, the neighbours counted); empty for layers of the whole year (change, embedding
        colours).
    set : str
        The embedding set it was made from.
    """

    kind: str
    years: tuple[int, ...]
    source: tuple[str, ...] = ()
    set: str = DEFAULT_SET


def clean(value: float) -> float:
    """``value`` rounded to 12 decimals, with a value within 1e-12 of zero (and -0.0) as 0.0."""
    x = round(float(value), 12)
    return 0.0 if abs(x) < 1e-12 else x


class RegionLayer(HasTraits):
    """A whole-region layer as the map shows it: its :class:`LayerKey`, its raster
    (:class:`~wcembed.explore.compute.layers.ChipRaster`), its own threshold (values below it are hidden, in the
    layer's units, on the step grid of :attr:`step`) and opacity (0..1), and the table of chips it was made
    with, if any (:attr:`table`: the change layer's chips from most to least changed)."""

    threshold = Checked(lambda t: number(t, "threshold"), 0.0)
    opacity = Checked(lambda o: fraction(o, "opacity"), DEFAULT_OPACITY)

    def __init__(
        self, key: LayerKey, raster: ChipRaster, threshold: float | None = None, opacity: float = DEFAULT_OPACITY,
        table=None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.key, self.raster, self.table = key, raster, table
        if self.rgb:
            self.lo = self.hi = self.step = 0.0
        else:
            lo, hi = float(raster.vmin), float(raster.vmax)
            # a power of ten about a hundredth of the range: the step of the threshold (and of a slider)
            self.step = float(10.0 ** np.floor(np.log10((hi - lo) / 100))) if hi > lo else 0.01
            self.lo, self.hi = self.snap(lo, np.floor), self.snap(hi, np.ceil)
        start = threshold if threshold is not None else (0.0 if self.lo <= 0.0 <= self.hi else self.lo)
        self.threshold, self.opacity = start, opacity

    @validate("threshold")
    def _on_the_grid(self, proposal) -> float:
        return 0.0 if self.rgb else self.snap(proposal["value"], np.round)

    def snap(self, value: float, how=np.round) -> float:
        """``value`` on the step grid (``how``: ``np.round``, ``np.floor`` or ``np.ceil``); a value within
        float error of zero is 0."""
        return clean(how(value / self.step) * self.step)

    @property
    def rgb(self) -> bool:
        """True for a three-band layer (embedding colours): it has no threshold."""
        return self.raster.values.ndim == 3

    @property
    def name(self) -> str:
        return self.raster.name

    def shown(self) -> ChipRaster:
        """The raster as drawn: values below the threshold hidden (an RGB layer as it is)."""
        return self.raster if self.rgb else self.raster.masked(self.threshold)

    @property
    def count_line(self) -> str:
        """How many chips the layer shows ("" for an RGB layer)."""
        if self.rgb:
            return ""
        n_shown = int(np.count_nonzero(self.raster.values >= self.threshold))
        return f"{n_shown} chips with {self.raster.name} ≥ {clean(self.threshold):.3g}"


Made = tuple[ChipRaster, float | None, object]
"""What making a layer gives: its raster, the threshold it starts at (None: the layer's own) and its table."""


class RegionLayers(HasTraits):
    """The region layers made so far, by key, and the one shown.

    Attributes
    ----------
    shown : RegionLayer or None
        The layer on the map.
    note : str
        Why no layer is shown although a kind is chosen (what it waits for, or why it failed), else "".
    """

    shown = Instance(RegionLayer, allow_none=True)
    note = Unicode("")

    def __init__(self, limit: int = MAX_LAYERS) -> None:
        super().__init__()
        self.limit = limit
        self._kept: OrderedDict[LayerKey, RegionLayer] = OrderedDict()

    def get(self, key: LayerKey, make: Callable[[LayerKey], Made]) -> RegionLayer:
        """The layer of ``key``: kept, or made now with ``make(key)`` and kept, the least recently used
        dropped past the limit. A new layer starts at its own threshold and the default opacity."""
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        raster, threshold, table = make(key)
        layer = RegionLayer(key, raster, threshold, DEFAULT_OPACITY, table)
        self._kept[key] = layer
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)
        return layer

    def show(self, layer: RegionLayer | None, note: str = "") -> None:
        """Show ``layer`` (None: none, ``note`` saying why)."""
        self.note = note
        self.shown = layer

    @property
    def by_key(self) -> dict[LayerKey, RegionLayer]:
        """The layers kept, by what they were made from (least recently shown first)."""
        return dict(self._kept)

    @property
    def changes(self):
        """The chips from most to least changed, of the set and years of the change layer last shown (None
        before one was made)."""
        found = [layer for layer in self._kept.values() if layer.key.kind == "change"]
        return found[-1].table if found else None

    @property
    def status(self) -> str:
        """The region line: how many chips the layer shows, or what it waits for ("" when none, or RGB)."""
        return self.note if self.shown is None else self.shown.count_line
