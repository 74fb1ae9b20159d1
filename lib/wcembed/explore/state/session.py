"""The explorer's state: a thin composition of small observable models, and what a click does.

:class:`ExploreSession` composes

* :attr:`~ExploreSession.scope` (:class:`~wcembed.explore.state.scope.Scope`): the year, the embedding set and
  the set beside, each with its index;
* :attr:`~ExploreSession.search` (:class:`~wcembed.explore.state.search.SearchModel`): k, mode, spread, the
  last search and its results (in both sets);
* :attr:`~ExploreSession.layers` (:class:`~wcembed.explore.state.layers.RegionLayers`): the region layers by
  what they were made from, and the one shown, each with its own threshold and opacity;
* :attr:`~ExploreSession.labelling` (:class:`~wcembed.explore.state.labelling.LabelLoop`): the labels, the
  classifier, suggestions and review;
* :attr:`~ExploreSession.explaining` (:class:`~wcembed.explore.state.explaining.Explaining`): where a match is;

and holds what spans them: the imagery kind, the kind of region layer shown, and the status line. Every
piece of state lives in one model; views link their controls to those traits (:func:`traitlets.link`) and
draw on :meth:`~traitlets.HasTraits.observe`. The session owns its models and is told of them by observing;
no model calls back into the session. It imports no widget library and talks to no WMS, so code, tests and
a notebook read headless drive it directly.

Views of it: :class:`wcembed.explore.views.view.Explorer` (the live map),
:func:`wcembed.explore.views.figures.map_figure` (a picture), :func:`wcembed.explore.views.pages.export_html`
(a standalone page), :class:`wcembed.explore.views.panel.LabelPanel` (the labelling panel).

Failure policy: :mod:`wcembed.explore.state.attempts`; work a view starts goes through :meth:`ExploreSession.attempt`.

Example
-------
>>> session = ExploreSession(ChipIndex("outputs/lancedb"), year=2020, k=10)  # doctest: +SKIP
>>> session.search.observe(lambda change: print(change["name"]), names=["last", "results"])  # doctest: +SKIP
>>> session.click(-75.62, 37.675)  # doctest: +SKIP
last
results
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from traitlets import HasTraits, Unicode, validate

from wcembed.core.errors import BadParameterError, WcEmbedError
from wcembed.core.grid import chip_bounds, parse_chip_id
from wcembed.core.product import LAYER_KINDS
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.state import regions
from wcembed.explore.state.attempts import attempt
from wcembed.explore.state.explaining import Explaining
from wcembed.explore.state.labelling import LabelLoop
from wcembed.explore.state.layers import LayerKey, RegionLayer, RegionLayers
from wcembed.explore.state.scope import CHANGE_YEARS, Scope
from wcembed.explore.state.search import Search, SearchModel
from wcembed.explore.state.traits import Checked, one_of

SETTINGS = {
    "k": "search", "mode": "search", "spread": "search", "imagery": "", "threshold": "layer", "opacity": "layer",
    "region": "", "embedding_set": "scope", "compare_set": "scope", "year": "scope",
}  # fmt: skip
"""The settings :meth:`ExploreSession.set` takes, and the model each belongs to ("": the session's own), in
the order they are set (the year last: its search uses the others)."""
_SCOPE_NAMES = {"embedding_set": "name", "compare_set": "beside", "year": "year"}


class ExploreSession(HasTraits):
    """The explorer's state and operations (no widgets, no WMS), as a composition of observable models.

    Parameters
    ----------
    index : wcembed.explore.data.index.ChipIndex
        The embedding set shown first (others of its database can be switched to).
    year : int
        Year searched and shown (2020 or 2021).
    k : int
        Number of neighbours.
    explainer : wcembed.explore.compute.explain.MatchExplainer, optional
        Reads chips and the encoder's patch tokens for :meth:`explain`.

    Attributes
    ----------
    imagery : str
        The WMS layer kind shown and in thumbnails (``TCC``, ``FCC``, ``MAP``), of the year shown.
    region : str
        The kind of region layer shown (:data:`~wcembed.explore.state.regions.REGION_LAYERS`); setting it makes
        the layer first, and a layer that cannot be made is refused (the region stays).
    status : str
        The last operation's outcome in words (plain text).
    """

    imagery = Checked(lambda i: one_of(i, LAYER_KINDS, "imagery kind"), "TCC")
    region = Checked(regions.check_region, "none")
    status = Unicode("")

    def __init__(self, index: ChipIndex, year: int = 2020, k: int = 10, *, explainer=None) -> None:
        self.scope = Scope(index, year)
        self.search = SearchModel(self.scope, k)
        self.layers = RegionLayers()
        self.labelling = LabelLoop(self.scope)
        self.explaining = Explaining(explainer)
        super().__init__()
        self.scope.observe(lambda _: self.attempt(self._follow), names=["year", "name"])
        self.scope.observe(lambda _: self.attempt(self._beside_changed), names="beside")
        self.labelling.observe(lambda _: self.attempt(self.show_region, "scores"), names="history")
        self.search.observe(lambda _: self.explaining.forget(self.query_chip), names="last")
        self.search.observe(lambda _: self.attempt(self._k_changed), names="k")

    def use_explainer(self, tiles: str | None, checkpoint: str | None = None, *, allow_untrained=None) -> None:
        """Explain matches by reading chips from ``tiles`` with the weights the embeddings were made with; where
        that cannot work, ``explaining.note`` says why (:meth:`~wcembed.explore.state.explaining.Explaining.use`)."""
        self.explaining.use(self.index, tiles, checkpoint, allow_untrained=allow_untrained)

    # ------------------------------------------------------------------ what is in play (read-only)
    @property
    def index(self) -> ChipIndex:
        """The index of the set shown (``scope.index``)."""
        return self.scope.index

    @property
    def year(self) -> int:
        """The year shown (``scope.year``)."""
        return self.scope.year

    @property
    def labels(self):
        """The labels (``labelling.labels``)."""
        return self.labelling.labels

    @property
    def query_chip(self) -> str | None:
        """The (first) query chip's id, or None before the first search."""
        return self.search.query_chip

    @property
    def results(self):
        """The last search's results (``search.results``)."""
        return self.search.results

    @property
    def layer(self) -> RegionLayer | None:
        """The region layer shown (``layers.shown``)."""
        return self.layers.shown

    @property
    def compare_chip(self) -> str | None:
        """The chip whose two years are compared: the query, while the change layer is shown (and only then)."""
        return self.query_chip if self.region == "change" and self.scope.two_years else None

    # ------------------------------------------------------------------ errors and settings
    def say(self, text: str) -> None:
        """Put ``text`` (plain text) on the status line."""
        self.status = text

    def attempt(self, operation: Callable[..., Any], *args, **kwargs) -> Any:
        """Run an operation for a view's callback; a package error goes to the status line (and None is
        returned) (:func:`~wcembed.explore.state.attempts.attempt`)."""
        return attempt(self.say, operation, *args, **kwargs)

    def set(self, **settings) -> None:
        """Change settings (:data:`SETTINGS`): ``year``, ``k``, ``mode``, ``spread``, ``imagery``, ``region``,
        ``embedding_set``, ``compare_set``, and the shown layer's ``threshold`` (in its units) and ``opacity``
        (0..1). :class:`BadParameterError` for a bad value or an unknown name; every value is checked before any
        is set (a region layer is made when it is set)."""
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise BadParameterError(f"unknown settings {sorted(unknown)}: one of {sorted(SETTINGS)}")
        layer, shown = self.layer, settings.get("embedding_set", self.scope.name)
        for name, value in settings.items():
            owner = self._owner(name)
            if owner is None:
                raise BadParameterError(f"no region layer is shown: its {name} cannot be set")
            if name == "threshold" and layer.rgb:
                raise BadParameterError(f"{layer.name} has no threshold (an RGB layer)")
            if name == "region":  # its layer is made when it is set (after the others)
                regions.check_region(value)
            elif name == "compare_set" and value:
                one_of(value, self.scope.sets, "embedding set")
                if value == shown:
                    raise BadParameterError(f"{value} is the set shown: compare it with another set")
            elif name != "compare_set":
                owner.traits()[_SCOPE_NAMES.get(name, name)]._validate(owner, value)
        for name in sorted(settings, key=list(SETTINGS).index):
            setattr(self._owner(name), _SCOPE_NAMES.get(name, name), settings[name])

    def _owner(self, name: str):
        return {"search": self.search, "scope": self.scope, "layer": self.layer, "": self}[SETTINGS[name]]

    # ------------------------------------------------------------------ region layers
    def show_region(self, name: str) -> RegionLayer | None:
        """Show the named whole-region layer (``"none"`` hides it), making it first if it is new.

        A layer that needs what is not there yet (similarity and changed-like need a query, scores a
        classifier) is chosen all the same, ``layers.note`` says what it waits for, and it is drawn as soon as
        it can be. Raises (and the region shown stays) if the layer cannot be made. Returns the layer, or None."""
        if self.region == name:
            self._show()  # the same region, perhaps another layer (a new query, a new training round)
        else:
            self.region = name
        return self.layer

    @validate("region")
    def _a_region_that_can_be_made(self, proposal) -> str:
        kind = regions.check_region(proposal["value"])
        self._show_kind(kind)  # made (and kept) now: a layer that cannot be made is refused here
        return kind

    def _layer_of(self, kind: str) -> tuple[RegionLayer | None, str]:
        key, waits = regions.layer_key(kind, self.scope, self.search, self.labelling)
        return (None if key is None else self._layer(key)), waits

    def _layer(self, key: LayerKey, made=None) -> RegionLayer:
        return self.layers.get(key, lambda k: made or regions.make(k, self.scope, self.search, self.labelling))

    def _show(self) -> None:
        """Show the layer of the region, year, set and query in play (made when first needed)."""
        self._show_kind(self.region)

    def _show_kind(self, kind: str) -> None:
        try:
            layer, waits = self._layer_of(kind)
        except WcEmbedError as exc:  # no layer of another query or year stays: the region line says why
            self.layers.show(None, f"{kind}: not shown, {exc}")
            raise
        self.layers.show(layer, waits)

    def _beside_changed(self) -> None:
        self.search.compare()
        if self.region in ("agreement", "neighbour agreement"):
            self._show()

    def _k_changed(self) -> None:
        if self.region == "neighbour agreement":  # the neighbours it counts
            self._show()

    # ------------------------------------------------------------------ searching
    def click(self, lon: float, lat: float):
        """What a click at ``lon``, ``lat`` (degrees) does in the current mode: search from the chip under it,
        label it and search with the labels, or find chips that changed like it. Returns the results
        GeoDataFrame (None when there is no chip there, or no positive example yet)."""
        hit = self.index.query_at(lon, lat, self.year)  # grid arithmetic and one lookup by id
        if hit is None:
            self.say(f"no chip of {self.year} at {lat:.4f}, {lon:.4f}")
            return None
        chip, vector = hit
        mode = self.search.mode
        if mode == "changed like":
            return self.changed_like([chip])
        if mode == "search":
            return self._searched(Search("chip", (chip,)), vector)
        self.labelling.toggle(chip, mode)
        return self._with_labels((chip,), "", "add a positive example first")

    def select_area(self, geometry):
        """Search with every chip of the year under ``geometry`` (a shapely polygon, degrees) as examples.

        In ``positive``/``negative`` mode the chips are labelled so, all in one action, and the search
        uses every label; in ``search`` mode they are the positives of this search only.
        Returns the results GeoDataFrame (or None when the area holds no chip)."""
        chips = self.index.chips_in(geometry, self.year)
        if not chips:
            self.say(f"no chip of {self.year} under the drawn area")
            return None
        note = f"; {len(chips)} chips under the drawn area"
        if self.search.mode == "search":
            return self._searched(Search("examples", (chips[0],), tuple(chips), (), note))
        self.labelling.add(chips, self.search.mode)
        return self._with_labels(
            (chips[0],), note, f"{len(chips)} negatives labelled; add a positive example to search"
        )

    def _with_labels(self, chips: tuple[str, ...], note: str, without_positives: str):
        loop = self.labelling
        if not loop.positives:
            self.say(without_positives)
            return None
        return self._searched(Search("examples", chips, tuple(loop.positives), tuple(loop.negatives), note))

    def _searched(self, search: Search, vector=None):
        """Search and hold the results: the status line first, then the region layer follows the new query,
        then the results (in a browser the results' thumbnails load last, and do not hold up the layer)."""
        results, line, pending = self.search.find(search, vector)
        self.search.last, self.search.pair_years = search, None
        self.status = line
        try:
            self._show()  # a layer that fails says so; the results follow all the same
        finally:
            self.search.results = results
            self.search.compare(pending)
        return results

    def changed_like(self, chips: Sequence[str] | None = None, years: tuple[int, int] = CHANGE_YEARS, *, show=True):
        """The chips whose change between ``years`` is most like that of ``chips`` (default: the query chip), as
        the results, with ``search.pair_years`` set, and (``show``) as the region shown: the "changed like" layer
        (every chip, threshold 0). Returns the results, or None without a query."""
        if not chips:
            if self.query_chip is None:
                self.say("click a chip first: changed like the query")
                return None
            chips = [self.query_chip]
        years = tuple(years)
        results, raster, line = self.search.changed_like(chips, years)
        search = Search("changed like", tuple(chips))
        self._layer(LayerKey("changed like", years, tuple(search.places), self.index.set), (raster, 0.0, None))
        self.search.last, self.search.pair_years = search, years
        self.status = line
        if show and self.region != "changed like":
            self.region = "changed like"
        else:
            self._show()
        self.search.results = results
        self.search.compare()
        return results

    def _follow(self) -> None:
        """The search made again at the same place (or with the same examples) in the year and set shown."""
        search = self.search.last
        if search is None or search.how == "examples":
            return self._searched(search) if search is not None else self._show()
        _, column, row = parse_chip_id(search.chips[0])
        w, s, e, n = chip_bounds(column, row, self.index.chip_size, self.index.origin)
        hit = self.index.query_at((w + e) / 2, (s + n) / 2, self.year)
        if hit is None:
            self.search.clear()
            self.say(f"no chip of {self.year} at the place of {search.chips[0]}")
            self._show()
        elif search.how == "changed like":
            self.changed_like([hit[0]], show=False)
        else:
            self._searched(Search("chip", (hit[0],)), hit[1])

    # ------------------------------------------------------------------ labels and explanations
    def add_labels(self, chips: Sequence[str], label: str, year: int | None = None) -> None:
        """Label chips (``"positive"`` or ``"negative"``) of ``year`` (default: the year shown), in one change."""
        self.labelling.add(chips, label, year)

    def explain(self, result: str, how: str = "best"):
        """Where in chip ``result`` it is like the query chip (``explaining.explanation``). Returns the
        ``(16, 16)`` heatmap (None without an explainer or a query: the status line says why)."""
        if self.explaining.explainer is None:
            self.say(self.explaining.note)
            return None
        if self.query_chip is None:
            self.say("click a chip first: a match is explained against the query")
            return None
        return self.explaining.explain(self.query_chip, result, self.index.untrained, how)
