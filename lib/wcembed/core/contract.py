"""The output file's contract, in one home: its name, schema, metadata record and the STAC that describes it.

One GeoParquet file per (year, column), ``{output}/{year}/worldcover_embeddings_{year}_{column:04d}_v003.gpq``,
one row per embedded chip:

======================= ==================================================================
column                  type
======================= ==================================================================
``chip_id``             string, ``{year}-{column:04d}-{row:04d}``
``year``                int16
``column``, ``row``     int32, grid position (:mod:`wcembed.core.grid`)
``lon``, ``lat``        float64, chip centre in degrees (EPSG:4326)
``valid_fraction``      float32, share of pixels with data (0..1)
``embeddings``          fixed_size_list<float32>[D], the model's chip vector (Clay v0: 768, the mean of its
                        patch tokens; Clay v1.5: 1024, its class token; the header says which)
``geometry``            binary, WKB polygon of the chip footprint (OGC:CRS84 lon/lat)
``bbox``                struct<xmin, ymin, xmax, ymax: double>, GeoParquet 1.1 covering
======================= ==================================================================

Header (Parquet key-value metadata), all JSON:

* ``geo``: GeoParquet 1.1.0;
* ``embedding``: what the vectors are (model, checkpoint identity, providers, licence, datetime range,
  source dataset and version, dimension, dtype);
* ``wcembed``: full provenance (normalisation, chip size, package version, creation time, precision, ...);
* ``emb``: the STAC embeddings extension's fields (Collection and Item level) and its links, as
  geoembeddings.org's files carry them, so a reader of the file alone finds them.

:class:`FileMetadata` is that header's record: the pipeline fills it
(:func:`wcembed.pipeline.embed.provenance`), :mod:`wcembed.core.store` writes it and the STAC Item beside each
file, :mod:`wcembed.explore.data.ingest` reads it back. A run's folder gets a STAC Collection per year and a
Catalog (:func:`stac_collection`, :func:`stac_catalog`, written by :func:`wcembed.core.store.write_catalog`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from wcembed.core.errors import OutputError
from wcembed.core.grid import CONUS_ORIGIN, Grid, chip_id
from wcembed.core.product import CRS, PX_PER_DEGREE

FORMAT_VERSION = "v003"
GEO_VERSION = "1.1.0"
FILE_GLOB = f"worldcover_embeddings_*_*_{FORMAT_VERSION}.gpq"
_OUTPUT_RE = re.compile(rf"worldcover_embeddings_(\d{{4}})_(\d{{4,}})_{FORMAT_VERSION}\.gpq$")
EMB_EXTENSION = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
"""The STAC embeddings extension (geo-embeddings/embeddings-stac-specification, v0.0.1, a proposal)."""
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
METERS_PER_DEGREE = 111_320
"""Metres per degree of longitude at the equator: the nominal ground size of the grid's pixels."""
FIT_FOR_USE = ["similarity_search", "retrieval", "classification", "change_detection"]


def output_path(output: str | Path, year: int, column: int) -> str:
    """Where the file of ``(year, column)`` goes under ``output`` (folder or ``s3://bucket/prefix``)."""
    return f"{str(output).rstrip('/')}/{year}/worldcover_embeddings_{year}_{column:04d}_{FORMAT_VERSION}.gpq"


def parse_output_path(path: str) -> tuple[int, int]:
    """``(year, column)`` of an output file's path (see :func:`output_path`).

    >>> parse_output_path("s3://b/e/2020/worldcover_embeddings_2020_0012_v003.gpq")
    (2020, 12)
    """
    m = _OUTPUT_RE.search(str(path))
    if not m:
        raise OutputError(f"not an output file name: {path}")
    return int(m[1]), int(m[2])


def stac_path(path: str) -> str:
    """The STAC Item that describes a GeoParquet file: same name, ``.json``."""
    return path[: -len(".gpq")] + ".json"


def collection_id(year: int) -> str:
    return f"worldcover-embeddings-{year}"


def grid_id(chip_size: int, origin: tuple[float, float] = CONUS_ORIGIN) -> str:
    """The chip grid in words: its chip size, pixel size and origin (:mod:`wcembed.core.grid`)."""
    return f"wcembed {chip_size} px chips of 1/{PX_PER_DEGREE} degree pixels from {tuple(origin)}, EPSG:4326"


# --------------------------------------------------------------------------- the metadata record


@dataclass(frozen=True)
class FileMetadata:
    """What a column file says about itself: the ``embedding`` and ``wcembed`` entries of its header.

    ``embedding`` needs at least ``dimension`` and ``weights`` (``clay-v0.1``, ``untrained``, ...);
    ``provenance`` (the ``wcembed`` entry) at least ``year``, ``column`` and ``format``. The ``emb`` entry
    is derived from them.

    >>> meta = FileMetadata({"dimension": 768, "weights": "untrained"}, {"year": 2020, "column": 12, "format": "v003"})
    >>> meta.year, meta.column, meta.untrained
    (2020, 12, True)
    """

    embedding: Mapping[str, Any]
    provenance: Mapping[str, Any]

    @property
    def year(self) -> int:
        return int(self.provenance["year"])

    @property
    def column(self) -> int:
        return int(self.provenance["column"])

    @property
    def dimension(self) -> int:
        return int(self.embedding["dimension"])

    @property
    def weights(self) -> str:
        return str(self.embedding.get("weights", ""))

    @property
    def untrained(self) -> bool:
        return self.weights == "untrained"

    @property
    def model_id(self) -> str:
        """The model the vectors are of (``clay-v0``, ``clay-v1.5``); a record that does not say is Clay v0's,
        the one model of the files written before there were two."""
        return str(self.embedding.get("model_id", "clay-v0"))

    @property
    def recipe(self) -> str | None:
        """How a chip became one vector (``whole``, ``quarters``), where the record says."""
        return self.embedding.get("recipe")

    @property
    def chip_size(self) -> int:
        return int(self.provenance.get("chip_size_px", 512))

    @property
    def complete(self) -> bool:
        """Whether the file holds its whole column under its job's rules: every chip of the column read (a
        job limited to its first rows, ``max_rows``, writes a partial file). A record that does not say is
        not complete: such a column is embedded again."""
        return self.provenance.get("complete") is True

    @classmethod
    def from_header(cls, header: Mapping[bytes, bytes] | None) -> FileMetadata:
        """The record of a file's Parquet key-value metadata; :class:`OutputError` when it is not there."""
        header = header or {}
        try:
            embedding, prov = (json.loads(header[key]) for key in (b"embedding", b"wcembed"))
            record = cls(embedding, prov)
            record.year, record.column, record.dimension  # noqa: B018 - present and numbers
        except (KeyError, ValueError, TypeError) as exc:
            raise OutputError(f"not a wcembed file header (embedding, wcembed): {exc!r}") from None
        return record

    def header(self) -> dict[bytes, bytes]:
        """The Parquet key-value entries of the record (``embedding``, ``wcembed``, ``emb``), JSON-encoded."""
        entries = {"embedding": dict(self.embedding), "wcembed": dict(self.provenance), "emb": self.emb_header()}
        return {k.encode(): json.dumps(v).encode() for k, v in entries.items()}

    # ------------------------------------------------------------------ STAC fields
    def collection_fields(self) -> dict[str, Any]:
        """The embeddings extension's Collection fields."""
        size = self.chip_size
        return {
            "emb:type": "chip",
            "emb:dimensions": self.dimension,
            "data_type": self.embedding.get("dtype", "float32"),
            "gsd": round(size * METERS_PER_DEGREE / PX_PER_DEGREE, 1),  # ground size of a chip, metres
            "emb:chip_layout": {
                "layout_type": "regular_grid",
                "chip_size": [size, size],
                "stride": [size, size],
                "grid_id": grid_id(size),
            },
            "emb:temporal_resolution": "annual",
            "emb:fit_for_use": FIT_FOR_USE,
        }

    def item_fields(self) -> dict[str, Any]:
        """The embeddings extension's Item property fields, with the Processing extension's it reuses."""
        prov = self.provenance
        runtime = ("model_id", "recipe", "precision", "device", "min_valid_fraction", "date_encoded",
                   "normalisation", "bands", "waves_um", "gsd_m", "chip_size_px")  # fmt: skip
        return {
            "wcembed:complete": self.complete,
            "wcembed:rows": {k: prov[k] for k in ("rows_planned", "rows_read", "max_rows") if k in prov},
            "emb:runtime_parameters": {k: prov[k] for k in runtime if k in prov},
            "emb:postprocessing": {"format": "text", "expression": self.embedding.get("pooling", "")},
            "emb:fit_for_use": FIT_FOR_USE,
            "processing:datetime": prov.get("created"),
            "processing:version": self.embedding.get("source_version"),
        }

    def links(self) -> list[dict[str, str]]:
        """The embeddings extension's links: the encoder and the source imagery."""
        note = ": architecture only, the weights were random" if self.untrained else ""
        model = self.embedding.get("model_url") or self.embedding.get("checkpoint") or ""
        source = f"{str(self.provenance.get('tiles', '')).rstrip('/')}/rgbnir/{self.year}/"
        title = f"{self.embedding.get('source_dataset', 'source imagery')} {self.embedding.get('source_version', '')}"
        return [
            {
                "rel": "emb:model",
                "href": model,
                "type": "application/octet-stream",
                "title": f"{self.embedding.get('model', 'encoder')}{note}",
            },
            {"rel": "emb:source-data", "href": source, "title": title.strip()},
        ]

    def emb_header(self) -> dict[str, Any]:
        """The ``emb`` header entry: the extension's schema, its Collection and Item fields, its links."""
        return {"stac_extensions": [EMB_EXTENSION], **self.collection_fields(), **self.item_fields(),
                "links": self.links()}  # fmt: skip


# --------------------------------------------------------------------------- the table


def crs_projjson() -> dict[str, Any]:
    """PROJJSON of :data:`wcembed.core.product.CRS` (OGC:CRS84: WGS 84, lon/lat axis order), the CRS of every
    geometry."""
    from pyproj import CRS as ProjCRS  # deferred: only for STAC

    return ProjCRS(CRS).to_json_dict()


def column_table(
    grid: Grid,
    year: int,
    column: int,
    chips: Sequence[tuple[int, float]],
    embeddings: np.ndarray,
    metadata: FileMetadata,
) -> pa.Table:
    """The table of one column's file: ``chips`` are ``(row, valid_fraction)`` of the embedded chips of
    ``column`` of ``grid``, in the order of the rows of ``embeddings`` (``(N, D)`` float32)."""
    rows = np.array([r for r, _ in chips], np.int32)
    return embeddings_table(
        chip_ids=[chip_id(year, column, int(r)) for r in rows],
        year=year,
        columns=np.full(len(rows), column, np.int32),
        rows=rows,
        bounds=np.array([grid.chip_bounds(column, int(r)) for r in rows]).reshape(-1, 4),
        valid_fraction=np.array([v for _, v in chips], np.float32),
        embeddings=embeddings,
        metadata=metadata,
    )


def column_extent(grid: Grid, column: int) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees of every chip of a grid column, embedded or not: the
    extent of its file's STAC Item."""
    all_rows = grid.rows(column)
    west, _, east, north = grid.chip_bounds(column, int(all_rows[0]))
    return west, grid.chip_bounds(column, int(all_rows[-1]))[1], east, north


def embeddings_table(
    *,
    chip_ids: list[str],
    year: int,
    columns: np.ndarray,
    rows: np.ndarray,
    bounds: np.ndarray,
    valid_fraction: np.ndarray,
    embeddings: np.ndarray,
    metadata: FileMetadata,
) -> pa.Table:
    """The Arrow table of one file, with its header (``geo`` and the record's entries).

    ``bounds`` is ``(N, 4)``: west, south, east, north in degrees; ``embeddings`` is ``(N, D)`` float32.
    """

    n = len(chip_ids)
    dim = metadata.dimension
    emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(n, dim)
    b = np.asarray(bounds, dtype=np.float64).reshape(n, 4)
    geoms = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
    bbox = pa.StructArray.from_arrays([pa.array(b[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"])
    table = pa.table(
        {
            "chip_id": pa.array(chip_ids, pa.string()),
            "year": pa.array(np.full(n, year, np.int16)),
            "column": pa.array(np.asarray(columns, np.int32)),
            "row": pa.array(np.asarray(rows, np.int32)),
            "lon": pa.array((b[:, 0] + b[:, 2]) / 2),
            "lat": pa.array((b[:, 1] + b[:, 3]) / 2),
            "valid_fraction": pa.array(np.asarray(valid_fraction, np.float32)),
            "embeddings": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
            "geometry": pa.array(shapely.to_wkb(geoms), pa.binary()),
            "bbox": bbox,
        }
    )
    geo_col: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"] if n else [],
        "crs": crs_projjson(),
        "orientation": "counterclockwise",
        "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if n:
        geo_col["bbox"] = [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]
    geo = {"version": GEO_VERSION, "primary_column": "geometry", "columns": {"geometry": geo_col}}
    return table.replace_schema_metadata({b"geo": json.dumps(geo).encode(), **metadata.header()})


PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    # Dictionary encoding only where values repeat: a dictionary of float embeddings (pyarrow's default
    # for every column) is larger than the raw floats. The embeddings' bytes are split by position
    # (BYTE_STREAM_SPLIT: sign and exponent bytes together), which ZSTD then compresses.
    "use_dictionary": ["year", "column"],
    "use_byte_stream_split": ["embeddings.list.element"],
}
"""How the column files are written (``benchmarks/bench_store.py`` measures it against pyarrow's defaults)."""


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialise a table as Parquet: :data:`PARQUET_OPTIONS`, statistics on, one row group per file.

    A column file holds a few hundred chips (about 1 MB), one north-south strip in row order,
    so one row group is both the natural unit of a read and spatially compact: its statistics
    (``bbox`` covering, ``lon``/``lat``) let a reader skip the whole file outside its area.
    """
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=max(len(table), 1), **PARQUET_OPTIONS)
    return buf.getvalue()


def write_geoparquet(gdf, path: str | Path) -> Path:
    """Write a GeoDataFrame the way every GeoParquet file of the project is written (other than the column
    files): GeoParquet 1.1 with a ``bbox`` covering column, ZSTD. Used for the grid, scores and detections."""
    gdf.to_parquet(path, compression="zstd", schema_version=GEO_VERSION, write_covering_bbox=True)
    return Path(path)


# --------------------------------------------------------------------------- STAC


def stac_item(path: str, n_rows: int, metadata: FileMetadata, bounds: tuple[float, ...]) -> dict:
    """The STAC Item (dict) of one column file of ``n_rows`` chips; ``bounds`` is the column's
    (west, south, east, north). It belongs to the year's Collection (:func:`stac_collection`), beside it."""
    import pystac  # deferred: only for STAC

    emb, year, column = metadata.embedding, metadata.year, metadata.column
    item = pystac.Item(
        id=f"worldcover-embeddings-{year}-{column:04d}",
        geometry=shapely.geometry.mapping(shapely.box(*bounds)),
        bbox=list(bounds),
        datetime=None,
        start_datetime=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        end_datetime=dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        properties={f"embedding:{k}": v for k, v in emb.items() if k != "datetime_range"}
        | {"wcembed:column": column, "wcembed:rows": n_rows, "wcembed:format": metadata.provenance["format"]}
        | metadata.item_fields(),
        stac_extensions=[EMB_EXTENSION, PROCESSING_EXTENSION],
        collection=collection_id(year),
    )
    item.add_asset(
        "embeddings",
        pystac.Asset(
            href=f"./{Path(path).name}",
            media_type="application/vnd.apache.parquet",
            roles=["data"],
            title="Chip embeddings (GeoParquet 1.1)",
        ),
    )
    d = _linked(item.to_dict(include_self_link=False), collection="./collection.json", parent="./collection.json",
                root="../catalog.json")  # fmt: skip
    d["links"] += metadata.links()
    return d


def stac_collection(year: int, items: Mapping[str, dict], metadata: FileMetadata) -> dict:
    """The STAC Collection of a year's column files: the embeddings extension's Collection fields (from one
    file's ``metadata``), the extent of ``items`` (file name to Item dict, the Items beside the Collection),
    a link to each and ``item_assets``."""
    import pystac  # deferred: only for STAC

    boxes = np.array([it["bbox"] for it in items.values()], float).reshape(-1, 4)
    bbox = [*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)] if len(boxes) else [-180.0, -90.0, 180.0, 90.0]
    emb = metadata.embedding
    untrained = " UNTRAINED weights: not Clay embeddings." if metadata.untrained else ""
    collection = pystac.Collection(
        id=collection_id(year),
        title=f"Clay v0 embeddings of ESA WorldCover {year} (512 px chips)",
        description=f"{emb.get('model', 'encoder')} embeddings of the {emb.get('source_dataset', 'imagery')} "
        f"{year}, one GeoParquet file per grid column.{untrained}",
        extent=pystac.Extent(
            pystac.SpatialExtent([[float(v) for v in bbox]]),
            pystac.TemporalExtent(
                [[dt.datetime(year, 1, 1, tzinfo=dt.UTC), dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC)]]
            ),
        ),
        license="CC-BY-4.0",
        stac_extensions=[EMB_EXTENSION],
        extra_fields=metadata.collection_fields()
        | {"item_assets": {"embeddings": {"type": "application/vnd.apache.parquet", "roles": ["data"]}}},
    )
    d = _linked(collection.to_dict(include_self_link=False), root="../catalog.json", parent="../catalog.json")
    d["links"] += metadata.links()
    d["links"] += [{"rel": "item", "href": f"./{name}", "type": "application/geo+json"} for name in items]
    return d


def stac_catalog(years: Sequence[int]) -> dict:
    """The STAC Catalog of a run's folder: a child link to each year's Collection."""
    import pystac  # deferred: only for STAC

    catalog = pystac.Catalog(id="worldcover-embeddings", description="Clay v0 embeddings of ESA WorldCover, by year")
    d = _linked(catalog.to_dict(include_self_link=False), root="./catalog.json")
    d["links"] += [{"rel": "child", "href": f"./{year}/collection.json", "type": "application/json"} for year in years]
    return d


def _linked(stac: dict, **links: str) -> dict:
    """A STAC object's dict with relative links added (``rel=href``): the files are moved as a folder."""
    stac["links"] += [{"rel": rel, "href": href, "type": "application/json"} for rel, href in links.items()]
    return stac
