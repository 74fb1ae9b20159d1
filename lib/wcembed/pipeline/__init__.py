"""Making embeddings, and running that at scale: read chips, encode them, write a file per (year, column).

========== ==================================================================
tiles      reading chips stitched across tiles (local, HTTP(S), S3)
bands      a band of adjacent columns read once per COG block (``BandPlan``, ``BandFeed``)
models     the models, one entry each: encoder, inputs, recipes, dimension, weights (``clay-v0``, ``clay-v1.5``)
model      the Clay v0 encoder's architecture
clay_v15   the Clay v1.5 encoder: bands by wavelength, the class token as embedding
reference  an encoder checked against a case the original code computed
weights    checkpoint download and strict, memory-mapped loading
inference  model inputs and batched, device-aware inference (``Embedder``)
job        a column (band) job's parameters, defined once (``ColumnJob``)
embed      the job: read -> embed -> hand each finished column to :mod:`wcembed.core.store`
batch      AWS Batch requests, the array job's entrypoint and a local array runner
original   the original 2024 run's files written, and chips embedded, as its code did
========== ==================================================================

It imports the shared facts and files (:mod:`wcembed.core`), never :mod:`wcembed.explore`.
"""
