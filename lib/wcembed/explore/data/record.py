"""What an embedding set's ``files`` table records of the files ingested into it: their weights, and which
hold only part of their column (:class:`SetRecord`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wcembed.core.errors import OutputError
from wcembed.explore.data.table import connect, table_names


@dataclass(frozen=True)
class SetRecord:
    """The ``files`` table of an embedding set (:func:`~wcembed.explore.data.table.set_tables`), read when asked.

    Examples
    --------
    >>> SetRecord("outputs/lancedb", "files").weights  # doctest: +SKIP
    {'untrained'}
    """

    db: str | Path
    table: str

    def _files(self):
        """The files table as Arrow, or None where the database has none (built by other means, or older)."""
        conn = connect(self.db)
        if self.table not in table_names(conn):
            return None
        try:
            return conn.open_table(self.table).to_arrow()
        except (OSError, RuntimeError, ValueError) as exc:  # lance's errors for damaged data
            why = str(exc).split(", /rustc")[0]  # lance appends the Rust source locations
            raise OutputError(f"the files table of {self.db} cannot be read (damaged?): {why}") from None

    @property
    def weights(self) -> set[str]:
        """The weights the ingested files were embedded with (``embedding.weights``: ``clay-v0.1``, ``untrained``),
        or ``{"unknown"}`` without a files table."""
        files = self._files()
        if files is None:
            return {"unknown"}
        return set(files["weights"].to_pylist()) if "weights" in files.column_names else set()

    @property
    def partial_files(self) -> list[str]:
        """Ingested files that hold only part of their column (embedded with ``max_rows``)."""
        files = self._files()
        if files is None or "complete" not in files.column_names:
            return []
        return [p for p, ok in zip(files["path"].to_pylist(), files["complete"].to_pylist(), strict=True) if not ok]
