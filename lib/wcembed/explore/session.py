"""The explorer's state as one observable model: what the map shows and what a click does.

:class:`ExploreSession` is a traitlets :class:`~traitlets.HasTraits` model that holds
everything a view shows (the year, k, the mode, the imagery kind, the query and its
results, the labels, the region layers and the one shown, the labelling loop's state)
and does everything the map offers (click a place, select an area, show a region
layer, label, explain a match). Its attributes are declared and checked (a bad value
raises :class:`~wcembed.errors.BadParameterError`) and observable: a view binds its
controls with :func:`traitlets.link` and draws on :meth:`~traitlets.HasTraits.observe`,
and keeps no copy of the state. It imports no widget library and talks to no WMS, so
code, tests and a notebook read headless drive it directly.

Views of it:

* :class:`wcembed.explore.view.Explorer`, the live ipyleaflet/ipywidgets map;
* :func:`wcembed.explore.figures.map_figure`, the picture an executed notebook keeps;
* :func:`wcembed.explore.pages.export_html`, the standalone page;
* :class:`wcembed.explore.panel.LabelPanel`, the labelling loop's panel.

A region layer (:class:`RegionLayer`) knows what it was made from (:class:`LayerKey`: its
kind, its year or pair of years, its query or examples) and keeps its own threshold and
opacity; the session keeps the layers by key, so switching the year shows that year's
layer (made when first needed) and switching back shows the first one again.

Failure policy: an operation raises only package errors (:class:`~wcembed.errors.WcEmbedError`);
"nothing there" (no chip under a click, no query yet) is not an error but a status line
and a ``None`` result. Work a view starts (a control moved, a click) goes through
:meth:`ExploreSession.attempt`, which turns a package error into the status line.

Example
-------
>>> session = ExploreSession(ChipIndex("outputs/lancedb"), year=2020, k=10)  # doctest: +SKIP
>>> session.observe(lambda change: print(change["name"]), names=["query", "results", "status"])  # doctest: +SKIP
>>> session.click(-75.62, 37.675)  # doctest: +SKIP
query
status
results
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from traitlets import Any as AnyTrait
from traitlets import HasTraits, Instance, TraitType, Unicode, observe, validate

from wcembed.errors import BadParameterError, LabelsError, WcEmbedError
from wcembed.explore.checks import MAX_K, check_k
from wcembed.explore.index import DIVERSE_CHIPS, query_vector
from wcembed.explore.table import DEFAULT_SET, sets_in
from wcembed.grid import chip_bounds, chip_id, parse_chip_id
from wcembed.product import CRS, LAYER_KINDS, YEARS, check_year

log = logging.getLogger(__name__)

MODES = ("search", "positive", "negative", "changed like")
"""What a click does: search from the chip, label it (and search with the labels), or find chips that changed
like it."""
REGION_LAYERS = ("none", "similarity", "scores", "change", "changed like", "embedding colours", "agreement")
"""Whole-region layers the map can show (:mod:`wcembed.explore.layers`), one at a time."""
CHANGE_YEARS = (YEARS[0], YEARS[1])
LIMITS = {"k": (1, MAX_K), "opacity": (0.0, 1.0)}
"""The ranges of the numeric settings (a view's controls take theirs from here)."""
MAX_LAYERS = 12
"""Region layers kept for a switch back (least recently shown dropped first; a CONUS layer is ~3 MB)."""
DEFAULT_OPACITY = 0.7


# --------------------------------------------------------------------------- checked values


def _one_of(value, options: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in options:
        raise BadParameterError(f"unknown {what} {value!r}: one of {list(options)}")
    return value


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise BadParameterError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BadParameterError(f"{what} must be a number, got {value!r}") from None
    if not np.isfinite(x):
        raise BadParameterError(f"{what} must be finite, got {value!r}")
    return x


def _fraction(value, what: str) -> float:
    x = _number(value, what)
    if not 0 <= x <= 1:
        raise BadParameterError(f"{what} must be within 0..1, got {value!r}")
    return x


def _flag(value, what: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise BadParameterError(f"{what} must be True or False, got {value!r}")
    return bool(value)


class Checked(TraitType):
    """A trait whose every new value passes ``check(value)``, which returns it (normalised) or raises
    :class:`~wcembed.errors.BadParameterError`; the value is left as it was."""

    def __init__(self, check: Callable[[Any], Any], default: Any, **kwargs) -> None:
        self.check = check
        super().__init__(default_value=default, **kwargs)

    def validate(self, obj, value):
        return self.check(value)


# --------------------------------------------------------------------------- region layers


@dataclass(frozen=True)
class LayerKey:
    """What a region layer was made from.

    Attributes
    ----------
    kind : str
        One of :data:`REGION_LAYERS` but ``"none"``.
    years : tuple of int
        The year of its chips, or the two years of a change.
    source : tuple of str
        The query chip(s), ``+``/``-`` prefixed examples, the classifier's training round, or the set compared
        with; empty for layers of the whole year (change, embedding colours).
    set : str
        The embedding set it was made from.
    """

    kind: str
    years: tuple[int, ...]
    source: tuple[str, ...] = ()
    set: str = DEFAULT_SET


class RegionLayer(HasTraits):
    """A whole-region layer as the map shows it: its :class:`LayerKey`, its raster
    (:class:`~wcembed.explore.layers.ChipRaster`), its own threshold (values below it are hidden, in the
    layer's units, on the step grid of :attr:`step`) and opacity (0..1), and the table of chips it was made
    with, if any (:attr:`table`: the change layer's chips from most to least changed)."""

    threshold = Checked(lambda t: _number(t, "threshold"), 0.0)
    opacity = Checked(lambda o: _fraction(o, "opacity"), DEFAULT_OPACITY)

    def __init__(
        self, key: LayerKey, raster, threshold: float | None = None, opacity: float = DEFAULT_OPACITY, table=None
    ):
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
        """``value`` on the step grid (``how``: ``np.round``, ``np.floor`` or ``np.ceil``)."""
        return round(float(how(value / self.step) * self.step), 12)

    @property
    def rgb(self) -> bool:
        """True for a three-band layer (embedding colours): it has no threshold."""
        return self.raster.values.ndim == 3

    @property
    def name(self) -> str:
        return self.raster.name

    def shown(self):
        """The raster as drawn: values below the threshold hidden (an RGB layer as it is)."""
        return self.raster if self.rgb else self.raster.masked(self.threshold)

    @property
    def count_line(self) -> str:
        """How many chips the layer shows ("" for an RGB layer)."""
        if self.rgb:
            return ""
        n_shown = int(np.count_nonzero(self.raster.values >= self.threshold))
        return f"{n_shown} chips with {self.raster.name} ≥ {self.threshold:.3g}"


@dataclass(frozen=True)
class Search:
    """What the results were searched from: a chip, examples, or a chip's change."""

    how: str  # "chip", "examples" or "changed like"
    chips: tuple[str, ...]
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    """Where a result is like the query (:meth:`ExploreSession.explain`): the ``(16, 16)`` patch heatmap and
    its picture over the result's imagery (PNG bytes)."""

    query: str
    result: str
    heat: np.ndarray
    png: bytes
    seconds: float
    untrained: bool


# --------------------------------------------------------------------------- the model


class ExploreSession(HasTraits):
    """The explorer's state and operations (no widgets, no WMS), as observable traits.

    Parameters
    ----------
    index : wcembed.explore.index.ChipIndex
    year : int
        Year searched and shown (2020 or 2021).
    k : int
        Number of neighbours (:data:`LIMITS`).
    explainer : wcembed.explore.explain.MatchExplainer, optional
        Reads chips and the encoder's patch tokens for :meth:`explain`.

    Attributes
    ----------
    year, k, mode, spread, imagery, region
        Settings: assign them (or call :meth:`set`); a bad value raises :class:`BadParameterError`.
        ``imagery`` is the WMS layer kind shown and in thumbnails (``TCC``, ``FCC``, ``MAP``), of ``year``;
        ``region`` the kind of region layer shown (:data:`REGION_LAYERS`).
    labels : wcembed.explore.classify.Labels
        The chips labelled so far (a new object at every change).
    query, results : GeoDataFrame or None
        The query chip(s) and the last search's results (``rank``, ``chip_id``, ``distance``, footprint).
    pair_years : tuple of int or None
        The two years of the results when they are changes (:meth:`changed_like`), else None.
    status : str
        The last operation's outcome in words (plain text).
    layer : RegionLayer or None
        The region layer shown: the layer of ``region`` made from the year (or years) and query shown.
    region_note : str
        Why no layer is shown although ``region`` is not "none" (what it waits for), else "".
    changes : DataFrame or None
        Chips from most to least changed, of the set and years of the change layer last shown.
    compare_chip : str or None
        The chip whose two years are compared: the query, while the change layer is shown.
    explanation : Explanation or None
        The last :meth:`explain`.
    explain_note : str
        Why matches cannot be explained ("" when they can): one line under the results.
    labelling : wcembed.explore.labelling.LabelLoop
        The labelling loop's state (classifier, scores, suggestions, review queue, learning curve).
    embedding_set : str
        The embedding set searched and shown (one of the database's, :func:`~wcembed.explore.table.sets_in`):
        switching it follows the search to the same place in the other set.
    compare_set : str
        Another set to compare with ("" for none): each search is made in it too (:attr:`results_other`, the
        same place and year), :attr:`compare_line` says how much the two agree on the query chip, and the
        "agreement" region layer shows every chip's agreement.
    """

    year = Checked(check_year, 2020)
    k = Checked(check_k, 10)
    mode = Checked(lambda m: _one_of(m, MODES, "mode"), "search")
    spread = Checked(lambda s: _flag(s, "spread"), False)
    imagery = Checked(lambda i: _one_of(i, LAYER_KINDS, "imagery kind"), "TCC")
    region = Checked(lambda r: _one_of(r, REGION_LAYERS, "region layer"), "none")
    labels = Instance("wcembed.explore.classify.Labels")
    query = AnyTrait(None, allow_none=True)
    results = AnyTrait(None, allow_none=True)
    pair_years = AnyTrait(None, allow_none=True)
    status = Unicode("")
    layer = Instance(RegionLayer, allow_none=True)
    region_note = Unicode("")
    changes = AnyTrait(None, allow_none=True)
    compare_chip = Unicode(None, allow_none=True)
    explanation = Instance(Explanation, allow_none=True)
    explain_note = Unicode("")
    embedding_set = Unicode(DEFAULT_SET)
    compare_set = Unicode("")
    results_other = AnyTrait(None, allow_none=True)
    compare_line = Unicode("")
    labelling = Instance("wcembed.explore.labelling.LabelLoop")

    def __init__(self, index, year: int = 2020, k: int = 10, *, explainer=None) -> None:
        from wcembed.explore.classify import Labels
        from wcembed.explore.labelling import LabelLoop

        self.index, self.explainer = index, explainer
        self._indexes = {index.set: index}  # set -> ChipIndex of the same database
        self.search: Search | None = None
        self._vector: np.ndarray | None = None
        self._pool = None  # a thread for the compare set's searches, made when first needed
        self._layers: OrderedDict[LayerKey, RegionLayer] = OrderedDict()
        self._preferred: dict[str, float] = {}  # kind -> the threshold last set on a layer of that kind
        self._opacity = DEFAULT_OPACITY  # the opacity last set on a layer: new layers start with it
        self._vectors: dict = {}  # (set, year) -> YearVectors, loaded once
        self._pairs: dict = {}  # (set, (year, year)) -> ChangePairs, made once
        super().__init__(labels=Labels(), embedding_set=index.set)
        self.labelling = LabelLoop(self)
        self.set(year=year, k=k)
        if explainer is None:
            self.explain_note = "explain is off: no tile source and weights given (use_explainer)"

    def use_explainer(self, tiles: str | None, checkpoint: str | None = None, *, allow_untrained=None) -> None:
        """Explain matches by reading chips from ``tiles`` (a folder or URL in the bucket's layout) with the
        weights the embeddings were made with (:func:`~wcembed.explore.explain.explainer_for`); where that
        cannot work, :attr:`explain_note` says why, in one line."""
        from wcembed.explore.explain import explainer_for

        try:
            self.explainer = explainer_for(self.index, tiles, checkpoint, allow_untrained=allow_untrained)
        except WcEmbedError as exc:
            self.explainer, self.explain_note = None, f"explain is off: {exc}"
            _release_frames(exc)
        else:
            untrained = self.explainer.untrained
            self.explain_note = "explain uses untrained weights: the mechanism, not what Clay sees" if untrained else ""

    @property
    def sets(self) -> list[str]:
        """The embedding sets of the session's database."""
        return sets_in(self.index.db)

    def index_of(self, name: str):
        """The :class:`~wcembed.explore.index.ChipIndex` of a set of the session's database (opened once)."""
        from wcembed.explore.index import ChipIndex

        if name not in self._indexes:
            self._indexes[name] = ChipIndex(self.index.db, set=name)
        return self._indexes[name]

    @validate("embedding_set", "compare_set")
    def _a_set_of_the_database(self, proposal) -> str:
        name = proposal["value"]
        if name == "" and proposal["trait"].name == "compare_set":
            return name
        return _one_of(name, self.sets, "embedding set")

    @observe("embedding_set")
    def _set_changed(self, change: dict) -> None:
        """Another set shown: its index, the search followed to the same place, that set's layers; the
        vectors of sets no longer shown or compared are let go."""
        self.index = self.index_of(change["new"])
        keep = {change["new"], self.compare_set}
        self._vectors = {k: v for k, v in self._vectors.items() if k[0] in keep}
        self._pairs = {k: v for k, v in self._pairs.items() if k[0] in keep}
        self.attempt(self._follow)

    @observe("compare_set")
    def _compare_changed(self, change: dict) -> None:
        self.attempt(self._compare_query)
        if self.region == "agreement":
            self.attempt(self._show_layer)

    # ------------------------------------------------------------------ errors
    def say(self, text: str) -> None:
        """Put ``text`` (plain text) on the status line."""
        self.status = text

    def attempt(self, operation: Callable[..., Any], *args, **kwargs) -> Any:
        """Run an operation for a view's callback: a package error goes to the status line (and None is
        returned); anything else is a bug, logged with its traceback and said too. Either way the error's
        frames are released at once, so a failed whole-region layer does not keep its arrays alive."""
        try:
            return operation(*args, **kwargs)
        except WcEmbedError as exc:
            self.say(str(exc))
            _release_frames(exc)
        except Exception as exc:  # a bug; a callback must not raise into the widget machinery
            trace = "".join(traceback.format_exception(exc))  # text: a log record keeps no frame alive
            log.error("unexpected error in %s\n%s", getattr(operation, "__name__", operation), trace)
            self.say(f"unexpected error (please report it): {type(exc).__name__}: {exc}")
            _release_frames(exc)
        return None

    # ------------------------------------------------------------------ settings
    def set(self, **settings) -> None:
        """Change settings: ``year``, ``k``, ``mode`` (:data:`MODES`), ``spread`` (bool), ``imagery``,
        ``region``, ``embedding_set``, ``compare_set``, and the shown layer's ``threshold`` (in its units) and
        ``opacity`` (0..1).
        :class:`BadParameterError` for a bad value or an unknown name; every value is checked before any
        is set."""
        unknown = set(settings) - set(_SETTINGS)
        if unknown:
            raise BadParameterError(f"unknown settings {sorted(unknown)}: one of {sorted(_SETTINGS)}")
        layer = self.layer
        for name, value in settings.items():
            if name in ("threshold", "opacity"):
                if layer is None:
                    raise BadParameterError(f"no region layer is shown: its {name} cannot be set")
                if name == "threshold" and layer.rgb:
                    raise BadParameterError(f"{layer.name} has no threshold (an RGB layer)")
                getattr(RegionLayer, name).validate(layer, value)
            elif name in ("embedding_set", "compare_set"):
                self._a_set_of_the_database({"value": value, "trait": self.traits()[name]})
            else:
                self.traits()[name].validate(self, value)
        for name in sorted(settings, key=_SETTINGS.index):  # the year last: its search uses the others
            setattr(layer if name in ("threshold", "opacity") else self, name, settings[name])

    @property
    def diverse(self) -> int:
        """The spacing of results in chips while ``spread`` is on (:data:`~wcembed.explore.index.DIVERSE_CHIPS`),
        else 0."""
        return DIVERSE_CHIPS if self.spread else 0

    @property
    def positives(self) -> list[str]:
        return self.labels.positives

    @property
    def negatives(self) -> list[str]:
        return self.labels.negatives

    @property
    def query_chip(self) -> str | None:
        """The (first) query chip's id, or None before the first search."""
        return None if self.query is None else self.query["chip_id"].iloc[0]

    @property
    def threshold(self) -> float:
        """The shown layer's threshold (0 when none is shown)."""
        return 0.0 if self.layer is None else self.layer.threshold

    @property
    def opacity(self) -> float:
        """The shown layer's opacity (the one new layers start with when none is shown)."""
        return self._opacity if self.layer is None else self.layer.opacity

    @property
    def region_status(self) -> str:
        """The region line: how many chips the layer shows, or what it waits for ("" when none, or RGB)."""
        return self.region_note if self.layer is None else self.layer.count_line

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
        if self.mode == "changed like":
            return self.changed_like([chip])
        if self.mode == "search":
            return self._search_chip(chip, vector)
        self.toggle_label(chip, self.mode)
        if not self.positives:
            self.say("add a positive example first")
            return None
        return self._searched(Search("examples", (chip,), tuple(self.positives), tuple(self.negatives)))

    def select_area(self, geometry):
        """Search with every chip of the year under ``geometry`` (a shapely polygon, degrees) as examples.

        In ``positive``/``negative`` mode the chips are labelled so, all in one action, and the search
        uses every label; in ``search`` mode they are the positives of this search only.
        Returns the results GeoDataFrame (or None when the area holds no chip).
        """
        chips = self.index.chips_in(geometry, self.year)
        if not chips:
            self.say(f"no chip of {self.year} under the drawn area")
            return None
        if self.mode == "search":
            positives, negatives = chips, []
        else:
            self.add_labels(chips, self.mode)
            if not self.positives:
                self.say(f"{len(chips)} negatives labelled; add a positive example to search")
                return None
            positives, negatives = self.positives, self.negatives
        note = f"; {len(chips)} chips under the drawn area"
        return self._searched(Search("examples", (chips[0],), tuple(positives), tuple(negatives), note))

    def _search_chip(self, chip: str, vector: np.ndarray):
        return self._searched(Search("chip", (chip,)), vector)

    def _run(self, search: Search, diverse: int, vector: np.ndarray | None = None):
        if search.how == "chip" and vector is None:
            vector = self._query_vector(search)
        return _search_in(self.index, search, self.k, self.year, diverse, vector)

    def _searched(self, search: Search, vector: np.ndarray | None = None):
        """Search and hold the results: the status line first, then the region layer follows the new query,
        then the results (in a browser the results' thumbnails load last, and do not hold up the layer).
        With ``spread`` on, the status line says how many results spreading replaced. With a set to compare
        with, its search runs at the same time, in a thread (LanceDB searches release the GIL)."""
        pending = None
        if self.compare_set and search.how != "changed like":
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compare-set")
            other = self.index_of(self.compare_set)
            pending = self._pool.submit(_other_search, other, search, self.k, self.year, self.diverse)
        results = self._run(search, self.diverse, vector)
        spread = ""
        if self.spread:  # the status line says that it is on, and what it changed
            plain = self._run(search, 0, vector)
            differ = len(set(results["chip_id"]) - set(plain["chip_id"]))
            apart = f"≥ {DIVERSE_CHIPS} chips apart"
            spread = (
                f"; spread out {apart}: {differ} of {len(results)} results differ from the nearest"
                if differ else f"; spread out: the nearest are already {apart}"
            )  # fmt: skip
            if len(results) < self.k:
                spread += f" (only {len(results)} chips that far apart)"
        self.search, self._vector = search, vector  # the query chip's vector, when the search had it
        self._hold(search.chips)
        self.pair_years = None
        of = f" in {self.index.set}" if self.index.set != DEFAULT_SET or self.compare_set else ""
        self.status = (
            f"{len(results)} nearest of {search.chips[0]}{of} (positives {len(self.positives)}, "
            f"negatives {len(self.negatives)}){search.note}{spread}"
        )
        try:
            if self.region == "change" and len(self.index.years) > 1:
                self.compare_chip = search.chips[0]
            self._show_layer()  # a layer that fails says so; the results follow all the same
        finally:
            self.results = results
            self._compare_query(pending)
        return results

    def _compare_query(self, pending=None) -> None:
        """With a set to compare with: the same search in it (:attr:`results_other`; ``pending``: its future,
        when it was started beside the search) and how much the two sets agree on the query chip
        (:attr:`compare_line`)."""
        search, name = self.search, self.compare_set
        if not name or search is None or search.how == "changed like":
            self.results_other, self.compare_line = None, ""
            return
        other = self.index_of(name)
        found = pending.result() if pending is not None else _other_search(other, search, self.k, self.year,
                                                                            self.diverse)  # fmt: skip
        if isinstance(found, str):
            self.results_other, self.compare_line = None, found
            return
        self.results_other, b = found
        chip = search.chips[0]
        a = self._vector if search.how == "chip" and self._vector is not None else self.index.vectors([chip])[0]
        cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
        line = f"{chip}: cosine {cosine:.3f} between its {self.index.set} and {name} embeddings"
        if search.how == "chip" and self.results is not None:  # the two searches, place by place
            places = [set(zip(r["column"], r["row"], strict=True)) for r in (self.results, self.results_other)]
            line += f"; {len(places[0] & places[1])} of the {self.k} nearest in common"
        self.compare_line = line

    def _query_vector(self, search: Search) -> np.ndarray:
        """The vector a search was made with (the query chip's, or the examples' as by_examples forms it)."""
        if search.how != "examples":
            return self.index.vectors(list(search.chips))[0]
        negatives = self.index.vectors(list(search.negatives)) if search.negatives else None
        return query_vector(self.index.vectors(list(search.positives)), negatives)

    def _hold(self, chips: Sequence[str]) -> None:
        import geopandas as gpd

        self.query = gpd.GeoDataFrame({"chip_id": list(chips)}, geometry=[self.index.footprint(c) for c in chips],
                                      crs=CRS)  # fmt: skip

    @observe("query")
    def _query_changed(self, change: dict) -> None:
        """Another query: an explanation of a match of the last one is let go."""
        if self.explanation is not None and self.explanation.query != self.query_chip:
            self.explanation = None

    @observe("year")
    def _year_changed(self, change: dict) -> None:
        """The year switched: the search follows (the same place, or the same examples, in the new year),
        then the region layer, imagery and thumbnails of the new year are shown."""
        self.attempt(self._follow)

    def _follow(self) -> None:
        """The search made again at the same place (or with the same examples) in the year and set shown."""
        search = self.search
        if search is None or search.how == "examples":
            if search is not None:
                self._searched(search)
            else:
                self._show_layer()
            return
        _, column, row = parse_chip_id(search.chips[0])
        w, s, e, n = chip_bounds(column, row, self.index.chip_size, self.index.origin)
        hit = self.index.query_at((w + e) / 2, (s + n) / 2, self.year)
        if hit is None:
            self.search = self.query = self.results = self.pair_years = None
            self.say(f"no chip of {self.year} at the place of {search.chips[0]}")
            self._show_layer()
        elif search.how == "changed like":
            self.changed_like([hit[0]], show=False)
        else:
            self._search_chip(*hit)

    # ------------------------------------------------------------------ labels
    def add_labels(self, chips: Sequence[str], label: str, year: int | None = None) -> None:
        """Label chips (``"positive"`` or ``"negative"``) of ``year`` (default: the session's), in one change."""
        year = self.year if year is None else year
        labels = self.labels.copy()
        for chip in chips:
            labels.add(chip, label, year=year, bounds=self.index.footprint(chip).bounds)
        missing = self.index.missing(list(chips))
        if missing:
            raise LabelsError(f"{len(missing)} chips are not in the index: {', '.join(missing[:5])}")
        self.labels = labels

    def toggle_label(self, chip: str, label: str, year: int | None = None) -> None:
        """Label a chip of ``year`` (default: the session's); labelling it again with the same label removes
        the label."""
        if self.labels.items.get(chip, {}).get("label") == label:
            labels = self.labels.copy()
            labels.remove(chip)
            self.labels = labels
        else:
            self.add_labels([chip], label, year)

    def save_labels(self, path: str | Path) -> Path:
        """Save the labels as GeoJSON."""
        return self.labels.save(path)

    def load_labels(self, path: str | Path) -> None:
        """Load labels from GeoJSON, replacing the current ones; :class:`LabelsError` (and the labels as they
        were) for a file whose chips are not all in the index, with their footprints on its grid."""
        from wcembed.explore.classify import Labels

        labels = Labels.load(path)
        try:
            labels.check_against(self.index)
        except LabelsError as exc:
            raise LabelsError(f"{path}: {exc}") from None
        self.labels = labels

    # ------------------------------------------------------------------ whole-region layers
    def vectors(self, year: int | None = None, embedding_set: str | None = None):
        """The year's embeddings (of the set shown, or ``embedding_set``) as a
        :class:`~wcembed.explore.vectors.YearVectors`, loaded from the index once, when a layer first needs them."""
        from wcembed.explore.vectors import YearVectors

        year = check_year(self.year if year is None else year)
        index = self.index if embedding_set is None else self.index_of(embedding_set)
        key = (index.set, year)
        if key not in self._vectors:
            self._vectors[key] = YearVectors.load(index, year)
        return self._vectors[key]

    @property
    def region_layers(self) -> dict[LayerKey, RegionLayer]:
        """The region layers made and kept so far, by what they were made from (least recently shown first)."""
        return dict(self._layers)

    def layer_key(self, kind: str | None = None) -> tuple[LayerKey | None, str]:
        """The key of the layer of ``kind`` (default: the region shown) for the year and query shown, and
        ``""``; or None and what the layer waits for (a query, a classifier, a second year)."""
        kind = self.region if kind is None else _one_of(kind, REGION_LAYERS, "region layer")
        year, search, of = (self.year,), self.search, self.index.set
        if kind == "none":
            return None, ""
        if kind == "agreement":
            if not self.compare_set:
                return None, "agreement: choose a set to compare with"
            return LayerKey(kind, year, (self.compare_set,), of), ""
        if kind in ("change", "changed like") and len(self.index.years) < 2:
            return None, f"{kind}: the index holds one year only"
        if kind in ("similarity", "changed like") and search is None:
            return None, f"{kind}: click a chip first (the layer is of the query)"
        if kind == "similarity":
            source = _examples(search) if search.how == "examples" else search.chips
            return LayerKey(kind, year, source, of), ""
        if kind == "changed like":
            return LayerKey(kind, CHANGE_YEARS, tuple(_places(search.chips)), of), ""
        if kind == "change":
            return LayerKey(kind, CHANGE_YEARS, (), of), ""
        if kind == "scores":
            loop = self.labelling
            if loop.classifier is None:
                return None, "scores: train a classifier first (label chips, then retrain in the labelling panel)"
            return LayerKey(kind, year, (f"round {len(loop.history)}",), of), ""
        return LayerKey(kind, year, (), of), ""

    def show_region(self, name: str):
        """Show the named whole-region layer (``"none"`` hides it), making it first if it is new.

        A layer that needs what is not there yet (similarity and changed-like need a query, scores a
        classifier) is chosen all the same, :attr:`region_note` says what it waits for, and it is drawn as
        soon as it can be. Raises (and the region shown stays) if the layer cannot be made.
        Returns the layer, or None."""
        key, _ = self.layer_key(name)
        layer = None if key is None else self._layer(key)
        if self.region == name:
            self._show_layer()  # the same region, perhaps another layer (a new query, a new training round)
        else:
            self.region = name  # the observer finds the layer made
        return layer

    @observe("region")
    def _region_changed(self, change: dict) -> None:
        """A region chosen (from code or a control): show its layer; if it cannot be made, the region shown
        stays as it was and the status line says why. The query's two years are compared while the change
        layer is shown (:attr:`compare_chip`), and only then."""
        if self.attempt(self._show_layer) is None:
            self.region = change["old"]
            return
        self.compare_chip = self.query_chip if self.region == "change" and len(self.index.years) > 1 else None

    def _show_layer(self) -> bool:
        """Show the layer of the region, year and query shown (made when first needed). Returns True."""
        key, waits = self.layer_key()
        try:
            layer = None if key is None else self._layer(key)
        except WcEmbedError as exc:  # no layer of another query or year stays: the region line says why
            self.region_note, self.layer = f"{key.kind}: not shown, {exc}", None
            raise
        self.region_note = waits
        self.layer = layer
        if layer is not None and layer.key.kind == "change":
            self.changes = layer.table  # of the set and years shown, also when the layer was kept
        return True

    def _layer(self, key: LayerKey, made=None) -> RegionLayer:
        """The layer of ``key``: kept, or made now (``made``: what :meth:`_make` returns, if it is at hand) and
        kept, the least recently shown dropped."""
        if key in self._layers:
            self._layers.move_to_end(key)
            return self._layers[key]
        raster, threshold, table = made or self._make(key)
        layer = RegionLayer(key, raster, self._preferred.get(key.kind, threshold), self._opacity, table)
        layer.observe(self._layer_set, names=["threshold", "opacity"])
        self._layers[key] = layer
        while len(self._layers) > MAX_LAYERS:
            self._layers.popitem(last=False)
        return layer

    def _layer_set(self, change: dict) -> None:
        """A layer's threshold or opacity was set: new layers of its kind start from there."""
        if change["name"] == "threshold":
            self._preferred[change["owner"].key.kind] = change["new"]
        else:
            self._opacity = change["new"]

    def _make(self, key: LayerKey):
        """The raster of a layer key, the threshold it starts at (None: the layer's own) and the table of
        chips it was made with (the change layer's; None for the others)."""
        from wcembed.explore.vectors import change

        if key.kind == "similarity":
            search = self.search
            label = search.chips[0] if search.how != "examples" else (
                f"{len(search.positives)} positive and {len(search.negatives)} negative examples")  # fmt: skip
            return self.vectors(key.years[0]).similarity(self._query_vector(search), label=label), None, None
        if key.kind == "change":
            raster, table = change(self.vectors(key.years[0]), self.vectors(key.years[1]),
                                   self.change_pairs(key.years))  # fmt: skip
            return raster, None, table
        if key.kind == "changed like":
            raster, _ = self.change_pairs(key.years).like(list(key.source), k=1)
            return raster, 0.0, None
        if key.kind == "scores":
            return self.labelling.score_layer(key.years[0]), 0.5, None
        if key.kind == "agreement":
            from wcembed.explore.compare import agreement

            year, other = key.years[0], key.source[0]
            vectors = (self.vectors(year), self.vectors(year, other))
            return agreement(self.index, self.index_of(other), year, vectors).layer(), None, None
        return self.vectors(key.years[0]).pca_rgb(), None, None

    def shown(self):
        """The region layer as drawn: values below the threshold hidden (RGB layers as they are); None if none."""
        return None if self.layer is None else self.layer.shown()

    def show_similarity(self):
        """Show the similarity of every chip of the year to the query (the clicked chip, or the examples)."""
        return self.show_region("similarity")

    def show_change(self):
        """Show the change between the two years (cosine distance of each chip's embeddings); the chips from
        most to least changed are in :attr:`changes`."""
        return self.show_region("change")

    def show_pca(self):
        """Show the year's embedding colours: the first three principal components as RGB."""
        return self.show_region("embedding colours")

    def change_pairs(self, years: tuple[int, int] = CHANGE_YEARS):
        """The chips of two years paired for change queries (:class:`~wcembed.explore.layers.ChangePairs`),
        made once."""
        from wcembed.explore.vectors import ChangePairs

        key = (self.index.set, tuple(years))
        if key not in self._pairs:
            self._pairs[key] = ChangePairs(self.vectors(years[0]), self.vectors(years[1]))
        return self._pairs[key]

    def changed_like(self, chips: list[str] | None = None, years: tuple[int, int] = CHANGE_YEARS, *, show=True):
        """The chips whose change between ``years`` is most like that of ``chips`` (default: the query chip),
        as the results, with :attr:`pair_years` set, and (``show``) as the region shown: the "changed like"
        layer (every chip, threshold 0). Returns the results (``chip_id`` of the session's year, ``rank``, ``score``,
        ``distance`` = 1 - score, footprint), or None without a query."""
        import geopandas as gpd

        if not chips:
            if self.query is None:
                self.say("click a chip first: changed like the query")
                return None
            chips = [self.query_chip]
        years = tuple(years)
        raster, top = self.change_pairs(years).like(_places(chips), k=self.k)
        year = self.year if self.year in years else years[0]
        ids = list(top[f"chip_{year}"])
        results = gpd.GeoDataFrame(
            {"chip_id": ids, "rank": range(1, len(ids) + 1), "score": top["score"], "distance": 1 - top["score"]},
            geometry=[self.index.footprint(c) for c in ids],
            crs=CRS,
        )
        self.search = Search("changed like", tuple(chips))
        self._layer(LayerKey("changed like", years, tuple(_places(chips)), self.index.set), (raster, 0.0, None))
        self._hold(chips)
        self.pair_years = years
        self.status = f"{len(results)} chips changed most like {', '.join(chips)} between {years[0]} and {years[1]}"
        if show and self.region != "changed like":
            self.region = "changed like"  # the observer shows its layer
        else:
            self._show_layer()
        self.results = results
        return results

    # ------------------------------------------------------------------ explaining
    def explain(self, result: str, how: str = "best"):
        """Where in chip ``result`` it is like the query chip: the encoder's patch tokens of both chips
        (:class:`~wcembed.explore.explain.MatchExplainer`), kept as :attr:`explanation`.
        Returns the ``(16, 16)`` heatmap (None without an explainer or a query: the status line says why)."""
        if self.explainer is None:
            self.say(self.explain_note)
            return None
        if self.query is None:
            self.say("click a chip first: a match is explained against the query")
            return None
        t0 = time.perf_counter()
        heat = self.explainer.explain(self.query_chip, result, how=how)
        png = self.explainer.picture(result, heat)
        seconds = time.perf_counter() - t0
        self.explanation = Explanation(self.query_chip, result, heat, png, seconds, self.index.untrained)
        return heat


def _other_search(other, search: Search, k: int, year: int, diverse: int):
    """The search ``search`` in another set's index: its results and its vector of the query chip, or why
    there is nothing to compare (a chip the set lacks). Touches no trait: it may run in a thread."""
    chip = search.chips[0]
    missing = other.missing(list(search.chips if search.how == "chip" else search.positives + search.negatives))
    if missing:
        return f"{other.set} has no chip {missing[0]}: nothing to compare"
    vector = other.vectors([chip])[0]  # the other set's vector of the chip: its search needs no second lookup
    return _search_in(other, search, k, year, diverse, vector), vector


def _search_in(index, search: Search, k: int, year: int, diverse: int, vector: np.ndarray | None):
    """The results of ``search`` in ``index``: the nearest of ``vector`` (the query chip's in that index) for a
    chip search, of the examples' vectors for an examples search; the query chips left out."""
    if search.how == "chip":
        return index.by_vector(vector, k, year=year, exclude=list(search.chips), diverse=diverse)
    return index.by_examples(list(search.positives), list(search.negatives), k, year=year, diverse=diverse)


_SETTINGS = ("k", "mode", "spread", "imagery", "threshold", "opacity", "region", "compare_set", "embedding_set", "year")


def _examples(search: Search) -> tuple[str, ...]:
    return tuple(f"+{c}" for c in search.positives) + tuple(f"-{c}" for c in search.negatives)


def _places(chips: Sequence[str]) -> list[str]:
    """Chip ids of the change layer's first year at the places of ``chips`` (a change is of a place)."""
    out = []
    for chip in chips:
        _, column, row = parse_chip_id(chip)
        out.append(chip_id(CHANGE_YEARS[0], column, row))
    return out


def _release_frames(exc: BaseException) -> None:
    """Clear the variables of the finished frames an error, and the errors it was raised from, hold: a
    library may keep an error after it was handled (LanceDB's event loop thread holds the error of a failed
    read until it next runs), and with its frames it would keep the failed layer's arrays."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)  # the frame still running (attempt's) is left as it is
        todo += [e.__cause__, e.__context__]
