"""Storage: the LanceDB database of embedding sets, and the unit vectors kept beside it.

========== ==================================================================
table      the database's layout, embedding sets, ANN tuning
ingest     column files (ours and the original run's) into a set
index      similarity search and lookups of one set (``ChipIndex``), composed of:
places     chips as places on the set's grid (under a point, under an area, footprints)
record     what the set's files table records (weights, partial files)
version    whether the set's table is still at the version it was opened at
kept       a year's unit vectors, read once and kept as ``.npy`` files
========== ==================================================================
"""
