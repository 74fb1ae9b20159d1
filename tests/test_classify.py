"""Labels, a spatially cross-validated classifier, scoring the whole index, the score layer."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from builders import run_papermill
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labelled_sample import labelled_sample
from PIL import Image
from wcembed import ROOT
from wcembed.core.errors import BadParameterError, LabelsError
from wcembed.explore.compute.classify import Labels, _read_columns, adjacent_groups, export, score_index, train, unit
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.pages import offline_html, screenshot
from wcembed.explore.views.view import Explorer
from wcembed.explore.views.wms import LocalWMS, WMSClient


@pytest.fixture(scope="module")
def small_chips(sample_root, tmp_path_factory):
    """The sample in 128 px chips, embedded and labelled by NDWI (see tests/labelled_sample.py)."""
    tmp = tmp_path_factory.mktemp("classify")
    index, labels = labelled_sample(sample_root, tmp)
    return index, labels, tmp


def test_labels_round_trip_and_malformed_files(tmp_path):
    labels = Labels()
    labels.add("2020-1156-0288", "positive", year=2020, bounds=(-75.64, 37.65, -75.59, 37.69))
    labels.add("2020-1157-0289", "negative", year=2020, bounds=(-75.59, 37.61, -75.55, 37.65))
    labels.add("2020-1158-0290", "negative", year=2020, bounds=(-75.55, 37.57, -75.51, 37.61))
    labels.remove("2020-1158-0290")
    path = labels.save(tmp_path / "labels.geojson")
    again = Labels.load(path)
    assert again == labels and again.positives == ["2020-1156-0288"] and again.negatives == ["2020-1157-0289"]
    data = json.loads(path.read_text())
    data["features"][1]["properties"]["label"] = "maybe"
    (tmp_path / "bad.geojson").write_text(json.dumps(data))
    with pytest.raises(LabelsError, match=r"feature 1 \(2020-1157-0289\) has label 'maybe'"):
        Labels.load(tmp_path / "bad.geojson")
    del data["features"][0]["properties"]["year"]
    (tmp_path / "bad2.geojson").write_text(json.dumps(data))
    with pytest.raises(LabelsError, match=r"feature 0 lacks \['year'\]"):
        Labels.load(tmp_path / "bad2.geojson")
    (tmp_path / "bad3.geojson").write_text("{not json")
    with pytest.raises(LabelsError, match="cannot read"):
        Labels.load(tmp_path / "bad3.geojson")


@pytest.mark.slow
def test_blocked_cv_beats_random_and_scores_match_row_by_row(small_chips, tmp_path):
    index, labels, _ = small_chips
    assert len(labels) > 200 and len(labels.positives) > 30 and len(labels.negatives) > 30
    clf = train(index, labels, block_deg=0.03)
    print(f"blocked CV balanced accuracy {clf.cv_balanced_accuracy:.3f}, random {clf.baseline_balanced_accuracy:.3f}")
    assert clf.cv_balanced_accuracy > clf.baseline_balanced_accuracy + 0.2
    scores = score_index(index, clf, tmp_path / "scores.parquet", batch_rows=37)
    assert len(scores) == len(index)
    ids = scores["chip_id"].tolist()[:25]
    one_by_one = [clf.predict_proba(unit(index.vectors([c])))[0, 1] for c in ids]
    np.testing.assert_allclose(scores["score"].to_numpy()[:25], one_by_one, rtol=0, atol=1e-6)
    session = ExploreSession(index)  # the labelling loop scores a year from its float16 unit vectors
    session.labelling.classifier = clf
    session.labelling._score(2020)
    fast = session.labelling.scores.set_index("chip_id")["score"]
    exact = scores.set_index("chip_id")["score"]
    assert set(fast.index) == set(exact.index)
    error = np.abs(fast[exact.index].to_numpy() - exact.to_numpy())
    print(f"float16 scores against float32: max error {error.max():.2e}, median {np.median(error):.2e}")
    assert error.max() < 5e-3  # the logit to within ~2e-2 (float16 vectors, float32 sums)
    import geopandas as gpd

    back = gpd.read_parquet(tmp_path / "scores.parquet")
    assert back["chip_id"].tolist() == scores["chip_id"].tolist()
    assert set(back["embedding_set"]) == {index.set} and set(back["weights"]) == {"; ".join(sorted(index.weights))}
    export(index.by_chip(ids[0], 5), tmp_path / "neighbours.geojson")
    assert len(json.loads((tmp_path / "neighbours.geojson").read_text())["features"]) == 5


@pytest.mark.slow
def test_score_layer_and_threshold_slider_in_the_map(small_chips, sample_root, tmp_path):
    index, labels, _ = small_chips
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        session = ExploreSession(index)
        ex = Explorer(session, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        session.labelling.labels = labels
        session.labelling.block_deg = 0.03
        session.labelling.retrain()  # the scores: one image over the chips, not a polygon per chip
        scores = session.labelling.scores
        assert ex.controls["region"].value == "scores" and "classifier score" in ex.legend.value
        assert _shown(ex, index, scores) == set(scores["chip_id"][scores["score"] >= 0.5])
        ex.threshold.value = 0.9  # the slider calls its observer, as in the browser
        high = set(scores["chip_id"][scores["score"] >= 0.9])
        assert _shown(ex, index, scores) == high and f"{len(high)} chips" in ex.region_status.value
        ex.threshold.value = 0.2
        assert _shown(ex, index, scores) == set(scores["chip_id"][scores["score"] >= 0.2])
        page = ex.to_html(tmp_path / "scores.html", center=[37.675, -75.62], zoom=12)
        png = screenshot(offline_html(page, ROOT / ".cache/js/node_modules"), ROOT / "outputs/test_scores.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    centre = img[250:450, 350:650]
    assert centre.std() > 15 and (np.abs(centre - centre[0, 0]).sum(axis=2) < 6).mean() < 0.2


def _shown(ex, index, scores) -> set[str]:
    """The chips whose centre is coloured (not transparent) in the map's region image."""
    import base64
    import io

    from pyproj import Transformer

    png = base64.b64decode(ex.region_overlay.url.split(",", 1)[1])
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    (s, w), (n, e) = ex.region_overlay.bounds
    merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = merc.transform([w, e], [s, n])
    shown = set()
    for chip in scores["chip_id"]:
        shape = index.footprint(chip)
        x, y = merc.transform(shape.centroid.x, shape.centroid.y)
        px, py = int((x - x0) / (x1 - x0) * image.shape[1]), int((y1 - y) / (y1 - y0) * image.shape[0])
        if image[py, px, 3] > 0:
            shown.add(chip)
    return shown


def test_labels_in_the_map_toggle_and_save(small_chips, sample_root, tmp_path):
    index, _, _ = small_chips
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        s = ExploreSession(index)
        ex = Explorer(s, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        ids = index.table.to_arrow()["chip_id"].to_pylist()[:3]
        s.labelling.toggle(ids[0], "positive", 2020)
        s.labelling.toggle(ids[1], "negative", 2020)
        s.labelling.toggle(ids[2], "positive", 2020)
        s.labelling.toggle(ids[2], "positive", 2020)  # a second click removes the label
        assert s.labelling.positives == [ids[0]] and s.labelling.negatives == [ids[1]]
        assert len(ex.label_layer.data["features"]) == 2
        ex.panel.save_path.value = str(tmp_path / "l.geojson")
        ex.panel.save_button.click()  # the panel's "save labels"
        assert ex.panel.status.value == f"2 labels written to {tmp_path / 'l.geojson'}"
        s.labelling.load(tmp_path / "l.geojson")
        assert s.labelling.positives == [ids[0]] and len(ex.label_layer.data["features"]) == 2


@pytest.mark.slow
def test_explore_notebook_runs_the_label_flow_headless(small_chips, sample_root, tmp_path):
    index, labels, tmp = small_chips
    labels_path = labels.save(tmp_path / "labels.geojson")
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        params = {
            "db": tmp / "db",
            "wms_url": wms.url,
            "labels": labels_path,
            "lon": -75.6,
            "lat": 37.68,
            "scores_out": tmp_path / "scores.parquet",
            "detections_out": tmp_path / "detections.geojson",
        }
        text = run_papermill("explore.ipynb", tmp_path / "out.ipynb", params, cwd=ROOT)
    assert "CV balanced accuracy" in text and "detections (adjacent chips scored ≥ 0.5, dissolved)" in text
    assert "label these next" in text
    cells = json.loads(text)["cells"]

    def displayed(marker: str) -> list[dict]:
        (cell,) = [c for c in cells if marker in "".join(c["source"])]
        return [o["data"] for o in cell["outputs"] if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]

    (data,) = displayed("explorer  # the live map")  # the map, its labelling panel under it: shown once
    assert data["image/png"], "no picture of the map for readers without a kernel"
    panels = [c for c in cells if "explorer.panel" in "".join(c["source"])]
    assert not panels, "the labelling panel is part of the map: shown a second time, the page has two of it"
    import geopandas as gpd

    scores = gpd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == len(index)
    found = gpd.read_file(tmp_path / "detections.geojson")
    assert found["chips"].sum() == (scores["score"] >= 0.5).sum()


@pytest.mark.slow
def test_explore_notebook_names_labels_that_cannot_train(small_chips, sample_root, tmp_path):
    """Too few labels: the headless run stops with the LabelsError that says why, not a later AttributeError."""

    from wcembed import NOTEBOOKS

    _, labels, tmp = small_chips
    one = Labels()
    first = next(iter(labels.items))
    one.items[first] = labels.items[first]
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        cmd = [sys.executable, "-m", "papermill", str(NOTEBOOKS / "explore.ipynb"), str(tmp_path / "out.ipynb")]
        for key, value in {"db": tmp / "db", "wms_url": wms.url, "labels": one.save(tmp_path / "one.geojson"),
                           "lon": -75.6, "lat": 37.68}.items():  # fmt: skip
            cmd += ["-p", key, str(value)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode != 0
    assert "LabelsError" in done.stderr and "need at least 2 positive and 2 negative labels" in done.stderr


def test_detections_dissolve_adjacent_chips_with_their_ids_and_mean_score(tmp_path):
    import geopandas as gpd
    from wcembed.core.grid import chip_bounds, chip_id
    from wcembed.explore.compute.classify import detections

    cells = {(10, 5): 0.9, (11, 5): 0.8, (12, 5): 0.7, (11, 6): 0.6, (13, 6): 0.95, (20, 20): 0.55, (30, 30): 0.2}
    cells |= {(12, 6): 0.1}  # below the threshold: not a detection, and it does not join (13, 6) to the rest
    scores = gpd.GeoDataFrame(
        {"chip_id": [chip_id(2020, c, r) for c, r in cells], "score": list(cells.values())},
        geometry=[shapely.box(*chip_bounds(c, r)) for c, r in cells],
        crs="OGC:CRS84",
    )
    found = detections(scores, threshold=0.5)
    assert list(found["chips"]) == [4, 1, 1]  # (13, 6) touches (12, 5) only at a corner: its own detection
    blob = found.iloc[0]
    assert blob["chip_ids"] == ",".join(sorted(chip_id(2020, c, r) for c, r in [(10, 5), (11, 5), (12, 5), (11, 6)]))
    assert blob["mean_score"] == pytest.approx(0.75) and blob["max_score"] == pytest.approx(0.9)
    assert blob.geometry.geom_type == "Polygon"  # one outline, no inner chip edges
    assert blob.geometry.area == pytest.approx(4 * shapely.box(*chip_bounds(10, 5)).area, rel=1e-6)
    assert set(found["chip_ids"][1:]) == {chip_id(2020, 13, 6), chip_id(2020, 20, 20)}
    about = {"embedding_set": "ours", "weights": "clay-v0.1"}  # what an index says of itself (ChipIndex.about)
    for name in ("detections.geojson", "detections.parquet"):
        path = export(found, tmp_path / name, about)
        back = gpd.read_file(path) if name.endswith("json") else gpd.read_parquet(path)
        assert list(back["chips"]) == [4, 1, 1] and back.crs.equals("OGC:CRS84")
        assert back["embedding_set"].tolist() == ["ours"] * 3 and back["weights"].tolist() == ["clay-v0.1"] * 3
    with pytest.raises(BadParameterError, match="already have chips"):
        export(found, tmp_path / "clash.geojson", {"chips": "3"})
    assert not (tmp_path / "clash.geojson").exists()
    assert detections(scores, threshold=0.99).empty


def test_adjacent_groups_are_chips_of_a_year_that_touch_through_edges():
    years = [2020, 2020, 2020, 2020, 2020, 2020, 2021, 2021]
    cells = [(10, 5), (11, 5), (12, 5), (11, 6), (13, 6), (20, 20), (10, 5), (10, 4)]
    groups = adjacent_groups(years, *zip(*cells, strict=True))
    # (13, 6) meets (12, 5) at a corner only: a place of its own; 2021's chips are apart from 2020's
    assert groups.tolist()[:4] == [groups[0]] * 4 and groups[6] == groups[7]
    assert len({groups[0], groups[4], groups[5], groups[6]}) == 4 and sorted(set(groups.tolist())) == [0, 1, 2, 3]
    assert adjacent_groups([], [], []).tolist() == []


def test_suggestions_are_uncertain_unlabelled_and_spread_out(small_chips):
    from wcembed.explore.compute.classify import suggest_next

    index, labels, _ = small_chips
    few = Labels()  # a few labels of each class, as early in a session
    for label in ("positive", "negative"):
        for chip in [c for c in labels.items if labels.items[c]["label"] == label][:3]:
            few.items[chip] = labels.items[chip]
    scores = score_index(index, train(index, few, block_deg=0.03))
    picks = suggest_next(index, scores, few, n=8)
    assert len(picks) == 8 == len(set(picks["chip_id"])) and list(picks["pick"]) == list(range(1, 9))
    assert not set(picks["chip_id"]) & set(few.items)
    unlabelled = scores[~scores["chip_id"].isin(list(few.items))]
    median_uncertainty = float((1 - 2 * (unlabelled["score"] - 0.5).abs()).median())
    assert picks["uncertainty"].min() >= median_uncertainty  # from the uncertain end

    def closest_pair(chips) -> tuple[float, float]:
        """The smallest embedding (cosine) and spatial (degrees) distances between two of the chips."""
        x = index.vectors(list(chips["chip_id"]))
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        b = chips.geometry.bounds
        xy = np.column_stack([(b["minx"] + b["maxx"]) / 2, (b["miny"] + b["maxy"]) / 2])
        pairs = np.triu_indices(len(chips), 1)
        return float((1 - x @ x.T)[pairs].min()), float(np.linalg.norm(xy[:, None] - xy[None], axis=2)[pairs].min())

    most_uncertain = suggest_next(index, scores, few, n=8, pool=1)  # no room to choose: the 8 most uncertain
    spread, crowded = closest_pair(picks), closest_pair(most_uncertain)
    assert spread[0] > crowded[0] and spread[1] >= crowded[1], (spread, crowded)


def test_a_drawn_area_selects_its_chips_as_examples_and_labels_them_at_once(small_chips, sample_root, tmp_path):
    from wcembed.core.grid import chip_bounds, parse_chip_id

    index, _, _ = small_chips
    ids = index.table.to_arrow()["chip_id"].to_pylist()
    (_, c, r) = parse_chip_id(sorted(ids)[len(ids) // 2])
    w, s, e, n = chip_bounds(c, r, index.chip_size)
    # a triangle over chip (c, r) and part of (c + 1, r); it touches (c, r + 1) only along an edge
    area = shapely.Polygon([(w, n), (e + (e - w) / 2, n), (w, s)])
    want = sorted(x for x in (f"2020-{c:04d}-{r:04d}", f"2020-{c + 1:04d}-{r:04d}") if x in ids)
    assert sorted(index.chips_in(area, 2020)) == want
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        s = ExploreSession(index)
        ex = Explorer(s, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        geo = {"type": "Feature", "geometry": shapely.geometry.mapping(area), "properties": {}}
        ex.handle_draw(action="created", geo_json=geo)  # search mode: the area's chips are this search's examples
        assert not s.labels.items and not set(s.results["chip_id"]) & set(want)
        assert f"{len(want)} chips under the drawn area" in ex.status.value
        ex.controls["mode"].value = "positive"
        ex.handle_draw(action="created", geo_json=geo)  # positive mode: all labelled in one action
        assert sorted(s.labelling.positives) == want and len(ex.label_layer.data["features"]) == len(want)
        big = shapely.box(-80, 30, -70, 40)
        with pytest.raises(ValueError, match="draw a smaller one"):
            index.chips_in(big, 2020)


def test_the_labelling_loop_without_a_map(small_chips):
    """Retrain, labels on the suggestions, detection review, the learning curve: the loop's model alone
    (no widgets, no WMS), its messages true to its state."""
    index, labels, _ = small_chips
    truth = {c: v["label"] for c, v in labels.items.items()}
    session = ExploreSession(index)
    loop = session.labelling
    loop.block_deg, loop.n = 0.03, 6
    with pytest.raises(LabelsError, match="at least 2"):
        loop.retrain()  # nothing labelled yet
    assert session.attempt(loop.retrain) is None and "at least 2" in session.status  # one error path
    assert loop.status == "0 positives, 0 negatives: label at least 2 of each, then retrain" and not loop.busy
    for label in ("positive", "negative"):
        for chip in [c for c in truth if truth[c] == label][:3]:
            loop.label(chip, label)
    assert loop.status == "3 positives, 3 negatives: retrain to train a classifier"
    clf = loop.retrain()
    assert loop.history == [(6, clf.cv_balanced_accuracy)] and session.region == "scores"
    shown = list(loop.suggestions["chip_id"])
    assert len(shown) == 6 and not set(shown) & set(session.labels.items)
    loop.label(shown[0], "positive")
    assert list(loop.suggestions["chip_id"]) == shown[1:] and "(1 new labels: retrain)" in loop.status
    queue = list(loop.queue)  # one chip per place, the place's best; best first; none labelled; at most 50
    scored = loop.scores.set_index("chip_id")["score"]
    assert queue and all(scored[c] >= 0.5 for c in queue) and not set(queue) & set(session.labels.items)
    assert list(scored[queue]) == sorted(scored[queue], reverse=True)
    scores = loop.scores  # the detections as they were at the retrain (before shown[0] was labelled)
    then = scores[~scores["chip_id"].isin(set(session.labels.items) - {shown[0]}) & (scores["score"] >= 0.5)]
    place = dict(zip(then["chip_id"], adjacent_groups(then["year"], then["column"], then["row"]), strict=True))
    best = then.assign(place=then["chip_id"].map(place)).groupby("place")["score"].max()
    assert len({place[c] for c in queue}) == len(queue) and all(scored[c] == best[place[c]] for c in queue)
    detected = len(then) - int(shown[0] in set(then["chip_id"]))  # a chip labelled is no detection any more
    assert loop.detected == detected and loop.places == len(best) and len(queue) == min(loop.places, 50)
    assert [loop.place_size(c) for c in queue] == [list(place.values()).count(place[c]) for c in queue]
    assert (
        f"{loop.detected} unlabelled chips of 2020 scored ≥ 0.5 (in {loop.places} places at the last round), "
        f"{len(queue)} of the top places" in loop.status
    )
    loop.accept()
    assert session.labels.items[queue[0]]["label"] == "positive" and loop.current == queue[1]
    assert loop.detected == detected - 1  # the accepted detection is a label now: the count says so
    loop.reject()
    loop.skip()
    assert queue[2] not in session.labels.items and loop.current == (queue[3] if len(queue) > 3 else None)
    # a label of a chip the index does not have: refused where it is made, the labels as they were
    ghost, before = "2020-0001-0001", session.labels
    with pytest.raises(LabelsError, match=f"1 chips are not in the index: {ghost}"):
        session.add_labels([ghost], "positive")
    assert session.labels is before


def test_the_labelling_panel_by_its_buttons(small_chips, sample_root, tmp_path):
    """The panel bound to the loop: each button's handler called as the browser calls it."""
    index, labels, _ = small_chips
    truth = {c: v["label"] for c, v in labels.items.items()}
    with LocalWMS(sample_root, tmp_path / "ms") as wms:
        session = ExploreSession(index)
        ex = Explorer(session, wms.url, thumbnails=WMSClient(wms.url, cache_dir=None), basemap=None)
        loop, panel = session.labelling, ex.panel
        loop.block_deg, loop.n = 0.03, 6
        assert panel.review_card.value == "detections to review appear after the first retrain"
        assert bytes(panel.curve.value).startswith(b"\x89PNG")  # a picture from the start, never a broken image
        panel.retrain_button.click()  # nothing labelled yet: the panel's own status line says why, at once
        assert "at least 2" in panel.status.value and not panel.retrain_button.disabled
        assert "training" not in panel.status.value
        for label in ("positive", "negative"):
            for chip in [c for c in truth if truth[c] == label][:3]:
                loop.label(chip, label)
        seen = []
        loop.observe(lambda _: seen.append((panel.retrain_button.disabled, panel.status.value)), names="busy")
        panel.retrain_button.click()
        assert seen[0] == (True, "training on 6 labels, then scoring every chip of 2020 ...")  # at once
        assert not panel.retrain_button.disabled and panel.status.value.startswith("3 positives, 3 negatives; trained")
        assert ex.controls["region"].value == "scores"
        shown = list(loop.suggestions["chip_id"])
        assert len(shown) == len(panel.cards.children) == len(panel.outline.data["features"]) == 6
        first = panel.cards.children[0]
        assert f'alt="{shown[0]}"' in first.children[0].value  # its thumbnail
        first.children[1].children[0].click()  # its "positive" button
        assert session.labels.items[shown[0]]["label"] == "positive"
        assert len(panel.cards.children) == 5 and len(panel.outline.data["features"]) == 5
        assert "(1 new labels: retrain)" in panel.status.value
        queue = list(loop.queue)
        assert f'alt="{queue[0]}"' in panel.review_card.value
        panel.accept_button.click()
        assert session.labels.items[queue[0]]["label"] == "positive" and loop.current == queue[1]
        panel.reject_button.click()
        assert session.labels.items[queue[1]]["label"] == "negative"
        panel.skip_button.click()
        assert queue[2] not in session.labels.items
        if loop.current is not None:  # a label from the map (positive mode click) leaves the queue too
            ex.controls["mode"].value = "positive"
            session.click(*index.footprint(loop.current).centroid.coords[0])
            assert queue[3] in session.labelling.positives and queue[3] not in loop.queue
        n_labels = len(session.labels)
        panel.retrain_button.click()
        assert [n for n, _ in loop.history] == [6, n_labels]
        assert not set(loop.suggestions["chip_id"]) & set(session.labels.items)
        curve = Image.open(io.BytesIO(panel.curve.value))
        assert curve.size == (420, 260)
        assert "image/png" in panel._repr_mimebundle_()


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6))


def label_file(tmp_path, features) -> Path:
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def feature(chip="2020-1150-0283", year=2020, label="positive"):
    ring = [[-75.9, 37.6], [-75.8, 37.6], [-75.8, 37.7], [-75.9, 37.7], [-75.9, 37.6]]
    props = {"chip_id": chip, "year": year, "label": label}
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.mark.parametrize(
    ("features", "says"),
    [
        ("abc", "not a list"),
        (["abc"], "not a GeoJSON feature"),
        ([feature(year="abc")], "year 'abc'"),
        ([feature(year=None)], "lacks ['year']"),
        ([feature(chip=None)], "lacks ['chip_id']"),
        ([feature(chip="2021-1150-0283")], "is of 2021, labelled as of 2020"),
        ([feature(chip="2020--150-0283")], "not a chip id"),
    ],
)
def test_malformed_labels_are_named(tmp_path, features, says):
    with pytest.raises(LabelsError, match=None) as err:
        Labels.load(label_file(tmp_path, features))
    assert says in str(err.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
feature_like = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "properties": json_values
        | st.fixed_dictionaries(
            {
                "chip_id": json_values | st.just("2020-1150-0283"),
                "year": json_values | st.just(2020),
                "label": json_values | st.sampled_from(["positive", "negative"]),
            }
        ),
        "geometry": json_values,
    }
)


valid_features = st.lists(
    st.builds(
        feature,
        chip=st.sampled_from(["2020-1150-0283", "2020-1150-0284", "2020-1151-0283"]),
        label=st.sampled_from(["positive", "negative"]),
    ),
    max_size=3,
    unique_by=lambda f: f["properties"]["chip_id"],
)


@PROPS
@given(features=valid_features | st.lists(feature_like | json_values, max_size=4) | json_values)
def test_label_files_give_their_labels_or_a_labels_error(tmp_path, features):
    """A file loads to exactly its features' labels (chip id, label, year, the polygon's bounds), or
    LabelsError names what is wrong; no other error, and never a label the file does not hold."""
    try:
        labels = Labels.load(label_file(tmp_path, features))
    except LabelsError:
        return
    assert isinstance(features, list)
    props = [f["properties"] for f in features]
    assert list(labels.items) == [p["chip_id"] for p in props]
    assert [labels.items[p["chip_id"]]["label"] for p in props] == [p["label"] for p in props]
    for f in features:
        ring = np.asarray(f["geometry"]["coordinates"][0], float)
        want = (ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max())
        assert tuple(labels.items[f["properties"]["chip_id"]]["bounds"]) == pytest.approx(want)


@PROPS
@given(features=valid_features | st.lists(feature_like | json_values, max_size=4) | json_values)
def test_the_one_pass_reader_gives_what_the_feature_reader_gives_or_leaves_it_to_it(tmp_path, features):
    """GDAL's one pass over a labels file either declines it or gives exactly the labels the feature-by-feature
    reader gives (which then names any problem)."""
    path = label_file(tmp_path, features)
    fast = _read_columns(path)
    if fast is not None:
        assert fast == Labels._read_features(path)


def test_a_labels_file_of_another_writer_is_read_in_one_pass(small_chips, tmp_path):
    """A labels file written by geopandas (its own name and CRS members, another property) is read in one pass,
    with the labels the feature reader gives; a file with a year written as text is left to the feature reader,
    which names it."""
    import geopandas as gpd

    _, labels, _ = small_chips
    ids = list(labels.items)[:50]
    frame = gpd.GeoDataFrame(
        {
            "chip_id": ids,
            "year": [labels.items[c]["year"] for c in ids],
            "label": [labels.items[c]["label"] for c in ids],
            "note": "from another tool",
        },
        geometry=[shapely.box(*labels.items[c]["bounds"]) for c in ids],
        crs="EPSG:4326",
    )
    frame.to_file(tmp_path / "other.geojson", driver="GeoJSON")
    fast = _read_columns(tmp_path / "other.geojson")
    assert fast is not None and fast == Labels._read_features(tmp_path / "other.geojson")
    assert list(fast.items) == ids and all(fast.items[c] == labels.items[c] for c in ids)
    frame.assign(year=frame["year"].astype(str)).to_file(tmp_path / "text.geojson", driver="GeoJSON")
    assert _read_columns(tmp_path / "text.geojson") is None
    with pytest.raises(LabelsError, match=r"feature 0: year '2020' has no WorldCover composite"):
        Labels.load(tmp_path / "text.geojson")


def test_the_classifier_is_standardised_logistic_regression(small_chips):
    """The fitted classifier gives scikit-learn's scaler-and-regression pipeline's probabilities (to float32
    rounding), and its folded linear form the same."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    index, labels, _ = small_chips
    clf = train(index, labels, block_deg=0.03)
    ids = list(labels.items)
    x = unit(index.vectors(ids))
    y = np.array([labels.items[c]["label"] == "positive" for c in ids], dtype=int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
    want = pipeline.fit(x, y).predict_proba(x)[:, 1]
    assert np.abs(clf.predict_proba(x)[:, 1] - want).max() < 1e-4
    w, b = clf.linear()
    assert np.abs(1 / (1 + np.exp(-(x @ w + b))) - want).max() < 1e-4


def test_label_files_that_cannot_be_read_or_written_say_why(tmp_path):
    """A labels file nested deeper than Python's stack, and saving to a folder or into no folder: a LabelsError
    in one line, nothing written."""
    deep = tmp_path / "deep.geojson"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LabelsError, match="nested too deep"):
        Labels.load(deep)
    labels = Labels()
    labels.add("2020-1156-0288", "positive", year=2020, bounds=(0.0, 0.0, 1.0, 1.0))
    with pytest.raises(LabelsError, match="it is a folder"):
        labels.save(tmp_path)
    with pytest.raises(LabelsError, match="no folder"):
        labels.save(tmp_path / "none" / "l.geojson")
    assert labels.save(tmp_path / "l.geojson").exists()


def test_many_labels_are_cross_validated_on_whole_blocks_and_fitted_on_all(small_chips, monkeypatch):
    """Beyond the CV's most labels, whole spatial blocks of them are scored (said in the classifier and the
    loop's status); the classifier is fitted on every label, and the kept vectors give the same fit as the
    table's (float16 unit vectors: within rounding)."""
    from wcembed.explore.compute import classify
    from wcembed.explore.compute.classify import spatial_blocks

    index, labels, _ = small_chips
    monkeypatch.setattr(classify, "CV_MAX_LABELS", len(labels) // 3)
    clf = train(index, labels, block_deg=0.03)
    ids = list(labels.items)
    groups = spatial_blocks(*labels.centres(ids), 0.03)
    rows = classify._cv_rows(groups, len(labels) // 3, 0)
    assert len(labels) // 3 <= clf.cv_labels == len(rows) < len(labels)
    inside = set(groups[rows])
    assert all((groups[i] in inside) == (i in set(rows)) for i in range(len(ids)))  # blocks kept whole
    assert clf.regression.coef_.shape == (1, index.vectors(ids[:1]).shape[1])
    session = ExploreSession(index)
    session.labelling.labels = labels
    session.labelling.block_deg = 0.03
    looped = session.labelling.retrain()
    assert f"(CV on {looped.cv_labels} of them, whole blocks)" in session.labelling.status
    w1, w2 = clf.linear()[0], looped.linear()[0]
    assert np.corrcoef(w1, w2)[0, 1] > 0.99
