"""The explorer's state and operations, without widgets: what the map shows and what a click does.

:class:`ExploreSession` holds everything the explorer knows (the year, k, the mode,
the labels, the query and its results, the whole-region layers, the one shown and
its threshold) and does everything the map offers (click a place, select an area,
show a region layer, label, explain a match). It imports no widget library and
talks to no WMS, so code, tests and a notebook read headless drive it directly.

Views subscribe to it and are told, after each operation, the names of what
changed (:data:`ASPECTS`); they read the new state and draw it:

* :class:`wcembed.explore.view.Explorer`, the live ipyleaflet/ipywidgets map;
* :func:`wcembed.explore.figures.map_figure`, the picture an executed notebook keeps;
* :func:`wcembed.explore.pages.export_html`, the standalone page;
* :class:`wcembed.explore.labelling.LabelLoop`, which learns that labels changed.

Failure policy: an operation raises only package errors (:class:`~wcembed.errors.WcEmbedError`);
"nothing there" (no chip under a click, no query yet) is not an error but a status line
and a ``None`` result. A view's callbacks turn package errors into the status line
(:meth:`ExploreSession.attempt`).

Example
-------
>>> session = ExploreSession(ChipIndex("outputs/lancedb"), year=2020, k=10)  # doctest: +SKIP
>>> session.subscribe(lambda changed: print(sorted(changed)))  # doctest: +SKIP
>>> session.click(-75.62, 37.675)  # doctest: +SKIP
['query', 'results', 'status']
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wcembed.errors import BadParameterError, WcEmbedError
from wcembed.explore.index import DIVERSE_CHIPS, check_k, query_vector
from wcembed.product import CRS, YEARS, check_year

log = logging.getLogger(__name__)

MODES = ("search", "positive", "negative", "changed like")
"""What a click does: search from the chip, label it (and search with the labels), or find chips that changed
like it."""
REGION_LAYERS = ("none", "similarity", "scores", "change", "changed like", "embedding colours")
"""Whole-region layers the map can show (:mod:`wcembed.explore.layers`), one at a time."""
ASPECTS = (
    "year", "k", "mode", "spread", "query", "results", "labels", "status", "region", "threshold", "opacity",
    "compare", "explanation",
)  # fmt: skip
"""The names a subscriber is told when they change."""
CHANGE_YEARS = (YEARS[0], YEARS[1])


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


class ExploreSession:
    """The explorer's state and operations (no widgets, no WMS).

    Parameters
    ----------
    index : wcembed.explore.index.ChipIndex
    year : int
        Year searched and shown (2020 or 2021).
    k : int
        Number of neighbours (1..:data:`~wcembed.explore.index.MAX_K`).
    explainer : wcembed.explore.explain.MatchExplainer, optional
        Reads chips and the encoder's patch tokens for :meth:`explain`.

    Attributes
    ----------
    year, k, mode, spread, threshold, opacity
        Settings; change them with :meth:`set` (subscribers are told).
    labels : wcembed.explore.classify.Labels
        The chips labelled so far.
    query, results : GeoDataFrame or None
        The query chip(s) and the last search's results (``rank``, ``chip_id``, ``distance``, footprint).
    pair_years : tuple of int or None
        The two years of the results when they are changes (:meth:`changed_like`), else None.
    status : str
        The last operation's outcome in words (plain text).
    region : str
        The region layer shown (:data:`REGION_LAYERS`); ``region_layers`` holds those computed so far.
    changes : DataFrame or None
        Chips from most to least changed, after :meth:`show_change`.
    compare_chip : str or None
        The chip whose two years are compared (a click while the change layer is shown).
    explanation : Explanation or None
        The last :meth:`explain`.
    """

    def __init__(self, index, year: int = 2020, k: int = 10, *, explainer=None) -> None:
        from wcembed.explore.classify import Labels

        self.index, self.explainer = index, explainer
        self.year, self.k = check_year(year), check_k(k)
        self.mode, self.spread = "search", False
        self.labels = Labels()
        self.query = self.results = self.pair_years = None
        self.status = ""
        self.region = "none"
        self.region_layers: dict = {}
        self.thresholds: dict[str, float] = {}  # per region layer: it moves only when set
        self.opacity = 0.7
        self.changes = None
        self.compare_chip: str | None = None
        self.explanation: Explanation | None = None
        self._vectors: dict = {}  # year -> YearVectors, loaded once
        self._pairs: dict = {}  # (year, year) -> ChangePairs, made once
        self._subscribers: list[Callable[[set[str]], None]] = []

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None]:
        """Call ``callback(changed)`` after every change, ``changed`` being a set of :data:`ASPECTS` names.

        Returns a function that unsubscribes.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _tell(self, *changed: str) -> None:
        for callback in list(self._subscribers):
            callback(set(changed))

    def say(self, text: str) -> None:
        """Put ``text`` (plain text) on the status line."""
        self.status = text
        self._tell("status")

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
        """Change settings: ``year``, ``k``, ``mode`` (:data:`MODES`), ``spread`` (bool), ``threshold`` (of the
        region layer shown, in its units) and ``opacity`` (0..1). :class:`BadParameterError` for a bad value;
        subscribers are told only what changed."""
        checks = {
            "year": check_year,
            "k": check_k,
            "mode": lambda m: _one_of(m, MODES, "mode"),
            "spread": bool,
            "threshold": lambda t: _number(t, "threshold"),
            "opacity": lambda o: _fraction(o, "opacity"),
        }
        unknown = set(settings) - set(checks)
        if unknown:
            raise BadParameterError(f"unknown settings {sorted(unknown)}: one of {sorted(checks)}")
        changed = []
        for name, value in settings.items():
            value = checks[name](value)
            if value != getattr(self, name):
                if name == "threshold":
                    self.thresholds[self.region] = value
                else:
                    setattr(self, name, value)
                changed.append(name)
        if changed:
            self._tell(*changed)

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
            results = self.index.by_vector(vector, self.k, year=self.year, exclude=[chip], diverse=self.diverse)
            return self._searched(results, [chip], lambda: vector)
        self.toggle_label(chip, self.mode)
        if not self.positives:
            self.say("add a positive example first")
            return None
        return self._search_examples(self.positives, self.negatives, chip)

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
        return self._search_examples(positives, negatives, chips[0], f"; {len(chips)} chips under the drawn area")

    def _search_examples(self, positives: list[str], negatives: list[str], chip: str, note: str = ""):
        results = self.index.by_examples(positives, negatives, self.k, year=self.year, diverse=self.diverse)

        def vector():  # the query vector of the examples, as by_examples forms it
            return query_vector(self.index.vectors(positives), self.index.vectors(negatives) if negatives else None)

        label = f"{len(positives)} positive and {len(negatives)} negative examples"
        return self._searched(results, [chip], vector, label, note)

    def _searched(self, results, chips: list[str], vector: Callable[[], np.ndarray], label: str | None = None,
                  note: str = ""):  # fmt: skip
        """Hold new results, then follow them with the region layer shown: the similarity layer is recomputed
        for the query ``vector()``, or the compared chip is the new query. Subscribers are told the status
        first, then the layer, then the results (in a browser the results' thumbnails load last, and do not
        hold up the layer)."""
        self._hold(results, chips)
        self.status = (
            f"{len(results)} nearest of {chips[0]} (positives {len(self.positives)}, "
            f"negatives {len(self.negatives)}){note}"
        )
        self._tell("query", "status")  # seen at once; the region layer follows, then the results' gallery
        try:
            if self.region == "similarity":
                self.region_layers["similarity"] = self.vectors().similarity(vector(), label=label or chips[0])
                self._tell("region")
            elif self.region == "change" and len(self.index.years) > 1:
                self.compare_chip = chips[0]
                self._tell("compare")
        finally:  # also when the layer fails: the results are there
            self._tell("results")
        return results

    def _hold(self, results, chips: Sequence[str], pair_years: tuple[int, int] | None = None) -> None:
        import geopandas as gpd

        self.results, self.pair_years = results, pair_years
        self.query = gpd.GeoDataFrame({"chip_id": list(chips)}, geometry=[self.index.footprint(c) for c in chips],
                                      crs=CRS)  # fmt: skip

    # ------------------------------------------------------------------ labels
    def add_labels(self, chips: Sequence[str], label: str, year: int | None = None) -> None:
        """Label chips (``"positive"`` or ``"negative"``) of ``year`` (default: the session's), in one change."""
        year = self.year if year is None else year
        for chip in chips:
            self.labels.add(chip, label, year=year, bounds=self.index.footprint(chip).bounds)
        self._tell("labels")

    def toggle_label(self, chip: str, label: str, year: int | None = None) -> None:
        """Label a chip of ``year`` (default: the session's); labelling it again with the same label removes
        the label."""
        if self.labels.items.get(chip, {}).get("label") == label:
            self.labels.remove(chip)
            self._tell("labels")
        else:
            self.add_labels([chip], label, year)

    def save_labels(self, path: str | Path) -> Path:
        """Save the labels as GeoJSON."""
        return self.labels.save(path)

    def load_labels(self, path: str | Path) -> None:
        """Load labels from GeoJSON, replacing the current ones."""
        from wcembed.explore.classify import Labels

        self.labels = Labels.load(path)
        self._tell("labels")

    # ------------------------------------------------------------------ whole-region layers
    def vectors(self, year: int | None = None):
        """The year's embeddings as a :class:`~wcembed.explore.layers.YearVectors` (loaded from the index once,
        when a layer first needs them)."""
        from wcembed.explore.layers import YearVectors

        year = check_year(self.year if year is None else year)
        if year not in self._vectors:
            self._vectors[year] = YearVectors.load(self.index, year)
        return self._vectors[year]

    @property
    def region_layer(self):
        """The :class:`~wcembed.explore.layers.ChipRaster` shown, or None."""
        return self.region_layers.get(self.region)

    @property
    def threshold(self) -> float:
        """The threshold of the region layer shown: values below it are hidden. Each layer keeps its own; it
        starts at the layer's lowest value (or 0 where that is within its range, or what the layer's maker
        chose) and then moves only when set."""
        return self.thresholds.get(self.region, 0.0)

    def show_region(self, name: str):
        """Show the named whole-region layer (``"none"`` hides it), computing it first if it is new.

        A layer that needs what is not there yet (similarity and changed-like need a query, scores a
        classifier) is chosen all the same, with a status line that says what it waits for, and drawn as
        soon as it can be. Returns the layer, or None."""
        _one_of(name, REGION_LAYERS, "region layer")
        if name == "none" or name in self.region_layers:
            return self._set_region(name, self.region_layers.get(name))
        makers = {
            "similarity": self.show_similarity,
            "change": self.show_change,
            "changed like": self.changed_like,
            "embedding colours": self.show_pca,
            "scores": lambda: self.say("no scores yet: train a classifier (the labelling panel's retrain)"),
        }
        makers[name]()  # raises, and the region shown stays, if the layer cannot be made
        if self.region != name:  # it needs what is not there yet (a query, scores): shown once it is
            self.region = name
            self._tell("region")
        return self.region_layers.get(name)

    def _set_region(self, name: str, layer, threshold: float | None = None):
        if layer is not None:
            self.region_layers[name] = layer
        self.region = name
        if threshold is not None:
            self.thresholds[name] = threshold
        elif name not in self.thresholds and layer is not None and layer.values.ndim == 2:
            lo, hi = float(layer.vmin), float(layer.vmax)
            self.thresholds[name] = 0.0 if lo <= 0.0 <= hi else lo
        self._tell("region", "threshold")
        return layer

    def shown(self):
        """The region layer as drawn: values below the threshold hidden (RGB layers as they are); None if none."""
        layer = self.region_layer
        if layer is None or layer.values.ndim == 3:
            return layer
        return layer.masked(self.threshold)

    @property
    def region_status(self) -> str:
        """How many chips the region layer shows ("" when none, or an RGB layer)."""
        layer = self.region_layer
        if layer is None or layer.values.ndim == 3:
            return ""
        n_shown = int(np.count_nonzero(layer.values >= self.threshold))
        return f"{n_shown} chips with {layer.name} ≥ {self.threshold:.3g}"

    def show_similarity(self, vector=None, label: str = "the query"):
        """Show the similarity of every chip of the year to ``vector`` (default: the query chip's)."""
        if vector is None:
            if self.query is None:
                self.say("click a chip first: similarity is to the query")
                return None
            label = self.query_chip
            vector = self.index.vectors([label])[0]
        return self._set_region("similarity", self.vectors().similarity(vector, label=label))

    def show_scores(self, scores):
        """Show classifier scores (a GeoDataFrame with ``chip_id`` and ``score``, e.g. from
        :func:`wcembed.explore.classify.score_index`) as a layer, threshold 0.5."""
        from wcembed.explore.layers import ChipRaster, untrained_note

        layer = ChipRaster.from_ids(
            list(scores["chip_id"]),
            scores["score"].to_numpy(),
            name="classifier score",
            description=f"probability of the positive class. {untrained_note(self.index)}".strip(),
            cmap="inferno",
            chip_size=self.index.chip_size,
            origin=self.index.origin,
        )
        return self._set_region("scores", layer, threshold=0.5)

    def show_change(self, years: tuple[int, int] = CHANGE_YEARS):
        """Show the change between two years (cosine distance of each chip's embeddings); the chips from
        most to least changed are in :attr:`changes`."""
        from wcembed.explore.layers import change

        layer, self.changes = change(self.vectors(years[0]), self.vectors(years[1]), self.change_pairs(years))
        return self._set_region("change", layer)

    def change_pairs(self, years: tuple[int, int] = CHANGE_YEARS):
        """The chips of two years paired for change queries (:class:`~wcembed.explore.layers.ChangePairs`),
        made once."""
        from wcembed.explore.layers import ChangePairs

        if years not in self._pairs:
            self._pairs[years] = ChangePairs(self.vectors(years[0]), self.vectors(years[1]))
        return self._pairs[years]

    def changed_like(self, chips: list[str] | None = None, years: tuple[int, int] = CHANGE_YEARS):
        """The chips whose change between ``years`` is most like that of ``chips`` (default: the query chip),
        shown as the "changed like" layer (every chip, threshold 0) and as the results, with
        :attr:`pair_years` set. Returns the results (``chip_id`` of the session's year, ``rank``, ``score``,
        ``distance`` = 1 - score, footprint), or None without a query."""
        import geopandas as gpd

        if not chips:
            if self.query is None:
                self.say("click a chip first: changed like the query")
                return None
            chips = [self.query_chip]
        layer, top = self.change_pairs(years).like(chips, k=self.k)
        year = self.year if self.year in years else years[0]
        ids = list(top[f"chip_{year}"])
        results = gpd.GeoDataFrame(
            {"chip_id": ids, "rank": range(1, len(ids) + 1), "score": top["score"], "distance": 1 - top["score"]},
            geometry=[self.index.footprint(c) for c in ids],
            crs=CRS,
        )
        self._hold(results, chips, pair_years=tuple(years))
        self.status = f"{len(results)} chips changed most like {', '.join(chips)} between {years[0]} and {years[1]}"
        self._set_region("changed like", layer, threshold=0.0)  # tells region and threshold
        self._tell("query", "results", "status")
        return results

    def show_pca(self):
        """Show the year's embedding colours: the first three principal components as RGB."""
        return self._set_region("embedding colours", self.vectors().pca_rgb())

    # ------------------------------------------------------------------ explaining
    def explain(self, result: str, how: str = "best"):
        """Where in chip ``result`` it is like the query chip: the encoder's patch tokens of both chips
        (:class:`~wcembed.explore.explain.MatchExplainer`), kept as :attr:`explanation`.
        Returns the ``(16, 16)`` heatmap (None without an explainer or a query: the status line says why)."""
        if self.explainer is None:
            self.say("no explainer: give the explorer the tile source and the weights (explainer=...)")
            return None
        if self.query is None:
            self.say("click a chip first: a match is explained against the query")
            return None
        t0 = time.perf_counter()
        heat = self.explainer.explain(self.query_chip, result, how=how)
        png = self.explainer.picture(result, heat)
        seconds = time.perf_counter() - t0
        self.explanation = Explanation(self.query_chip, result, heat, png, seconds, self.index.untrained)
        self._tell("explanation")
        return heat


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


def _one_of(value: str, options: Sequence[str], what: str) -> str:
    if value not in options:
        raise BadParameterError(f"unknown {what} {value!r}: one of {list(options)}")
    return value


def _number(value, what: str) -> float:
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
