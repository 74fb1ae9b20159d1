"""Making embeddings, and running that at scale: read chips, encode them, write a file per (year, column).

========== ==================================================================
tiles      reading chips stitched across tiles (local, HTTP(S), S3)
bands      a band of adjacent columns read once per COG block (``BandPlan``, ``BandFeed``)
model      the Clay v0 encoder's architecture
weights    Clay weights: the record, checkpoint download and strict loading
inference  model inputs and batched, device-aware inference (``Embedder``)
job        a column (band) job's parameters, defined once (``ColumnJob``)
embed      the job: read -> embed -> hand each finished column to :mod:`wcembed.core.store`
batch      AWS Batch requests, the array job's entrypoint and a local array runner
========== ==================================================================

It imports the shared modules below it (:mod:`wcembed.core.product`, :mod:`wcembed.core.grid`,
:mod:`wcembed.core.tileset`, :mod:`wcembed.core.contract`, :mod:`wcembed.core.store`, :mod:`wcembed.core.errors`),
never :mod:`wcembed.explore`.
"""
