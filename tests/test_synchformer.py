"""Synchformer backbone: module graph vs the official checkpoint manifest, strict loading, and golden parity of the
full-size network (fill-v1 weights) against ../shared/golden/synchformer (README §7 tolerances)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pytest
import torch

from tests.conftest import load_golden
from torchmetrics_av.backbones.synchformer import (
    SYNCHFORMER_NUM_PARAMS,
    Synchformer,
    SynchformerMel,
    segment_audio,
    segment_video,
    short_side_resize_crop,
)
from torchmetrics_av.preprocessing import resample, to_signed_unit

PAIRS = ("v0_5s_24fps", "v1_8s_25fps", "v2_10s_24fps")
PROTOCOLS = {"fastvideo": "interpolate", "avbench": "torchvision"}  # golden prefix -> resize style
TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "sync_depth": 1, "sync_heads": 2}
# README §7 tolerances.
LOGITS_ATOL = 1e-4
FEAT_SLICE_ATOL = 1e-4
FEAT_STAT_RTOL = 1e-5
FEAT_F16_ATOL = 2e-3
MEL_ATOL = 1e-4
WAVE_ATOL = 1e-6
FRAME_RTOL = 1e-6
CROP_ATOL = 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# golden helpers (shared with test_desync.py)


@lru_cache(maxsize=4)
def load_pair(name: str) -> dict[str, Any]:
    return load_golden("synchformer", f"pair_{name}.pt")


def golden_video(d: dict[str, Any]) -> torch.Tensor:
    """The pair's uint8 video as (T, 3, H, W), rebuilt from the texture formula of README §3 and checked."""
    tex = d["input.texture"]
    ht, wt, _ = tex.shape
    ys, xs = torch.arange(d["input.height"]), torch.arange(d["input.width"])
    frames = [tex[((ys + dy) % ht)[:, None], ((xs + dx) % wt)[None, :]] for dx, dy in zip(d["input.dx"], d["input.dy"])]
    video = torch.stack(frames).contiguous()
    assert hashlib.sha256(video.numpy().tobytes()).hexdigest() == d["input.video_sha256"]
    assert int(video.sum()) == d["input.video_sum"]
    return video.permute(0, 3, 1, 2)


def golden_frames(d: dict[str, Any], prefix: str) -> torch.Tensor:
    """Preprocessed 25 fps frames (F, 3, 224, 224) from the golden frame index, with the protocol's resize."""
    frames = golden_video(d)[d[f"{prefix}.frame_index"]]
    if prefix == "fastvideo":
        frames = frames.float() / 255
    return to_signed_unit(short_side_resize_crop(frames, 224, PROTOCOLS[prefix]))


def golden_wave16k(d: dict[str, Any]) -> torch.Tensor:
    audio = d["input.audio_int16"].float() / 32768
    return resample(audio.mean(dim=0), d["input.audio_sr"], 16000, "torchaudio")


@lru_cache(maxsize=1)
def _filled_model(fill: Callable[[torch.nn.Module], torch.nn.Module]) -> Synchformer:
    net = Synchformer(pretrained=False)
    fill(net.model)
    return net.eval()


@pytest.fixture
def full_model(fill_v1: Callable[[torch.nn.Module], torch.nn.Module]) -> Synchformer:
    """Full-size Synchformer with fill-v1 weights (the golden network), built once per session for both test files."""
    return _filled_model(fill_v1)


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    return load_golden("synchformer", "manifest.json")


# ---------------------------------------------------------------------------------------------------------------------
# module graph and loading


@pytest.mark.slow
def test_state_dict_equals_manifest(full_model: Synchformer, manifest: dict[str, Any]) -> None:
    sd = full_model.model.state_dict()
    assert [k["key"] for k in manifest["keys"]] == list(sd)  # same keys, same registration order
    assert all(list(sd[k["key"]].shape) == k["shape"] and sd[k["key"]].dtype == torch.float32 for k in manifest["keys"])
    assert len(sd) == manifest["num_tensors"] == 513
    assert sum(v.numel() for v in sd.values()) == manifest["total_params"] == SYNCHFORMER_NUM_PARAMS
    for top, n in manifest["params_by_top_module"].items():
        assert sum(p.numel() for p in getattr(full_model.model, top).parameters()) == n
    # Every entry is a parameter (no buffers), and fill-v1 landed on the same names: per-key sums agree.
    assert len(list(full_model.model.parameters())) == 513
    for k in manifest["keys"]:
        assert float(sd[k["key"]].double().sum()) == pytest.approx(k["fill_v1_sum_float64"], rel=1e-9, abs=1e-9), k[
            "key"
        ]


@pytest.mark.slow
def test_strict_load_of_official_format_file(full_model: Synchformer, tmp_path: Any) -> None:
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(full_model.model.state_dict(), path)  # a plain state_dict, like MMAudio's release file
    net = Synchformer(weights=path)
    assert net.checkpoint_id.startswith("synchformer_24-01-04T16-39-21@sha256:")
    for key in ("transformer.pos_emb_cfg.pos_emb", "afeat_extractor.ast.embeddings.position_embeddings"):
        assert torch.equal(net.model.state_dict()[key], full_model.model.state_dict()[key])


def test_strict_load_rejects_missing_and_extra_keys(tmp_path: Any) -> None:
    sd = Synchformer(pretrained=False, **TINY).model.state_dict()
    missing = dict(sd)
    missing.pop("vfeat_extractor.patch_embed.proj.weight")  # unused by forward, but part of the official file
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        Synchformer(weights=tmp_path / "missing.pth", **TINY)
    torch.save({**sd, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        Synchformer(weights=tmp_path / "extra.pth", **TINY)
    torch.save({"model": sd, "epoch": 3}, tmp_path / "training_ckpt.pt")  # the original run's checkpoint layout
    loaded = Synchformer(weights=tmp_path / "training_ckpt.pt", **TINY).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())


def test_missing_weights_file_names_the_argument(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="weights="):
        Synchformer(weights=tmp_path / "nope.pth", **TINY)


def test_offline_without_cache_names_file_url_and_argument(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        Synchformer(cache_dir=tmp_path, **TINY)
    msg = str(err.value)
    assert "synchformer_state_dict.pth" in msg and "MMAudio/releases/download/v0.1" in msg and "weights=" in msg


# ---------------------------------------------------------------------------------------------------------------------
# small-config behaviour


def test_shapes_and_input_checks() -> None:
    torch.manual_seed(0)
    net = Synchformer(pretrained=False, **TINY)
    with torch.no_grad():
        v = net.video_features(torch.rand(15, 16, 3, 224, 224) * 2 - 1)
        a = net.audio_features(torch.randn(15, 128, 66))
        front, back = net(torch.rand(15, 16, 3, 224, 224), torch.randn(15, 128, 66))
    assert v.shape == (15, 8, 16) and a.shape == (15, 6, 16) and front.shape == back.shape == (21,)
    with pytest.raises(ValueError, match="segments"):
        net.video_features(torch.zeros(2, 3, 16, 224, 224))  # channel-first segments
    with pytest.raises(ValueError, match="mel"):
        net.audio_features(torch.zeros(2, 66, 128))  # (frame, bin) instead of (bin, frame)
    with pytest.raises(ValueError, match="vfeats"):
        net.sync_logits(v[None, :13], a[None, :13])  # the position embedding fixes 14 segments
    with pytest.raises(ValueError, match="equal segment counts"):
        net(torch.zeros(14, 16, 3, 224, 224), torch.zeros(15, 128, 66))


def test_segment_batch_does_not_change_features() -> None:
    torch.manual_seed(0)
    net = Synchformer(pretrained=False, **TINY)
    x = torch.rand(5, 16, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        all_at_once = net.video_features(x)
        net.segment_batch = 2
        chunked = net.video_features(x)
        one = torch.cat([net.video_features(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(chunked, all_at_once, rtol=0, atol=1e-5)
    torch.testing.assert_close(one, all_at_once, rtol=0, atol=1e-5)


def test_divided_attention_groups() -> None:
    """Time attention mixes only a spatial position's frames (plus CLS); space attention only a frame's patches."""
    torch.manual_seed(0)
    block = Synchformer(pretrained=False, **TINY).model.vfeat_extractor.blocks[0]
    x = torch.randn(1, 1 + 8 * 196, 16)
    with torch.no_grad():
        base_t, base_s = block.timeattn(x, "time", 8), block.attn(x, "space", 8)
        y = x.clone()
        y[0, 1 + 3 * 196 + 5] += 1.0  # frame 3, patch 5
        d_t = (block.timeattn(y, "time", 8) - base_t).abs().sum(-1)[0]
        d_s = (block.attn(y, "space", 8) - base_s).abs().sum(-1)[0]
    frame, patch = (torch.arange(1, 1 + 8 * 196) - 1) // 196, (torch.arange(1, 1 + 8 * 196) - 1) % 196
    assert d_t[0] > 0 and d_s[0] > 0  # the CLS token sees every token
    assert torch.all(d_t[1:][patch != 5] == 0) and torch.all(d_t[1:][patch == 5] > 0)
    assert torch.all(d_s[1:][frame != 3] == 0) and torch.all(d_s[1:][frame == 3] > 0)


def test_segmenting_rules() -> None:
    frames = torch.arange(200).view(200, 1, 1, 1).expand(200, 3, 2, 2)
    segs = segment_video(frames)
    assert segs.shape == (24, 16, 3, 2, 2) and segs[5, 0, 0, 0, 0] == 40 and segs[5, 15, 0, 0, 0] == 55
    wave = torch.arange(128000.0)
    a = segment_audio(wave)
    assert a.shape == (24, 10240) and a[3, 0] == 15360 and a[-1, -1] == 127999
    assert segment_audio(torch.ones(100)).shape == (1, 10240)  # FastVideo zero-pads one short window
    with pytest.raises(ValueError, match="samples"):
        segment_audio(torch.ones(100), pad_short=False)
    with pytest.raises(ValueError, match="frames"):
        segment_video(frames[:15])


def test_bf16_autocast_option_runs_encoders_in_bf16_and_head_in_float32() -> None:
    """Only the switch is checked here (CPU autocast); the GPU numeric shift is not measured in this test suite."""
    torch.manual_seed(0)
    net = Synchformer(pretrained=False, bf16=True, **TINY)
    with torch.no_grad():
        v = net.video_features(torch.rand(14, 16, 3, 224, 224))
        a = net.audio_features(torch.randn(14, 128, 66))
        logits = net.sync_logits(v[None], a[None])
    assert v.dtype == a.dtype == logits.dtype == torch.float32 and torch.isfinite(logits).all()


# ---------------------------------------------------------------------------------------------------------------------
# golden parity, full size


@pytest.mark.slow
def test_compare_v_a_golden(full_model: Synchformer) -> None:
    g = load_golden("synchformer", "compare_v_a.pt")
    vis = torch.cat([g["vis_f16"].float()] * 2)
    aud = torch.cat([g["aud_f16"].float(), torch.roll(g["aud_f16"].float(), 1, dims=1)])
    with torch.no_grad():
        logits = full_model.sync_logits(vis, aud)
        single = torch.cat([full_model.sync_logits(vis[i : i + 1], aud[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(logits, g["logits"], rtol=0, atol=LOGITS_ATOL)
    torch.testing.assert_close(single, g["logits_batch1"], rtol=0, atol=LOGITS_ATOL)
    torch.testing.assert_close(logits.double(), g["logits_float64"], rtol=0, atol=LOGITS_ATOL)
    assert logits.argmax(-1).tolist() == g["argmax"] == [3, 3]


@pytest.mark.parametrize("name", PAIRS)
def test_golden_audio_preprocessing(name: str) -> None:
    d = load_pair(name)
    wave = golden_wave16k(d)
    for prefix in PROTOCOLS:
        assert wave.shape[0] >= d[f"{prefix}.waveform16k_num_samples"]
    n_fv = d["fastvideo.waveform16k_num_samples"]
    assert wave.shape[0] == n_fv  # FastVideo keeps the whole resampled clip
    assert float(wave.double().sum()) == pytest.approx(d["fastvideo.waveform16k_sum"], rel=1e-9, abs=1e-6)
    torch.testing.assert_close(wave[16000:16064], d["fastvideo.waveform16k_slice"], rtol=0, atol=WAVE_ATOL)
    mel = SynchformerMel()
    fv = mel(segment_audio(wave), pad="min")
    torch.testing.assert_close(fv, d["fastvideo.mel"][:, 0], rtol=0, atol=MEL_ATOL)
    assert float(fv[0, 0, 65]) == pytest.approx(d["fastvideo.mel_pad_value"], abs=MEL_ATOL)
    n_av = int(16000 * d["avbench.duration_sec"])
    av = mel(segment_audio(wave[:n_av], pad_short=False), pad="zero")
    assert av.shape[0] == d["avbench.mel_seg_sum"].shape[0] == len(d["avbench.vfeats_seg_mean"])
    torch.testing.assert_close(av[0], d["avbench.mel_seg0"][0], rtol=0, atol=MEL_ATOL)
    torch.testing.assert_close(av[:, :, 65], torch.full_like(av[:, :, 65], d["avbench.mel_pad_value"]), rtol=0, atol=0)
    torch.testing.assert_close(av.double().sum(dim=(1, 2)), d["avbench.mel_seg_sum"], rtol=0, atol=MEL_ATOL * 128 * 66)


@pytest.mark.slow
def test_golden_audio_features(full_model: Synchformer) -> None:
    """AST + frequency aggregation on the last segment of every pair (and v0's first), both protocols' mels."""
    mel = SynchformerMel()
    for name in PAIRS:
        d = load_pair(name)
        wave = golden_wave16k(d)
        n_av = int(16000 * d["avbench.duration_sec"])
        inputs = {
            "fastvideo": mel(segment_audio(wave), pad="min"),
            "avbench": mel(segment_audio(wave[:n_av], pad_short=False), pad="zero"),
        }
        for prefix, m in inputs.items():
            idx = [0, m.shape[0] - 1] if name == PAIRS[0] else [m.shape[0] - 1]  # last segments differ by protocol
            with torch.no_grad():
                f = full_model.audio_features(m[idx])
            torch.testing.assert_close(f[:, :, :16], d[f"{prefix}.afeats_slice"][idx], rtol=0, atol=FEAT_SLICE_ATOL)
            torch.testing.assert_close(
                f.mean(dim=(1, 2)), d[f"{prefix}.afeats_seg_mean"][idx], rtol=FEAT_STAT_RTOL, atol=0
            )
            for stat, value in (
                ("abs_sum", f.double().abs().sum(dim=(1, 2))),
                ("sq_sum", f.double().square().sum(dim=(1, 2))),
            ):
                torch.testing.assert_close(value, d[f"{prefix}.afeats_seg_{stat}"][idx], rtol=FEAT_STAT_RTOL, atol=0)
            if prefix == "fastvideo":
                torch.testing.assert_close(f, d["fastvideo.afeats_f16"][idx].float(), rtol=0, atol=FEAT_F16_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "prefix", "segment"), [("v0_5s_24fps", "fastvideo", 0), ("v1_8s_25fps", "avbench", 23)]
)
def test_golden_video_features_one_segment(full_model: Synchformer, name: str, prefix: str, segment: int) -> None:
    """One preprocessed segment through the full-size MotionFormer (about 10 s on CPU each)."""
    d = load_pair(name)
    seg = segment_video(golden_frames(d, prefix))[segment : segment + 1]
    rtol = FRAME_RTOL if prefix == "fastvideo" else 0.0  # av-benchmark frames are exact (uint8 resize)
    torch.testing.assert_close(seg.double().sum(), d[f"{prefix}.segment_sum"][segment], rtol=rtol, atol=0)
    with torch.no_grad():
        f = full_model.video_features(seg)[0]
    torch.testing.assert_close(f[:, :16], d[f"{prefix}.vfeats_slice"][segment], rtol=0, atol=FEAT_SLICE_ATOL)
    torch.testing.assert_close(f.mean(), d[f"{prefix}.vfeats_seg_mean"][segment], rtol=FEAT_STAT_RTOL, atol=0)
    torch.testing.assert_close(
        f.double().abs().sum(), d[f"{prefix}.vfeats_seg_abs_sum"][segment], rtol=FEAT_STAT_RTOL, atol=0
    )
    torch.testing.assert_close(
        f.double().square().sum(), d[f"{prefix}.vfeats_seg_sq_sum"][segment], rtol=FEAT_STAT_RTOL, atol=0
    )
    torch.testing.assert_close(f, d[f"{prefix}.vfeats_f16"][segment].float(), rtol=0, atol=FEAT_F16_ATOL)
