"""The explorer's session without widgets or a WMS: every operation the map offers, on a real LanceDB index.

The index holds real column files of the sample tile's grid whose vectors the test chooses
(:func:`builders.synthetic_index`), so every expected result is computed here with NumPy.
"""

from __future__ import annotations

import gc
import shutil
import tracemalloc

import numpy as np
import pytest
import shapely
from builders import brute_force, synthetic_index
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcembed.core.errors import BadParameterError, LabelsError, OutputError, WcEmbedError
from wcembed.core.grid import chip_bounds, parse_chip_id
from wcembed.core.product import LAYER_KINDS, YEARS
from wcembed.explore.data.index import DIVERSE_CHIPS
from wcembed.explore.state.layers import LayerKey
from wcembed.explore.state.regions import REGION_LAYERS
from wcembed.explore.state.search import MODES, Search
from wcembed.explore.state.session import ExploreSession

DIM = 16
CHANGED = {(1156, 288), (1158, 290)}  # chips whose 2021 vector is another one (a synthetic change)


def vector(year: int, column: int, row: int) -> np.ndarray:
    changed = year == 2021 and (column, row) in CHANGED
    return np.random.default_rng([column, row, 99 if changed else 0]).normal(size=DIM)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return synthetic_index(tmp_path_factory.mktemp("session"), vector)


@pytest.fixture
def session(index):
    s = ExploreSession(index, year=2020, k=5)
    s.told = []  # the traits that changed, of the session and its models, in the order observers were told
    for model in (s, s.scope, s.search, s.layers, s.labelling, s.explaining):
        model.observe(lambda change: s.told.append(change["name"]))
    return s


def centre(column: int, row: int) -> tuple[float, float]:
    w, s, e, n = chip_bounds(column, row)
    return (w + e) / 2, (s + n) / 2


def test_a_click_searches_from_the_chip_under_it_and_tells_what_changed(session, index):
    results = session.click(*centre(1156, 288))
    assert session.query_chip == "2020-1156-0288"

    def others_of_2020(table):
        return (np.array(table["year"].to_pylist()) == 2020) & (
            np.array(table["chip_id"].to_pylist()) != "2020-1156-0288"
        )

    want, _ = brute_force(index, vector(2020, 1156, 288), 5, mask=others_of_2020)
    assert list(results["chip_id"]) == want and list(results["rank"]) == [1, 2, 3, 4, 5]
    assert session.status == "5 nearest of 2020-1156-0288 (positives 0, negatives 0)"
    assert session.told == ["last", "status", "results"]  # the line first, the gallery last
    assert session.click(-100.0, 45.0) is None  # no chip there: said, the results kept
    assert session.status.startswith("no chip of 2020 at 45.0000, -100.0000")
    assert list(session.results["chip_id"]) == want and session.told[-1] == "status"


def test_settings_are_checked_and_only_changes_are_told(session):
    session.set(k=3, year=2021)
    assert (session.search.k, session.year) == (3, 2021) and session.told == ["k", "year"]
    session.set(k=3)
    assert len(session.told) == 2  # nothing changed, nothing told
    bad_values = ({"k": 0}, {"k": 2.5}, {"year": 2019}, {"mode": "delete"}, {"threshold": "high"}, {"opacity": 2},
                  {"zoom": 3}, {"spread": "no"}, {"imagery": "XYZ"}, {"k": 4, "year": 2019})  # fmt: skip
    for bad in bad_values:
        with pytest.raises(BadParameterError):
            session.set(**bad)
    with pytest.raises(BadParameterError, match="spread must be True or False"):
        session.search.spread = "no"  # an attribute is checked as set() checks it
    assert (session.search.k, session.year, session.search.mode, session.search.spread) == (3, 2021, "search", False)
    assert len(session.told) == 2  # nothing half-set
    results = session.click(*centre(1157, 289))
    assert len(results) == 3 and results["chip_id"].str.startswith("2021-").all()


def test_spread_out_results_are_chips_apart(session):
    session.set(k=4, spread=True)
    results = session.click(*centre(1156, 288))
    plain = session.index.by_vector(session.index.vectors([session.query_chip])[0], 4, year=2020,
                                    exclude=[session.query_chip])  # fmt: skip
    assert set(results["chip_id"]) - set(plain["chip_id"])  # spreading changed the results
    assert session.status.endswith("; spread out ≥ 3 chips apart")  # said without a second search
    places = [parse_chip_id(c)[1:] for c in [session.query_chip, *results["chip_id"]]]
    for i, (c, r) in enumerate(places[1:], 1):
        assert all(max(abs(c - c2), abs(r - r2)) >= DIVERSE_CHIPS for c2, r2 in places[1:i])


def test_label_modes_toggle_labels_and_search_with_them(session, index):
    session.set(mode="negative")
    assert session.click(*centre(1155, 287)) is None and session.status == "add a positive example first"
    session.set(mode="positive")
    results = session.click(*centre(1156, 288))
    assert session.labelling.positives == ["2020-1156-0288"] and session.labelling.negatives == ["2020-1155-0287"]
    assert not {"2020-1156-0288", "2020-1155-0287"} & set(results["chip_id"])
    assert {"labels", "results"} <= set(session.told)
    session.click(*centre(1156, 288))  # the same label again: removed
    assert session.labelling.positives == [] and session.status == "add a positive example first"


def test_a_drawn_area_searches_with_its_chips_or_labels_them(session):
    w, s, _, _ = chip_bounds(1155, 289)
    _, _, e, n = chip_bounds(1156, 288)
    area = shapely.box(w + 1e-4, s + 1e-4, e - 1e-4, n - 1e-4)  # four chips
    results = session.select_area(area)
    assert session.status.endswith("; 4 chips under the drawn area") and len(results) == 5
    session.set(mode="positive")
    session.select_area(area)
    assert len(session.labelling.positives) == 4
    assert session.select_area(shapely.box(-100, 40, -99.9, 40.1)) is None
    assert session.status == "no chip of 2020 under the drawn area"


def test_similarity_layer_waits_for_a_query_follows_clicks_and_keeps_its_threshold(session):
    assert session.show_region("similarity") is None
    assert session.region == "similarity" and session.layer is None and session.status == ""
    assert session.layers.status.startswith("similarity: click a chip first")  # the region line says why
    session.told.clear()
    session.click(*centre(1156, 288))
    assert session.told == ["last", "status", "note", "shown", "results"]  # the line, the layer, the gallery
    layer = session.layer.raster
    assert session.layer.key == LayerKey("similarity", (2020,), ("2020-1156-0288",))
    assert layer.value_at(*centre(1156, 288)) == pytest.approx(1.0, abs=5e-4)
    assert session.layer.threshold == 0.0  # within the layer's values: its starting point
    session.set(threshold=0.25)
    shown = int(np.count_nonzero(layer.values >= 0.25))
    assert session.layers.status == f"{shown} chips with similarity 2020 ≥ 0.25"
    given = session.layer
    for place in [(1154, 286), (1159, 291), (1157, 290), (1155, 289), (1158, 287), (1156, 291)]:
        session.click(*centre(*place))  # a new layer at every click: it starts at its own threshold
        assert session.layer.threshold == 0.0 and given.threshold == 0.25  # nothing leaks from one to the other
    assert session.layer.raster is not layer

    def unreadable(*_):
        raise OutputError("the year's vectors cannot be read")

    told, vectors = len(session.told), session.scope.vectors
    session.scope.vectors = unreadable
    assert session.attempt(session.click, *centre(1157, 289)) is None  # the layer fails, the search does not
    assert session.status == "the year's vectors cannot be read" and "results" in session.told[told:]
    assert session.query_chip == "2020-1157-0289" and len(session.told) > told
    session.scope.vectors = vectors
    session.show_region("none")
    assert session.layers.status == "" and session.layer is None  # no stale line
    session.show_region("similarity")  # back: the layer of the query, made now, at its own threshold
    assert session.layer.key.source == ("2020-1157-0289",) and session.layer.threshold == 0.0
    session.click(*centre(1156, 288))  # the first query again: its layer as it was left
    assert session.layer is given and session.layers.status.endswith("≥ 0.25")


def test_a_layer_is_of_the_query_and_year_shown(session):
    """A layer made before the query changed is never shown for the new query; a year switch shows that
    year's layer (the search follows to the same place), and a switch back the first layer again."""
    session.show_region("similarity")
    session.click(*centre(1157, 288))
    first = session.layer
    session.show_region("none")
    session.click(*centre(1158, 288))  # a new query while no layer is shown
    session.show_region("similarity")
    assert session.layer.key.source == ("2020-1158-0288",) and "2020-1158-0288" in session.layer.raster.description
    assert session.status.startswith("5 nearest of 2020-1158-0288")
    session.set(year=2021)  # the same place in 2021: its search, its layer
    assert session.query_chip == "2021-1158-0288" and session.status.startswith("5 nearest of 2021-1158-0288")
    assert session.results["chip_id"].str.startswith("2021-").all()
    assert session.layer.key == LayerKey("similarity", (2021,), ("2021-1158-0288",))
    assert session.layer.name == "similarity 2021" and "2021-1158-0288" in session.layer.raster.description
    in_2021 = session.layer
    session.set(year=2020)
    assert session.layer.key == LayerKey("similarity", (2020,), ("2020-1158-0288",))
    session.set(year=2021)
    assert session.layer is in_2021  # kept: not made again
    session.set(year=2020)
    session.click(*centre(1157, 288))
    assert session.layer is first  # the first query's layer, kept
    session.click(*centre(1156, 288))  # a chip that changed: "changed like" has a change to match
    for kind in ("embedding colours", "change", "changed like"):
        session.show_region(kind)
        shown = session.layer
        session.set(year=2021)
        if kind == "embedding colours":  # a year's layer: the other year's
            assert session.layer.key == LayerKey(kind, (2021,)) and session.layer is not shown
        else:  # a layer of both years: the same (its chips named as of the first year)
            assert session.layer.key.years == (2020, 2021) and session.layer.key == shown.key
        session.set(year=2020)
        assert session.layer is shown


def test_a_year_without_the_place_says_so(index, tmp_path):
    s = ExploreSession(index, year=2020, k=3)
    s.click(*centre(1156, 288))
    s.search.last = Search("chip", ("2020-1400-0100",))  # a place only 2020 would have
    s.set(year=2021)
    assert s.search.query is None and s.results is None and s.status == "no chip of 2021 at the place of 2020-1400-0100"


def test_the_changes_table_is_of_the_set_shown(tmp_path):
    """Two sets in which different chips changed: after a set switch the change table is the new set's, and
    after the switch back (its layer kept, not made again) the first set's again."""
    from wcembed.explore.data.ingest import ingest

    other_changed = {(1157, 287), (1159, 291)}

    def other(year: int, column: int, row: int) -> np.ndarray:
        changed = year == 2021 and (column, row) in other_changed
        return np.random.default_rng([column, row, 7 if changed else 0]).normal(size=DIM)

    index = synthetic_index(tmp_path / "ours", vector)
    synthetic_index(tmp_path / "other", other)
    ingest(tmp_path / "other" / "emb", index.db, set="other")
    s = ExploreSession(index, year=2020)

    def top_two() -> set:
        return {parse_chip_id(c)[1:] for c in s.layers.changes["chip_2020"][:2]}

    s.show_region("change")
    assert top_two() == CHANGED
    s.set(embedding_set="other")
    assert s.layer.key.kind == "change" and top_two() == other_changed
    s.set(embedding_set=index.set)
    assert top_two() == CHANGED


def test_change_layer_compare_and_changed_like(session):
    layer = session.show_region("change")
    top = {parse_chip_id(c)[1:] for c in session.layers.changes["chip_2020"][:2]}
    assert top == CHANGED and layer is session.layer
    session.click(*centre(1157, 288))
    assert session.compare_chip == "2020-1157-0288"
    session.region = "none"  # the two years are compared while the change layer is shown, and only then
    assert session.compare_chip is None
    session.region = "change"
    assert session.compare_chip == "2020-1157-0288"
    results = session.changed_like(["2020-1156-0288"])
    assert (
        session.search.pair_years == (2020, 2021)
        and session.region == "changed like"
        and session.layer.threshold == 0.0
    )
    assert results["chip_id"].iloc[0] == "2020-1158-0290"  # the other changed chip: the most alike change
    assert session.layer.key == LayerKey("changed like", (2020, 2021), ("2020-1156-0288",))
    session.show_region("similarity")  # the similarity to the chip whose change was matched
    assert session.layer.key == LayerKey("similarity", (2020,), ("2020-1156-0288",))
    session.show_region("changed like")
    session.set(mode="search")
    session.click(*centre(1158, 290))
    assert session.search.pair_years is None
    assert session.layer.key.source == ("2020-1158-0290",)  # the layer follows the query
    assert session.attempt(session.click, *centre(1157, 288)) is None  # a chip that did not change: no layer
    assert session.status.startswith("the examples did not change") and session.query_chip == "2020-1157-0288"
    assert len(session.results) == 5  # the search holds all the same
    assert session.layer is None and session.layers.status.startswith("changed like: not shown, the examples")


def test_embedding_colours_and_scores(session):
    colours = session.show_region("embedding colours")
    assert colours.rgb and session.layers.status == ""  # RGB: no threshold
    with pytest.raises(BadParameterError, match="no threshold"):
        session.set(threshold=0.3)
    assert session.show_region("scores") is None and session.layers.status.startswith("scores: train a classifier")
    chips = [f"2020-{c}-{r:04d}" for c in (1154, 1159) for r in (286, 291)]
    session.add_labels(chips[:2], "positive")
    session.add_labels(chips[2:], "negative")
    session.labelling.block_deg = 0.01
    session.labelling.retrain()
    assert session.region == "scores" and session.layer.threshold == 0.5
    scores = session.labelling.scores["score"].to_numpy()
    assert session.layers.status == f"{int((scores >= 0.5).sum())} chips with classifier score 2020 ≥ 0.5"
    assert session.layer.key == LayerKey("scores", (2020,), ("round 1",))


def test_explain_without_an_explainer_or_a_query_says_why(session):
    assert session.explain("2020-1156-0288") is None and session.status.startswith("explain is off: no tile source")


def test_callbacks_turn_errors_into_the_status_line(session):
    assert session.attempt(session.set, k=-1) is None
    assert session.status.startswith("k must be an integer")
    assert session.attempt(session.add_labels, ["not-a-chip"], "positive") is None
    assert "not-a-chip" in session.status and not session.labels.items
    with pytest.raises(WcEmbedError):  # called from code, the error is raised
        session.add_labels(["not-a-chip"], "positive")


def test_a_failed_layer_says_why_and_releases_its_memory(index, tmp_path):
    """A layer that fails after loading the year's vectors (here: the database's files table is damaged)
    says so on the status line and keeps no array alive."""
    shutil.copytree(index.db, tmp_path / "db")
    for data in (tmp_path / "db" / "files.lance" / "data").iterdir():
        data.unlink()  # the files table's data is gone: its rows cannot be read
    from wcembed.explore.data.index import ChipIndex

    s = ExploreSession(ChipIndex(tmp_path / "db"), year=2020)
    s.click(*centre(1156, 288))
    with pytest.raises(OutputError, match="files"):
        _ = s.index.weights

    kept_by_a_library = []  # as LanceDB's event loop keeps the error of a failed read for a while

    def fails_after_allocating(error):  # what any layer does: read arrays, then meet a failure
        vectors = np.ones((2048, 768), np.float32)  # 6 MiB
        if error is RuntimeError:
            try:
                raise RuntimeError("the read failed")
            except RuntimeError as exc:
                kept_by_a_library.append(exc)
                raise OutputError("the layer cannot be made: the read failed") from exc
        s.index.weights if error is OutputError else vectors.reshape(5, -1)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(3):
        assert s.attempt(s.show_region, "similarity") is None
        assert "files" in s.status and s.region == "none" and s.layer is None
        assert s.attempt(fails_after_allocating, OutputError) is None and "files" in s.status
        assert s.attempt(fails_after_allocating, RuntimeError) is None and "read failed" in s.status
        assert s.attempt(fails_after_allocating, ValueError) is None  # a bug: said, logged as text
        assert s.status.startswith("unexpected error (please report it): ValueError")
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 256 * 1024, f"{kept} bytes kept after failed layers"


def test_a_database_without_its_files_table_gives_working_layers(index, tmp_path):
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.table import connect

    shutil.copytree(index.db, tmp_path / "db")
    connect(tmp_path / "db").drop_table("files")
    s = ExploreSession(ChipIndex(tmp_path / "db"), year=2020)
    assert s.index.weights == {"unknown"} and not s.index.untrained
    s.click(*centre(1156, 288))
    layer = s.show_region("similarity").raster
    assert layer.value_at(*centre(1156, 288)) == pytest.approx(1.0, abs=5e-4)
    assert layer.description.endswith("weights unknown: the database has no files table")


def test_pictures_and_pages_of_a_session_need_no_widgets(session, tmp_path):
    from wcembed.explore.views.figures import map_figure
    from wcembed.explore.views.pages import export_html

    session.click(*centre(1156, 288))
    session.show_region("similarity")
    session.add_labels(["2020-1154-0286"], "negative")
    lon, lat = centre(1156, 288)
    fig = map_figure(session, thumbs=None, layer=None, center=(lat, lon), zoom=11)
    assert fig.axes[0].get_title() == session.status and len(fig.axes[0].images) == 1  # the region layer
    assert len(fig.axes[0].lines) == 1 + 5 + 1  # query, results, label
    page = export_html(tmp_path / "map.html", session, "http://127.0.0.1:9/wms", None, center=[lat, lon], zoom=11)
    text = page.read_text()
    assert "data:image/png;base64" in text and "similarity 2020" in text and "2020-1154-0286" in text


def test_label_files_are_checked_against_the_index(session, tmp_path):
    """A label of a chip the index lacks, a footprint elsewhere than its chip's, a chip labelled twice: the
    file is refused naming it, and the labels stay as they were."""
    import json

    session.add_labels(["2020-1156-0288", "2020-1157-0288"], "positive")
    good = session.labels.to_geojson()
    kept = session.labels

    def refused(features, says):
        path = tmp_path / "labels.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        with pytest.raises(LabelsError, match=says):
            session.labelling.load(path)
        assert session.labels is kept

    feats = good["features"]
    ghost = json.loads(json.dumps(feats[0]))
    ghost["properties"]["chip_id"] = "2020-1400-0100"
    refused([feats[0], ghost], "1 labelled chips are not in the index: 2020-1400-0100")
    france = json.loads(json.dumps(feats[0]))
    france["geometry"]["coordinates"] = [[[2.0, 48.0], [2.1, 48.0], [2.1, 48.1], [2.0, 48.1], [2.0, 48.0]]]
    refused([france], "chip 2020-1156-0288: its label's footprint")
    refused([feats[0], feats[0]], "feature 1: chip 2020-1156-0288 is labelled twice")
    session.labelling.save(tmp_path / "ok.geojson")
    session.labelling.load(tmp_path / "ok.geojson")
    assert session.labels == kept


def test_the_labelling_loop_follows_the_session(session):
    loop = session.labelling
    loop.n = 3
    assert loop.status == "0 positives, 0 negatives: label at least 2 of each, then retrain"
    chips = [f"2020-{c}-{r:04d}" for c in (1154, 1155, 1156) for r in (286, 287)]
    session.add_labels(chips[:3], "positive")
    session.add_labels(chips[3:], "negative")
    assert loop.status == "3 positives, 3 negatives: retrain to train a classifier"
    told = []
    loop.observe(lambda change: told.append((change["name"], change["new"])), names=["busy", "status"])
    loop.retrain()
    assert told[:2] == [("status", "training on 6 labels, then scoring every chip of 2020 ..."), ("busy", True)]
    assert ("busy", False) in told and not loop.busy
    assert session.region == "scores" and loop.suggestions is not None and len(loop.history) == 1
    assert len(loop.queue) == min(loop.places, 50) and loop.places <= loop.detected
    loop.label(loop.suggestions["chip_id"].iloc[0], "positive")
    assert "(1 new labels: retrain)" in loop.status


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3) | st.text(max_size=4) | st.none(), max_size=3),
)
vectors = st.one_of(
    anything,
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=DIM, max_size=DIM),
    st.integers(0, 40).map(lambda n: np.ones(n)),
    st.just(np.ones((2, DIM))),
    st.just(np.zeros(DIM)),
)


def _a_count(k) -> bool:
    return isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 10_000


def _a_vector(vector) -> bool:
    try:
        v = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return v.shape == (DIM,) and bool(np.isfinite(v).all()) and 1e-18 < float(np.linalg.norm(v)) < 1e18


def _a_spacing(diverse) -> bool:
    return isinstance(diverse, bool) or (isinstance(diverse, int) and diverse >= 0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vector=vectors, k=anything | st.integers(1, 30), diverse=anything | st.integers(0, 3) | st.booleans())
def test_search_calls_give_a_result_of_their_shape_or_a_package_error(index, vector, k, diverse):
    """Any vector, k and spacing: a GeoDataFrame of exactly ``k`` results (there are more than 30 chips a
    year) when every argument is valid, else a package error; never another error or a silent empty result."""
    valid = _a_vector(vector) and _a_count(k) and _a_spacing(diverse)
    if not valid:
        with pytest.raises(WcEmbedError):
            index.by_vector(vector, k, year=2020, diverse=diverse)
        return
    res = index.by_vector(vector, k, year=2020, diverse=diverse)
    assert len(res) == k or (diverse not in (0, False) and 0 < len(res) <= k)
    assert set(res.columns) >= {"rank", "chip_id", "distance", "geometry"}


CHIPS = ["2020-1156-0288", "2020-1157-0289"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(positives=anything | st.lists(st.sampled_from(CHIPS), min_size=1, max_size=2),
       negatives=st.none() | st.lists(st.just("2020-1154-0286"), max_size=1) | anything)  # fmt: skip
def test_example_searches_give_a_result_or_a_package_error(index, positives, negatives):
    """Examples that are lists of chips of the year (at least one positive) give 5 results without them; any
    other examples a package error."""
    chips = isinstance(positives, list) and positives and all(c in CHIPS for c in positives)
    valid = chips and (not negatives or (isinstance(negatives, list) and negatives == ["2020-1154-0286"]))
    if not valid:
        with pytest.raises(WcEmbedError):
            index.by_examples(positives, negatives or (), 5, year=2020)
        return
    res = index.by_examples(positives, negatives or (), 5, year=2020)
    assert len(res) == 5 and not set(res["chip_id"]) & set(positives)


SETTING_NAMES = ("year", "k", "mode", "spread", "imagery", "region")


def _setting(s: ExploreSession, name: str):
    return {"k": s.search.k, "mode": s.search.mode, "spread": s.search.spread, "year": s.year,
            "imagery": s.imagery, "region": s.region}[name]  # fmt: skip


def _valid_setting(name: str, value) -> bool:
    options = {"mode": MODES, "imagery": LAYER_KINDS, "region": REGION_LAYERS}
    if name in options:
        return isinstance(value, str) and value in options[name]
    if name == "k":
        return _a_count(value)
    if name == "year":
        return isinstance(value, int) and not isinstance(value, bool) and value in YEARS
    if name == "spread":
        return isinstance(value, bool)
    return False  # no layer shown: no threshold, no opacity; "zoom" is no setting


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from([*SETTING_NAMES, "threshold", "opacity", "zoom"]),
       value=anything | st.sampled_from([2021, 7, True, "FCC", "negative", "change", "embedding colours"]))  # fmt: skip
def test_settings_take_a_valid_value_or_refuse_it_unchanged(index, name, value):
    s = ExploreSession(index, year=2020, k=5)
    before = {n: _setting(s, n) for n in SETTING_NAMES}
    if not _valid_setting(name, value):
        with pytest.raises(WcEmbedError):
            s.set(**{name: value})
        assert {n: _setting(s, n) for n in SETTING_NAMES} == before
        return
    s.set(**{name: value})
    assert _setting(s, name) == value  # taken as given


def test_a_table_changed_behind_an_open_session_is_said_in_one_line(tmp_path):
    """Rows deleted by another process while a session is open: the next click says the database changed and how
    to open it again (never the deleted rows' neighbours); the old versions cleaned up: the same, not a raw
    LanceDB error. The map's failure policy shows it as one status line."""
    from datetime import timedelta

    from wcembed.core.errors import DatabaseChangedError
    from wcembed.explore.data.table import connect
    from wcembed.explore.state.attempts import attempt

    index = synthetic_index(tmp_path, vector)
    session = ExploreSession(index, year=2020, k=5)
    assert session.click(*centre(1156, 288)) is not None
    other = connect(index.db).open_table(index.table.name)  # another process's handle
    other.delete("column = 1157")
    with pytest.raises(DatabaseChangedError, match=r"opened at version \d+, now at \d+\): open it again"):
        session.click(*centre(1156, 288))
    said: list[str] = []
    assert attempt(said.append, session.click, *centre(1156, 288)) is None
    assert len(said) == 1 and "changed while it was open" in said[0] and "\n" not in said[0]
    with pytest.warns(UserWarning):  # LanceDB warns that open readers of old versions will fail: ours says so
        other.optimize(cleanup_older_than=timedelta(seconds=0), delete_unverified=True)
    with pytest.raises(DatabaseChangedError, match=r"which it was opened at, was cleaned up"):
        session.click(*centre(1156, 288))
    again = ExploreSession(type(index)(index.db), year=2020, k=5)  # opened again: the table as it is now
    results = again.click(*centre(1156, 288))
    assert results is not None and not results["chip_id"].str.contains("-1157-").any()
