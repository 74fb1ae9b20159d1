"""Settle the one shared-module range of the map's JupyterLab extension that cannot be met.

jupyter-leaflet shares ``leaflet`` as a singleton and provides its own (1.9.x), but one plugin it bundles,
leaflet-ant-path (the animated ``AntPath`` layer), is consumed with the range ``=1.4.0``, which webpack's module
federation took from that plugin's own package manifest when the bundle was built. The range is never met,
so every page with a map logs "Unsatisfied version ... of shared singleton module leaflet (required =1.4.0)";
a singleton without ``strictVersion`` is used all the same, so the plugin runs on the shared leaflet anyway.

:func:`settle_leaflet_range` widens that consume entry of the installed bundle to any version, as the
bundle's other consume entries of ``leaflet`` already are; nothing else changes. It is idempotent and
refuses a bundle whose layout it does not know (so a future jupyter-leaflet is left alone, not guessed at).
``make setup`` runs it; in another environment run ``python -m wcembed.tools.labextension``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

EXTENSION = Path("share/jupyter/labextensions/jupyter-leaflet/static")
_EXACT = re.compile(r'("default","leaflet",!1,)\[4,(\d+),(\d+),(\d+)\]')
"""A consume entry of ``leaflet`` with an exact version (webpack encodes ``=X.Y.Z`` as ``[4,X,Y,Z]``)."""
_ANY = r"\1[0]"
_PROVIDED = re.compile(r'\("leaflet","(\d+\.\d+\.\d+)"')


def remote_entry(prefix: str | Path = sys.prefix) -> Path:
    """The installed jupyter-leaflet bundle's ``remoteEntry.*.js`` under the environment ``prefix``."""
    static = Path(prefix) / EXTENSION
    entries = sorted(static.glob("remoteEntry.*.js"))
    if len(entries) != 1:
        raise FileNotFoundError(f"expected one remoteEntry.*.js of jupyter-leaflet in {static}, found {len(entries)}")
    return entries[0]


def exact_leaflet_ranges(bundle: str) -> list[str]:
    """The exact versions (``"1.4.0"``) that consume entries of ``leaflet`` in ``bundle`` require."""
    return [".".join(m.groups()[1:]) for m in _EXACT.finditer(bundle)]


def provided_leaflet(bundle: str) -> str | None:
    """The version of ``leaflet`` that ``bundle`` provides to the page (``"1.9.4"``), or None."""
    found = _PROVIDED.search(bundle)
    return found.group(1) if found else None


def settle_leaflet_range(prefix: str | Path = sys.prefix) -> int:
    """Widen the installed bundle's exact ``leaflet`` consume entries to any version; the number widened
    (0 when already settled). Raises ``ValueError`` if the bundle provides no ``leaflet`` of its own."""
    path = remote_entry(prefix)
    bundle = path.read_text(encoding="utf-8")
    if provided_leaflet(bundle) is None:  # the bundle must provide leaflet itself for any range to hold
        raise ValueError(f"{path} does not provide leaflet: left as it is")
    settled, n = _EXACT.subn(_ANY, bundle)
    if n:
        tmp = path.with_suffix(".js.tmp")
        tmp.write_text(settled, encoding="utf-8")
        tmp.replace(path)
    return n


def main() -> int:
    path = remote_entry()
    n = settle_leaflet_range()
    print(f"{path}: {n} exact leaflet range(s) widened" if n else f"{path}: no exact leaflet range (settled)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
