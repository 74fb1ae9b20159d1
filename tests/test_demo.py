"""The demo pipeline, smaller (4 columns), so CI catches a broken `make demo`."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import record_only_file
from PIL import Image
from wcembed.apps import demo
from wcembed.core import store
from wcembed.pipeline.original import write_original


@pytest.mark.slow
def test_demo_pipeline_end_to_end_and_rerun(sample_root, tmp_path, capsys):
    out = tmp_path / "outputs"
    shutil.copytree(sample_root, out / "sample")  # built by the same function the demo's first step calls
    # array index 2 is the band of grid columns 1156..1159, where the sample scene has data
    assert demo.run(outputs=out, indices=[2]) == 0
    printed = capsys.readouterr().out
    assert printed.count("UNTRAINED") >= 2  # said at the start and at the end
    assert "--model clay-v1.5 --checkpoint" in printed  # and how to put Clay v1.5 beside
    files = store.list_outputs(out / "embeddings")
    assert len(files) == 8  # 4 columns of each year
    for path in files:
        assert store.read_metadata(path).embedding["weights"] == "untrained"
    assert (out / "lancedb").is_dir()
    for nb in ("plan_grid.ipynb", "explore.ipynb"):
        assert (out / "notebooks" / nb).exists()
    for year in (2020, 2021):
        assert [p.name for p in (out / f"embeddings/{year}/notebooks").glob(f"embed_{year}_*.ipynb")] == [
            f"embed_{year}_1156-1159.ipynb"
        ]
    layers = sorted(p.name for p in (out / "layers").glob("*.tif"))
    assert layers == ["agreement_2020.tif", "change_2020_2021.tif", "embedding_colours_2020.tif", "similarity_2020.tif"]
    img = np.asarray(Image.open(out / "map.png").convert("RGB")).astype(int)
    centre = img[250:450, 350:650]
    assert (np.abs(centre - centre[0, 0]).sum(axis=2) < 6).mean() < 0.2 and centre.std() > 15
    originals = list(store.list_outputs(out / "original", version="v002"))  # a column whose every chip has a
    assert originals  # 0 pixel has no file: the original scripts dropped such chips
    mtimes = {p: os.stat(p).st_mtime_ns for p in [*files, *originals]}
    assert demo.run(outputs=out, indices=[2]) == 0  # rerun: finished columns are skipped, the original set's too
    assert {p: os.stat(p).st_mtime_ns for p in [*files, *originals]} == mtimes


def test_the_original_set_of_a_rerun_keeps_the_whole_files_of_the_same_weights(tmp_path):
    """The demo's original-layout files are written in place by the original statement: a rerun keeps those
    that read whole and were embedded with its weights; a cut file is embedded again, and other weights'
    files are removed before the new weights are named."""
    folder = tmp_path / "original"
    assert demo.original_columns_done(folder, "untrained") == set()  # a first run: nothing done
    for column in (1156, 1157):
        write_original(folder, 2020, column, [286, 287, 288], np.random.default_rng(column).normal(size=(3, 8)))
    assert demo.original_columns_done(folder, "untrained") == {1156, 1157}
    cut = folder / "2020" / "worldcover_embeddings_2020_1157_v002.gpq"
    cut.write_bytes(cut.read_bytes()[:-100])  # a run killed while the statement wrote it
    assert demo.original_columns_done(folder, "untrained") == {1156}
    assert demo.original_columns_done(folder, "clay-v0.1\nClay_v0.1.ckpt") == set()  # other weights
    assert list(store.list_outputs(folder, version="v002")) == []  # their files are gone
    assert demo.original_columns_done(folder, "untrained") == set()


def test_a_demo_rerun_with_other_weights_finds_the_files_to_embed_again(tmp_path):
    """The column files of the other kind of weights than the run's (an offline run's untrained files, then a
    checkpoint; or the reverse): the demo embeds their bands again instead of skipping them as done. Partial
    files are not counted (they are embedded again anyway)."""
    files = {1156: ("untrained", True), 1157: ("clay-v0.1", True), 1158: ("untrained", False)}
    for column, (weights, complete) in files.items():
        path = Path(store.output_path(tmp_path, 2020, column))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(record_only_file(2020, column, complete=complete, weights=weights))
    assert demo._of_other_weights(str(tmp_path), 2020, untrained=False) == {1156: "untrained"}
    assert demo._of_other_weights(str(tmp_path), 2020, untrained=True) == {1157: "clay-v0.1"}
    assert demo._of_other_weights(str(tmp_path), 2021, untrained=True) == {}
