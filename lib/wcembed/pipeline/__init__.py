"""Making embeddings, and running that at scale: read chips, encode them, write a file per (year, column).

========== ==================================================================
tiles      reading chips stitched across tiles (local, HTTP(S), S3)
bands      a band of adjacent columns read once per COG block (``BandPlan``, ``BandFeed``)
model      the Clay v0 encoder's architecture
weights    Clay weights: the record, checkpoint download and strict loading
inference  model inputs and batched, device-aware inference (``Embedder``)
job        a column (band) job's parameters, defined once (``ColumnJob``)
embed      the job: read -> embed -> hand each finished column to :mod:`wcembed.store`
batch      AWS Batch requests, the array job's entrypoint and a local array runner
========== ==================================================================

It imports the shared modules below it (:mod:`wcembed.product`, :mod:`wcembed.grid`,
:mod:`wcembed.tileset`, :mod:`wcembed.contract`, :mod:`wcembed.store`, :mod:`wcembed.errors`),
never :mod:`wcembed.explore`.
"""
