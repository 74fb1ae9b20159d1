"""Storage: the LanceDB database of embedding sets, and the unit vectors kept beside it.

========== ==================================================================
table      the database's layout, embedding sets, ANN tuning
ingest     column files (ours and the original run's) into a set
index      similarity search and lookups of one set (``ChipIndex``)
kept       a year's unit vectors, read once and kept as ``.npy`` files
========== ==================================================================
"""
