"""Exploring embeddings: search, whole-region layers, labels and classifiers, and the map that shows them.

Four layers, each a subpackage that imports only those below it (``tests/test_layers_of_the_package.py``
checks it):

========== ==================================================================
data       storage: the LanceDB database of embedding sets, the kept unit vectors
compute    computation: region layers, classifiers, comparisons, explanations
state      the explorer's state as small observable models (``ExploreSession``)
views      the live map, the labelling panel, pictures and pages of the state
========== ==================================================================

It imports the shared facts (:mod:`wcembed.core`) and, to re-read chips for
:mod:`~wcembed.explore.compute.explain`, :mod:`wcembed.pipeline`; nothing imports it but the entry points
(:mod:`wcembed.apps`). ``Explorer`` and ``ExploreSession`` are importable from here; the widget libraries
load only when a map is made.
"""

_EXPORTS = {"Explorer": "views.view", "ExploreSession": "state.session"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib  # deferred on purpose: importing the package does not load widgets or LanceDB

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
