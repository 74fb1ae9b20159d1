"""The Clay v1.5 encoder against the original code's output (tests/data/clay_v15), its inputs' recipe, the
published checkpoint's key names and shapes, and ``wcembed check-model``."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from wcembed.apps.cli import main
from wcembed.pipeline.clay_v15 import (
    WAVES_UM,
    ClayV15Config,
    ClayV15Encoder,
    encode_place_v15,
    encode_time_v15,
)
from wcembed.pipeline.reference import TOLERANCE, check_reference

DATA = Path(__file__).parent / "data" / "clay_v15"


@pytest.fixture(scope="module")
def case():
    return json.loads((DATA / "config.json").read_text()), load_file(DATA / "clay_v15_tiny_reference.safetensors")


def test_every_token_and_the_embedding_are_the_originals(case):
    config, tensors = case
    encoder = ClayV15Encoder(ClayV15Config.from_mapping(config["encoder"])).eval()
    state = {k[len("model.encoder.") :]: v for k, v in tensors.items() if k.startswith("model.encoder.")}
    encoder.load_state_dict(state, strict=True)
    with torch.inference_mode():
        tokens = encoder(tensors["input.pixels"], tensors["input.waves"], 10.0, tensors["input.time"],
                         tensors["input.latlon"])  # fmt: skip
    assert tokens.shape == (2, 65, 64)
    assert (tokens - tensors["output.encoded"]).abs().max() <= TOLERANCE
    assert (ClayV15Encoder.embedding(tokens) - tensors["output.embedding"]).abs().max() <= TOLERANCE
    assert not torch.allclose(tokens[0], tokens[1])  # two places, two dates: two chips


def test_the_inputs_are_made_as_the_case_made_them(case):
    config, tensors = case
    assert torch.allclose(tensors["input.waves"], torch.tensor(WAVES_UM))
    recipe = zip(config["dates_y_m_d_h"], config["places_lat_lon"], tensors["input.time"], tensors["input.latlon"],
                 strict=True)  # fmt: skip
    for (y, m, d, h), (lat, lon), time, place in recipe:
        week = datetime.date(y, m, d).isocalendar()[1]
        assert torch.allclose(torch.tensor(encode_time_v15(week, h)), time, atol=1e-7)
        assert torch.allclose(torch.tensor(encode_place_v15(lat, lon)), place, atol=1e-7)
    mean = torch.tensor(config["mean"])[None, :, None, None]
    std = torch.tensor(config["std"])[None, :, None, None]
    assert torch.allclose((tensors["input.raw"] - mean) / std, tensors["input.pixels"])


def test_the_large_encoder_has_the_published_checkpoints_keys_and_shapes():
    want = {}
    for line in (DATA / "state_dict_keys_v1.5_large.txt").read_text().splitlines():
        if line.startswith("model.encoder."):
            key, shape = line.split("\t")
            want[key[len("model.encoder.") :]] = [int(v) for v in re.findall(r"\d+", shape)]
    with torch.device("meta"):  # the shapes only: 311M parameters, no memory
        encoder = ClayV15Encoder(ClayV15Config())
    got = {k: list(v.shape) for k, v in encoder.state_dict().items()}
    assert got == want and sum(v.numel() for v in encoder.parameters()) == 311_442_944


def test_check_model_says_the_errors_and_fails_above_the_tolerance(tmp_path, capsys):
    for model, folder in (("clay-v1.5", DATA), ("clay-v0", DATA.parent / "clay_v0")):
        assert main(["check-model", model, "--reference", str(folder)]) == 0
        out = capsys.readouterr().out
        assert f"{model}: largest error" in out and "within 1e-05" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(DATA / "config.json", bad)
    tensors = load_file(DATA / "clay_v15_tiny_reference.safetensors")
    tensors["model.encoder.transformer.norm.bias"] += 1e-3  # another encoder's weights: every token off by 1e-3
    save_file(tensors, bad / "case.safetensors")
    check = check_reference("clay-v1.5", bad)
    assert not check.passed and check.embedding_error > TOLERANCE and "ABOVE" in str(check)
    done = subprocess.run([sys.executable, "-m", "wcembed", "check-model", "clay-v1.5", "--reference", str(bad)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "ABOVE 1e-05" in done.stdout
    assert main(["check-model", "clay-v0", "--reference", str(DATA)]) == 65
    assert "is not a reference case of clay-v0" in capsys.readouterr().err
