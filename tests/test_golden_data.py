"""The golden data's plumbing: lookup (fails, never skips), the lossless codecs of tests/golden_codec.py, and that
every golden file the tests read is in the repo."""

from __future__ import annotations

import json
import lzma
import math

import pytest
import torch

from tests import conftest, golden_codec
from tests.conftest import golden_file, golden_path, load_golden


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and _bits(a) == _bits(b)


# ---------------------------------------------------------------------------------------------------------------------
# codecs


def test_flac_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    stereo = torch.randint(-32768, 32768, (2, 5000), generator=g, dtype=torch.int16)
    stereo[0, :2] = torch.tensor([-32768, 32767], dtype=torch.int16)  # the full int16 range
    mono = (torch.sin(torch.arange(3000) / 7.0) * 20000).to(torch.int16)
    for codes in (stereo, mono, stereo[:1]):
        record = golden_codec.encode_flac(codes)
        assert record["data"].dtype == torch.uint8
        assert_same(golden_codec.decode(record), codes)
    with pytest.raises(ValueError, match="int16"):
        golden_codec.encode_flac(stereo.to(torch.int32))


def test_pcm16_round_trip_and_refusals():
    codes = torch.tensor([[-32768, -1, 0, 1, 32767, 12345]], dtype=torch.int16)
    wave = codes.to(torch.float32) / 32768
    assert_same(golden_codec.decode(golden_codec.encode_pcm16(wave)), wave)
    with pytest.raises(ValueError, match="int16 codes"):
        golden_codec.encode_pcm16(wave + 1e-6)  # not on the PCM grid
    with pytest.raises(ValueError, match=r"\+1\.0"):
        golden_codec.encode_pcm16(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="int16 codes"):
        golden_codec.encode_pcm16(wave.double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.int64, torch.uint8])
@pytest.mark.parametrize("delta", [False, True])
def test_shuffle_round_trip_is_bit_exact(dtype, delta):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 4, 50, generator=g) * 1000).to(dtype)
    if dtype.is_floating_point:
        x.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, -float("inf")], dtype=dtype)
    record = golden_codec.encode_shuffle(x[:, 1], delta)  # a non-contiguous view as well
    assert record["planes"].shape == (x.element_size(), 150)
    assert_same(golden_codec.decode(record), x[:, 1].contiguous())


def test_decode_walks_nested_containers_and_rejects_unknown_codecs(tmp_path):
    wave = torch.arange(-4, 4, dtype=torch.float32) / 32768
    obj = {"a": [golden_codec.encode_shuffle(torch.ones(3)), {"b": golden_codec.encode_pcm16(wave)}], "c": "text"}
    path = tmp_path / "x.pt.xz"
    path.write_bytes(golden_codec.dumps(obj))
    back = golden_codec.load(path)
    assert_same(back["a"][0], torch.ones(3))
    assert_same(back["a"][1]["b"], wave)
    assert back["c"] == "text"
    with pytest.raises(ValueError, match="unknown golden codec"):
        golden_codec.decode({golden_codec.CODEC_KEY: "zip"})
    with pytest.raises(ValueError, match="unknown dtype"):
        golden_codec.decode({**golden_codec.encode_shuffle(torch.ones(2)), "dtype": "Tensor"})


# ---------------------------------------------------------------------------------------------------------------------
# lookup


@pytest.fixture
def roots(tmp_path, monkeypatch):
    repo, extra = tmp_path / "repo", tmp_path / "extra"
    (repo / "g").mkdir(parents=True)
    (extra / "g").mkdir(parents=True)
    (extra / "only_extra").mkdir()
    monkeypatch.setattr(conftest, "REPO_GOLDEN_DIR", repo)
    monkeypatch.delenv(conftest.GOLDEN_DIR_ENV, raising=False)
    return repo, extra


def test_missing_data_fails_and_never_skips(roots):
    repo, extra = roots
    with pytest.raises(pytest.fail.Exception, match=r"tests/golden/nope is missing.*TORCHMETRICS_AV_GOLDEN_DIR"):
        golden_path("nope")
    with pytest.raises(pytest.fail.Exception, match=r"tests/golden/g/x\.pt is missing"):
        golden_file("g", "x.pt")
    # The extra root is not read unless the variable is set (nothing outside the repo is used implicitly).
    (extra / "g" / "x.pt").write_bytes(b"")
    with pytest.raises(pytest.fail.Exception):
        golden_file("g", "x.pt")
    with pytest.raises(pytest.fail.Exception):
        golden_path("only_extra")


def test_repo_copy_first_then_the_variable(roots, monkeypatch):
    repo, extra = roots
    monkeypatch.setenv(conftest.GOLDEN_DIR_ENV, str(extra))
    (extra / "g" / "both.json").write_text(json.dumps({"from": "extra"}))
    (repo / "g" / "both.json.xz").write_bytes(lzma.compress(json.dumps({"from": "repo"}).encode()))
    (extra / "g" / "extra_only.json").write_text(json.dumps({"from": "extra"}))
    assert load_golden("g", "both.json") == {"from": "repo"}  # compressed repo copy wins
    assert load_golden("g", "extra_only.json") == {"from": "extra"}  # a file the repo lacks (full_golden data)
    assert golden_path("g") == repo / "g" and golden_path("only_extra") == extra / "only_extra"
    with pytest.raises(pytest.fail.Exception, match=rf"nor under {conftest.GOLDEN_DIR_ENV}="):
        golden_file("g", "absent.pt")


def test_load_golden_of_a_plain_pt(roots):
    repo, _ = roots
    torch.save({"x": torch.arange(3)}, repo / "g" / "plain.pt")
    assert load_golden("g", "plain.pt")["x"].tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# the repo's copies


# Every golden file a test reads, by folder (the six of tests/golden/README.md's table).
REPO_GOLDENS = {
    "passt": ["passt_golden.pt"],
    "clap": ["clap_golden.pt"],
    "audiobox": ["audiobox_golden.pt"],
    "imagebind": ["inputs.pt", "outputs_v1.pt", "outputs_v2.pt", "scores.json", "state_dict_manifest.json"],
    "synchformer": [
        "pair_v0_5s_24fps.pt",
        "pair_v1_8s_25fps.pt",
        "pair_v2_10s_24fps.pt",
        "compare_v_a.pt",
        "manifest.json",
    ],
    "wer": [
        "text_cases.json",
        "text_cases.pt",
        "whisper_decode.json",
        "whisper_golden.pt",
        *(f"whisper_inputs/clip{i}_{k}k.flac" for i in (0, 1) for k in (16, 24)),
    ],
}


@pytest.mark.parametrize("name", sorted(REPO_GOLDENS))
def test_goldens_travel_with_the_repo(name, monkeypatch):
    monkeypatch.delenv(conftest.GOLDEN_DIR_ENV, raising=False)
    for filename in REPO_GOLDENS[name]:
        path = golden_file(name, filename)
        assert path.is_relative_to(conftest.REPO_GOLDEN_DIR / name), path


def test_masked_entries_are_documented_and_as_stated():
    """The two places where unread entries were blanked (README: "masked") hold exactly what the README says."""
    inputs = load_golden("imagebind", "inputs.pt")
    records = load_golden("imagebind", "scores.json")["pairs"]
    for pair, d in inputs.items():
        rec = records[pair]["records"]
        read = {i for ab in rec["fastvideo_video"]["frame_indices"] for i in ab} | set(
            rec["avbench_video"]["frame_indices"]
        )
        video = d["video_uint8_thwc"]
        blank = [i for i in range(video.shape[0]) if not video[i].any()]
        assert sorted(set(range(video.shape[0])) - read) == blank  # every unread frame is black, no read one is
    vfeats = load_golden("synchformer", "pair_v1_8s_25fps.pt")["avbench.vfeats_f16"]
    rows = [i for i in range(vfeats.shape[0]) if not math.isnan(float(vfeats[i].float().sum()))]
    assert rows == [23]
