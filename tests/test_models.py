"""The models as one concept: Clay v0 and Clay v1.5 entries, v1.5's inputs from WorldCover chips, its two
chip recipes, its checkpoint, and a column embedded with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from builders import tiny_model
from safetensors.torch import load_file
from wcembed.core import store
from wcembed.core.errors import BadParameterError, CheckpointError, OutputError
from wcembed.core.tileset import plan_grid
from wcembed.explore.data.index import ChipIndex
from wcembed.explore.data.ingest import ingest
from wcembed.pipeline.clay_v15 import WAVES_UM, ClayV15Config
from wcembed.pipeline.embed import embed_column
from wcembed.pipeline.inference import Embedder, PrecisionCheck, calibration_batch, normalize
from wcembed.pipeline.job import ColumnJob
from wcembed.pipeline.models import CLAY_V0, CLAY_V15, MODELS, get_model
from wcembed.pipeline.weights import load_model

DATA = Path(__file__).parent / "data" / "clay_v15"
TINY_V15 = ClayV15Config(dim=64, depth=2, heads=4, dim_head=16, mlp_ratio=2.0)
WORLDCOVER = [2, 1, 0, 3]  # blue, green, red, nir -> B04, B03, B02, B08 (and back: the same permutation)
DATA_COLUMN = 1156  # a column of the Virginia sample with 4 chips above 50 % valid


@pytest.fixture(scope="module")
def case():
    return json.loads((DATA / "config.json").read_text()), load_file(DATA / "clay_v15_tiny_reference.safetensors")


@pytest.fixture(scope="module")
def tiny_v15():
    with pytest.warns(UserWarning, match="UNTRAINED"):
        return load_model(None, model="clay-v1.5", config=TINY_V15, allow_untrained=True)


def test_each_model_is_one_entry_by_its_id():
    assert list(MODELS) == ["clay-v0", "clay-v1.5"] and get_model("clay-v1.5") is CLAY_V15
    assert (CLAY_V0.dimension, CLAY_V15.dimension) == (768, 1024)
    assert (CLAY_V0.recipe, CLAY_V15.recipe) == ("whole", "quarters") and CLAY_V15.check_recipe("whole") == "whole"
    with pytest.raises(BadParameterError, match="unknown model 'clay-v2'"):
        get_model("clay-v2")
    with pytest.raises(BadParameterError, match="clay-v0 has no recipe 'quarters'"):
        ColumnJob(year=2020, column=1, recipe="quarters")
    with pytest.raises(BadParameterError, match="unknown model"):
        ColumnJob.from_env({"YEAR": "2020", "MODEL": "clay-v3"})
    assert ColumnJob.from_env({"YEAR": "2020", "MODEL": "clay-v1.5"}).model == "clay-v1.5"


def test_v15_reads_worldcover_bands_by_their_wavelengths_with_the_cases_statistics(case):
    tensors = case[1]
    assert list(CLAY_V15.waves_um) == [WAVES_UM[i] for i in WORLDCOVER]
    raw = tensors["input.raw"][:, WORLDCOVER]  # the case's chips as WorldCover files hold them
    assert torch.allclose(normalize(raw, model=CLAY_V15)[:, WORLDCOVER], tensors["input.pixels"], atol=1e-6)
    time, place = CLAY_V15.inputs([37.675], [-75.62], [2020])
    week = 23  # 2020-06-01 (the composites' date) is in ISO week 23; hour 0
    want = [math.sin(week * 2 * math.pi / 52), math.cos(week * 2 * math.pi / 52), 0.0, 1.0]
    assert torch.allclose(time, torch.tensor([want])) and torch.allclose(place, tensors["input.latlon"][:1])


def test_the_quarters_recipe_averages_the_class_tokens_of_four_256_px_quarters(tiny_v15):
    encoder, x = tiny_v15.encoder, torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    meta = CLAY_V15.inputs([37.6, 38.1], [-75.6, -75.2], [2020, 2021])
    waves = torch.tensor(CLAY_V15.waves_um)
    with torch.inference_mode():
        parts = [x[..., :32, :32], x[..., :32, 32:], x[..., 32:, :32], x[..., 32:, 32:]]
        tokens = [encoder(p, waves, 10.0, *meta) for p in parts]  # each quarter alone
        whole = encoder(x, waves, 10.0, *meta)
        quarters = CLAY_V15.embed(encoder, x, meta, "quarters")
        grid = CLAY_V15.patch_grid(encoder, x, meta, "quarters")
    assert torch.allclose(quarters, torch.stack([t[:, 0] for t in tokens]).mean(0), atol=1e-5)
    assert torch.allclose(CLAY_V15.embed(encoder, x, meta, "whole"), whole[:, 0])
    assert grid.shape == (2, 8, 8, 64)  # 4 x 4 patches a quarter, put back where they lie
    assert torch.allclose(grid[:, :4, 4:], tokens[1][:, 1:].reshape(2, 4, 4, 64), atol=1e-5)
    assert torch.allclose(grid[:, 4:, :4], tokens[2][:, 1:].reshape(2, 4, 4, 64), atol=1e-5)
    assert not torch.allclose(quarters, whole[:, 0], atol=1e-3)  # two recipes, two vectors


def test_a_v15_checkpoint_loads_its_encoder_strictly_and_refuses_another_models(case, tmp_path):
    config, tensors = case
    state = {k: v for k, v in tensors.items() if k.startswith("model.encoder.")}
    others = {
        "model.decoder.w": torch.zeros(2),
        "model.teacher.blocks.0.w": torch.zeros(2),
        "model.proj.w": torch.zeros(1),
    }
    torch.save({"state_dict": state | others, "epoch": 1}, tmp_path / "v15.ckpt")
    loaded = load_model(tmp_path / "v15.ckpt", model="clay-v1.5", config=ClayV15Config.from_mapping(config["encoder"]))
    assert loaded.model is CLAY_V15 and not loaded.untrained
    with torch.inference_mode():
        out = loaded.encoder(tensors["input.pixels"], tensors["input.waves"], 10.0, tensors["input.time"],
                             tensors["input.latlon"])  # fmt: skip
    assert (out - tensors["output.encoded"]).abs().max() <= 1e-5
    with pytest.raises(CheckpointError, match=r"not a Clay v0.1 checkpoint: .* unexpected keys"):
        load_model(tmp_path / "v15.ckpt", model="clay-v0")
    v0 = {f"model.encoder.{k}": v for k, v in tiny_model().encoder.state_dict().items()}
    torch.save({"state_dict": v0}, tmp_path / "v0.ckpt")
    with pytest.raises(CheckpointError, match=r"does not match the Clay v1.5 encoder: missing .* unexpected"):
        load_model(tmp_path / "v0.ckpt", model="clay-v1.5", config=TINY_V15)
    torch.save({"state_dict": state | {"head.w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"not a Clay v1.5 checkpoint: .* unexpected keys \(head.w\)"):
        load_model(tmp_path / "other.ckpt", model="clay-v1.5", config=TINY_V15)


def test_a_column_embedded_with_v15_says_so_and_its_folder_takes_no_other_model(sample_root, tmp_path, tiny_v15):
    grid = plan_grid(2020, sample_root)
    result = embed_column(2020, DATA_COLUMN, output=tmp_path, tiles=sample_root, model=tiny_v15, grid=grid,
                          batch_size=3, progress=False)  # fmt: skip
    assert result.embedded == 4
    record = store.read_metadata(result.path)
    assert (record.model_id, record.recipe, record.dimension) == ("clay-v1.5", "quarters", 64)
    assert record.embedding["pooling"] == CLAY_V15.recipes["quarters"] and "UNTRAINED" in record.embedding["model"]
    assert record.provenance["normalisation"]["mean"] == [1552.0, 1355.0, 1105.0, 2743.0]
    assert record.provenance["waves_um"] == list(CLAY_V15.waves_um)
    item = json.loads(Path(store.stac_path(result.path)).read_text())  # the STAC Item says which model and recipe
    runtime = item["properties"]["emb:runtime_parameters"]
    assert (runtime["model_id"], runtime["recipe"]) == ("clay-v1.5", "quarters")
    with pytest.raises(OutputError, match=r"holds embeddings of clay-v1.5 \(quarters recipe\), this job embeds with "
                       r"clay-v0 \(whole recipe\)"):  # fmt: skip
        embed_column(2020, DATA_COLUMN, output=tmp_path, tiles=sample_root, grid=grid, allow_untrained=True,
                     progress=False)  # fmt: skip
    with pytest.raises(OutputError, match=r"this job embeds with clay-v1.5 \(whole recipe\)"):
        embed_column(2020, DATA_COLUMN, output=tmp_path, tiles=sample_root, model="clay-v1.5", recipe="whole",
                     grid=grid, allow_untrained=True, progress=False)  # fmt: skip
    report = ingest(tmp_path, tmp_path / "db")  # a v1.5 folder goes to a set of its own
    assert report.sets == {"wcembed-clay-v1-5": 4} and ChipIndex(tmp_path / "db", set="wcembed-clay-v1-5").dim == 64
    part = tmp_path / "part"  # a partial file of another model stops a job too (it is not embedded again)
    embed_column(2020, DATA_COLUMN, output=part, tiles=sample_root, model=tiny_v15, grid=grid, max_rows=1,
                 progress=False)  # fmt: skip
    with pytest.raises(OutputError, match=r"holds embeddings of clay-v1.5 \(quarters recipe\)"):
        embed_column(2020, DATA_COLUMN, output=part, tiles=sample_root, grid=grid, allow_untrained=True,
                     progress=False)  # fmt: skip
    again = embed_column(2020, DATA_COLUMN, output=tmp_path, tiles=sample_root, model="clay-v1.5", grid=grid,
                         allow_untrained=True, progress=False)  # fmt: skip
    assert again.status == "exists"


def test_bf16_of_v15_is_checked_against_float32_as_v0_is(tiny_v15):
    emb = Embedder(tiny_v15, device="cpu", precision="auto")
    px = torch.randint(1, 6000, (2, 4, 64, 64), generator=torch.Generator().manual_seed(1)).to(torch.int32)
    vectors = emb(px, None, [(-75.6, 37.6), (-75.2, 38.1)], 2020)
    assert vectors.shape == (2, 64) and emb.recipe == "quarters"
    assert emb.check["decision"] in ("float32", "bfloat16")
    if emb.check["decision"] == "bfloat16":  # where the CPU has bf16: the figures it was accepted on
        assert emb.check["accepted"] and emb.check["rel_l2"] <= 0.01
    x, meta = emb._inputs(px, None, [(-75.6, 37.6), (-75.2, 38.1)], 2020)  # the check itself, on any CPU
    cx, cm = calibration_batch(x, meta)
    figures = PrecisionCheck()(emb._run(cx, cm, "float32"), emb._run(cx, cm, "bfloat16"))
    assert figures["accepted"] and figures["chips"] == 4, figures


def test_a_checkpoint_is_read_mapped_not_into_memory_beside_the_model(tmp_path):
    """Only the encoder's tensors of a checkpoint are read: its other tensors (here 320 MB of a stand-in
    decoder and teacher) never come into memory (peak resident memory of a process loading it)."""
    import subprocess
    import sys

    from wcembed.pipeline.clay_v15 import ClayV15Encoder

    encoder = ClayV15Encoder(TINY_V15)
    state = {f"model.encoder.{k}": v for k, v in encoder.state_dict().items()}
    big = {f"model.teacher.blocks.{i}.w": torch.ones(10_000_000) for i in range(8)}  # 8 x 40 MB
    torch.save({"state_dict": state | big}, tmp_path / "v15.ckpt")
    code = (  # the peak resident memory of this process (VmHWM: ru_maxrss would start at the parent's)
        "import re, sys, torch\n"
        "from wcembed.pipeline.clay_v15 import ClayV15Config\n"
        "from wcembed.pipeline.weights import load_model\n"
        "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
        "before = peak()\n"
        "config = ClayV15Config(dim=64, depth=2, heads=4, dim_head=16, mlp_ratio=2.0)\n"
        "m = load_model(sys.argv[1], model='clay-v1.5', config=config)\n"
        "print(peak() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v15.ckpt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grown_mb = int(out.stdout.split()[-1]) / 1024  # KiB
    assert grown_mb < 100, f"{grown_mb:.0f} MB more at the peak: the checkpoint's other tensors were read"
