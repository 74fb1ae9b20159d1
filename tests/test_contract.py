"""The output file's contract: the metadata record, and the STAC the field's tools look for.

The embeddings extension (geo-embeddings/embeddings-stac-specification v0.0.1, a proposal) puts fields
in scopes: :func:`check_emb_item` and :func:`check_emb_collection` check our Items and Collections
against its rules as its README and JSON schema state them (written here; its schema refers to the
STAC core schemas online, which tests cannot reach).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from builders import check_emb_collection, check_emb_item, synthetic_index
from wcembed.core import contract, store
from wcembed.core.contract import FileMetadata
from wcembed.core.errors import OutputError
from wcembed.core.grid import CONUS_ORIGIN


def vector(year: int, column: int, row: int) -> np.ndarray:
    return np.random.default_rng([year, column, row]).normal(size=8)


def test_the_record_round_trips_through_a_file_header_and_refuses_a_foreign_one(tmp_path):
    synthetic_index(tmp_path, vector, years=(2020,), columns=[1156])
    path = store.output_path(tmp_path / "emb", 2020, 1156)
    meta = store.read_metadata(path)
    assert (meta.year, meta.column, meta.dimension, meta.weights) == (2020, 1156, 8, "synthetic (test)")
    header = pq.read_schema(path).metadata
    assert json.loads(header[b"emb"])["emb:chip_layout"]["grid_id"].endswith(f"from {CONUS_ORIGIN}, EPSG:4326")
    assert FileMetadata.from_header(header) == meta
    with pytest.raises(OutputError, match="not a wcembed file header"):
        FileMetadata.from_header({b"geo": b"{}"})


def test_a_run_gets_collections_and_a_catalog_linking_its_items(tmp_path):
    synthetic_index(tmp_path, vector, columns=[1155, 1156, 1157])
    written = store.write_catalog(tmp_path / "emb")
    assert [p.rsplit("emb/", 1)[1] for p in written] == ["2020/collection.json", "2021/collection.json", "catalog.json"]
    catalog = json.loads((tmp_path / "emb" / "catalog.json").read_text())
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == [
        "./2020/collection.json", "./2021/collection.json"
    ]  # fmt: skip
    collection = json.loads((tmp_path / "emb" / "2020" / "collection.json").read_text())
    check_emb_collection(collection)
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert len(items) == 3
    boxes = []
    for href in items:
        item = json.loads((tmp_path / "emb" / "2020" / href).read_text())
        check_emb_item(item)
        links = {link["rel"]: link["href"] for link in item["links"]}
        assert item["collection"] == collection["id"] and links["collection"] == "./collection.json"
        assert (tmp_path / "emb" / "2020" / item["assets"]["embeddings"]["href"]).exists()
        boxes.append(item["bbox"])
    with pytest.raises(OutputError, match="nothing to catalogue"):
        store.write_catalog(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    b = np.array(boxes)
    assert collection["extent"]["spatial"]["bbox"][0] == [*b[:, :2].min(axis=0), *b[:, 2:].max(axis=0)]


def test_every_geoparquet_of_the_project_is_written_one_way(tmp_path):
    import geopandas as gpd
    import shapely

    gdf = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="OGC:CRS84")
    path = contract.write_geoparquet(gdf, tmp_path / "x.parquet")
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["version"] == contract.GEO_VERSION and "covering" in geo["columns"]["geometry"]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
