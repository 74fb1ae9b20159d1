"""Pictures and maps of embeddings: PCA colouring, the leafmap explorer."""

from __future__ import annotations

import numpy as np


def first_principal_component(vectors: np.ndarray) -> np.ndarray:
    """Projection of each row of ``vectors`` on their first principal component (0 for fewer than 2 rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[0]


def read_embeddings(path: str):
    """A GeoParquet file of embeddings as a GeoDataFrame plus its ``(N, D)`` float32 matrix."""
    import io

    import geopandas as gpd
    import pyarrow.parquet as pq

    from wcembed.store import read_bytes

    data = read_bytes(path)
    emb = pq.read_table(io.BytesIO(data), columns=["embeddings"])["embeddings"].combine_chunks()
    dim = emb.type.list_size
    vectors = emb.flatten().to_numpy(zero_copy_only=False).reshape(len(emb), dim)
    names = [n for n in pq.read_schema(io.BytesIO(data)).names if n not in ("embeddings", "bbox")]
    return gpd.read_parquet(io.BytesIO(data), columns=names), vectors


def pca_map(path: str, ax=None):
    """Plot a column file's chips coloured by the first principal component of their embeddings."""
    import matplotlib.pyplot as plt

    gdf, vectors = read_embeddings(path)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 6))
    if len(gdf) == 0:
        ax.set_title("no chip above the valid threshold")
        return ax
    gdf["pc1"] = first_principal_component(vectors)
    gdf.plot(column="pc1", cmap="viridis", edgecolor="white", linewidth=0.3, legend=True, ax=ax)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"{len(gdf)} chips, first principal component")
    return ax
