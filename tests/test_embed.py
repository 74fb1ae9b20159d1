"""One column end to end: GeoParquet output, determinism, resumability, S3, notebooks."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import geoparquet_validator as gpv
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from builders import check_emb_item, dead_pid, mosaic_chip, run_papermill, tiny_model
from wcembed.core import store
from wcembed.core.errors import BadColumnError, BadYearError
from wcembed.core.tileset import plan_grid
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.pipeline.embed import embed_column
from wcembed.pipeline.inference import Embedder

DATA_COLUMN = 1156  # a column of the Virginia sample with 4 chips above 50 % valid
EMPTY_COLUMN = 1150  # west of the scene: all nodata


@pytest.fixture(scope="module")
def small_model():
    return tiny_model()


@pytest.fixture(scope="module")
def grid(sample_root):
    return plan_grid(2020, sample_root)


def run(sample_root, out, model, grid, **kw):
    kw = {"batch_size": 3, "progress": False, **kw}
    return embed_column(
        2020, kw.pop("column", DATA_COLUMN), output=out, tiles=sample_root, model=model, grid=grid, **kw
    )


def test_file_is_valid_geoparquet_with_the_grid_footprints(sample_root, tmp_path, small_model, grid):
    result = run(sample_root, tmp_path, small_model, grid)
    assert result.status == "written" and result.embedded == 4 and result.chips == 24
    assert result.path == str(tmp_path / "2020/worldcover_embeddings_2020_1156_v003.gpq")
    report = gpv.check(result.path)
    assert gpv.conformant(report, "core") and gpv.conformant(report, "covering"), gpv.failed(report)
    schema = pq.read_schema(result.path)
    assert schema.field("embeddings").type == pa.list_(pa.float32(), 64)
    meta_pq = pq.ParquetFile(result.path).metadata
    assert meta_pq.num_row_groups == 1 and meta_pq.row_group(0).column(0).compression == "ZSTD"
    columns = {
        meta_pq.row_group(0).column(i).path_in_schema: meta_pq.row_group(0).column(i)
        for i in range(meta_pq.num_columns)
    }
    vectors = columns["embeddings.list.element"]  # split float bytes, no dictionary (larger than the floats)
    assert "BYTE_STREAM_SPLIT" in vectors.encodings and not vectors.has_dictionary_page
    gdf = gpd.read_parquet(result.path)
    assert list(gdf["row"]) == sorted(gdf["row"])  # one north-south strip, in row order
    assert gdf.crs.equals("OGC:CRS84") and len(gdf) == 4
    for _, chip in gdf.iterrows():
        assert chip.geometry.equals(grid.chip_polygon(chip["column"], chip["row"]))
        assert chip["chip_id"] == f"2020-{chip['column']:04d}-{chip['row']:04d}"
    record = store.read_metadata(result.path)
    meta = {"embedding": record.embedding, "wcembed": record.provenance}
    assert meta["embedding"]["checkpoint_sha256"] == "untrained"
    assert "UNTRAINED" in meta["embedding"]["model"]
    assert meta["embedding"]["dimension"] == 64 and meta["wcembed"]["chip_size_px"] == 512
    assert "ESA WorldCover project 2020" in meta["wcembed"]["attribution"]
    check = meta["wcembed"]["precision_check"]  # "auto": the decision and the figures it was made on
    assert check["decision"] == meta["wcembed"]["precision"] in ("float32", "bfloat16")
    assert "reason" in check and (check["decision"] == "float32" or check["accepted"])
    item = Path(store.stac_path(result.path))
    assert item.exists() and '"embedding:checkpoint_sha256": "untrained"' in item.read_text()
    stac = json.loads(item.read_text())  # the STAC embeddings extension's Item fields (tests/test_contract.py)
    assert check_emb_item(stac)["emb:runtime_parameters"]["chip_size_px"] == 512
    header = json.loads(pq.read_schema(result.path).metadata[b"emb"])  # its Collection fields in the file's header
    assert (header["emb:type"], header["emb:dimensions"], header["data_type"]) == ("chip", 64, "float32")
    assert header["emb:chip_layout"]["chip_size"] == [512, 512] and header["emb:temporal_resolution"] == "annual"
    links = {link["rel"]: link for link in stac["links"]}
    assert "architecture only" in links["emb:model"]["title"] and links["emb:model"]["href"].startswith("https://")
    assert links["emb:source-data"]["href"] == f"{sample_root}/rgbnir/2020/"


def test_embedding_equals_the_encoder_on_the_chip_read_directly(sample_root, tmp_path, small_model, grid):
    result = run(sample_root, tmp_path, small_model, grid, precision="float32")
    gdf, vectors = store.read_column(result.path)
    embedder = Embedder(small_model, device="cpu", precision="float32")
    for i, (_, chip) in enumerate(gdf.iterrows()):
        place = (chip["column"], chip["row"])
        pixels = mosaic_chip(sample_root, grid, place)
        valid = (pixels != 0).any(axis=0)
        direct = embedder(pixels[None], valid[None], [grid.chip_center(*place)], 2020)[0]
        np.testing.assert_allclose(vectors[i], direct, rtol=0, atol=2e-5)
        assert chip["valid_fraction"] == pytest.approx(valid.mean())


def test_two_runs_give_identical_files(sample_root, tmp_path, small_model, grid):
    a = run(sample_root, tmp_path / "a", small_model, grid)
    b = run(sample_root, tmp_path / "b", small_model, grid, workers=2)
    ta, tb = pq.read_table(a.path), pq.read_table(b.path)
    assert ta.equals(tb)  # same rows, same vectors bit for bit
    ma, mb = ({"wcembed": dict(r.provenance), "emb": r.emb_header(), "embedding": r.embedding}
              for r in (store.read_metadata(a.path), store.read_metadata(b.path)))  # fmt: skip
    for m in (ma, mb):  # the creation time, in provenance and in the STAC fields
        m["wcembed"].pop("created"), m["emb"].pop("processing:datetime")
    assert (ma["wcembed"].pop("reader_workers"), mb["wcembed"].pop("reader_workers")) == (1, 2)  # CPU default: 1
    assert ma == mb


def test_finished_column_is_skipped_unless_overwrite(sample_root, tmp_path, small_model, grid):
    first = run(sample_root, tmp_path, small_model, grid)
    mtime = os.stat(first.path).st_mtime_ns
    again = run(sample_root, tmp_path, small_model, grid)
    assert again.status == "exists" and os.stat(first.path).st_mtime_ns == mtime
    redo = run(sample_root, tmp_path, small_model, grid, overwrite=True)
    assert redo.status == "written"


def test_a_finished_column_of_other_weights_is_refused_not_mixed(sample_root, tmp_path, small_model, grid):
    """A finished file made with untrained weights and a job with a checkpoint (or the other way round) do not
    share an output folder: the job stops naming the file and both weights, before loading any checkpoint
    (this one does not exist), and the file is left as it was; with overwrite the column is embedded again. A
    job that names no weights at all finds the column done."""
    from builders import record_only_file
    from wcembed.core.errors import EXIT_BAD_INPUT, OutputError, exit_code

    first = run(sample_root, tmp_path, small_model, grid)
    mtime = os.stat(first.path).st_mtime_ns
    with pytest.raises(
        OutputError, match=r"holds embeddings of untrained weights, this job embeds with /no/clay\.ckpt"
    ):
        run(sample_root, tmp_path, small_model, grid, checkpoint="/no/clay.ckpt")
    assert os.stat(first.path).st_mtime_ns == mtime
    Path(first.path).write_bytes(record_only_file(2020, DATA_COLUMN, weights="clay-v0.1"))
    with pytest.raises(OutputError, match=r"of clay-v0\.1 weights, this job embeds with untrained weights") as info:
        run(sample_root, tmp_path, small_model, grid, allow_untrained=True)
    assert exit_code(info.value) == EXIT_BAD_INPUT
    assert run(sample_root, tmp_path, small_model, grid).status == "exists"  # no weights asked for: nothing to mix
    redo = run(sample_root, tmp_path, small_model, grid, overwrite=True)
    assert redo.status == "written" and store.read_metadata(redo.path).untrained


def test_a_partial_column_is_never_done(sample_root, tmp_path, small_model, grid):
    """``max_rows`` writes a file that says it is partial (its record and its STAC Item): a later full run
    embeds the column again, and ingest says the set is partial."""
    from wcembed.explore.compute.layers import index_note
    from wcembed.pipeline.batch import missing_columns

    part = run(sample_root, tmp_path, small_model, grid, max_rows=1)
    meta = store.read_metadata(part.path)
    assert not meta.complete and meta.provenance["rows_read"] == 1 and meta.provenance["max_rows"] == 1
    assert meta.provenance["rows_planned"] == len(grid.rows(DATA_COLUMN))
    item = json.loads(Path(store.stac_path(part.path)).read_text())
    assert item["properties"]["wcembed:complete"] is False
    assert not store.done(part.path) and DATA_COLUMN in missing_columns(grid, str(tmp_path), 2020)
    report = ingest(tmp_path, tmp_path / "db")
    assert report.partial == [part.path] and "1 partial files" in str(report)
    assert "PARTIAL: 1 column files" in index_note(ChipIndex(tmp_path / "db"))
    full = run(sample_root, tmp_path, small_model, grid)  # not skipped as done: embedded again, whole
    assert full.status == "written" and full.embedded == 4 and store.read_metadata(full.path).complete
    assert store.done(full.path) and DATA_COLUMN not in missing_columns(grid, str(tmp_path), 2020)
    assert run(sample_root, tmp_path, small_model, grid).status == "exists"
    assert ingest(tmp_path, tmp_path / "db").partial == []


def test_empty_column_writes_a_valid_zero_row_file(sample_root, tmp_path, small_model, grid):
    result = run(sample_root, tmp_path, small_model, grid, column=EMPTY_COLUMN)
    assert result.embedded == 0 and result.skipped == 24
    assert len(gpd.read_parquet(result.path)) == 0
    assert gpv.conformant(gpv.check(result.path), "core")
    assert run(sample_root, tmp_path, small_model, grid, column=EMPTY_COLUMN).status == "exists"


def test_bad_year_and_column(sample_root, tmp_path, small_model, grid):
    with pytest.raises(BadYearError):
        embed_column(2019, DATA_COLUMN, output=tmp_path, tiles=sample_root, model=small_model)
    with pytest.raises(BadColumnError):
        run(sample_root, tmp_path, small_model, grid, column=12)
    with pytest.raises(ValueError):
        run(sample_root, tmp_path, small_model, grid, min_valid_fraction=1.5)


def test_output_to_s3(sample_root, s3_endpoint, small_model, grid):
    result = run(sample_root, "s3://wc-out/emb", small_model, grid)
    assert result.path == "s3://wc-out/emb/2020/worldcover_embeddings_2020_1156_v003.gpq"
    assert store.exists(result.path) and store.exists(store.stac_path(result.path))
    gdf, vectors = store.read_column(result.path)
    assert len(gdf) == 4 and vectors.shape == (4, 64)
    assert list(store.list_outputs("s3://wc-out/emb", 2020)) == [result.path]
    assert run(sample_root, "s3://wc-out/emb", small_model, grid).status == "exists"


@pytest.mark.slow
def test_two_attempts_of_a_column_at_once_leave_one_whole_file(sample_root, tmp_path):
    """A retried Batch job while a stalled attempt still runs: both write the same column at once (its first 8
    chips: the file is written as a whole column's is)."""
    args = [sys.executable, "-m", "wcembed", "embed", "--year", "2020", "--column", "1156", "--tiles", sample_root]
    args += ["--allow-untrained", "--batch-size", "1", "--overwrite", "--max-rows", "8"]
    procs = [subprocess.Popen([*args, "--output", str(tmp_path / "both")], stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    alone = subprocess.run([*args, "--output", str(tmp_path / "alone")], capture_output=True, timeout=600)
    assert alone.returncode == 0
    name = "2020/worldcover_embeddings_2020_1156_v003.gpq"
    both, ref = pq.read_table(tmp_path / "both" / name), pq.read_table(tmp_path / "alone" / name)
    for col in ("chip_id", "embeddings", "geometry", "bbox", "valid_fraction"):
        assert both[col].equals(ref[col]), col  # one whole file, identical to a clean run's
    assert sorted(p.name for p in (tmp_path / "both/2020").iterdir() if p.is_file()) == [
        "worldcover_embeddings_2020_1156_v003.gpq",
        "worldcover_embeddings_2020_1156_v003.json",
    ]  # no temporary file left


@pytest.mark.slow
def test_killed_run_leaves_no_file_and_rerun_completes(sample_root, tmp_path):
    """A real SIGKILL in the middle of a full-size (untrained) run."""
    args = [
        sys.executable,
        "-m",
        "wcembed",
        "embed",
        "--year",
        "2020",
        "--column",
        "1157",
        "--tiles",
        sample_root,
        "--output",
        str(tmp_path),
        "--allow-untrained",
        "--batch-size",
        "1",
    ]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    progress = re.compile(r" ([1-9]|1\d|2[0-3])/24 ")  # tqdm shows 1..23 of 24 chips done: mid-column
    while not progress.search(seen) and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read(1)
    assert progress.search(seen), seen[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    final = tmp_path / "2020/worldcover_embeddings_2020_1157_v003.gpq"
    assert not final.exists()
    assert not list(tmp_path.rglob("*.gpq"))
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert final.exists() and len(gpd.read_parquet(final)) > 0


@pytest.mark.slow
def test_embed_notebook_runs_with_papermill(sample_root, tmp_path):
    params = {
        "year": 2020,
        "column": DATA_COLUMN,
        "tiles": sample_root,
        "output": tmp_path / "emb",
        "allow_untrained": True,
    }
    text = run_papermill("embed_column.ipynb", tmp_path / "embed_2020_1156.ipynb", params, cwd=tmp_path)
    path = tmp_path / "emb/2020/worldcover_embeddings_2020_1156_v003.gpq"
    gdf = gpd.read_parquet(path)
    assert len(gdf) == 4 and shapely.get_num_coordinates(gdf.geometry).tolist() == [5] * 4
    assert "chips_per_s" in text and "image/png" in text  # summary table and the PCA map
    assert store.read_metadata(str(path)).dimension == 768


def test_a_killed_writers_leftovers_go_with_the_next_write(tmp_path, sample_root):
    from wcembed.pipeline.embed import embed_column

    target = Path(store.output_path(tmp_path, 2020, 1156))
    target.parent.mkdir(parents=True)
    stale = [
        target.with_name(f".{target.name}.{dead_pid()}.0badc0de.tmp"),
        Path(store.stac_path(str(target))).with_name(f".{target.stem}.json.{dead_pid()}.0badc0de.tmp"),
    ]
    live = target.with_name(f".{target.name}.{os.getpid()}.0a11ve00.tmp")  # a writer still at work
    for p in [*stale, live]:
        p.write_bytes(b"half")
    kw = dict(output=tmp_path, tiles=sample_root, allow_untrained=True, progress=False)  # the whole column
    with pytest.warns(UserWarning):
        embed_column(2020, 1156, **kw)
    assert not any(p.exists() for p in stale) and live.exists()
    # killed between the file and its STAC Item (the Item is written second): the next run writes it
    Path(store.stac_path(str(target))).unlink()
    assert embed_column(2020, 1156, **kw).status == "exists"  # skipped: no weights loaded
    assert json.loads(Path(store.stac_path(str(target))).read_text())["id"]
