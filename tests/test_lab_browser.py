"""The live map inside JupyterLab, in a real headless browser: run the notebook, click the map."""

import json
import os
import secrets
import shutil
import subprocess

import nbformat
import pytest
from builders import tiny_model
from local_servers import interrupt, jupyterlab_settings, start_cli, wait_for_url
from wcembed import ROOT
from wcembed.core.grid import parse_chip_id
from wcembed.explore.compute.classify import Labels
from wcembed.explore.state.session import ExploreSession
from wcembed.explore.views.view import Explorer
from wcembed.tools.servers import free_port

NODE_MODULES = ROOT / ".cache/js/node_modules"
SCRIPT = ROOT / "tests/browser/lab_map.cjs"


@pytest.mark.slow
def test_live_map_in_jupyterlab_answers_a_click(explore_db, sample_root, tmp_path):
    """``wcembed lab`` -> JupyterLab on 127.0.0.1 -> Chromium runs all cells, sees WMS imagery, clicks another chip:
    the status line and the gallery change, and no widget error shows. With a labels file, the labelling
    panel is there too, and one click on a suggested chip's "positive" button labels it. An executed copy
    opened without running it (untrusted: no widgets) shows the map's picture, not ``VBox(...)`` text."""
    grid, index, _, _ = explore_db
    lat, lon, zoom = 37.675, -75.62, 12  # the notebook's starting point and zoom
    query = index.chip_at(lon, lat, 2020)
    _, col, row = parse_chip_id(query)
    target_lon, target_lat = grid.chip_center(col + 2, row)  # two chips east, in the indexed columns
    target = index.chip_at(target_lon, target_lat, 2020)
    assert target and target != query
    ids = sorted(index.table.to_arrow()["chip_id"].to_pylist())  # west to east
    labels = Labels()  # two of each, at both ends of the region, so that a classifier trains
    for chip, label in zip(ids[:2] + ids[-2:], ["positive"] * 2 + ["negative"] * 2, strict=True):
        labels.add(chip, label, year=2020, bounds=index.footprint(chip).bounds)
    labels.save(tmp_path / "labels.geojson")
    executed = tmp_path / "executed.ipynb"  # what a notebook run elsewhere keeps of the map: never trusted here
    session = ExploreSession(index)
    ex = Explorer(session, explore_db[2].url, center=[lat, lon], zoom=zoom, basemap=None)
    session.click(lon, lat)
    cell = nbformat.v4.new_code_cell("explorer", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", data=ex._repr_mimebundle_(), execution_count=1)]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), executed)

    db = two_years(explore_db[3] / "emb", sample_root, tmp_path)  # for "changed like": 2020 and 2021
    port, token = free_port(), secrets.token_hex(16)
    nb = tmp_path / "explore_live.ipynb"
    args = ["lab", "--tiles", sample_root, "--db", str(db), "--workdir", str(tmp_path / "ms")]
    args += ["--notebook-out", str(nb), "--lab-port", str(port), "--no-browser", "--port", str(free_port())]
    args += ["--labels", str(tmp_path / "labels.geojson"), "--basemap", "none"]
    env = {**os.environ, "JUPYTER_TOKEN": token, **jupyterlab_settings(tmp_path / "lab-settings")}
    proc, _ = start_cli(args, "Ctrl-C stops both", env=env)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/api?token={token}")
        shot = ROOT / "outputs" / "test_lab.png"
        shot.parent.mkdir(exist_ok=True)
        cfg = tmp_path / "browser.json"
        cfg.write_text(
            json.dumps(
                {
                    "url": f"http://127.0.0.1:{port}/lab/workspaces/test/tree/{nb.name}?reset&token={token}",
                    "playwright": str(NODE_MODULES / "playwright-core"),
                    "chromium": shutil.which("chromium") or "/usr/bin/chromium",
                    "screenshot": str(shot),
                    "center": [lat, lon],
                    "zoom": zoom,
                    "click": {"lon": target_lon, "lat": target_lat},
                    "executedUrl": f"http://127.0.0.1:{port}/lab/workspaces/test/tree/{executed.name}?token={token}",
                    "features": True,
                }
            )
        )
        done = subprocess.run(["node", str(SCRIPT), str(cfg)], capture_output=True, text=True, timeout=420)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        assert interrupt(proc) == 0
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = seen["before"], seen["after"]
    assert f"nearest of {query}" in before["status"]
    assert f"nearest of {target}" in after["status"], after["status"]
    assert len(before["gallery"]) == len(after["gallery"]) == 10
    assert before["gallery"] != after["gallery"] and target not in after["gallery"]
    assert before["tiles"] > 0, "no WMS imagery loaded"
    step = seen["zoomStep"]  # a zoom step fetches, of each layer shown, the tiles the map then shows; no more
    assert step["asked"] == step["seen"] and "WORLDCOVER_2020_S2_TCC" in step["seen"], step
    assert not {"WORLDCOVER_2020_S2_FCC", "WORLDCOVER_2021_S2_TCC"} & set(step["asked"]), step
    assert before["widgetErrors"] == after["widgetErrors"] == 0
    assert shot.stat().st_size > 10_000
    assert after["loop"].startswith("2 positives, 2 negatives; trained on 4")
    assert (
        seen["labelled"]["loop"].startswith("3 positives, 2 negatives") and "1 new labels" in seen["labelled"]["loop"]
    )
    assert seen["labelled"]["widgetErrors"] == 0 and not seen["pageErrors"]
    assert seen["executed"]["pictures"] >= 1 and seen["executed"]["vboxText"] == 0, seen["executed"]
    features = seen["features"]  # explain a result; results spread out; changed like this (one click or toggle each)
    assert features["explained"]["alt"].startswith("where ") and features["explained"]["width"] == 256
    spread = [parse_chip_id(c)[1:] for c in features["spread"]["gallery"]]
    assert f"nearest of {query}" in features["spread"]["status"] and spread
    assert all(max(abs(a - c), abs(b - d)) >= 3 for i, (a, b) in enumerate(spread) for c, d in spread[i + 1 :])
    assert f"changed most like {target}" in features["changed"]["status"], features["changed"]
    cards = features["changed"]["cards"]
    assert cards and all(len(alts) == 2 and alts[0].endswith("2020") and alts[1].endswith("2021") for alts in cards)
    assert features["changed"]["widgetErrors"] == 0
    compare = features["compare"]  # the chip's two years side by side: a drag of the first moves the second too
    assert compare["maps"] == 2, compare
    (first, second), (first_moved, second_moved) = compare["panes"]
    assert first_moved != first and second_moved != second, compare
    year = features["year"]  # switched to 2021: the search, the legend, the imagery and the thumbnails follow
    assert f" nearest of 2021-{col + 2:04d}-{row:04d}" in year["status"] and "spread out" in year["status"], year
    assert year["legend"].startswith("similarity 2021") and "2021-" in year["legend"]
    assert "WORLDCOVER_2021_S2_TCC" in year["tiles"], year["tiles"]
    assert year["thumbnails"] and all("WORLDCOVER_2021_S2_TCC" in src for src in year["thumbnails"])
    for drawn in features["drawn"]:  # at the page's width (1400 px) and at 1000 px
        assert drawn["controls"] >= 9 and drawn["bad"] == [] and drawn["broken"] == [], drawn
        assert drawn["tracks"] and min(drawn["tracks"]) >= 60, drawn  # the sliders' tracks drawn
    assert [d["width"] for d in features["drawn"]] == [1400, 1000]
    assert len(set(features["mapTops"])) == 1, features["mapTops"]  # the map stays put as the count line goes
    t = features["thresholds"]  # the similarity layer's slider dragged, the change layer shown, then back
    assert t["moved"] != t["start"] and t["back"] == t["moved"], t  # it kept the threshold it was given
    assert t["other"].startswith(tuple("0123456789")) and " chips with change " in t["other"]
    assert t["other"].rsplit("≥ ", 1)[1] != t["moved"].rsplit("≥ ", 1)[1], t  # the change layer's own
    assert seen["offHost"] == [], seen["offHost"][:5]  # the browser asked nothing of any other host
    assert seen["console"] == [], seen["console"]  # nothing warned or failed


def two_years(emb, sample_root, tmp_path):
    """A database of the explore fixture's 2020 files and the same columns embedded as 2021 (the sample's one
    scene as both years), with the fixture's small untrained encoder."""
    from wcembed.explore.data.ingest import ingest
    from wcembed.pipeline.embed import embed_column

    shutil.copytree(emb, tmp_path / "emb")
    model = tiny_model()
    for column in range(1153, 1161):
        embed_column(2021, column, output=tmp_path / "emb", tiles=sample_root, model=model, progress=False)
    ingest(tmp_path / "emb", tmp_path / "db")
    return tmp_path / "db"
