"""The results under the map: thumbnails of chips from the WMS, the gallery of a search (and of the same search
in the set beside), where a match is, and the chip's two years side by side.

:class:`Thumbnails` makes a chip's card as an ``<img>`` the browser loads from the WMS (nothing is fetched in
the kernel); :class:`Gallery` draws the session's search results with them when the results change.
"""

from __future__ import annotations

import base64
import html

import ipywidgets as w
import shapely
from ipyleaflet import GeoJSON, WMSLayer

from wcembed.core.errors import BadParameterError
from wcembed.core.grid import chip_id, parse_chip_id
from wcembed.core.product import layer_name
from wcembed.explore.state.scope import CHANGE_YEARS
from wcembed.explore.state.session import ExploreSession


class Thumbnails:
    """Chips' thumbnails from a WMS, of the year and imagery kind the session shows.

    Parameters
    ----------
    session : ExploreSession
    client : wcembed.explore.views.wms.WMSClient
        Makes the GetMap URLs and knows the imagery's extent.
    offered : set of (int, str)
        (year, kind) of the imagery layers the WMS offers.
    """

    def __init__(self, session: ExploreSession, client, offered: set) -> None:
        self.session, self.client, self.offered = session, client, offered

    @property
    def imagery_name(self) -> str | None:
        """The WMS layer name of the imagery shown: the session's year and kind (None if the WMS lacks it)."""
        s = self.session
        return layer_name(s.year, s.imagery) if (s.year, s.imagery) in self.offered else None

    def card(self, chip: str, caption: str) -> str:
        """A 128 px thumbnail of a chip in the session's year and imagery, with a caption below: an ``<img>`` the
        browser loads from the WMS (with its own cache) over a grey square that says "no imagery here". Where
        the WMS has no data (outside the imagery's extent: no image asked for; inside it, between its tiles: a
        transparent image) the square shows, never a blank."""
        bounds = self.session.index.footprint(chip).bounds
        name = self.imagery_name
        covered = name is not None and self.client.covers(name, bounds)
        return f"{self.img(bounds, name if covered else None, 128, chip)}<br>{caption}"

    def pair(self, row, years: tuple[int, int]) -> str:
        """Both years' 96 px thumbnails of a result side by side, with its rank and score."""
        kind = self.session.imagery
        imgs = "".join(
            self.img(row.geometry.bounds, layer_name(y, kind), 96, f"{row.chip_id} {y}", f' title="{y}"') for y in years
        )
        return f"{imgs}<br>#{row.rank} {row.chip_id}<br>score {row.score:.3f}"

    def img(self, bounds, layer: str | None, size: int, alt: str, extra: str = "") -> str:
        """A ``size`` px square of a WMS layer over ``bounds`` (degrees): the layer's ``<img>`` laid over a grey
        square saying "no imagery here", which shows wherever the image is transparent (and alone when there is
        no layer)."""
        inner = ""
        if layer:
            url = self.client.getmap_url(tuple(bounds), layer, (size, size))
            inner = (f'<img src="{html.escape(url)}" width="{size}" height="{size}" alt="{html.escape(alt)}"{extra} '
                     'style="position:absolute;left:0;top:0">')  # fmt: skip
        return (f'<div title="{html.escape(alt)}" style="position:relative;display:inline-flex;vertical-align:top;'
                f"width:{size}px;height:{size}px;background:#ddd;align-items:center;justify-content:center;"
                f'text-align:center;font-size:11px">no imagery here{inner}</div>')  # fmt: skip


class Gallery:
    """The search results as cards (with an "explain" button where matches can be explained), the same search
    in the set beside, how much the two sets agree, and where a match is. It draws the session's models when
    they change and keeps no state of its own."""

    def __init__(self, session: ExploreSession, thumbnails: Thumbnails) -> None:
        self.session, self.thumbnails = session, thumbnails
        self.cards = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.cards.add_class("wcembed-gallery")  # for the browser test, and for a user's CSS
        self.compare_line = w.HTML()  # how much the two sets agree on the query chip
        self.other = w.HBox(layout=w.Layout(flex_flow="row wrap"))  # the same search in the set beside
        self.other.add_class("wcembed-gallery-other")
        self._cards: list = []  # the card widgets, made once and given new HTML on each search
        self._others: list = []
        self.explain_box = w.HTML()  # where in a result it is like the query (after an "explain" click)
        self.explain_line = w.HTML()  # why matches cannot be explained (or that the weights are untrained)
        s = session
        s.observe(lambda _: self.draw(), names="imagery")
        s.search.observe(lambda _: self.draw(), names=["results", "results_other"])
        s.search.observe(lambda _: setattr(self.compare_line, "value", html.escape(s.search.compare_line)),
                         names="compare_line")  # fmt: skip
        s.explaining.observe(lambda _: self._draw_explanation(), names="explanation")
        s.explaining.observe(lambda _: self._draw_explain_line(), names="note")
        self._draw_explain_line()

    def draw(self) -> None:
        """Draw the results (and those of the set beside) as cards, into the card widgets already shown: a click
        sends the cards' new HTML, not new widgets."""
        s, card = self.session, self.thumbnails.card
        other = s.search.results_other
        self.other.children = [] if other is None else self._shown(self._others, [
            f"<b>in {html.escape(s.scope.beside)}</b>",
            *(card(r.chip_id, f"#{r.rank} {r.chip_id}<br>d = {r.distance:.4f}") for r in other.itertuples(index=False)),
        ])  # fmt: skip
        if s.results is None:
            self.cards.children = []
            return
        rows = list(s.results.itertuples(index=False))
        if s.search.pair_years:
            self.cards.children = self._shown(
                self._cards, [self.thumbnails.pair(row, s.search.pair_years) for row in rows]
            )
            return
        cards = self._shown(
            self._cards, [card(r.chip_id, f"#{r.rank} {r.chip_id}<br>d = {r.distance:.4f}") for r in rows]
        )
        if s.explaining.explainer is not None:
            cards = [w.VBox([c, self._explain_button(r.chip_id)]) for c, r in zip(cards, rows, strict=True)]
        self.cards.children = cards

    @staticmethod
    def _shown(pool: list, texts: list[str]) -> list:
        """HTML widgets of ``pool`` (made as needed) holding ``texts``, one each."""
        pool.extend(w.HTML() for _ in range(len(texts) - len(pool)))
        for widget, text in zip(pool, texts, strict=False):
            widget.value = text
        return pool[: len(texts)]

    def _explain_button(self, chip: str):
        button = w.Button(description="explain", tooltip="where in this chip it is like the query", icon="search")
        button.on_click(lambda _: self.session.attempt(self.session.explain, chip))
        return button

    def _draw_explain_line(self) -> None:
        self.explain_line.value = html.escape(self.session.explaining.note)

    def _draw_explanation(self) -> None:
        x = self.session.explaining.explanation
        if x is None:
            self.explain_box.value = ""
            return
        note = " (UNTRAINED weights: not Clay's view)" if x.untrained else ""
        self.explain_box.value = (
            f'<img src="data:image/png;base64,{base64.b64encode(x.png).decode()}" width="256" height="256" '
            f'alt="where {x.result} is like {x.query}"><br>where {html.escape(x.result)} is like '
            f"{html.escape(x.query)}: bright patches match some part of it best{note} ({x.seconds:.1f} s)"
        )


def compare_years(session: ExploreSession, new_map, wms_url: str, chip: str | None = None,
                  years: tuple[int, int] = CHANGE_YEARS, zoom: int = 13):  # fmt: skip
    """Two maps of a chip's place (default: the query's) side by side, each in one year's imagery with the chip
    outlined and captioned with that year's chip id; they pan and zoom together (linked in the browser, no
    kernel round trip). ``new_map(center, zoom, height=...)`` makes each map."""
    chip = chip or session.query_chip
    if chip is None:
        raise BadParameterError("no chip to compare: click one or name it")
    _, column, row = parse_chip_id(chip)
    shape = session.index.footprint(chip)
    outline = {"type": "Feature", "geometry": shapely.geometry.mapping(shape), "properties": {}}
    kind, panes = session.imagery, []
    for year in years:
        m = new_map([shape.centroid.y, shape.centroid.x], zoom, height="320px")
        m.add(WMSLayer(url=wms_url, layers=layer_name(year, kind), format="image/png", name=str(year)))
        m.add(GeoJSON(data=outline, style={"color": "#00ffff", "weight": 3, "fillOpacity": 0}))
        caption = f"<b>{year}</b> {html.escape(chip_id(year, column, row))}"
        panes.append(w.VBox([w.HTML(caption), m], layout=w.Layout(width="50%")))
    first, second = (pane.children[1] for pane in panes)
    for name in ("center", "zoom"):
        w.jslink((first, name), (second, name))
    box = w.HBox(panes)
    box.add_class("wcembed-compare")
    return box
