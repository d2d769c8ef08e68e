"""ImageBind backbone + ImageBindScore: golden parity (../shared/golden/imagebind, README §6 tolerances), the §5
protocol quirks, strict checkpoint loading, DDP, batch invariance and input errors.

Fast tests use a small config of the same modules (and, for the metric's golden checks, a stub backbone that serves
the golden per-clip embeddings for the golden clips it recognises). The few full-size tests share one fill-v1
ImageBind-huge loaded from a manifest-shaped checkpoint file that the session writes.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch
import torchaudio
from torch import nn

from tests.conftest import load_golden
from tests.ddp import run_ddp
from torchmetrics_av import ImageBindScore
from torchmetrics_av.backbones import ImageBind
from torchmetrics_av.backbones.imagebind import (
    ImageBindVisionAudio,
    avbench_frame_indices,
    avbench_resize_size,
    constant_clips_timepoints,
    fastvideo_frame_indices,
    imagebind_audio_clips,
    imagebind_avbench_clips,
    imagebind_fastvideo_clips,
    imagebind_video_clips,
    short_side_scale_size,
    uniform_crop_offsets,
)
from torchmetrics_av.weights import WeightsNotFoundError, sha256_file

# README §6 "Recommended tolerances for a faithful float32 CPU port".
AUDIO_CLIPS_ATOL = 1e-3
AUDIO_CLIPS_MEAN_ATOL = 1e-5
CHECKSUM_SUM_ATOL = 0.05  # sum, sumsq, sumabs, wsum
CHECKSUM_MAP_ATOL = 1e-4  # chan_frame_mean, pool16, center8, row0
VISION_EMB_ATOL = 1e-5
AUDIO_EMB_ATOL = 2e-4  # x20 scale
HEAD_ATOL = 2e-4
SCORE_ATOL = 1e-5
# Batch composition only moves float32 GEMM rounding (README §6: <= 7.2e-7 on x20 audio embeddings).
BATCH_ATOL = 1e-6

PAIRS = ("v1", "v2")
GOLDEN_PROTOCOL = {"fastvideo": "fastvideo", "av-benchmark": "avbench"}
SMALL = dict(
    vision_embed_dim=32, vision_num_blocks=2, vision_num_heads=4,
    audio_embed_dim=24, audio_num_blocks=2, audio_num_heads=4, out_embed_dim=16,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    return {
        "inputs": load_golden("imagebind", "inputs.pt"),
        "outputs": {p: load_golden("imagebind", f"outputs_{p}.pt") for p in PAIRS},
        "scores": load_golden("imagebind", "scores.json"),
        "manifest": load_golden("imagebind", "state_dict_manifest.json"),
    }


def _pair(golden: dict, pair: str) -> dict[str, Any]:
    d = golden["inputs"][pair]
    return {
        "wave": d["audio_pcm_int16"].float() / 32768,
        "sr": int(d["audio_sample_rate"]),
        "frames": d["video_uint8_thwc"].permute(0, 3, 1, 2),
        "fps": float(d["video_fps"]),
        "duration": float(d["avbench_duration_sec"]),
    }


def _checksums(clips: torch.Tensor) -> dict[str, torch.Tensor]:
    """README §4 `video_clips_checksums`, recomputed from a (S, 3, 2, 224, 224) clip tensor."""
    x = clips.double()
    s = x.shape[0]
    flat = x.reshape(s, -1)
    weight = (torch.arange(flat.shape[1]) % 7 - 3).double()
    return {
        "sum": flat.sum(1),
        "sumsq": (flat**2).sum(1),
        "sumabs": flat.abs().sum(1),
        "wsum": (flat * weight).sum(1),
        "chan_frame_mean": x.mean((-1, -2)),
        "pool16": nn.functional.avg_pool2d(clips.float().reshape(s, 6, 224, 224), 16).reshape(s, 3, 2, 14, 14),
        "center8": clips.float()[..., 108:116, 108:116],
        "row0": clips.float()[..., 0, :],
    }


def _small(seed: int = 0) -> ImageBind:
    torch.manual_seed(seed)
    return ImageBind(pretrained=False, **SMALL)


def _synthetic_pairs(n: int, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int], list[float]]:
    """``n`` pairs of different lengths, channel counts, rates and frame rates."""
    g = torch.Generator().manual_seed(seed)
    audio, video, rates, fps = [], [], [], []
    for i in range(n):
        sr = (16000, 22050, 8000)[i % 3]
        seconds = 4.5 + i
        audio.append(torch.rand(1 + i % 2, int(seconds * sr), generator=g) * 0.5 - 0.25)
        f = (24.0, 25.0, 30.0)[i % 3]
        video.append(torch.randint(0, 256, (int(seconds * f), 3, 18 + 2 * i, 30), generator=g, dtype=torch.uint8))
        rates.append(sr)
        fps.append(f)
    return audio, video, rates, fps


# ---------------------------------------------------------------------------------------------------------------------
# input pipeline against the goldens


@pytest.mark.parametrize("pair", PAIRS)
def test_audio_clips_match_golden(golden, pair):
    p = _pair(golden, pair)
    clips = imagebind_audio_clips(p["wave"], p["sr"])
    ref = golden["outputs"][pair]["audio"]["clips"]
    assert clips.shape == ref.shape == (3, 1, 128, 204)
    diff = (clips - ref).abs()
    assert diff.max() <= AUDIO_CLIPS_ATOL and diff.mean() < AUDIO_CLIPS_MEAN_ATOL


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
@pytest.mark.parametrize("pair", PAIRS)
def test_video_clips_match_golden(golden, pair, protocol):
    p = _pair(golden, pair)
    if protocol == "fastvideo":
        clips = imagebind_fastvideo_clips(p["frames"], p["fps"])
    else:
        clips = imagebind_avbench_clips(p["frames"], p["fps"], p["duration"])
    ref = golden["outputs"][pair][GOLDEN_PROTOCOL[protocol]]
    assert [1, *clips.shape] == list(ref["video_clips_shape"])
    mine = _checksums(clips)
    for key, value in ref["video_clips_checksums"].items():
        atol = CHECKSUM_SUM_ATOL if key in ("sum", "sumsq", "sumabs", "wsum") else CHECKSUM_MAP_ATOL
        torch.testing.assert_close(mine[key].double(), value.double(), atol=atol, rtol=0, msg=f"{key}")


@pytest.mark.parametrize("pair", PAIRS)
def test_records_match_golden(golden, pair):
    """Clip times, sample ranges, frame indices, sizes and crop offsets recorded by the reference run."""
    p = _pair(golden, pair)
    rec = golden["scores"]["pairs"][pair]["records"]
    n16 = rec["audio"]["resampled_num_samples"]
    audio_tp = constant_clips_timepoints(n16 / 16000, 2, 3)
    assert [[str(a), str(b)] for a, b in audio_tp] == rec["audio"]["clip_timepoints"]
    assert [[int(a * 16000), int(b * 16000)] for a, b in audio_tp] == rec["audio"]["clip_sample_ranges"]
    fv = rec["fastvideo_video"]
    video_tp = constant_clips_timepoints(len(p["frames"]) / p["fps"], 2, 5)
    assert [[str(a), str(b)] for a, b in video_tp] == fv["clip_timepoints"]
    assert [list(ab) for ab in fastvideo_frame_indices(len(p["frames"]), p["fps"])] == fv["frame_indices"]
    h, w = p["frames"].shape[-2:]
    assert list(short_side_scale_size(h, w)) == fv["scaled_hw"]
    assert [list(o) for o in uniform_crop_offsets(*fv["scaled_hw"])] == fv["crop_offsets_yx"]
    av = rec["avbench_video"]
    assert avbench_frame_indices(len(p["frames"]), p["fps"], p["duration"]) == av["frame_indices"]
    assert list(avbench_resize_size(h, w)) == av["resized_hw"]


def test_clip_rule_uses_the_float_duration():
    """README §5.3: a 6.31 s clip starts its clips at samples 34479 and 68959 (not 34480 / 68960)."""
    n = 100960  # 6.31 s at 16 kHz
    starts = [int(a * 16000) for a, _ in constant_clips_timepoints(n / 16000, 2, 3)]
    assert starts == [0, 34479, 68959]
    exact_step = (Fraction(n, 16000) - 2) / 2
    assert [int(exact_step * k * 16000) for k in range(3)] == [0, 34480, 68960]  # an exact-rational port's (wrong) rule


def test_clip_rule_short_media_and_last_clip_at_end():
    assert constant_clips_timepoints(1.5, 2, 3) == [(0, 2)] * 3
    assert fastvideo_frame_indices(10, 10.0) == [(0, 9)] * 5  # a 1 s video: every clip is the whole video
    assert fastvideo_frame_indices(1, 25.0) == [(0, 0)] * 5
    tp = constant_clips_timepoints(8.0, 2, 5)
    assert tp[-1][1] == 8 and tp[1][0] == Fraction(3, 2)  # pinned rule: step (D - 2) / (N - 1)


def _audio_clips_dc_on_copy(wave: torch.Tensor) -> torch.Tensor:
    """ImageBind's audio loader written independently, except that DC removal works on a copy (no overlap quirk)."""
    out = []
    for a, b in ((0, 32000), (24000, 56000), (48000, 80000)):  # the 5 s clip ranges of README §4
        seg = wave[:, a:b].clone()
        seg = seg - seg.mean()
        fb = torchaudio.compliance.kaldi.fbank(
            seg, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
            num_mel_bins=128, dither=0.0, frame_length=25, frame_shift=10,
        ).T  # fmt: skip
        out.append(((nn.functional.pad(fb, (0, 204 - fb.shape[1])) + 4.268) / 9.138).unsqueeze(0))
    return torch.stack(out)


def test_inplace_dc_removal_quirk(golden):
    """README §5.4: overlapping clips see the earlier clip's DC shift only in the fbank frames around its end."""
    p = _pair(golden, "v1")
    mine = imagebind_audio_clips(p["wave"], p["sr"])
    copy = _audio_clips_dc_on_copy(p["wave"])
    torch.testing.assert_close(mine[0], copy[0], atol=1e-5, rtol=0)
    changed = ((mine - copy).abs() > 1e-3).any(dim=2).squeeze(1)  # (clip, frame)
    assert changed[0].sum() == 0
    for clip in (1, 2):
        assert changed[clip].nonzero().flatten().tolist() == [48, 49]
    assert float((mine - copy).abs().max()) > 0.3  # README §6: 0.369
    assert torch.equal(p["wave"], golden["inputs"]["v1"]["audio_pcm_int16"].float() / 32768)  # input untouched


def test_audio_uses_channel_zero_and_pads_with_normalised_zero():
    g = torch.Generator().manual_seed(1)
    left = torch.randn(1, 32000, generator=g) * 0.1
    right = torch.randn(1, 32000, generator=g) * 0.1 + 0.3
    stereo = imagebind_audio_clips(torch.cat([left, right]), 16000)
    # The all-channel DC shift is a constant on channel 0, which Kaldi's per-frame DC removal cancels.
    torch.testing.assert_close(stereo, imagebind_audio_clips(left, 16000), atol=1e-3, rtol=0)
    assert float((stereo - imagebind_audio_clips(right, 16000)).abs().max()) > 0.1
    # 2 s -> 198 fbank frames, zero-padded to 204 before normalisation.
    torch.testing.assert_close(stereo[..., 198:], torch.full_like(stereo[..., 198:], 4.268 / 9.138))


def test_avbench_frame_choice_is_ffmpeg_fps_filter():
    """README §5.10: last frame with t < 2k + 1 s, i.e. ceil((2k + 1) fps) - 1."""
    assert avbench_frame_indices(200, 25.0, 8.0) == [24, 74, 124, 174]
    for fps in (24.0, 25.0, 29.97, 30000 / 1001, 60.0):
        n = math.ceil(8 * fps) + 1
        expected = [math.ceil((2 * k + 1) * Fraction(fps).limit_denominator(10**6)) - 1 for k in range(4)]
        assert avbench_frame_indices(n, fps, 8.0) == expected


def test_video_clip_rule_follows_the_protocol_spec():
    from torchmetrics_av.protocols import get_protocol

    video = torch.randint(0, 256, (120, 3, 20, 28), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    for protocol, expected in (
        ("fastvideo", imagebind_fastvideo_clips(video, 25.0)),
        ("av-benchmark", imagebind_avbench_clips(video, 25.0, 4.8)),
    ):
        got = imagebind_video_clips(video, 25.0, get_protocol(protocol).imagebind_frames, 4.8)
        assert torch.equal(got, expected)
    assert torch.equal(imagebind_video_clips(video[:1], 0.1, "ffmpeg"), imagebind_avbench_clips(video[:1], 0.1))
    with pytest.raises(ValueError, match="`rule`"):
        imagebind_video_clips(video, 25.0, "nearest")  # type: ignore[arg-type]


def test_portrait_crops_top_centre_bottom():
    frames = torch.zeros(60, 3, 80, 48, dtype=torch.uint8)
    frames[:, :, :40] = 255  # top half white
    clips = imagebind_fastvideo_clips(frames, 10.0)
    assert short_side_scale_size(80, 48) == (373, 224)
    assert uniform_crop_offsets(373, 224) == [(0, 0), (75, 0), (149, 0)]
    top, bottom = clips[0].mean(), clips[2].mean()
    assert top > 1.0 > -1.0 > bottom  # white top crop, black bottom crop (CLIP-normalised)


# ---------------------------------------------------------------------------------------------------------------------
# model (small config)


def test_small_model_has_the_official_names(golden):
    subset = [e["name"] for e in golden["manifest"]["state_dict"] if e["vision_audio_path"]]
    small = ImageBindVisionAudio(16, 32, 2, 16, 12, 2, 8)  # huge depths, tiny widths: the same key set
    assert list(small.state_dict()) == subset
    assert golden["manifest"]["vision_audio_subset"]["buffers"] == ["modality_postprocessors.audio.1.log_logit_scale"]
    assert [n for n, _ in small.named_buffers()] == ["modality_postprocessors.audio.1.log_logit_scale"]


def test_forward_averages_postprocessed_clips_without_renormalising():
    net = _small()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 3, 1, 128, 204, generator=g)
    vision = torch.randn(2, 2, 3, 2, 224, 224, generator=g)
    with torch.no_grad():
        out = net(vision=vision, audio=audio)
        a_clips = net.embed_audio(audio.flatten(0, 1)).unflatten(0, (2, 3))
        v_clips = net.embed_vision(vision.flatten(0, 1)).unflatten(0, (2, 2))
        head = net.embed_audio(audio.flatten(0, 1), postprocess=False)
    torch.testing.assert_close(a_clips.norm(dim=-1), torch.full((2, 3), 20.0))
    torch.testing.assert_close(v_clips.norm(dim=-1), torch.ones(2, 2))
    torch.testing.assert_close(a_clips.flatten(0, 1), 20 * nn.functional.normalize(head, dim=-1))
    torch.testing.assert_close(out["audio"], a_clips.mean(1))
    torch.testing.assert_close(out["vision"], v_clips.mean(1))
    assert float(out["audio"].norm(dim=-1).max()) < 20.0  # means of distinct unit directions, not renormalised


def test_image_input_is_repeated_to_two_frames():
    net = _small()
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a = net.model.embed("vision", img)
        b = net.model.embed("vision", img.unsqueeze(2).expand(-1, -1, 2, -1, -1))
    torch.testing.assert_close(a, b)


def _fake_other_towers(manifest: dict) -> dict[str, torch.Tensor]:
    # Stride-0 views: the manifest shapes at one stored element each, so the file stays small.
    return {e["name"]: torch.zeros(()).expand(e["shape"]) for e in manifest["state_dict"] if not e["vision_audio_path"]}


def test_loading_is_strict_and_ignores_other_towers(golden, tmp_path):
    src = _small(1)
    state = dict(src.model.state_dict())
    full = {**state, **_fake_other_towers(golden["manifest"])}
    path = tmp_path / "imagebind_small.pth"
    torch.save(full, path)
    net = ImageBind(weights=path, **SMALL)
    assert net.checkpoint_id == "imagebind_huge@sha256:" + sha256_file(path)[:16]
    for k, v in net.model.state_dict().items():
        assert torch.equal(v, state[k]), k
    torch.save(state, tmp_path / "subset.pth")  # a file holding only the vision + audio keys loads as well
    subset_net = ImageBind(weights=tmp_path / "subset.pth", **SMALL)
    assert all(torch.equal(v, state[k]) for k, v in subset_net.model.state_dict().items())
    bad_cases = {
        "unexpected": {**full, "modality_trunks.vision.blocks.0.extra": torch.zeros(1)},
        "missing": {k: v for k, v in full.items() if k != "modality_heads.audio.2.weight"},
        "shape": {**full, "modality_heads.audio.2.weight": torch.zeros(3, 3)},
        "foreign": {**full, "logit_scale": torch.zeros(())},
    }
    for name, bad in bad_cases.items():
        p = tmp_path / f"{name}.pth"
        torch.save(bad, p)
        with pytest.raises(RuntimeError):
            ImageBind(weights=p, **SMALL)


def test_missing_weights_offline_names_file_url_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHMETRICS_AV_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"imagebind_huge\.pth.*dl\.fbaipublicfiles\.com.*weights="):
        ImageBind(cache_dir=tmp_path, **SMALL)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        ImageBind(weights=tmp_path / "nope.pth", **SMALL)


# ---------------------------------------------------------------------------------------------------------------------
# metric: golden scores through the full pipeline with the golden clip embeddings


class GoldenEmbeddings(nn.Module):
    """Stands in for ImageBind-huge: returns the golden embedding of each golden clip it is given, by content."""

    def __init__(self, outputs: dict[str, dict], protocol: str) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the stub a device
        self.audio = [(o["audio"]["clips"][i], o["audio"]["emb_clips"][i]) for o in outputs.values() for i in range(3)]
        key = GOLDEN_PROTOCOL[protocol]
        sums = [(o[key]["video_clips_checksums"], o[key]["vision_emb_clips"]) for o in outputs.values()]
        self.vision = [(c["wsum"][i], c["sum"][i], emb[i]) for c, emb in sums for i in range(len(emb))]

    def embed_audio(self, clips: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        out = []
        for c in clips:
            hits = [e for ref, e in self.audio if float((c - ref).abs().max()) <= AUDIO_CLIPS_ATOL]
            assert len(hits) == 1, "audio clip is not a golden clip"
            out.append(hits[0])
        return torch.stack(out)

    def embed_vision(self, clips: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        sums = _checksums(clips)
        out = []
        for wsum, total in zip(sums["wsum"], sums["sum"]):
            hits = [
                e
                for w, s, e in self.vision
                if abs(w - wsum) <= CHECKSUM_SUM_ATOL and abs(s - total) <= CHECKSUM_SUM_ATOL
            ]
            assert len(hits) == 1, "video clip is not a golden clip"
            out.append(hits[0])
        return torch.stack(out)


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_metric_reproduces_golden_scores(golden, protocol):
    stub = GoldenEmbeddings(golden["outputs"], protocol)
    key = GOLDEN_PROTOCOL[protocol]
    for pair in PAIRS:
        p = _pair(golden, pair)
        # int16 audio and the tensor (B, F, C, H, W) form go through the public input conversions.
        pcm = golden["inputs"][pair]["audio_pcm_int16"]
        duration = {"duration": p["duration"]} if protocol == "av-benchmark" else {}  # whole clips under fastvideo
        metric = ImageBindScore(sample_rate=p["sr"], video_fps=p["fps"], protocol=protocol, backbone=stub, **duration)
        metric.update(pcm.unsqueeze(0), p["frames"].unsqueeze(0))
        score = metric.compute()
        assert abs(float(score) - golden["outputs"][pair][key]["ib_score"]) <= SCORE_ATOL
        assert abs(float(score) - golden["scores"]["pairs"][pair][f"{key}_ib_score"]) <= SCORE_ATOL
        vision, audio = metric.embed(pcm.unsqueeze(0), p["frames"].unsqueeze(0))
        torch.testing.assert_close(vision[0], golden["outputs"][pair][key]["vision_emb"], atol=VISION_EMB_ATOL, rtol=0)
        torch.testing.assert_close(audio[0], golden["outputs"][pair]["audio"]["emb"], atol=AUDIO_EMB_ATOL, rtol=0)


def test_metric_mixed_batch_matches_golden_per_sample(golden):
    """Both golden pairs in one update: lists of different lengths, rates, channel counts and frame rates."""
    stub = GoldenEmbeddings(golden["outputs"], "fastvideo")
    pairs = [_pair(golden, p) for p in PAIRS]
    metric = ImageBindScore(protocol="fastvideo", backbone=stub)
    metric.update([p["wave"] for p in pairs], [p["frames"] for p in pairs],
                  sample_rate=[p["sr"] for p in pairs], video_fps=[p["fps"] for p in pairs])  # fmt: skip
    score = metric.compute()
    expected = torch.tensor([golden["outputs"][p]["fastvideo"]["ib_score"] for p in PAIRS], dtype=torch.float64)
    torch.testing.assert_close(metric.details["score"], expected, atol=SCORE_ATOL, rtol=0)
    assert metric.details["n_samples"] == 2
    assert abs(float(score) - float(expected.mean())) <= SCORE_ATOL


# ---------------------------------------------------------------------------------------------------------------------
# metric: invariants, DDP and errors (small model)


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
def test_metric_is_independent_of_batch_composition(protocol):
    net = _small()
    audio, video, rates, fps = _synthetic_pairs(3)
    kw = dict(protocol=protocol, backbone=net, duration=4.0 if protocol == "av-benchmark" else None)
    together = ImageBindScore(clip_batch_size=64, **kw)
    together.update(audio, video, sample_rate=rates, video_fps=fps)
    apart = ImageBindScore(clip_batch_size=1, **kw)
    for a, v, r, f in zip(audio, video, rates, fps):
        apart.update([a], [v], sample_rate=r, video_fps=f)
    torch.testing.assert_close(together.compute(), apart.compute(), atol=BATCH_ATOL, rtol=0)
    torch.testing.assert_close(together.details["score"], apart.details["score"], atol=BATCH_ATOL, rtol=0)
    # The score is a plain cosine of the clip means: recompute it from the backbone by hand.
    for i, (a, v, r, f) in enumerate(zip(audio, video, rates, fps)):
        a_mean = net.embed_audio(imagebind_audio_clips(a, r)).mean(0)
        v_clips = imagebind_fastvideo_clips(v, f) if protocol == "fastvideo" else imagebind_avbench_clips(v, f, 4.0)
        v_mean = net.embed_vision(v_clips).mean(0)
        cos = float(a_mean @ v_mean) / float(a_mean.norm() * v_mean.norm())
        assert abs(cos - float(together.details["score"][i])) <= BATCH_ATOL


def test_float_video_equals_uint8_video():
    net = _small()
    audio, video, rates, fps = _synthetic_pairs(1)
    results = []
    for vid in (video[0], video[0].float() / 255):
        m = ImageBindScore(sample_rate=rates[0], video_fps=fps[0], backbone=net)
        m.update([audio[0]], [vid])
        results.append(m.compute())
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


def _cosine_by_hand(net: ImageBind, audio: torch.Tensor, rate: int, video: torch.Tensor, fps: float) -> float:
    a_mean = net.embed_audio(imagebind_audio_clips(audio, rate)).mean(0)
    v_mean = net.embed_vision(imagebind_fastvideo_clips(video, fps)).mean(0)
    return float(a_mean @ v_mean) / float(a_mean.norm() * v_mean.norm())


def test_duration_mismatch_is_warned_counted_and_scored_unchanged():
    """3 s of audio with 12 s of video: a UserWarning naming both durations, counted; the score is the plain cosine."""
    net = _small()
    g = torch.Generator().manual_seed(11)
    audio = [torch.rand(1, s * 16000, generator=g) - 0.5 for s in (3, 3, 3)]
    video = [torch.randint(0, 256, (s * 8, 3, 20, 28), generator=g, dtype=torch.uint8) for s in (12, 3, 5)]
    metric = ImageBindScore(sample_rate=16000, video_fps=8.0, backbone=net)
    with pytest.warns(UserWarning, match=r"1 of 3 pairs .* \(pair 0: audio 3\.00 s, video 12\.00 s\)"):
        metric.update(audio, video)
    metric.compute()
    d = metric.details
    # 3 s vs 5 s differ by exactly one clip (2 s): not a mismatch ("more than").
    assert d["duration_mismatch"].tolist() == [True, False, False] and d["n_duration_mismatch"] == 1
    assert d["n_samples"] == 3 and d["n_silent"] == 0
    for i in range(3):
        assert abs(float(d["score"][i]) - _cosine_by_hand(net, audio[i], 16000, video[i], 8.0)) <= BATCH_ATOL
    matched = ImageBindScore(sample_rate=16000, video_fps=8.0, backbone=net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        matched.update(audio[1:], video[1:])
    matched.compute()
    assert matched.details["n_duration_mismatch"] == 0


def test_silent_audio_is_counted_and_scored_as_the_reference():
    """An all-zero track still has a finite fbank and embedding (the references score it): counted, not dropped."""
    net = _small()
    audio, video, rates, fps = _synthetic_pairs(2)
    audio[0] = torch.zeros_like(audio[0])
    metric = ImageBindScore(backbone=net)
    metric.update(audio, video, sample_rate=rates, video_fps=fps, ids=[0, 1])
    metric.update(audio[:1], video[:1], sample_rate=rates[0], video_fps=fps[0], ids=[0])  # a repeat: counted once
    metric.compute()
    d = metric.details
    assert d["silent"].tolist() == [True, False] and d["n_silent"] == 1 and d["n_samples"] == 2
    assert d["n_skipped_silent"] == 0
    expected = _cosine_by_hand(net, audio[0], rates[0], video[0], fps[0])
    assert math.isfinite(expected) and abs(float(d["score"][0]) - expected) <= BATCH_ATOL


def _ddp_run(rank: int, world: int) -> dict[str, tuple[float, torch.Tensor, int]]:
    """Pairs 2r, 2r + 1 on rank r (all four on a single process), both protocols; value and details per protocol."""
    net = _small()
    audio, video, rates, fps = _synthetic_pairs(4)
    shard = slice(2 * rank, 2 * rank + 2) if world > 1 else slice(None)
    out = {}
    for protocol in ("fastvideo", "av-benchmark"):
        metric = ImageBindScore(protocol=protocol, backbone=net, duration=4.0 if protocol == "av-benchmark" else None)
        metric.update(audio[shard], video[shard], sample_rate=rates[shard], video_fps=fps[shard])
        value = metric.compute()
        out[protocol] = (float(value), metric.per_sample()["score"].clone(), metric.details["n_samples"])
    return out


@pytest.mark.ddp
def test_ddp_equals_single_process():
    results = run_ddp(_ddp_run, 2)
    torch.set_num_threads(1)  # the workers run single-threaded
    try:
        single = _ddp_run(0, 1)
    finally:
        torch.set_num_threads(2)
    for protocol, (value, cosines, n) in single.items():
        assert n == 4
        for rank_result in results:
            rank_value, rank_cosines, rank_n = rank_result[protocol]
            assert rank_n == 4
            assert abs(rank_value - value) <= BATCH_ATOL
            torch.testing.assert_close(rank_cosines, cosines, atol=BATCH_ATOL, rtol=0)


def test_repeated_ids_are_counted_once():
    net = _small()
    audio, video, rates, fps = _synthetic_pairs(3)
    plain = ImageBindScore(backbone=net)
    plain.update(audio, video, sample_rate=rates, video_fps=fps)
    expected = plain.compute()
    # Two "ranks" of a DistributedSampler-like split: ids 2, 0 | 1, 0 (id 0 repeated), in any order.
    with_ids = ImageBindScore(backbone=net)
    for part in ([2, 0], [1, 0]):
        with_ids.update(
            [audio[i] for i in part],
            [video[i] for i in part],
            sample_rate=[rates[i] for i in part],
            video_fps=[fps[i] for i in part],
            ids=torch.tensor(part),
        )
    value = with_ids.compute()
    assert abs(float(value) - float(expected)) <= BATCH_ATOL
    torch.testing.assert_close(with_ids.details["score"], plain.details["score"], atol=BATCH_ATOL, rtol=0)
    assert with_ids.details["ids"].tolist() == [0, 1, 2] and with_ids.details["n_samples"] == 3
    assert with_ids.details["n_duplicates_dropped"] == 1 and plain.details["n_duplicates_dropped"] == 0
    assert plain.details["ids"].tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="`ids` must hold one integer per sample"):
        with_ids.update(audio[:1], video[:1], sample_rate=rates[0], video_fps=fps[0], ids=[0, 1])


def test_bad_inputs_raise_clear_errors():
    net = _small()
    audio = torch.zeros(2, 1, 5 * 16000)
    video = torch.zeros(2, 125, 3, 24, 32, dtype=torch.uint8)
    m = ImageBindScore(sample_rate=16000, video_fps=25.0, backbone=net)
    cases = [
        (dict(preds=audio[:1], target=video), "pair them"),
        (dict(preds=audio, target=video.permute(0, 1, 3, 4, 2)), "channel-last"),
        (dict(preds=audio, target=video[:, :, :1]), "3 channels"),
        (dict(preds=audio, target=video.float() + 2.0), r"\[0, 1\]"),
        (dict(preds=audio, target=video[0]), "target"),
        (dict(preds=torch.zeros(2, 5 * 16000, 1), target=video), "channel-last"),
        (dict(preds=torch.zeros(2, 1, 100), target=video), r"preds\[0\].*25 ms"),
        (dict(preds=audio, target=video, video_fps=[25.0]), "video_fps"),
        (dict(preds=audio, target=video, video_fps=0.0), "video_fps"),
        (dict(preds=audio, target=video, sample_rate=0), "sample_rate"),
        (dict(preds=[], target=[]), "empty"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            m.update(**kwargs)
    with pytest.raises(ValueError, match="video_fps"):
        ImageBindScore(sample_rate=16000, backbone=net).update(audio, video)
    with pytest.raises(ValueError, match="sample_rate"):
        ImageBindScore(video_fps=25.0, backbone=net).update(audio, video)
    av = ImageBindScore(sample_rate=16000, video_fps=25.0, protocol="av-benchmark", backbone=net)
    with pytest.raises(ValueError, match=r"target\[0\].*too short.*duration"):
        av.update(audio, video)  # 5 s of video, 8 s needed
    with pytest.raises(ValueError, match="duration"):
        ImageBindScore(protocol="av-benchmark", duration=3.0)
    with pytest.raises(ValueError, match="protocol"):
        ImageBindScore(protocol="avbench")
    with pytest.raises(ValueError, match="no scored samples"):
        m.compute()


def test_backbone_is_frozen_and_out_of_state_dict():
    net = _small()
    m = ImageBindScore(sample_rate=16000, video_fps=25.0, backbone=net)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    assert not any(k.startswith(("_backbone", "model")) for k in m.state_dict())


# ---------------------------------------------------------------------------------------------------------------------
# full size (fill-v1 ImageBind-huge loaded from a manifest-shaped checkpoint file)


def _module_from_manifest(entries: list[dict]) -> nn.Module:
    """An empty module tree whose parameter/buffer names and shapes are the manifest's (independent of the port)."""
    root = nn.Module()
    for e in entries:
        *path, leaf = e["name"].split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        if e["kind"] == "parameter":
            mod.register_parameter(leaf, nn.Parameter(torch.empty(e["shape"]), requires_grad=False))
        else:  # the only vision/audio buffer keeps its constructor value log(20) (README §2)
            mod.register_buffer(leaf, torch.tensor(math.log(20.0)))
    return root


@pytest.fixture(scope="session")
def imagebind_huge(golden, fill_v1, tmp_path_factory) -> ImageBind:
    entries = [e for e in golden["manifest"]["state_dict"] if e["vision_audio_path"]]
    tree = fill_v1(_module_from_manifest(entries))
    state = {**tree.state_dict(), **_fake_other_towers(golden["manifest"])}
    assert len(state) == golden["manifest"]["num_state_dict_entries"]
    path: Path = tmp_path_factory.mktemp("imagebind") / "imagebind_huge.pth"
    torch.save(state, path)
    del tree, state
    net = ImageBind(weights=path)
    path.unlink()  # the weights are memory-mapped; the mapping outlives the file
    return net


@pytest.mark.slow
def test_full_size_checkpoint_loads_strictly(golden, imagebind_huge):
    subset = golden["manifest"]["vision_audio_subset"]
    sd = imagebind_huge.model.state_dict()
    entries = [e for e in golden["manifest"]["state_dict"] if e["vision_audio_path"]]
    assert list(sd) == [e["name"] for e in entries] and len(sd) == subset["num_state_dict_entries"]
    assert all(list(sd[e["name"]].shape) == e["shape"] for e in entries)
    n_params = sum(p.numel() for p in imagebind_huge.model.parameters())
    assert n_params == subset["num_parameters"] == 719_065_088
    # README §2 weight fingerprint (float64 sums of the fill-v1 tensors).
    fingerprint = {
        "modality_preprocessors.vision.rgbt_stem.proj.1.weight": -8.14757915,
        "modality_preprocessors.audio.rgbt_stem.proj.weight": -1.62343826,
        "modality_trunks.audio.blocks.0.attn.bias_k": -0.605824727,
        "modality_heads.vision.2.weight": 4.63370632,
        "modality_postprocessors.audio.1.log_logit_scale": 2.99573231,
    }
    for name, total in fingerprint.items():
        assert abs(float(sd[name].double().sum()) - total) < 1e-6, name


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS)
def test_full_size_audio_embeddings(golden, imagebind_huge, pair):
    ref = golden["outputs"][pair]["audio"]
    with torch.no_grad():
        head = imagebind_huge.embed_audio(ref["clips"], postprocess=False)
    torch.testing.assert_close(head, ref["emb_head_clips"], atol=HEAD_ATOL, rtol=0)
    emb = 20 * nn.functional.normalize(head, dim=-1)
    torch.testing.assert_close(emb, ref["emb_clips"], atol=AUDIO_EMB_ATOL, rtol=0)
    torch.testing.assert_close(emb.mean(0), ref["emb"], atol=AUDIO_EMB_ATOL, rtol=0)


@pytest.mark.slow
def test_full_size_vision_fastvideo_clips(golden, imagebind_huge):
    """Head outputs and embedding of one of the 15 fastvideo clips of v2 (the last, right crop); all 15 clips of v1
    go through the metric in test_full_size_fastvideo_score_end_to_end."""
    p = _pair(golden, "v2")
    ref = golden["outputs"]["v2"]["fastvideo"]
    pick = [14]  # the last temporal clip (frames 150, 199), right crop
    clips = imagebind_fastvideo_clips(p["frames"], p["fps"])[pick]
    with torch.no_grad():
        head = imagebind_huge.embed_vision(clips, postprocess=False)
    torch.testing.assert_close(head, ref["vision_emb_head_clips"][pick], atol=HEAD_ATOL, rtol=0)
    emb = nn.functional.normalize(head, dim=-1)
    torch.testing.assert_close(emb, ref["vision_emb_clips"][pick], atol=VISION_EMB_ATOL, rtol=0)


def _update_recording_embeddings(metric: ImageBindScore, p: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``metric.update`` on one golden pair; returns the clip-averaged (vision, audio) embeddings it computed."""
    recorded = []
    embed = metric._embed_clips  # what update() embeds the model clips with

    def spy(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        recorded.append(embed(*args, **kwargs))
        return recorded[-1]

    metric._embed_clips = spy
    metric.update([p["wave"]], [p["frames"]])
    ((vision, audio),) = recorded
    return vision, audio


@pytest.mark.slow
def test_full_size_avbench_score_end_to_end(golden, imagebind_huge):
    """av-benchmark protocol on v1 through the public metric: 3 vision clips, 3 audio clips, one score."""
    p = _pair(golden, "v1")
    ref = golden["outputs"]["v1"]
    metric = ImageBindScore(sample_rate=p["sr"], video_fps=p["fps"], protocol="av-benchmark", backbone=imagebind_huge,
                            duration=p["duration"])  # fmt: skip
    vision, audio = _update_recording_embeddings(metric, p)
    torch.testing.assert_close(vision[0], ref["avbench"]["vision_emb"], atol=VISION_EMB_ATOL, rtol=0)
    torch.testing.assert_close(audio[0], ref["avbench"]["audio_emb"], atol=AUDIO_EMB_ATOL, rtol=0)
    assert abs(float(metric.compute()) - ref["avbench"]["ib_score"]) <= SCORE_ATOL
    assert abs(float(metric.details["score"][0]) - 0.0231255423) <= SCORE_ATOL  # README §4 table


@pytest.mark.slow
def test_full_size_fastvideo_score_end_to_end(golden, imagebind_huge):
    """fastvideo protocol on v1 through the public metric and the huge model: 15 vision clips, 3 audio clips."""
    p = _pair(golden, "v1")
    ref = golden["outputs"]["v1"]
    metric = ImageBindScore(sample_rate=p["sr"], video_fps=p["fps"], protocol="fastvideo", backbone=imagebind_huge)
    vision, audio = _update_recording_embeddings(metric, p)
    torch.testing.assert_close(vision[0], ref["fastvideo"]["vision_emb"], atol=VISION_EMB_ATOL, rtol=0)
    torch.testing.assert_close(audio[0], ref["audio"]["emb"], atol=AUDIO_EMB_ATOL, rtol=0)
    assert abs(float(metric.compute()) - ref["fastvideo"]["ib_score"]) <= SCORE_ATOL
