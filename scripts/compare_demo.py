"""Compare two demo output folders (``make demo`` in two checkouts): everything but creation times, timings,
the checkout's own path and random widget ids. Usage: ``python scripts/compare_demo.py A/outputs B/outputs``.

Compared: every column file's table (bit for bit) and its geo/embedding/wcembed header; the LanceDB chips
table; every output of the executed notebooks (text, and pictures by hash); the map screenshot's pixels.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import lancedb
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

a, b = Path(sys.argv[1]), Path(sys.argv[2])
bad = []
fa = sorted(p.relative_to(a) for p in (a / "embeddings").rglob("*.gpq"))
fb = sorted(p.relative_to(b) for p in (b / "embeddings").rglob("*.gpq"))
assert fa == fb, "different files"
for rel in fa:
    ta, tb = pq.read_table(a / rel), pq.read_table(b / rel)
    if not ta.replace_schema_metadata(None).equals(tb.replace_schema_metadata(None)):
        bad.append(f"table {rel}")
    ma = {k: json.loads(v) for k, v in ta.schema.metadata.items() if k != b"emb"}
    mb = {k: json.loads(v) for k, v in tb.schema.metadata.items() if k != b"emb"}
    for m, root in ((ma, a), (mb, b)):
        m[b"wcembed"].pop("created")
        m[b"wcembed"]["tiles"] = m[b"wcembed"]["tiles"].replace(str(root.resolve().parent), "ROOT")
    if ma != mb:
        bad.append(f"header {rel}")
print(bad or f"{len(fa)} column files: tables and geo/embedding/wcembed headers equal")


def chips(root):
    t = lancedb.connect(root / "lancedb").open_table("chips").to_arrow().sort_by("chip_id")
    return t


ca, cb = chips(a), chips(b)
print("lancedb chips rows", ca.num_rows, "equal:", ca.equals(cb))


def cells(nb, root):
    out = []
    text = nb.read_text().replace(str(root.resolve().parent), "ROOT")
    text = re.sub(r"map_[0-9a-f]{32}|[a-z_]+_[0-9a-f]{32}", "ID", text)  # folium's random element ids
    for c in json.loads(text)["cells"]:
        if c["cell_type"] != "code":
            continue
        for o in c.get("outputs", []):
            for k, v in sorted(o.get("data", {}).items()):
                if k.startswith("image/"):
                    out.append((k, hashlib.sha256("".join(v).encode()).hexdigest()[:12]))
                elif k == "text/plain" or k == "text/html":
                    out.append(
                        (
                            k,
                            re.sub(
                                r"\(\d+\.\d s\)|\d+\.\d+ ?s\b|0x[0-9a-f]+|model_id\":\s*\"[0-9a-f]+", "#", "".join(v)
                            ),
                        )
                    )
            if "text" in o:
                out.append(("stream", re.sub(r"\(\d+\.\d s\)|\d+\.\d+ ?s\b", "#", "".join(o["text"]))))
    return out


for nb in sorted((a / "notebooks").glob("*.ipynb")):
    xa, xb = cells(nb, a), cells(b / "notebooks" / nb.name, b)
    diff = [(i, p, q) for i, (p, q) in enumerate(zip(xa, xb, strict=False)) if p != q]
    print(
        nb.name,
        len(xa),
        "outputs;",
        "equal"
        if not diff and len(xa) == len(xb)
        else f"{len(diff)} differ: "
        + "; ".join(f"{p[0]} {str(p[1])[:80]!r} vs {str(q[1])[:80]!r}" for _, p, q in diff[:6]),
    )

pa_, pb_ = np.asarray(Image.open(a / "map.png")), np.asarray(Image.open(b / "map.png"))
print(
    "map.png equal pixels:",
    pa_.shape == pb_.shape and bool((pa_ == pb_).all()),
    "differing px:",
    int((pa_ != pb_).any(axis=-1).sum()) if pa_.shape == pb_.shape else "shape",
)
