"""Whether an embedding set's table is still at the version it was opened at (:class:`OpenedVersion`): what an
index answers must be the database's, not that of a table since written, deleted or cleaned up."""

from __future__ import annotations

from pathlib import Path

from wcembed.core.errors import DatabaseChangedError, one_line
from wcembed.explore.data.table import remote


class OpenedVersion:
    """The version a LanceDB table of the set ``name`` of ``db`` was opened at, checked cheaply.

    Examples
    --------
    >>> opened = OpenedVersion(db, table, "wcembed")  # doctest: +SKIP
    >>> opened.check()  # DatabaseChangedError once another process wrote the table  # doctest: +SKIP
    """

    def __init__(self, db: str | Path, table, name: str) -> None:
        self.db, self.table, self.name = db, table, name
        self._seen = self._stamp()

    def check(self) -> None:
        """:class:`~wcembed.core.errors.DatabaseChangedError` when the table is no longer at the version it was
        opened at (rows written or deleted by another process, old versions cleaned up). For a local database
        it costs one ``stat`` of the table's version folder unless that folder changed."""
        stamp = self._stamp()
        if stamp is not None and stamp == self._seen:
            return
        try:
            versions = [v["version"] for v in self.table.list_versions()]
        except (OSError, RuntimeError) as exc:  # the table's folder itself is gone
            raise self._changed(f"it cannot be read ({one_line(exc, 200)})") from None
        opened = self.table.version
        if opened not in versions:
            raise self._changed(f"version {opened}, which it was opened at, was cleaned up")
        if max(versions) != opened:
            raise self._changed(f"opened at version {opened}, now at {max(versions)}")
        self._seen = stamp

    def _changed(self, what: str) -> DatabaseChangedError:
        return DatabaseChangedError(
            f"the embedding set {self.name!r} of {self.db} changed while it was open ({what}): open it again "
            "(run the notebook again from its first cell, or make a new ChipIndex)"
        )

    def _stamp(self) -> int | None:
        """When the table's version folder (``<table>.lance/_versions`` of a local database) last changed, in
        nanoseconds; None for a database in an object store (its versions are listed at each check)."""
        if remote(self.db):
            return None
        try:
            return (Path(self.db) / f"{self.table.name}.lance" / "_versions").stat().st_mtime_ns
        except OSError:
            return None
