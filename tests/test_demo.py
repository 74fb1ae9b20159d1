"""The demo pipeline, smaller (4 columns), so CI catches a broken `make demo`."""

import os

import numpy as np
import pytest
from PIL import Image
from wcembed import demo, store


@pytest.mark.slow
def test_demo_pipeline_end_to_end_and_rerun(tmp_path, capsys):
    out = tmp_path / "outputs"
    # array index 2 is the band of grid columns 1156..1159, where the sample scene has data
    assert demo.run(outputs=out, indices=[2]) == 0
    printed = capsys.readouterr().out
    assert printed.count("UNTRAINED") >= 2  # said at the start and at the end
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
    mtimes = {p: os.stat(p).st_mtime_ns for p in files}
    assert demo.run(outputs=out, indices=[2]) == 0  # rerun: finished columns are skipped
    assert {p: os.stat(p).st_mtime_ns for p in files} == mtimes
