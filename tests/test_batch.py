"""AWS Batch: requests valid against botocore's model, moto accepts them, the entrypoint, reruns."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from builders import link_locked, record_only_file
from moto import mock_aws
from wcembed import ROOT
from wcembed.core import store
from wcembed.core.errors import (
    EXIT_BAD_INPUT,
    BadColumnError,
    BadParameterError,
    TileMissingError,
    TileTransientError,
    exit_code,
)
from wcembed.core.store import read_column
from wcembed.core.tileset import plan_grid
from wcembed.pipeline.batch import (
    band_for_index,
    definition_environment,
    entrypoint,
    job_definition_request,
    missing_bands,
    missing_columns,
    submit_request,
    validate,
)
from wcembed.pipeline.job import ColumnJob


def _request(**kw):
    return submit_request(
        2020,
        1383,
        job_queue="wcembed",
        job_definition="wcembed-column",
        environment={"OUTPUT": "s3://b/emb", "TILES": "s3://esa-worldcover-s2"},
        **kw,
    )


def test_requests_pass_botocore_validation_with_stubber():
    client = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    req = _request(gpu=True)
    jd = job_definition_request("123456789012.dkr.ecr.us-east-1.amazonaws.com/wcembed:latest", gpu=True)
    with Stubber(client) as stub:
        stub.add_response("submit_job", {"jobName": req["jobName"], "jobId": "j-1"}, req)
        stub.add_response(
            "register_job_definition",
            {
                "jobDefinitionName": jd["jobDefinitionName"],
                "jobDefinitionArn": "arn:aws:batch:us-east-1:1:job-definition/wcembed-column-gpu:1",
                "revision": 1,
            },
            jd,
        )
        assert client.submit_job(**req)["jobId"] == "j-1"
        client.register_job_definition(**jd)
        stub.assert_no_pending_responses()
    assert req["arrayProperties"] == {"size": 1383}
    assert {"onStatusReason": "Host EC2*", "action": "RETRY"} in req["retryStrategy"]["evaluateOnExit"]
    assert {"type": "GPU", "value": "1"} in jd["containerProperties"]["resourceRequirements"]
    gpu_env = {e["name"]: e["value"] for e in jd["containerProperties"]["environment"]}
    assert gpu_env["DEVICE"] == "cuda" and gpu_env["OMP_NUM_THREADS"] == "8" and "WCEMBED_CACHE" in gpu_env
    cpu_jd = job_definition_request("wcembed:latest")
    assert not any(r["type"] == "GPU" for r in cpu_jd["containerProperties"]["resourceRequirements"])
    validate("RegisterJobDefinition", cpu_jd)
    validate("SubmitJob", req)
    validate("RegisterJobDefinition", jd)
    bad = {**req, "arrayProperties": {"size": "1383"}}
    with pytest.raises(ValueError, match="arrayProperties"):
        validate("SubmitJob", bad)


def test_explicit_columns_set_the_array_size_and_columns_env():
    req = _request(columns=[5, 9, 700])
    assert req["arrayProperties"] == {"size": 3}
    env = {e["name"]: e["value"] for e in req["containerOverrides"]["environment"]}
    assert env["GRID_COLUMNS"] == "5,9,700" and env["YEAR"] == "2020"
    single = _request(columns=[12])
    assert "arrayProperties" not in single  # Batch arrays need 2+ children; one column is a plain job


@mock_aws(config={"batch": {"use_docker": False}})
def test_moto_batch_accepts_the_array_submission():
    region = "us-east-1"
    ec2, iam, batch = (boto3.client(s, region_name=region) for s in ("ec2", "iam", "batch"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="wcembed", Description="x", VpcId=vpc)["GroupId"]
    role = iam.create_role(RoleName="wcembed", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = batch.create_compute_environment(
        computeEnvironmentName="wcembed-ce",
        type="MANAGED",
        serviceRole=role,
        computeResources={"type": "FARGATE", "maxvCpus": 64, "subnets": [subnet], "securityGroupIds": [sg]},
    )["computeEnvironmentArn"]
    batch.create_job_queue(
        jobQueueName="wcembed",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
    )
    jd = job_definition_request("wcembed:latest")
    arn = batch.register_job_definition(**jd)["jobDefinitionArn"]
    req = submit_request(2020, 4, job_queue="wcembed", job_definition=arn, environment={"OUTPUT": "s3://b/e"})
    job = batch.submit_job(**req)
    desc = batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
    assert desc["arrayProperties"]["size"] == 4


def test_exit_codes_separate_transient_from_bad_input():
    assert exit_code(TileTransientError("x", tile="N37W076", url="u")) == 75
    assert exit_code(TileMissingError("x")) == EXIT_BAD_INPUT
    assert exit_code(BadColumnError("x")) == EXIT_BAD_INPUT
    assert exit_code(RuntimeError("bug")) == 1

    class Executed(Exception):
        ename = "TileTransientError"

    assert exit_code(Executed()) == 75


def test_index_maps_to_the_grid_column_list(sample_root):
    env = {"YEAR": "2020", "TILES": sample_root}
    grid = plan_grid(2020, sample_root)
    template = ColumnJob.from_env(env)
    assert band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "3"}, template, grid) == grid.columns[3]
    # COLUMNS is the terminal width that shells and test runners export: never a column list
    assert band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "3", "COLUMNS": "80"}, template, grid) == grid.columns[3]
    assert (
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "1", "GRID_COLUMNS": "1160,1156"}, template, grid) == 1156
    )
    with pytest.raises(BadColumnError):
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": str(len(grid.columns))}, template, grid)
    with pytest.raises(BadColumnError):
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "0", "GRID_COLUMNS": "12"}, template, grid)


def test_index_maps_to_a_band_of_adjacent_columns(sample_root):
    """With BAND=4 index i runs the i-th band of 4 columns, aligned on multiples of 4; every column is in
    exactly one band."""
    env = {"YEAR": "2020", "TILES": sample_root, "BAND": "4"}
    grid = plan_grid(2020, sample_root)  # columns 1148..1171: 6 bands
    template = ColumnJob.from_env(env)
    starts = [band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": str(i)}, template, grid) for i in range(6)]
    assert starts == [1148, 1152, 1156, 1160, 1164, 1168]
    covered = [c for s in starts for c in ColumnJob(year=2020, column=s, band=4).columns(grid)]
    assert covered == [int(c) for c in grid.columns]
    with pytest.raises(BadColumnError, match=r"outside 0\.\.5"):
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "6"}, template, grid)
    assert (
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "1", "GRID_COLUMNS": "1148,1164"}, template, grid) == 1164
    )
    with pytest.raises(BadColumnError, match="hold no column"):
        band_for_index({**env, "AWS_BATCH_JOB_ARRAY_INDEX": "0", "GRID_COLUMNS": "1172"}, template, grid)
    # a band at the grid's edge holds the columns that exist: 1146..1149 -> 1148, 1149
    assert ColumnJob(year=2020, column=1146, band=4).columns(grid) == [1148, 1149]
    with pytest.raises(BadParameterError, match="band"):
        ColumnJob(year=2020, column=1148, band=0)


@pytest.mark.slow
def test_entrypoint_index_3_writes_the_fourth_column(sample_root, tmp_path):
    grid = plan_grid(2020, sample_root)
    env = {
        **os.environ,
        "YEAR": "2020",
        "TILES": sample_root,
        "OUTPUT": str(tmp_path),
        "ALLOW_UNTRAINED": "true",
        "AWS_BATCH_JOB_ARRAY_INDEX": "3",  # a column west of the scene: its chips are read and found empty
    }
    done = subprocess.run(
        [sys.executable, "-m", "wcembed", "batch"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    column = int(grid.columns[3])
    assert Path(store.output_path(tmp_path, 2020, column)).exists()
    assert (tmp_path / f"2020/notebooks/embed_2020_{column:04d}.ipynb").exists()
    again = subprocess.run(
        [sys.executable, "-m", "wcembed", "batch"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert again.returncode == 0 and "is done" in again.stdout  # a rerun of a finished column is a no-op
    past = subprocess.run(
        [sys.executable, "-m", "wcembed", "batch"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "AWS_BATCH_JOB_ARRAY_INDEX": str(len(grid.columns))},
    )
    assert past.returncode == EXIT_BAD_INPUT
    assert "outside" in past.stderr


@pytest.mark.slow
def test_checkpoint_download_failure_exits_75_and_the_retry_succeeds(sample_root, tmp_path):
    """A 503 storm on the checkpoint makes the job transient (Batch retries it); the retry completes it."""
    import torch
    from local_servers import RangeServer
    from wcembed.pipeline.model import ClayConfig, ClayEncoder

    serve = tmp_path / "serve"
    serve.mkdir()
    torch.manual_seed(0)
    state = {f"model.encoder.{k}": v for k, v in ClayEncoder(ClayConfig()).state_dict().items()}
    torch.save({"state_dict": state}, serve / "clay.ckpt")
    grid = plan_grid(2020, sample_root)
    with RangeServer(serve, faults=[("clay.ckpt", 503, 3)]) as srv:  # every attempt of the first job fails
        env = {
            **os.environ,
            "YEAR": "2020",
            "TILES": sample_root,
            "OUTPUT": str(tmp_path / "out"),
            "CHECKPOINT": f"{srv.url}/clay.ckpt",
            "WCEMBED_CACHE": str(tmp_path / "cache"),
            "AWS_BATCH_JOB_ARRAY_INDEX": "0",
            "MAX_ROWS": "1",
        }
        run = [sys.executable, "-m", "wcembed", "batch"]
        first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert first.returncode == 75, first.stderr[-3000:]
        assert "CheckpointDownloadError" in first.stderr
        second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert [r["status"] for r in srv.requests() if r["method"] == "GET"] == [503, 503, 503, 200]
    path = store.output_path(tmp_path / "out", 2020, int(grid.columns[0]))
    meta = store.read_metadata(path).embedding
    assert meta["weights"] == "clay-v0.1" and meta["checkpoint_sha256"] == store_sha(serve / "clay.ckpt")


def store_sha(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_entrypoint_without_environment_is_bad_input(capsys):
    assert entrypoint({"AWS_BATCH_JOB_ARRAY_INDEX": "0"}) == EXIT_BAD_INPUT
    assert "YEAR and OUTPUT" in capsys.readouterr().err


def test_resubmit_missing_submits_exactly_the_missing_columns(sample_root, s3_endpoint):
    grid = plan_grid(2020, sample_root)
    s3 = boto3.client("s3")
    present = [int(c) for c in grid.columns[::3]]
    for c in present:  # complete files; the first one partial (max_rows): resubmitted as if missing
        bucket, key = store.output_path("s3://wc-out/rerun", 2020, c)[5:].split("/", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=record_only_file(2020, c, complete=c != present[0]))
    expected = [int(c) for c in grid.columns if int(c) not in present[1:]]
    assert missing_columns(grid, "s3://wc-out/rerun", 2020) == expected
    cmd = [
        sys.executable,
        "-m",
        "wcembed",
        "resubmit-missing",
        "--year",
        "2020",
        "--tiles",
        sample_root,
        "--output",
        "s3://wc-out/rerun",
        "--dry-run",
    ]
    done = subprocess.run([*cmd, "--band", "1"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr
    req = json.loads(done.stdout)
    env = {e["name"]: e["value"] for e in req["containerOverrides"]["environment"]}
    assert [int(c) for c in env["GRID_COLUMNS"].split(",")] == expected
    assert req["arrayProperties"]["size"] == len(expected)

    # bands of 4: every band holds a missing column except none; drop the files of one band's columns only
    for c in grid.columns:
        bucket, key = store.output_path("s3://wc-out/rerun", 2020, int(c))[5:].split("/", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=record_only_file(2020, int(c)))
    for c in (1157, 1166, 1167):
        bucket, key = store.output_path("s3://wc-out/rerun", 2020, c)[5:].split("/", 1)
        s3.delete_object(Bucket=bucket, Key=key)
    assert missing_bands(grid, "s3://wc-out/rerun", 2020, 4) == [1156, 1164]
    done = subprocess.run([*cmd, "--band", "4"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr
    req = json.loads(done.stdout)
    env = {e["name"]: e["value"] for e in req["containerOverrides"]["environment"]}
    assert env["GRID_COLUMNS"] == "1156,1164" and env["BAND"] == "4" and req["arrayProperties"]["size"] == 2
    assert "2 of 6 bands" in done.stderr

    # without --band the array is cut as the job definition's jobs will run it, and what the definition
    # sets (the GPU variant's batch size) is not overridden by the command line's defaults
    done = subprocess.run([*cmd, "--gpu"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr
    env = {e["name"]: e["value"] for e in json.loads(done.stdout)["containerOverrides"]["environment"]}
    assert env["BAND"] == definition_environment(gpu=True)["BAND"] == "32" and "BATCH_SIZE" not in env
    assert env["GRID_COLUMNS"] == "1152"  # 1156, 1166 and 1167 are all in the band 1152..1183
    assert "MODEL" not in env  # the default model (clay-v0) is the job definition's; another one is sent
    done = subprocess.run([*cmd, "--model", "clay-v1.5"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr
    env = {e["name"]: e["value"] for e in json.loads(done.stdout)["containerOverrides"]["environment"]}
    assert env["MODEL"] == "clay-v1.5" and "RECIPE" not in env


def test_dockerfile_lints_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([str(hadolint), str(ROOT / "batch/Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_dockerfile_slim_install_runs_the_column_notebook(tmp_path, sample_root):
    """The Dockerfile's COPY and RUN steps, replayed here in a fresh venv (the base image's part): the
    worker lock alone installs (its distributions linked from this environment, then its ``pip install``
    run without an index: nothing missing), leaves the explore stack out, and runs embed_column.ipynb."""
    text = (ROOT / "batch/Dockerfile").read_text().replace("\\\n", " ")
    steps = [ln.split(None, 1) for ln in text.splitlines() if ln.split(None, 1)[:1] in (["COPY"], ["RUN"])]
    context, venv = tmp_path / "image", tmp_path / "venv"
    context.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env["PIP_NO_COMPILE"] = "1"  # no .pyc for a throwaway venv
    env["PIP_NO_INDEX"] = "1"  # the lock's distributions are linked in: a dependency it lacks fails the install
    assert len(link_locked(venv, ROOT / "requirements/worker.txt")) > 50
    installs = 0
    for op, arg in steps:
        if op == "COPY":
            *srcs, dst = arg.split()
            if dst.startswith("/"):
                continue  # files placed outside the work dir (the entrypoint script)
            for src in srcs:
                target = context / dst / Path(src).name if dst.endswith("/") else context / dst
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / src, target)
        elif arg.startswith("pip install"):
            cmd = arg.replace("--no-cache-dir", "")  # pip's cache of this machine is the registry's copy
            done = subprocess.run(["sh", "-c", cmd], cwd=context, env=env, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
            installs += 1
    assert installs == 2  # the lock, then the project without dependencies
    py = str(venv / "bin/python")
    explore_stack = ("lancedb", "leafmap", "sklearn", "jupyterlab")
    probe = f"import importlib.util as u; print([m for m in {explore_stack} if u.find_spec(m)])"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"
    out = tmp_path / "emb"
    cmd = [py, "-m", "papermill", "notebooks/embed_column.ipynb", str(tmp_path / "run.ipynb"), "-p", "year", "2020"]
    cmd += [
        "-p",
        "column",
        "1156",
        "-p",
        "tiles",
        sample_root,
        "-p",
        "output",
        str(out),
        "-p",
        "allow_untrained",
        "True",
    ]
    cmd += ["-p", "max_rows", "12"]
    env["WCEMBED_ROOT"] = str(context)  # as the image sets it
    done = subprocess.run(cmd, cwd=context, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame, vectors = read_column(str(out / "2020/worldcover_embeddings_2020_1156_v003.gpq"))
    assert len(frame) > 0 and vectors.shape == (len(frame), 768)
