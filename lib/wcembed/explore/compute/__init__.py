"""Computation on embeddings: whole-region layers, classifiers, comparisons, explanations. No state, no
widgets; reads through :mod:`wcembed.explore.data`.

========== ==================================================================
layers     a value per chip as a raster on the chip grid (``ChipRaster``)
vectors    a year's vectors in memory: similarity, colours, change (``YearVectors``)
classify   labels, a spatially cross-validated classifier, scores
compare    two embedding sets compared chip by chip (``agreement``, ``summary``)
explain    where in a chip a match is (the encoder's patch tokens)
========== ==================================================================
"""
