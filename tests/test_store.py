"""The store: footers read alone, what counts as done, and the catalogue of a run's Items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import record_only_file
from wcembed.apps import cli
from wcembed.core import store
from wcembed.core.errors import OutputError


def test_a_footer_is_read_without_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f.gpq"
    body = record_only_file(2020, 1156, complete=False)
    path.write_bytes(b"\0" * 3_000_000 + body[4:])  # a large file: only its end is read
    meta = store.read_metadata(str(path))
    assert (meta.year, meta.column, meta.complete) == (2020, 1156, False)
    assert len(store.read_footer(str(path))) < store.FOOTER_GUESS
    path.write_bytes(b"not parquet")
    with pytest.raises(OutputError, match="not a Parquet file"):
        store.read_footer(str(path))
    assert not store.done(str(path)) and not store.done(str(tmp_path / "missing.gpq"))


@pytest.mark.parametrize(
    "item", [b"{}", b"[1, 2]", b'{"id": "x", "bbox": [1, 2', b'{"id": "x", "bbox": ["a", 2, 3, 4]}']
)
def test_a_corrupt_item_is_named_in_one_line(tmp_path, capsys, item):
    """``catalog`` over a folder with one damaged Item names that Item (exit 65), and writes nothing."""
    path = store.output_path(str(tmp_path), 2020, 1156)
    Path(path).parent.mkdir(parents=True)
    Path(path).write_bytes(record_only_file(2020, 1156))
    Path(store.stac_path(path)).write_bytes(item)
    assert cli.main(["catalog", str(tmp_path)]) == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and store.stac_path(path) in err
    assert not (tmp_path / "catalog.json").exists()


def test_a_good_item_is_catalogued(tmp_path):
    path = store.output_path(str(tmp_path), 2020, 1156)
    Path(path).parent.mkdir(parents=True)
    Path(path).write_bytes(record_only_file(2020, 1156))
    item = {"type": "Feature", "id": "worldcover-embeddings-2020-1156", "bbox": [-75.6, 37.6, -75.5, 37.7]}
    Path(store.stac_path(path)).write_text(json.dumps(item))
    assert store.read_item(store.stac_path(path)) == item


def test_the_contract_does_no_io_and_the_store_builds_no_content():
    """The import graph: ``contract`` (names, schema, record, STAC) imports neither ``store`` nor anything that
    moves bytes, and ``store`` (bytes in and out) does not import the grid."""
    import ast

    from wcembed import ROOT

    def imports(module: str) -> set[str]:
        tree = ast.parse((ROOT / "lib" / "wcembed" / "core" / f"{module}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        return found

    contract, store_ = imports("contract"), imports("store")
    assert not {"wcembed.core.store", "boto3", "botocore"} & contract
    assert "wcembed.core.grid" not in store_ and "wcembed.core.contract" in store_
