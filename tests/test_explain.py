"""Explain a match: the patch heatmap lights the part of a result that is the query's imagery."""

import io

import numpy as np
import pytest
from builders import tiny_model
from PIL import Image
from wcembed.core.errors import BadParameterError, WcEmbedError
from wcembed.explore.compute.explain import MatchExplainer, patch_heatmap, quadrant_means
from wcembed.explore.state.session import ExploreSession

QUERY, OTHER = "2020-1156-0288", "2020-1158-0290"  # farmland; and another part of the scene


@pytest.fixture(scope="module")
def explainer(sample_root):
    model = tiny_model()
    return MatchExplainer(sample_root, model, device="cpu")


def test_the_quadrant_that_is_the_query_is_the_hottest(explainer):
    """A result whose north-west quadrant is the query's imagery and the rest another scene."""
    query, other = explainer.read(QUERY), explainer.read(OTHER)
    result = other.copy()
    result[:, :256, :256] = query[:, :256, :256]
    means = {}
    for how in ("best", "embedding"):
        heat = explainer.explain(QUERY, OTHER, how=how, pixels=(query, result))
        assert heat.shape == (16, 16) and np.isfinite(heat).all()
        means[how] = quadrant_means(heat)
    assert max(means["best"], key=means["best"].get) == "nw", means  # the default
    contrast = {h: m["nw"] - max(v for k, v in m.items() if k != "nw") for h, m in means.items()}
    print("quadrant contrast (nw minus the next quadrant):", contrast)
    assert contrast["best"] > contrast["embedding"]  # the default localises better
    heat = explainer.explain(QUERY, OTHER, pixels=(query, result))
    png = Image.open(io.BytesIO(explainer.picture(OTHER, heat, pixels=result)))
    assert png.size == (256, 256)


def test_a_chip_is_most_like_itself_everywhere(explainer):
    heat = explainer.explain(QUERY, QUERY)
    np.testing.assert_allclose(heat, 1.0, atol=1e-5)  # every patch finds itself
    with pytest.raises(BadParameterError, match="unknown heatmap"):
        patch_heatmap(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), how="max")


def test_no_explainer_without_tiles_or_for_real_embeddings_without_their_weights(tmp_path, sample_root):
    from builders import write_years
    from wcembed.explore.compute.explain import explainer_for
    from wcembed.explore.data.index import ChipIndex
    from wcembed.explore.data.ingest import ingest

    write_years(tmp_path / "emb", range(1150, 1152))
    ingest(tmp_path / "emb", tmp_path / "db")
    index = ChipIndex(tmp_path / "db")  # its files do not say "untrained": untrained weights cannot explain it
    with pytest.raises(BadParameterError, match="no tile source"):
        explainer_for(index, None)
    with pytest.raises(WcEmbedError, match="no checkpoint given"):
        explainer_for(index, sample_root)
    session = ExploreSession(index)
    assert session.explaining.note.startswith("explain is off: no tile source")
    session.use_explainer(sample_root)  # said in one line, under the results
    assert session.explaining.explainer is None and session.explaining.note.startswith(
        "explain is off: no checkpoint given"
    )
    assert session.explain("2020-1150-0288") is None and session.status == session.explaining.note
    session.use_explainer(sample_root, allow_untrained=True)  # asked for: untrained weights, said so
    assert session.explaining.explainer is not None and session.explaining.note.startswith(
        "explain uses untrained weights"
    )


def test_a_new_query_lets_the_last_explanation_go(explainer, tmp_path):
    """The explanation shown is of the query shown: clicking the query again keeps it, another chip ends it."""
    from builders import synthetic_index
    from wcembed.core.grid import chip_bounds, parse_chip_id

    index = synthetic_index(tmp_path, lambda year, column, row: np.random.default_rng([column, row]).normal(size=8))
    session = ExploreSession(index, explainer=explainer)

    def click(chip: str) -> None:
        w, s, e, n = chip_bounds(*parse_chip_id(chip)[1:])
        session.click((w + e) / 2, (s + n) / 2)

    click(QUERY)
    session.explain(OTHER)
    assert (session.explaining.explanation.query, session.explaining.explanation.result) == (QUERY, OTHER)
    click(QUERY)
    assert session.explaining.explanation is not None and session.explaining.explanation.query == QUERY
    click(OTHER)
    assert session.explaining.explanation is None
