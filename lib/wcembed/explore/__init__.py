"""Exploring embeddings: search, whole-region layers, labels and classifiers, and the map that shows them.

========== ==================================================================
index      LanceDB ingest and similarity search (``ChipIndex``)
layers     whole-region layers: a value per chip as a raster on the chip grid
classify   labels, a spatially cross-validated classifier, scores
explain    where in a chip a match is (the encoder's patch tokens)
session    the explorer's state as one observable model, no widgets (``ExploreSession``)
labelling  the labelling loop's state, part of a session (``LabelLoop``)
view       the live leafmap map, a binding of a session (``Explorer``)
panel      the labelling panel, a binding of the loop (``LabelPanel``)
figures    static pictures of the map and the gallery
pages      the map as a standalone page, and headless-Chromium screenshots
styles     how results and labels look on a map (styled GeoJSON)
wms        WMS client (OWSLib) and the local MapServer for offline use
========== ==================================================================

It imports the shared modules and, to re-read chips for :mod:`~wcembed.explore.explain`,
:mod:`wcembed.pipeline`; nothing imports it but the entry points (:mod:`wcembed.cli`, :mod:`wcembed.demo`).
``Explorer`` and ``ExploreSession`` are importable from here; the widget libraries load only when a map
is made.
"""

_EXPORTS = {"Explorer": "view", "ExploreSession": "session"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
