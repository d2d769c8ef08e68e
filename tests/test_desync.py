"""DeSync metric: functional rules, video preprocessing vs the goldens, metric behaviour on a small Synchformer, DDP,
input errors, and end-to-end golden parity (README §4-§5 of ../shared/golden/synchformer)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torchaudio
from torch import Tensor, nn

from tests.ddp import run_ddp
from tests.test_synchformer import (  # noqa: F401 - fixtures used by name
    CROP_ATOL,
    FRAME_RTOL,
    LOGITS_ATOL,
    MEL_ATOL,
    PAIRS,
    TINY,
    full_model,
    golden_frames,
    golden_video,
    load_pair,
)
from torchmetrics_av import DeSync, testing
from torchmetrics_av.backbones.synchformer import (
    Synchformer,
    SynchformerMel,
    nearest_frame_indices,
    segment_audio,
    segment_video,
    short_side_resize_crop,
    synchformer_audio_mel,
    synchformer_frame_indices,
    synchformer_frames,
)
from torchmetrics_av.functional.desync import (
    desync_from_logits,
    exact_offset_grid,
    offset_classes,
    offset_grid,
    offsets_from_logits,
)
from torchmetrics_av.preprocessing import as_video_list, ffmpeg_fps_indices, frame_rates, to_signed_unit

GOLDEN_PROTOCOL = {"fastvideo": "fastvideo", "avbench": "av-benchmark"}
# Synchformer's classes by definition (make_class_grid(-2, 2, 21)): k / 5 - 2 seconds, written out independently.
EXACT_GRID = [(k - 10) / 5 for k in range(21)]


def tiny_backbone(seed: int = 0) -> Synchformer:
    return testing.tiny_backbone("synchformer", seed=seed, **TINY)


def av_pair(seconds: float, fps: float = 25.0, sr: int = 16000, seed: int = 0, hw: tuple[int, int] = (24, 40)):
    """Random audio (1, N) float and uint8 video (F, 3, H, W) of the given duration."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.rand(1, round(seconds * sr), generator=g) - 0.5
    video = torch.randint(0, 256, (round(seconds * fps), 3, *hw), generator=g, dtype=torch.uint8)
    return audio, video


# ---------------------------------------------------------------------------------------------------------------------
# functional


def test_offset_grid_is_float32_linspace() -> None:
    grid = offset_grid()
    assert grid.dtype == torch.float32 and grid.shape == (21,)
    assert torch.equal(grid, torch.tensor(np.linspace(-2.0, 2.0, 21), dtype=torch.float32))
    assert float(grid[6]) == 0.800000011920929 * -1 and float(grid[16]) == 1.2000000476837158


def test_exact_offset_grid_is_the_definition_and_rounds_to_the_reference_grid() -> None:
    exact = exact_offset_grid()
    assert exact.dtype == torch.float64 and exact.tolist() == EXACT_GRID
    assert float(exact[3]) == -1.4 and float(offset_grid()[3]) == -1.399999976158142
    assert torch.equal(exact.float(), offset_grid())  # the references' float32 grid is its rounding
    z = torch.full((2, 21), -1.0)
    z[0, 3] = 2.0
    z[1, [17, 18]] = 2.0  # a tie: the first maximal class
    assert offset_classes(z).tolist() == [3, 17]
    assert offsets_from_logits(z, exact).tolist() == [-1.4, 1.4]
    assert offsets_from_logits(z).tolist() == [float(np.float32(-1.4)), float(np.float32(1.4))]
    with pytest.raises(ValueError, match="num"):
        exact_offset_grid(num=1)
    with pytest.raises(ValueError, match=r"\(N, 21\)"):
        offset_classes(torch.zeros(3))


def test_desync_from_logits_formula_and_ties() -> None:
    front = torch.zeros(3, 21)
    back = torch.zeros(3, 21)
    front[0, 6], back[0, 16] = 1.0, 1.0  # -0.8 s and +1.2 s
    front[1, 10], back[1, 10] = 5.0, 5.0  # in sync
    front[2, [4, 12]] = 3.0  # a tie: the first maximal class wins (torch.argmax, as the references)
    back[2, 20] = 1.0
    out = desync_from_logits(front, back)
    assert out.dtype == torch.float64
    expected = [(0.800000011920929 + 1.2000000476837158) / 2, 0.0, (1.2000000476837158 + 2.0) / 2]
    assert out.tolist() == expected
    assert offsets_from_logits(front).tolist() == pytest.approx([-0.8, 0.0, -1.2], abs=1e-6)
    assert desync_from_logits(front).tolist() == pytest.approx([0.8, 0.0, 1.2], abs=1e-6)
    with pytest.raises(ValueError, match="logits"):
        offsets_from_logits(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="back_logits"):
        desync_from_logits(front, back[:2])


# ---------------------------------------------------------------------------------------------------------------------
# video preprocessing


@pytest.mark.parametrize("name", PAIRS)
def test_frame_indices_match_golden(name: str) -> None:
    d = load_pair(name)
    t, fps = d["input.num_frames"], float(d["input.fps"])
    assert nearest_frame_indices(t, fps, 25.0, min_frames=16).tolist() == d["fastvideo.frame_index"]
    keep = int(25 * d["avbench.duration_sec"])
    assert ffmpeg_fps_indices(t, fps, 25.0)[:keep].tolist() == d["avbench.frame_index"]


def test_frame_index_rules() -> None:
    # 24 -> 25 fps: FastVideo duplicates frame 0 first, ffmpeg's round=near frame 11 (README §4).
    assert nearest_frame_indices(48, 24.0, 25.0).tolist()[:3] == [0, 0, 1]
    ff = ffmpeg_fps_indices(48, 24.0, 25.0).tolist()
    assert ff[:13] == [*range(12), 11] and len(ff) == 50
    # Same rate: identity; 30 -> 25: one frame in six is dropped; ffmpeg's stream ends at round(T * 25 / fps).
    assert ffmpeg_fps_indices(10, 25.0, 25.0).tolist() == list(range(10))
    assert nearest_frame_indices(10, 25.0, 25.0).tolist() == list(range(10))
    assert ffmpeg_fps_indices(30, 30.0, 25.0).tolist()[:7] == [0, 1, 2, 4, 5, 6, 7]
    assert len(ffmpeg_fps_indices(121, 24.0, 25.0)) == 126 and len(ffmpeg_fps_indices(240, 24.0, 25.0)) == 250
    # NTSC rates are handled as exact fractions.
    assert torch.equal(ffmpeg_fps_indices(300, 24000 / 1001, 25.0), ffmpeg_fps_indices(300, 23.976023976023978, 25.0))
    # Every index is a valid source frame and they never go backwards.
    for fps in (12.5, 23.976, 29.97, 50.0, 60.0):
        idx = ffmpeg_fps_indices(200, fps, 25.0)
        assert idx.min() >= 0 and idx.max() <= 199 and torch.all(idx[1:] >= idx[:-1])
        assert len(idx) == int(200 * 25 / fps + 0.5)
        if fps <= 25:  # upsampling shows every frame, first to last
            assert idx[0] == 0 and idx.max() == 199 and len(set(idx.tolist())) == 200


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("prefix", ["fastvideo", "avbench"])
def test_preprocessed_frames_match_golden(name: str, prefix: str) -> None:
    d = load_pair(name)
    frames = golden_frames(d, prefix)
    s = d[f"{prefix}.video_segments_shape"][0]
    assert segment_video(frames).shape == (s, 16, 3, 224, 224) == tuple(d[f"{prefix}.video_segments_shape"])
    covered = frames[: 8 * s + 8]
    rtol = FRAME_RTOL if prefix == "fastvideo" else 0.0  # av-benchmark frames are exact (uint8 resize)
    torch.testing.assert_close(covered.double().sum(dim=(1, 2, 3)), d[f"{prefix}.frame_sum"], rtol=rtol, atol=0)
    torch.testing.assert_close(
        covered.double().abs().sum(dim=(1, 2, 3)), d[f"{prefix}.frame_abs_sum"], rtol=rtol, atol=0
    )
    torch.testing.assert_close(covered.amin(dim=(1, 2, 3)), d[f"{prefix}.frame_min"], rtol=0, atol=CROP_ATOL)
    torch.testing.assert_close(covered.amax(dim=(1, 2, 3)), d[f"{prefix}.frame_max"], rtol=0, atol=CROP_ATOL)
    segs = segment_video(frames).double().sum(dim=(1, 2, 3, 4))
    torch.testing.assert_close(segs, d[f"{prefix}.segment_sum"], rtol=rtol, atol=0)
    crops = frames[d[f"{prefix}.frame_crop_index"]]
    torch.testing.assert_close(crops[:, :, 104:120, 104:120], d[f"{prefix}.frame_crop_center"], rtol=0, atol=CROP_ATOL)
    torch.testing.assert_close(crops[:, :, :8, :8], d[f"{prefix}.frame_crop_topleft"], rtol=0, atol=CROP_ATOL)
    torch.testing.assert_close(crops[:, :, -8:, -8:], d[f"{prefix}.frame_crop_bottomright"], rtol=0, atol=CROP_ATOL)
    if prefix == "avbench":
        levels = (covered.double() + 1) * 127.5  # back to the resized uint8 values, exactly
        assert (levels - levels.round()).abs().max() < 1e-3 and covered.min() >= -1 and covered.max() <= 1


def test_synchformer_front_end_composes_the_protocol_rules() -> None:
    """The backbone's front end: the spec's frame rule and duration cut, then the spec's resize, chunk by chunk."""
    assert torch.equal(
        synchformer_frame_indices(121, 24.0, "nearest"), nearest_frame_indices(121, 24.0, 25.0, min_frames=16)
    )
    assert torch.equal(synchformer_frame_indices(121, 24.0, "ffmpeg"), ffmpeg_fps_indices(121, 24.0, 25.0))
    assert synchformer_frame_indices(5, 24.0, "nearest").shape == (16,)  # FastVideo's one-segment minimum
    cut = synchformer_frame_indices(240, 24.0, "ffmpeg", duration=8.0)
    assert torch.equal(cut, ffmpeg_fps_indices(240, 24.0, 25.0)[:200])
    with pytest.raises(ValueError, match=r"gives 126 frames at 25 fps \(121 at 24 fps\); `duration`=8.0 s needs 200"):
        synchformer_frame_indices(121, 24.0, "ffmpeg", duration=8.0)
    with pytest.raises(ValueError, match="`rule`"):
        synchformer_frame_indices(10, 25.0, "linear")  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(9)
    video = torch.randint(0, 256, (40, 3, 36, 64), generator=g, dtype=torch.uint8)
    idx = torch.tensor([0, 0, *range(1, 40)])  # more than one FRAME_CHUNK
    fv = synchformer_frames(video, idx, "interpolate")
    assert torch.equal(fv, to_signed_unit(short_side_resize_crop(video[idx].float() / 255, 224, "interpolate")))
    # av-benchmark quantises float video back to uint8 first (round(x * 255)): the same frames as the uint8 input.
    tv = synchformer_frames(video.float() / 255, idx, "torchvision")
    assert torch.equal(tv, to_signed_unit(short_side_resize_crop(video[idx], 224, "torchvision")))
    with pytest.raises(ValueError, match="`style`"):
        synchformer_frames(video, idx, "nearest")  # type: ignore[arg-type]


def test_synchformer_audio_front_end() -> None:
    """Channel mean, 16 kHz, the duration cut, segments and the log-mel, in that order."""
    g = torch.Generator().manual_seed(12)
    clip = torch.rand(2, 6 * 22050, generator=g) - 0.5
    mel = SynchformerMel()
    wave = torchaudio.transforms.Resample(22050, 16000)(clip.mean(0))
    got = synchformer_audio_mel(clip, 22050, mel, pad_short=False, pad="zero", duration=5.0)
    torch.testing.assert_close(got, mel(segment_audio(wave[:80000], pad_short=False), pad="zero"), rtol=0, atol=1e-5)
    assert got.shape == (14, 128, 66)
    whole = synchformer_audio_mel(clip, 22050, mel, pad_short=True, pad="min")
    assert whole.shape[0] == (wave.shape[0] - 10240) // 5120 + 1
    with pytest.raises(ValueError, match=r"lasts 6\.000 s; `duration`=7.0 s of audio is needed"):
        synchformer_audio_mel(clip, 22050, mel, pad_short=False, pad="zero", duration=7.0)


def test_resize_rules_differ_where_the_references_differ() -> None:
    """72x131: FastVideo rounds the long side (408), torchvision floors it (407); crop offsets follow each rule."""
    x = torch.randint(0, 256, (2, 3, 72, 131), dtype=torch.uint8)
    fv = short_side_resize_crop(x.float() / 255, 224, "interpolate")
    tv = short_side_resize_crop(x, 224, "torchvision")
    assert fv.shape == tv.shape == (2, 3, 224, 224) and tv.dtype == torch.uint8
    ref_fv = torch.nn.functional.interpolate(x.float() / 255, size=(224, 408), mode="bicubic", antialias=True)
    assert torch.equal(fv, ref_fv[..., :, 92:316])
    ref_tv = torch.nn.functional.interpolate(x, size=(224, 407), mode="bicubic", antialias=True)
    assert torch.equal(tv, ref_tv[..., :, 92:316])  # round(183 / 2) = 92 (half to even)
    with pytest.raises(ValueError, match="uint8"):
        short_side_resize_crop(x.float(), 224, "torchvision")
    assert to_signed_unit(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]


def test_video_input_validation() -> None:
    ok = torch.zeros(2, 20, 3, 8, 8, dtype=torch.uint8)
    assert len(as_video_list(ok)) == 2 and len(as_video_list(list(ok))) == 2
    with pytest.raises(ValueError, match=r"channel-last"):
        as_video_list(torch.zeros(1, 20, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\(B, F, C, H, W\)"):
        as_video_list(torch.zeros(20, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_video_list(torch.full((1, 20, 3, 8, 8), 255.0))
    with pytest.raises(ValueError, match="NaN"):
        as_video_list(torch.full((1, 20, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        as_video_list([])
    with pytest.raises(ValueError, match="dtype"):
        as_video_list(torch.zeros(1, 20, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="video_fps"):
        frame_rates(None, 2)
    with pytest.raises(ValueError, match="video_fps"):
        frame_rates([25.0], 2)
    with pytest.raises(ValueError, match="video_fps"):
        frame_rates(-1.0, 1)


# ---------------------------------------------------------------------------------------------------------------------
# metric behaviour (small Synchformer, random weights)


def run_tiny(protocol: str, pairs: list[tuple[Tensor, Tensor]], fps: float = 25.0, **kwargs: Any) -> DeSync:
    metric = DeSync(
        sample_rate=16000, video_fps=fps, protocol=protocol, backbone=tiny_backbone(), keep_logits=True, **kwargs
    )
    for audio, video in pairs:
        metric.update(audio[None], video[None])
    metric.compute()
    return metric


def test_batch_composition_and_input_forms_do_not_change_results() -> None:
    pairs = [av_pair(5.0, seed=1), av_pair(5.6, seed=2)]
    one_by_one = run_tiny("fastvideo", pairs)
    backbone = tiny_backbone()
    metric = DeSync(sample_rate=16000, video_fps=[25.0, 25.0], backbone=backbone, keep_logits=True)
    metric.update([a for a, _ in pairs], [v.float() / 255 for _, v in pairs])  # lists, float video in [0, 1]
    value = metric.compute()
    a, b = one_by_one.details, metric.details
    torch.testing.assert_close(a["logits_front"], b["logits_front"], rtol=0, atol=1e-5)
    torch.testing.assert_close(a["logits_back"], b["logits_back"], rtol=0, atol=1e-5)
    assert torch.equal(a["offset"], b["offset"]) and float(value) == float(one_by_one.compute())
    assert b["num_segments"].tolist() == [14, 16] and b["n_samples"] == 2
    assert value.dtype == torch.float64 and float(value) == pytest.approx(float(b["offset"].mean()), abs=1e-12)
    # The score uses the references' float32 grid; the signed offsets are the exact values of the same classes.
    assert torch.equal(b["offset"], (b["offset_front"].float().abs().double() + b["offset_back"].float().abs()) / 2)
    assert b["offset_front"].dtype == torch.float64 and set(b["offset_front"].tolist()) <= set(EXACT_GRID)
    with pytest.warns(FutureWarning, match="desync_front"):
        assert torch.equal(b["desync_front"], b["offset_front"].abs())  # deprecated key


def test_only_window_segments_are_encoded_and_windows_are_first_and_last_14() -> None:
    """A 10 s clip (30 segments): the metric encodes 28 and its logits equal the backbone run on all 30 segments."""
    audio, video = av_pair(10.0, fps=24.0, seed=3)
    net = tiny_backbone()
    metric = DeSync(sample_rate=16000, video_fps=24.0, backbone=net, keep_logits=True)
    calls: list[int] = []
    original = net.video_features
    net.video_features = lambda x: (calls.append(x.shape[0]), original(x))[1]  # type: ignore[method-assign]
    metric.update(audio[None], video[None])
    metric.compute()
    assert sum(calls) == 28 and metric.details["num_segments"].tolist() == [30]
    net.video_features = original  # type: ignore[method-assign]
    frames = video[nearest_frame_indices(video.shape[0], 24.0, 25.0)].float() / 255
    segments = segment_video(to_signed_unit(short_side_resize_crop(frames, 224, "interpolate")))
    mel = SynchformerMel()(segment_audio(audio[0]), pad="min")
    with torch.no_grad():
        front, back = net(segments, mel)
    torch.testing.assert_close(metric.details["logits_front"][0], front, rtol=0, atol=1e-5)
    torch.testing.assert_close(metric.details["logits_back"][0], back, rtol=0, atol=1e-5)


def test_av_benchmark_protocol_truncates_to_duration_and_quantises_float_video() -> None:
    audio, video = av_pair(6.0, fps=24.0, seed=4)
    m_uint8 = run_tiny("av-benchmark", [(audio, video)], fps=24.0, duration=5.0)
    metric = DeSync(
        sample_rate=16000,
        video_fps=24.0,
        protocol="av-benchmark",
        backbone=tiny_backbone(),
        keep_logits=True,
        duration=5.0,
    )
    metric.update(audio[None, :, :80000], (video.float() / 255)[None])  # the audio past 5 s is never used
    metric.compute()
    assert torch.equal(metric.details["logits_front"], m_uint8.details["logits_front"])
    assert metric.details["num_segments"].tolist() == [(5 * 16000 - 10240) // 5120 + 1] == [14]


def test_metric_state_and_forward() -> None:
    audio, video = av_pair(5.0, seed=5)
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone())
    assert not any("model" in k for k in metric.state_dict())  # the backbone stays out of the metric's state
    batch_value = metric(audio[None], video[None])
    assert batch_value.dtype == torch.float64 and float(batch_value) == float(metric.compute())
    assert 0.0 <= float(batch_value) <= 2.0 and float(batch_value * 10) == pytest.approx(round(float(batch_value * 10)))
    metric.reset()
    with pytest.raises(RuntimeError, match="compute"):
        _ = metric.details
    with pytest.raises(ValueError, match="update"), pytest.warns(UserWarning, match="before the ``update``"):
        metric.compute()
    assert metric.details["n_samples"] == 0  # the counts of a compute() that had nothing to reduce


def test_bad_inputs_raise_clear_errors() -> None:
    audio, video = av_pair(5.0, seed=6)
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone())
    with pytest.raises(ValueError, match="too short"):
        metric.update(audio[None, :, :64000], video[None, :100])  # 4 s: 12 segments
    with pytest.raises(ValueError, match="equal counts"):
        metric.update(torch.cat([audio, audio], dim=1)[None], video[None])  # 10 s audio, 5 s video
    with pytest.raises(ValueError, match="paired"):
        metric.update(torch.cat([audio, audio]), video[None])
    with pytest.raises(ValueError, match="channel-last"):
        metric.update(audio[None], video.permute(0, 2, 3, 1)[None])
    with pytest.raises(ValueError, match="preds"):
        metric.update(audio.T[None], video[None])  # (T, C) audio
    with pytest.raises(ValueError, match="video_fps"):
        DeSync(sample_rate=16000, backbone=tiny_backbone()).update(audio[None], video[None])
    with pytest.raises(ValueError, match="sample_rate"):
        DeSync(video_fps=25.0, backbone=tiny_backbone()).update(audio[None], video[None])
    with pytest.raises(ValueError, match="duration"):
        DeSync(protocol="fastvideo", duration=8.0)
    with pytest.raises(ValueError, match="protocol"):
        DeSync(protocol="mmaudio")
    avb = DeSync(sample_rate=16000, video_fps=25.0, protocol="av-benchmark", backbone=tiny_backbone())
    with pytest.raises(ValueError, match="duration"):
        avb.update(audio[None], video[None])  # 5 s clip, default duration 8 s
    assert len(metric.sample_id) == 0 and len(metric.offset) == 0  # failed updates left no partial state


def _ddp_desync(rank: int, world: int, seeds: list[int]) -> dict[str, Any]:
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone(), keep_logits=True)
    mine = seeds[rank::world]
    for seed in mine:
        audio, video = av_pair(5.0, seed=seed)
        metric.update(audio[None], video[None])
    value = metric.compute()
    return {"value": float(value), **{k: v for k, v in metric.details.items() if isinstance(v, Tensor | int)}}


@pytest.mark.ddp
def test_ddp_equals_single_process() -> None:
    seeds = [11, 12, 13]
    results = run_ddp(_ddp_desync, 2, seeds)
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=tiny_backbone(), keep_logits=True)
    for seed in [11, 13, 12]:  # DDP gathers rank 0's samples (11, 13), then rank 1's (12)
        audio, video = av_pair(5.0, seed=seed)
        metric.update(audio[None], video[None])
    single = float(metric.compute())
    for res in results:
        assert res["value"] == pytest.approx(single, abs=1e-12) and res["n_samples"] == 3
        torch.testing.assert_close(res["logits_front"], metric.details["logits_front"], rtol=0, atol=1e-5)
        assert torch.equal(res["offset"], metric.details["offset"])


# ---------------------------------------------------------------------------------------------------------------------
# golden parity of the whole metric


class GoldenFeatures(nn.Module):
    """Backbone stand-in: the real full-size sync head and front end, encoder outputs from the golden float16 features
    (the video encoder costs ~10 s per segment on CPU). Records what the metric feeds each encoder."""

    def __init__(self, net: Synchformer, vfeats: Tensor, afeats: Tensor | None) -> None:
        super().__init__()
        self.net = net
        self.mel, self.grid, self.segment_batch = net.mel, net.grid, 1000
        self.vfeats, self.afeats = vfeats, afeats
        self.seen_segments: list[Tensor] = []
        self.seen_mel: list[Tensor] = []

    def video_features(self, segments: Tensor) -> Tensor:
        self.seen_segments.append(segments)
        return self.vfeats[: segments.shape[0]]

    def audio_features(self, mel: Tensor) -> Tensor:
        self.seen_mel.append(mel)
        return self.afeats[: mel.shape[0]] if self.afeats is not None else self.net.audio_features(mel)

    def sync_logits(self, v: Tensor, a: Tensor) -> Tensor:
        return self.net.sync_logits(v, a)


def _golden_metric(net: Synchformer, name: str, prefix: str, afeats_from_golden: bool) -> None:
    d = load_pair(name)
    s = d[f"{prefix}.video_segments_shape"][0]
    needed = sorted(set(range(14)) | set(range(s - 14, s)))
    afeats = d["fastvideo.afeats_f16"][needed].float() if afeats_from_golden else None
    stub = GoldenFeatures(net, d[f"{prefix}.vfeats_f16"][needed].float(), afeats)
    kwargs = {"duration": d["avbench.duration_sec"]} if prefix == "avbench" else {}
    metric = DeSync(
        sample_rate=d["input.audio_sr"], video_fps=float(d["input.fps"]), protocol=GOLDEN_PROTOCOL[prefix],
        backbone=stub, keep_logits=True, **kwargs,
    )  # fmt: skip
    audio = d["input.audio_int16"]  # int16 PCM, scaled by 1/32768 like the references' WAV decoders
    metric.update(audio[None], golden_video(d)[None])
    value = float(metric.compute())
    det = metric.details
    # What reached the encoders: the golden segments and mels.
    segs = torch.cat(stub.seen_segments)
    rtol = FRAME_RTOL if prefix == "fastvideo" else 0.0
    torch.testing.assert_close(
        segs.double().sum(dim=(1, 2, 3, 4)), d[f"{prefix}.segment_sum"][needed], rtol=rtol, atol=0
    )
    mel = torch.cat(stub.seen_mel)
    if prefix == "fastvideo":
        torch.testing.assert_close(mel, d["fastvideo.mel"][needed, 0], rtol=0, atol=MEL_ATOL)
    else:
        torch.testing.assert_close(mel[0], d["avbench.mel_seg0"][0], rtol=0, atol=MEL_ATOL)
        sums = mel.double().sum(dim=(1, 2))
        torch.testing.assert_close(sums, d["avbench.mel_seg_sum"][needed], rtol=0, atol=MEL_ATOL * 128 * 66)
    # The scores: every window's margin is > 0.016 (README §5), so argmax and DeSync must match exactly.
    assert det["num_segments"].tolist() == [s]
    for side in ("front", "back"):
        assert int(det[f"logits_{side}"][0].argmax()) == d[f"{prefix}.argmax_{side}"]
        # The reported offset is the exact grid value of the golden class; rounded to float32 it is the reference's.
        assert float(det[f"offset_{side}"][0]) == EXACT_GRID[d[f"{prefix}.argmax_{side}"]]
        assert float(det[f"offset_{side}"][0].float()) == d[f"{prefix}.offset_{side}_s"]
        torch.testing.assert_close(det[f"logits_{side}"][0], d[f"{prefix}.logits_{side}"], rtol=0, atol=LOGITS_ATOL)
    assert value == d[f"{prefix}.desync"] == float(det["offset"][0])
    if prefix == "fastvideo":
        assert value == d["fastvideo.metric_score"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PAIRS)
def test_golden_desync_fastvideo(full_model: Synchformer, name: str) -> None:  # noqa: F811
    _golden_metric(full_model, name, "fastvideo", afeats_from_golden=True)


@pytest.mark.slow
def test_golden_desync_av_benchmark(full_model: Synchformer) -> None:  # noqa: F811
    """v0 with the real full-size audio encoder (av-benchmark's 0.0 mel padding changes its features)."""
    _golden_metric(full_model, "v0_5s_24fps", "avbench", afeats_from_golden=False)


# v0 (14 segments, ~45 s per protocol on 2 CPU cores) runs in CI; v1 and v2 (24 and 30 segments) are `full_golden`:
# collected only with TORCHMETRICS_AV_FULL_GOLDEN=1 (conftest.py).
END_TO_END_PAIRS = [
    pytest.param(name, marks=() if name == "v0_5s_24fps" else pytest.mark.full_golden) for name in PAIRS
]


@pytest.mark.slow
@pytest.mark.parametrize("name", END_TO_END_PAIRS)
@pytest.mark.parametrize("prefix", ["fastvideo", "avbench"])
def test_golden_desync_end_to_end(full_model: Synchformer, name: str, prefix: str) -> None:  # noqa: F811
    d = load_pair(name)
    kwargs = {"duration": d["avbench.duration_sec"]} if prefix == "avbench" else {}
    metric = DeSync(
        sample_rate=d["input.audio_sr"], video_fps=float(d["input.fps"]), protocol=GOLDEN_PROTOCOL[prefix],
        backbone=full_model, keep_logits=True, **kwargs,
    )  # fmt: skip
    metric.update(d["input.audio_int16"][None], golden_video(d)[None])
    assert float(metric.compute()) == d[f"{prefix}.desync"]
    for side in ("front", "back"):
        torch.testing.assert_close(
            metric.details[f"logits_{side}"][0], d[f"{prefix}.logits_{side}"], rtol=0, atol=LOGITS_ATOL
        )


class FixedLogits(nn.Module):
    """A tiny Synchformer whose sync head always predicts class 3 (-1.4 s) for the front, 17 (+1.4 s) for the back."""

    def __init__(self, net: Synchformer) -> None:
        super().__init__()
        self.net = net
        self.mel, self.grid, self.segment_batch = net.mel, net.grid, net.segment_batch

    def video_features(self, segments: Tensor) -> Tensor:
        return self.net.video_features(segments)

    def audio_features(self, mel: Tensor) -> Tensor:
        return self.net.audio_features(mel)

    def sync_logits(self, v: Tensor, a: Tensor) -> Tensor:
        logits = torch.zeros(v.shape[0], 21)
        logits[0::2, 3] = 1.0
        logits[1::2, 17] = 1.0
        return logits


def test_reported_offsets_are_exact_and_the_score_keeps_the_reference_grid() -> None:
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=FixedLogits(tiny_backbone()))
    audio, video = av_pair(5.0, seed=5)
    metric.update(audio[None], video[None])
    value = metric.compute()
    rows = metric.per_sample()
    assert rows["offset_front"].tolist() == [-1.4] and rows["offset_back"].tolist() == [1.4]
    # (|float32(-1.4)| + |float32(1.4)|) / 2, as both references compute it from their float32 grid.
    assert float(value) == float(rows["offset"][0]) == float(np.float32(1.4))


def test_silent_audio_is_counted_and_scored_as_the_reference() -> None:
    """All-zero audio gives a finite log-mel (log 1e-6) and an offset class, as in the references: counted, kept."""
    net = tiny_backbone()
    audio, video = av_pair(5.0, seed=6)
    silent = torch.zeros_like(audio)
    metric = DeSync(sample_rate=16000, video_fps=25.0, backbone=net, keep_logits=True)
    metric.update([silent, audio], [video, video], ids=[0, 1])
    metric.update([silent], [video], ids=[0])  # a repeat: counted once
    metric.compute()
    d = metric.details
    assert d["silent"].tolist() == [True, False] and d["n_silent"] == 1
    assert d["n_samples"] == 2 and d["n_skipped_silent"] == 0
    segments = segment_video(to_signed_unit(short_side_resize_crop(video.float() / 255, 224, "interpolate")))
    mel = SynchformerMel()(segment_audio(silent[0]), pad="min")
    assert bool(torch.isfinite(mel).all())
    with torch.no_grad():
        front, back = net(segments, mel)
    torch.testing.assert_close(d["logits_front"][0], front, rtol=0, atol=1e-5)
    torch.testing.assert_close(d["logits_back"][0], back, rtol=0, atol=1e-5)
    assert (
        float(d["offset"][0])
        == (abs(float(offset_grid()[front.argmax()])) + abs(float(offset_grid()[back.argmax()]))) / 2
    )


def test_repeated_ids_are_counted_once() -> None:
    net = tiny_backbone()
    audio, video = av_pair(seconds=5.0, seed=41)
    audio2, video2 = av_pair(seconds=5.0, seed=42)
    plain = DeSync(sample_rate=16000, video_fps=25.0, backbone=net)
    plain.update([audio, audio2], [video, video2])
    with_ids = DeSync(sample_rate=16000, video_fps=25.0, backbone=net)
    with_ids.update([audio2], [video2], ids=[7])
    with_ids.update([audio, audio2], [video, video2], ids=[3, 7])  # id 7 repeated (a DistributedSampler pad)
    assert float(with_ids.compute()) == pytest.approx(float(plain.compute()), abs=1e-12)
    assert with_ids.details["n_duplicates_dropped"] == 1 and with_ids.details["ids"].tolist() == [3, 7]
    with pytest.raises(ValueError, match="ids"):
        with_ids.update([audio], [video], ids=[1, 2])
