"""Run one column of the sample in the worker image, as an AWS Batch array index would, into a local S3 API.

Called by ``scripts/docker-local.sh`` after the image is built. The container gets the environment a
Batch job gets (``AWS_BATCH_JOB_ARRAY_INDEX``, ``YEAR``, ``OUTPUT``, ...) and writes to a moto S3 server
on loopback. The file it writes is then read back here and compared with the same column embedded
outside the container: same chips, same footprints, embeddings equal within float tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from local_servers import moto_s3  # noqa: E402 - the tests' S3 server
from wcembed.core.store import read_column, read_metadata  # noqa: E402
from wcembed.pipeline.embed import run_job  # noqa: E402
from wcembed.pipeline.job import ColumnJob  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker", default="docker")
    parser.add_argument("--image", default="wcembed:local")
    parser.add_argument("--tiles", default="outputs/sample")
    parser.add_argument("--index", type=int, default=8, help="array index (8: grid column 1156, in the sample scene)")
    parser.add_argument("--max-rows", type=int, default=None)
    args = parser.parse_args()
    tiles = Path(args.tiles).resolve()
    job = ColumnJob(year=2020, output="s3://wc-out/embeddings", tiles="/data/sample", allow_untrained=True,
                    max_rows=args.max_rows)  # fmt: skip
    column = int(dataclasses.replace(job, tiles=str(tiles)).plan_grid().columns[args.index])
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    with moto_s3(buckets=("wc-out",)) as endpoint:
        env = {**job.to_env(), **creds, "AWS_ENDPOINT_URL": endpoint, "AWS_BATCH_JOB_ARRAY_INDEX": str(args.index)}
        cmd = [args.docker, "run", "--rm", "--network", "host", "-v", f"{tiles}:/data/sample:ro"]
        for k, v in sorted(env.items()):
            cmd += ["-e", f"{k}={v}"]
        start = time.perf_counter()
        done = subprocess.run([*cmd, args.image], capture_output=True, text=True)
        took = time.perf_counter() - start
        print(f"docker run (array index {args.index} -> column {column}): exit {done.returncode} in {took:.0f} s")
        if done.returncode:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        os.environ.update(creds, AWS_ENDPOINT_URL=endpoint)
        path = f"s3://wc-out/embeddings/2020/worldcover_embeddings_2020_{column:04d}_v003.gpq"
        frame, vectors = read_column(path)
        record = read_metadata(path)
        meta = {**record.embedding, **record.provenance}
        print(f"{path}: {len(frame)} chips, vectors {vectors.shape} {vectors.dtype}, "
              f"precision {meta.get('precision')}, weights {meta.get('weights')}")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            here = dataclasses.replace(job, column=column, output=tmp, tiles=str(tiles))  # the same job, outside
            ref_frame, ref = read_column(run_job(here)[0].path)
    same_chips = list(frame["chip_id"]) == list(ref_frame["chip_id"])
    same_shapes = all(a.equals(b) for a, b in zip(frame.geometry, ref_frame.geometry, strict=True))
    diff = float(np.abs(vectors - ref).max()) if len(ref) and vectors.shape == ref.shape else float("inf")
    print(f"against the same column embedded outside the container: same chips {same_chips}, "
          f"same footprints {same_shapes}, max |difference| of the embeddings {diff:.2e}")  # fmt: skip
    return 0 if len(frame) and same_chips and same_shapes and diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
