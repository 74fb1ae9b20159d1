"""The sample region cut into 128 px chips, embedded and labelled by NDWI: the classifier's test bed.

Used by ``tests/test_classify.py`` and ``benchmarks/bench_active.py``. The labels
come from a rule independent of the embeddings: water when the chip's mean NDWI
((green - NIR) / (green + NIR), from its pixels) is above 0. The encoder is a small
untrained one: the labelling machinery is what is tested, not Clay.
"""

from __future__ import annotations

from pathlib import Path

from builders import tiny_model
from wcembed.core.grid import Grid
from wcembed.explore.compute.classify import Labels
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.pipeline.bands import read_chips
from wcembed.pipeline.embed import embed_column

AREA = (-75.72, 37.59, -75.52, 37.75)
"""West, south, east, north (degrees) of the part of the sample scene that is cut into chips."""


def labelled_sample(sample_root: str, tmp: Path) -> tuple[ChipIndex, Labels]:
    """Embed the AREA of the sample in 128 px chips (chips at least 99 % valid) and label every chip by NDWI."""
    grid = Grid(["N37W076"], chip_size=128)
    model = tiny_model(image_size=128)
    lon0, lat0, lon1, lat1 = AREA
    for column in range(grid.chip_at(lon0, lat1)[0], grid.chip_at(lon1, lat0)[0] + 1):
        embed_column(
            2020,
            column,
            output=tmp / "emb",
            tiles=sample_root,
            model=model,
            grid=grid,
            progress=False,
            min_valid_fraction=0.99,
            batch_size=16,
        )
    ingest(tmp / "emb", tmp / "db")
    index = ChipIndex(tmp / "db")
    labels = Labels()
    rows = index.table.to_arrow().select(["chip_id", "column", "row"]).to_pylist()
    pixels = read_chips(grid, 2020, sample_root, [(r["column"], r["row"]) for r in rows]).pixels
    for r, px in zip(rows, pixels.astype(float), strict=True):
        ndwi = (px[1] - px[3]) / (px[1] + px[3])
        bounds = grid.chip_bounds(r["column"], r["row"])
        labels.add(r["chip_id"], "positive" if ndwi.mean() > 0 else "negative", year=2020, bounds=bounds)
    return index, labels
