"""The map's controls: each region layer keeps its own threshold and opacity, whatever order layers, years,
sets, clicks and retrains come in, through the model and the view's links (a real WMS, real LanceDB)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import synthetic_index
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcembed.core.grid import chip_bounds
from wcembed.explore.data.ingest import ingest
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.view import Explorer
from wcembed.explore.views.wms import LocalWMS, WMSClient

DIM = 16
PLACES = [(1155, 287), (1156, 288), (1158, 290), (1157, 289)]


def ours(year: int, column: int, row: int) -> np.ndarray:
    changed = year == 2021 and (column, row) in {(1156, 288), (1158, 290)}
    return np.random.default_rng([column, row, 5 if changed else 0]).normal(size=DIM)


def other(year: int, column: int, row: int) -> np.ndarray:
    return np.random.default_rng([column, row, year, 1]).normal(size=DIM)


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_root):
    root = tmp_path_factory.mktemp("controls")
    index = synthetic_index(root / "ours", ours)
    synthetic_index(root / "other", other)
    ingest(root / "other" / "emb", index.db, set="other")
    with LocalWMS(sample_root, root / "ms") as wms:
        yield index, wms.url, WMSClient(wms.url, cache_dir=None)


def centre(column: int, row: int) -> tuple[float, float]:
    w, s, e, n = chip_bounds(column, row)
    return (w + e) / 2, (s + n) / 2


def default_threshold(layer) -> float:
    """Where a new layer starts: scores at the loop's detection threshold, changed-like at 0, the others at 0
    when their range holds it, else at their lowest value."""
    if layer.key.kind == "scores":
        return 0.5
    if layer.key.kind == "changed like" or layer.lo <= 0.0 <= layer.hi:
        return 0.0
    return layer.lo


actions = st.lists(
    st.one_of(
        st.tuples(st.just("region"), st.sampled_from(["similarity", "change", "changed like", "agreement",
                                                      "neighbour agreement", "embedding colours", "scores", "none"])),
        st.tuples(st.just("k"), st.sampled_from([3, 4])),
        st.tuples(st.just("slide"), st.floats(0, 1)),
        st.tuples(st.just("echo"), st.floats(0, 1)),
        st.tuples(st.just("opacity"), st.floats(0, 1)),
        st.tuples(st.just("year"), st.sampled_from([2020, 2021])),
        st.tuples(st.just("set"), st.sampled_from(["wcembed", "other"])),
        st.tuples(st.just("beside"), st.sampled_from(["", "wcembed", "other"])),
        st.tuples(st.just("click"), st.sampled_from(PLACES)),
        st.tuples(st.just("retrain"), st.just(None)),
    ),
    min_size=1,
    max_size=10,
)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_each_layer_keeps_the_threshold_it_was_given(world, steps):
    """Random sequences of what a user does, through the view's controls and sliders (and a slider of a layer
    no longer shown receiving a value late, as a browser's message in flight would): every layer's threshold is
    the one it was given, or its own default; the sliders shown are the shown layer's."""
    index, url, client = world
    s = ExploreSession(index, year=2020, k=3)
    ex = Explorer(s, url, thumbnails=client, basemap=None)
    s.click(*centre(1156, 288))
    given_to, opacities, shown_before = {}, {}, []
    for action, value in steps:
        if action == "region":
            ex.controls["region"].value = value
        elif action in ("slide", "echo"):
            target = s.layer if action == "slide" else (shown_before[-1] if shown_before else None)
            pair = ex.controls_view._sliders.get(target) if target is not None else None
            if pair is None or target.rgb:
                continue
            slider = pair[0]
            slider.value = slider.min + value * (slider.max - slider.min)  # the browser sends the slider's value
            given_to[target] = target.snap(slider.value)
        elif action == "opacity":
            if s.layer is None:
                continue
            ex.opacity.value = round(value, 2)
            opacities[s.layer] = ex.opacity.value
        elif action in ("year", "k"):
            ex.controls[action].value = value
        elif action == "set":
            ex.controls["embedding_set"].value = value
        elif action == "beside":
            if value in [v for _, v in ex.controls["compare_set"].options]:
                ex.controls["compare_set"].value = value
        elif action == "click":
            s.attempt(s.click, *centre(*value))
        elif action == "retrain":
            chips = [f"2020-{c}-{r:04d}" for c in (1154, 1159) for r in (286, 291)]
            s.set(year=2020)
            s.add_labels(chips[:2], "positive")
            s.add_labels(chips[2:], "negative")
            s.labelling.block_deg = 0.01
            s.labelling.retrain()
        if s.layer is not None and (not shown_before or shown_before[-1] is not s.layer):
            shown_before.append(s.layer)
        for layer in s.layers.by_key.values():
            want = given_to.get(layer, default_threshold(layer)) if not layer.rgb else 0.0
            assert layer.threshold == pytest.approx(want, abs=1e-9), (action, value, layer.key)
            assert layer.opacity == opacities.get(layer, 0.7)
        if s.layer is not None:
            assert ex.opacity.value == s.layer.opacity
            if not s.layer.rgb:
                assert ex.threshold.value == pytest.approx(s.layer.threshold) and not ex.threshold.disabled
                assert ex.region_status.value.endswith(f"≥ {s.layer.threshold:.3g}".replace("-0 ", "0 "))
        assert s.scope.beside != s.scope.name  # a set is never compared with itself


def test_numbers_near_zero_are_said_as_zero(world):
    index = world[0]
    s = ExploreSession(index, year=2020, k=3)
    s.click(*centre(1156, 288))
    layer = s.show_region("similarity")
    layer.threshold = -5.55e-17  # float error of a slider's arithmetic
    assert layer.threshold == 0.0 and str(layer.threshold) == "0.0"
    assert s.layers.status.endswith("≥ 0") and "-0" not in s.layers.status and "e-17" not in s.layers.status
