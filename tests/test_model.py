"""The Clay v0 encoder against the original implementation's reference case."""

import email.utils
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from wcembed.core.errors import CheckpointError, UntrainedWeightsError
from wcembed.pipeline.inference import Embedder, encode_latlon, encode_time, normalize
from wcembed.pipeline.model import ClayConfig, ClayEncoder
from wcembed.pipeline.models import CLAY_V0
from wcembed.pipeline.weights import load_model

MEAN, STD = CLAY_V0.mean, CLAY_V0.std

DATA = Path(__file__).parent / "data" / "clay_v0"


@pytest.fixture(scope="module")
def reference():
    return load_file(DATA / "clay_v0_tiny_reference.safetensors")


def tiny_config() -> ClayConfig:
    cfg = json.loads((DATA / "config.json").read_text())["encoder_config"]
    return ClayConfig(
        dim=cfg["dim"],
        depth=cfg["depth"],
        heads=cfg["heads"],
        dim_head=cfg["dim_head"],
        mlp_ratio=cfg["mlp_ratio"],
        image_size=cfg["image_size"],
        patch_size=cfg["patch_size"],
        band_groups=(("rgb", 3), ("nir", 1)),  # the original was built with two groups: nir gets row 1 here
        inputs=(("rgb", (0, 1, 2)), ("nir", (3,))),
    )


def test_tiny_reference_is_reproduced(reference):
    torch.set_float32_matmul_precision("highest")
    enc = ClayEncoder(tiny_config())
    state = {k[len("model.encoder.") :]: v for k, v in reference.items() if k.startswith("model.encoder.")}
    enc.load_state_dict(state, strict=True)
    enc.eval()
    torch.testing.assert_close(enc.pos_encoding, reference["aux.encoder.pos_encoding"], rtol=0, atol=0)
    torch.testing.assert_close(enc.band_encoding, reference["aux.encoder.band_encoding"], rtol=0, atol=0)
    with torch.inference_mode():
        encoded = enc(reference["input.pixels"], reference["input.latlon"], reference["input.time"])
        emb = ClayEncoder.embedding(encoded)
    assert encoded.shape == (2, 34, 64)
    assert (encoded - reference["output.encoded"]).abs().max() < 1e-4
    assert (emb - reference["output.embedding"]).abs().max() < 1e-4
    np.testing.assert_allclose(emb[0, :4].numpy(), [0.1677247, 0.5493840, -0.1878305, -1.0976130], atol=1e-4)


def test_reference_latlon_and_time_encodings(reference):
    latlon = encode_latlon([40.5, 30.1], [-105.2, -90.3])
    torch.testing.assert_close(latlon, reference["input.latlon"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        latlon.double().numpy(),
        [[0.6494480483301837, -2.876302607286655], [0.5015107371594574, -3.1363566658338105]],
        atol=1e-6,
    )
    # chip 0: 2020-06-01; the composites' date convention
    np.testing.assert_allclose(encode_time(2020)[0].numpy(), [-1.22173048, -1.28519699, 1.57079633], atol=1e-6)
    np.testing.assert_allclose(encode_time(2021)[0].numpy(), [-1.57079633, -1.28519699, 1.57079633], atol=1e-6)
    torch.testing.assert_close(encode_time([2021], month=11, day=25), reference["input.time"][1:], rtol=0, atol=1e-6)


def test_hand_computed_latlon_for_a_chip():
    lat, lon = 37.6746666, -75.6373333
    got = encode_latlon(lat, lon)[0].double()
    want = [math.sin(math.radians(lat)), math.atan2(math.cos(math.radians(lon)), math.sin(math.radians(lon)))]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-7)
    assert want[1] == pytest.approx(math.pi / 2 - math.radians(lon))  # = 2.8909..., no wrap at this longitude


def test_normalisation_puts_red_and_blue_statistics_on_the_right_bands():
    # file order B04 (red), B03, B02 (blue), B08: Clay's red mean 1741.10, blue 1369.03
    pixels = torch.tensor([1741.10, 1597.68, 1369.03, 2858.43]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    assert normalize(pixels).abs().max() < 1e-3
    one_std = torch.tensor([MEAN[i] + STD[i] for i in range(4)]).view(1, 4, 1, 1)
    np.testing.assert_allclose(normalize(one_std).flatten().numpy(), [1, 1, 1, 1], atol=1e-4)
    assert MEAN[0] == 1741.10 and STD[0] == 2146.35  # red
    assert MEAN[2] == 1369.03 and STD[2] == 2026.96  # blue
    valid = torch.tensor([[[True, False], [True, True]]])
    x = normalize(torch.full((1, 4, 2, 2), 5000, dtype=torch.int32), valid)
    assert (x[0, :, 0, 1] == 0).all() and (x[0, :, 0, 0] > 0).all()


def _full_size_keys():
    keys, section = [], None
    for line in (DATA / "state_dict_keys_v0.1_full_size.txt").read_text().splitlines():
        if line.startswith("# A)"):
            section = "A"
        elif line.startswith("# B)"):
            section = "B"
        elif section == "A" and line.startswith("model.encoder."):
            name, shape, _ = line.split("\t")
            keys.append(
                (
                    name[len("model.encoder.") :],
                    tuple(json.loads(shape.replace("(", "[").replace(")", "]").replace(",]", "]"))),
                )
            )
    return keys


def test_full_size_state_dict_equals_the_v01_key_list():
    expected = _full_size_keys()
    assert len(expected) == 162
    enc = ClayEncoder(ClayConfig())
    got = [(k, tuple(v.shape)) for k, v in enc.state_dict().items()]
    assert got == expected  # same keys, shapes and order
    assert sum(v.numel() for v in enc.state_dict().values()) == 95_271_168
    assert enc.input_rows == [0, 2]  # rgb row 0, nir row 2 among the six groups


def _write_lightning_checkpoint(path, enc_state, extra=None, drop=None, reshape=None):
    state = {f"model.encoder.{k}": v for k, v in enc_state.items() if k != drop}
    if reshape:
        state[f"model.encoder.{reshape}"] = torch.zeros(3)
    state["model.decoder.mask_patch"] = torch.zeros(512)
    state["model.decoder.enc_to_dec.weight"] = torch.zeros(512, 768)
    state.update(extra or {})
    torch.save({"state_dict": state, "epoch": 24, "global_step": 1, "hyper_parameters": {"lr": 1e-4}}, path)


@pytest.fixture(scope="module")
def full_state():
    torch.manual_seed(3)
    return ClayEncoder(ClayConfig()).state_dict()


@pytest.fixture(scope="module")
def served_checkpoint(tmp_path_factory, full_state) -> tuple[Path, str]:
    """One full-size Lightning checkpoint (365 MB) in a folder to serve, and its sha256; tests only read it."""
    from wcembed.pipeline.weights import sha256_file

    ckpt = tmp_path_factory.mktemp("serve") / "Clay_v0.1_epoch-24_val-loss-0.46.ckpt"
    _write_lightning_checkpoint(ckpt, full_state)
    return ckpt, sha256_file(ckpt)


def test_lightning_checkpoint_loads_strictly(tmp_path, full_state, served_checkpoint):
    ckpt, _ = served_checkpoint
    loaded = load_model(ckpt, cache_dir=tmp_path)
    assert not loaded.untrained and len(loaded.sha256) == 64
    for k, v in loaded.encoder.state_dict().items():
        assert torch.equal(v, full_state[k])


@pytest.mark.parametrize(
    "kind,match",
    [
        ("missing", "missing \\(1\\): transformer.layers.3.0.to_qkv.weight"),
        ("shape", "wrong shape \\(1\\): latlon_embedding.bias"),
        ("foreign", "unexpected keys"),
    ],
)
def test_bad_checkpoints_fail_clearly(tmp_path, full_state, kind, match):
    ckpt = tmp_path / "bad.ckpt"
    if kind == "missing":
        _write_lightning_checkpoint(ckpt, full_state, drop="transformer.layers.3.0.to_qkv.weight")
    elif kind == "shape":
        _write_lightning_checkpoint(ckpt, full_state, reshape="latlon_embedding.bias")
    else:
        torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(3)}}, ckpt)
    with pytest.raises(CheckpointError, match=match):
        load_model(ckpt)


def test_truncated_and_unreadable_checkpoints(tmp_path, served_checkpoint):
    ckpt, _ = served_checkpoint
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(cut)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.ckpt")
    # a pickle that needs code execution is refused (weights_only=True)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _Obj()}, evil)
    with pytest.raises(CheckpointError):
        load_model(evil)


class _Obj:
    pass


def test_untrained_needs_an_explicit_flag():
    with pytest.raises(UntrainedWeightsError):
        load_model(None)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        m = load_model(
            None, config=ClayConfig(dim=64, depth=1, heads=4, dim_head=16, image_size=64), allow_untrained=True
        )
    assert m.untrained and m.sha256 == "untrained"


def test_embedder_batches_agree_with_single_chips():
    cfg = ClayConfig(dim=64, depth=2, heads=4, dim_head=16, image_size=128)
    with pytest.warns(UserWarning):
        emb = Embedder(load_model(None, config=cfg, allow_untrained=True), device="cpu", precision="float32")
    rng = np.random.default_rng(0)
    px = rng.integers(1, 6000, size=(3, 4, 128, 128)).astype(np.uint16)
    valid = np.ones((3, 128, 128), bool)
    places = [(-75.5, 37.1), (-75.6, 37.2), (-75.7, 37.3)]  # (lon, lat), as the grid gives them
    batch = emb(px, valid, places, 2020)
    assert batch.shape == (3, 64) and batch.dtype == np.float32
    for i in range(3):
        one = emb(px[i : i + 1], valid[i : i + 1], places[i : i + 1], 2020)
        np.testing.assert_allclose(one[0], batch[i], atol=1e-5)
    assert not emb.encoder.training


def test_checkpoint_from_http_and_s3_is_downloaded_once_and_cached(tmp_path, served_checkpoint, s3_endpoint):
    import boto3
    from local_servers import RangeServer

    ckpt, want = served_checkpoint
    cache = tmp_path / "cache"
    with RangeServer(ckpt.parent) as srv:
        url = f"{srv.url}/{ckpt.name}"
        first = load_model(url, cache_dir=cache)
        second = load_model(url, cache_dir=cache)
        gets = [r for r in srv.requests() if r["method"] == "GET"]
    assert first.sha256 == second.sha256 == want and len(gets) == 1  # the second load used the cache
    cached = cache / "checkpoints" / ckpt.name
    assert cached.exists() and (cache / "checkpoints" / f"{ckpt.name}.sha256").read_text().strip() == want
    boto3.client("s3").upload_file(str(ckpt), "wc-out", "models/v0.ckpt")
    from_s3 = load_model("s3://wc-out/models/v0.ckpt", cache_dir=tmp_path / "cache2")
    assert from_s3.sha256 == want
    with pytest.raises(CheckpointError, match="cannot download"):
        load_model("s3://wc-out/models/missing.ckpt", cache_dir=tmp_path / "cache3")
    assert not list((tmp_path / "cache3" / "checkpoints").glob("*"))  # nothing half-written left behind


def test_checkpoint_download_retries_network_failures_and_gives_up_transiently(tmp_path, served_checkpoint):
    from local_servers import RangeServer
    from wcembed.core.errors import CheckpointDownloadError, TransientError
    from wcembed.pipeline.weights import fetch_checkpoint

    ckpt, _ = served_checkpoint
    src, name = ckpt.parent, ckpt.name
    with RangeServer(src, faults=[(name, 503, 1)]) as srv:  # one 503, then the file
        got = fetch_checkpoint(f"{srv.url}/{name}", tmp_path / "c1", backoff=0.1)
        assert got.read_bytes() == ckpt.read_bytes()
        assert [r["status"] for r in srv.requests() if r["method"] == "GET"] == [503, 200]
    with RangeServer(src, faults=[(name, 503, 10)]) as srv:
        with pytest.raises(CheckpointDownloadError, match="after 3 attempts") as info:
            fetch_checkpoint(f"{srv.url}/{name}", tmp_path / "c2", backoff=0.1)
        assert isinstance(info.value, TransientError)
        with pytest.raises(CheckpointError, match="404"):  # a wrong URL is bad input, not retried
            fetch_checkpoint(f"{srv.url}/nope.ckpt", tmp_path / "c2", backoff=0.1)
    assert not list((tmp_path / "c2" / "checkpoints").glob("*"))  # no partial file left to be used
    with pytest.raises(CheckpointError, match="sha256"):
        fetch_checkpoint(f"file://{ckpt}", tmp_path / "c3", sha256="0" * 64)
    assert not list((tmp_path / "c3" / "checkpoints").glob("*"))


def _precision_case(dim: int = 128):
    """A random encoder, 4 chips of one batch, and its float32 embeddings."""
    cfg = ClayConfig(dim=dim, depth=2, heads=4, dim_head=32, image_size=128)
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        model = load_model(None, config=cfg, allow_untrained=True)
    px = torch.from_numpy(np.random.default_rng(0).integers(1, 6000, size=(4, 4, 128, 128)).astype(np.int32))
    inputs = normalize(px), (encode_latlon([37.1] * 4, [-75.5] * 4), encode_time([2020] * 4))
    emb = Embedder(model, device="cpu", precision="float32")
    return model, inputs, emb._run(*inputs, "float32")


def test_precision_check_accepts_bf16_and_rejects_a_worse_approximation():
    import copy

    from wcembed.pipeline.inference import PrecisionCheck

    model, inputs, reference = _precision_case()
    check = PrecisionCheck()
    bf16 = check(reference, Embedder(model, device="cpu", precision="bfloat16")._run(*inputs, "bfloat16"))
    assert bf16["accepted"] and bf16["rel_l2"] < 0.01 and bf16["centred_cosine"] > 0.99
    fp8 = copy.deepcopy(model.encoder)  # a worse approximation: the weights rounded to 8-bit floats
    with torch.no_grad():
        for p in fp8.parameters():
            p.copy_(p.to(torch.float8_e4m3fn).float())
    with torch.inference_mode():
        worse = check(reference, ClayEncoder.embedding(fp8(inputs[0], *inputs[1])))
    assert not worse["accepted"] and worse["rel_l2"] > check.max_rel_l2
    assert worse["cosine"] > 0.999  # the raw cosine would have let it through


def test_auto_precision_is_decided_by_the_check_and_recorded():
    from wcembed.pipeline.inference import PrecisionCheck

    model = _precision_case()[0]
    rng = np.random.default_rng(1)
    px = rng.integers(1, 6000, size=(1, 4, 128, 128)).astype(np.uint16)  # one chip: rotations complete the check
    args = (px, np.ones((1, 128, 128), bool), [(-75.5, 37.1)], 2020)
    auto = Embedder(model, device="cpu")
    auto(*args)
    strict = Embedder(model, device="cpu", check=PrecisionCheck(max_rel_l2=0.0, min_centred_cosine=1.0))
    strict(*args)
    assert strict.precision == "float32" and strict.check["decision"] == "float32"
    if auto.bf16_support() is None:  # a CPU without bf16 instructions: float32, said why
        assert auto.precision == "float32" and "no bf16" in auto.check["reason"]
    else:
        assert auto.precision == "bfloat16" and auto.check["accepted"] and auto.check["chips"] == 4
        assert not strict.check["accepted"] and strict.check["reason"].startswith("cpu: ")
    assert Embedder(model, device="cpu", precision="float32").check == {"decision": "given"}


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path):
    from wcembed.pipeline.inference import cpu_bf16_flags

    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_bf16_flags(info) == ["avx512_bf16"]
    info.write_text("flags\t\t: fpu sse avx2 avx512f amx_tile amx_bf16 avx512_bf16\n")
    assert cpu_bf16_flags(info) == ["amx_bf16", "avx512_bf16"]
    info.write_text("Features\t: fp asimd sve bf16 i8mm\n")  # aarch64 (Graviton 3)
    assert cpu_bf16_flags(info) == ["bf16"]
    info.write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_bf16_flags(info) == [] and cpu_bf16_flags(tmp_path / "missing") == []


def test_checkpoint_download_cut_short_is_retried_and_a_bad_cached_file_replaced(tmp_path, served_checkpoint):
    from local_servers import RangeServer
    from wcembed.pipeline.weights import fetch_checkpoint

    ckpt, want = served_checkpoint
    src, name = ckpt.parent, ckpt.name
    with RangeServer(src, faults=[(name, "cut", 1), (name, "reset", 1)]) as srv:
        got = fetch_checkpoint(f"{srv.url}/{name}", tmp_path / "c", sha256=want, backoff=0.1)
        assert got.read_bytes() == ckpt.read_bytes()
        gets = [r for r in srv.requests() if r["method"] == "GET"]
        assert [r["status"] for r in gets] == ["cut", "reset", 206]  # half a body, a reset, then the rest
        half = gets[0]["bytes"]
        assert gets[2]["range"] == f"bytes={half}-" and gets[2]["bytes"] == ckpt.stat().st_size - half  # resumed
        assert not list(got.parent.glob("*.part*"))
        got.write_bytes(b"not the checkpoint")  # a damaged cache file, its sha256 record lost
        got.with_name(got.name + ".sha256").unlink()
        again = fetch_checkpoint(f"{srv.url}/{name}", tmp_path / "c", sha256=want)
        assert again.read_bytes() == ckpt.read_bytes()  # checked, found wrong, downloaded again
        assert [r["status"] for r in srv.requests() if r["method"] == "GET"][3:] == [200]  # whole, from the start


def test_a_download_a_killed_process_left_is_resumed_and_a_changed_file_fetched_whole(tmp_path, served_checkpoint):
    from local_servers import RangeServer
    from wcembed.pipeline.weights import fetch_checkpoint

    ckpt, want = served_checkpoint
    data, cache = ckpt.read_bytes(), tmp_path / "c" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / f"{ckpt.name}.part").write_bytes(data[:1000])  # what a killed download left
    (cache / f"{ckpt.name}.part.validator").write_text("")  # its server gave no validator
    with RangeServer(ckpt.parent) as srv:
        got = fetch_checkpoint(f"{srv.url}/{ckpt.name}", tmp_path / "c", sha256=want)
        assert got.read_bytes() == data
        (get,) = [r for r in srv.requests() if r["method"] == "GET"]
        assert (get["range"], get["status"], get["bytes"]) == ("bytes=1000-", 206, len(data) - 1000)
        stamp = email.utils.formatdate(ckpt.stat().st_mtime - 3600, usegmt=True)  # the file has changed since
        (cache / f"{ckpt.name}.part").write_bytes(b"x" * 1000)
        (cache / f"{ckpt.name}.part.validator").write_text(stamp)
        got.unlink()
        assert fetch_checkpoint(f"{srv.url}/{ckpt.name}", tmp_path / "c", sha256=want).read_bytes() == data
        assert [r["status"] for r in srv.requests() if r["method"] == "GET"][1:] == [200]  # fetched whole


def test_parallel_processes_share_one_download(tmp_path, served_checkpoint):
    import subprocess
    import sys

    from local_servers import RangeServer
    from wcembed.pipeline.weights import sha256_file

    ckpt, want = served_checkpoint
    src, name = ckpt.parent, ckpt.name
    code = (
        "import sys; from wcembed.pipeline.weights import fetch_checkpoint; "
        "print(fetch_checkpoint(*sys.argv[1:3], sha256=sys.argv[3]))"
    )
    with RangeServer(src, faults=[(name, "delay:1.5", 1)]) as srv:  # the first download is slow
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, f"{srv.url}/{name}", str(tmp_path / "cache"), want],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=120)[0].strip() for p in procs]
        gets = [r for r in srv.requests() if r["method"] == "GET"]
    assert all(p.returncode == 0 for p in procs) and len(set(outs)) == 1
    # one process downloaded (its request delayed, then answered); the others waited for the lock and used its file
    assert [g["status"] for g in gets] == ["delay", 200]
    cached = Path(outs[0])
    assert sha256_file(cached) == want and cached.with_name(cached.name + ".sha256").read_text().strip() == want
    assert sorted(p.name for p in cached.parent.iterdir()) == [name, f"{name}.sha256"]
