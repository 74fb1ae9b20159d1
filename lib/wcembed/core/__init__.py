"""The shared facts and files: what both the pipeline and the explorer build on. Nothing here imports
the rest of the package.

========== ==================================================================
product    facts of ESA's product: years, versions, tile names, URLs, bands
grid       the chip grid: chips and windows (integer pixel arithmetic)
tileset    which tiles exist (ESA tile index, land outline, local folder)
contract   the output file: name, schema, metadata record, STAC
store      atomic local/S3 writes and reads of the files, a run's STAC Catalog
original   the original 2024 run's files: what they are, read as ours
checks     checked values of the public API (k, points, boxes, vectors, chip ids)
errors     the exceptions and the failure policy (transient or not, exit codes)
========== ==================================================================
"""
