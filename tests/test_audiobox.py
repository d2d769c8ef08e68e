"""AudioboxAesthetics: golden parity (audiobox-aesthetics 0.0.4 with fill-v1 weights), windowing, checkpoint formats,
batch independence, DDP and input validation."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from tests.conftest import golden_path
from tests.ddp import run_ddp
from torchmetrics_av.audio.aesthetics import AudioboxAesthetics
from torchmetrics_av.backbones.audiobox import (
    AUDIOBOX_HUB_CONFIG,
    AXES,
    Audiobox,
    build_aes_model,
    make_windows,
)
from torchmetrics_av.preprocessing import resample
from torchmetrics_av.weights import WeightsNotFoundError

# Same architecture at test size: a 2-layer, 32-d WavLM with the official conv strides (320 samples per frame).
SMALL_ENCODER = dict(
    encoder_layers=2,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
    conv_pos=8,
    conv_pos_groups=2,
)
SMALL_MODEL = {"nth_layer": 3}
WIN = 160000


def scores(d) -> torch.Tensor:
    """(N, 4) per-clip scores in AXES order from details / per_sample()."""
    return torch.stack([d[axis] for axis in AXES], dim=1)


def small_audiobox(seed: int = 0, **kw) -> Audiobox:
    torch.manual_seed(seed)
    net = Audiobox(pretrained=False, encoder_config=SMALL_ENCODER, model_config=SMALL_MODEL, **kw)
    # Non-trivial layer weights and head, so that masking/weighting errors show up in the outputs.
    with torch.no_grad():
        for p in net.model.layer_weights.values():
            p.normal_()
    return net


# ---------------------------------------------------------------------------------------------------------------------
# golden


@pytest.mark.slow
def test_golden_parity_full_size(tmp_path, fill_v1):
    g = torch.load(golden_path("audiobox") / "audiobox_golden.pt", weights_only=True)
    assert g["axes"] == list(AXES)
    assert g["model_config"] == AUDIOBOX_HUB_CONFIG
    # Official HF layout written by the package's own save_pretrained; the config bytes are the hub's.
    src = fill_v1(build_aes_model(g["model_config"]))
    src.save_pretrained(tmp_path / "hub")
    import hashlib

    cfg_bytes = (tmp_path / "hub" / "config.json").read_bytes()
    assert hashlib.sha256(cfg_bytes).hexdigest() == g["hub_config_sha256"]
    del src
    net = Audiobox(weights=tmp_path / "hub", batch_size=8)
    sd = net.model.state_dict()
    assert len(sd) == 324 and sum(v.numel() for v in sd.values()) == 103_859_112
    assert net.target_mean.tolist() == pytest.approx([5.06865, 5.73633, 3.18591, 6.57505])
    assert net.target_std.tolist() == pytest.approx([1.93029, 1.75669, 1.86637, 1.51466])

    clips = list(g["clips"].values())
    metric = AudioboxAesthetics(backbone=net)
    audio = [c["pcm16"] for c in clips]  # int16 PCM (C, N): the metric scales by 1/32768 like a PCM_16 WAV decode
    rates = [c["sample_rate"] for c in clips]
    waves = metric.waveforms(audio, rates)
    for c, w in zip(clips, waves):
        ref = c["wav16k"] if c["wav16k"].numel() else (c["pcm16"].float() / 32768).mean(0)
        assert w.shape[-1] == c["wav16k_num_samples"]
        assert (w - ref).abs().max() <= 1e-6
    clip_idx, starts, valid = make_windows(waves)
    assert torch.equal(starts, torch.cat([c["window_start"] for c in clips]))
    assert torch.equal(valid, torch.cat([c["window_valid_len"] for c in clips]))
    assert torch.equal((valid / WIN).float(), torch.cat([c["window_weight"] for c in clips]))
    # WavLM frame mask: 499 frames of 320 samples; a frame is valid iff any of its samples is
    assert torch.equal(torch.clamp((valid + 319) // 320, max=499), torch.cat([c["window_valid_frames"] for c in clips]))

    raw = []
    hook = net.model.register_forward_hook(lambda m, i, o: raw.append(torch.stack([o[a] for a in AXES], -1)))
    metric.update(audio, sample_rate=rates)
    hook.remove()
    raw = torch.cat(raw)
    assert (raw - torch.cat([c["window_pred_raw"] for c in clips])).abs().max() <= 2e-5
    pred = raw * net.target_std + net.target_mean
    assert (pred - torch.cat([c["window_pred"] for c in clips])).abs().max() <= 2e-5
    result = metric.compute()
    got = scores(metric.details)
    expected = torch.stack([c["scores"] for c in clips])
    assert (got - expected).abs().max() <= 5e-5
    for j, axis in enumerate(AXES):
        assert float(result[axis]) == pytest.approx(float(expected[:, j].mean()), abs=5e-5)
    assert [float(s) for s in metric.details["PQ"]] == pytest.approx([c["score_PQ"] for c in clips], abs=5e-5)
    assert metric.details["num_windows"].tolist() == [len(c["window_start"]) for c in clips]


# ---------------------------------------------------------------------------------------------------------------------
# windowing and the reduction


def test_windowing_rules():
    waves = [torch.zeros(n) for n in (1, WIN, 2 * WIN, 2 * WIN + 800, 168000)]
    clip_idx, starts, valid = make_windows(waves)
    assert clip_idx.tolist() == [0, 1, 2, 2, 3, 3, 3, 4, 4]
    assert starts.tolist() == [0, 0, 0, WIN, 0, WIN, 2 * WIN, 0, WIN]
    assert valid.tolist() == [1, WIN, WIN, WIN, WIN, WIN, 800, WIN, 8000]  # a 0.05 s tail gets its own window


def test_forward_is_the_length_weighted_mean_of_denormalised_windows():
    net = small_audiobox()
    torch.manual_seed(3)
    wave = 0.1 * torch.randn(WIN + 40000)
    windows = torch.zeros(2, WIN)
    windows[0] = wave[:WIN]
    windows[1, :40000] = wave[WIN:]
    raw = net.predict_windows(windows, torch.tensor([WIN, 40000]))
    denorm = torch.stack(
        [
            raw[:, j] * AUDIOBOX_HUB_CONFIG["target_transform"][a]["std"]
            + AUDIOBOX_HUB_CONFIG["target_transform"][a]["mean"]
            for j, a in enumerate(AXES)
        ],
        -1,
    )
    expected = (denorm.double() * torch.tensor([[1.0], [0.25]], dtype=torch.float64)).sum(0) / 1.25
    assert torch.allclose(net([wave])[0], expected, atol=1e-6)
    # the mask is used: the same zero-padded tail window scored as if fully valid gives another prediction
    assert not torch.allclose(net.predict_windows(windows, torch.tensor([WIN, WIN]))[1], raw[1], atol=1e-3)


def test_batch_composition_does_not_change_scores():
    net = small_audiobox(batch_size=3)
    torch.manual_seed(4)
    clips = [0.2 * torch.randn(n) for n in (4000, 170000, 50000)]
    together = net(clips)
    alone = torch.cat([net([c]) for c in clips])
    assert torch.allclose(together, alone, atol=1e-5)
    net.batch_size = 1
    assert torch.allclose(net(clips), together, atol=1e-5)


def test_numpy_random_stream_is_untouched():
    net = small_audiobox()
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    net([torch.zeros(16000)])
    assert np.array_equal(np.random.random(3), expected)


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint formats


def _assert_same_model(a: Audiobox, b: Audiobox) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_loads_hf_dir_safetensors_and_lightning_checkpoint(tmp_path):
    src = small_audiobox()
    # 1. from_pretrained folder written by the package's own PyTorchModelHubMixin.save_pretrained
    src.model.save_pretrained(tmp_path / "hub")
    assert json.loads((tmp_path / "hub" / "config.json").read_text())["target_transform"]["PQ"]["std"] == 1.51466
    a = Audiobox(weights=tmp_path / "hub", encoder_config=SMALL_ENCODER)
    _assert_same_model(src, a)
    assert a.checkpoint_id.startswith("hub@sha256:")
    # 2. the safetensors file alone (config.json found next to it)
    b = Audiobox(weights=tmp_path / "hub" / "model.safetensors", encoder_config=SMALL_ENCODER)
    _assert_same_model(src, b)
    # 3. Lightning-style checkpoint.pt, with its own de-normalisation statistics
    tt = {ax: {"mean": 0.0, "std": 1.0} for ax in AXES}
    cfg = {k: v for k, v in {**AUDIOBOX_HUB_CONFIG, **SMALL_MODEL}.items() if k != "target_transform"}
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in src.model.state_dict().items()},
        "model_cfg": {**cfg, "lr": 1e-4},
        "target_transform": tt,
    }
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    c = Audiobox(weights=tmp_path / "checkpoint.pt", encoder_config=SMALL_ENCODER)
    _assert_same_model(src, c)
    wave = 0.1 * torch.randn(16000)
    # identity statistics -> scores are the raw predictions; hub statistics -> de-normalised ones
    windows = torch.zeros(1, WIN)
    windows[0, :16000] = wave
    raw = src.predict_windows(windows, torch.tensor([16000]))[0]
    assert torch.allclose(c([wave])[0].float(), raw, atol=1e-6)
    assert torch.allclose(a([wave])[0].float(), src([wave])[0].float(), atol=1e-6)
    assert not torch.allclose(a([wave])[0].float(), raw, atol=0.1)

    # strictness and malformed files
    ckpt["state_dict"]["model.unexpected"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(RuntimeError, match="unexpected"):
        Audiobox(weights=tmp_path / "extra.pt", encoder_config=SMALL_ENCODER)
    torch.save({"state_dict": {}, "model_cfg": cfg}, tmp_path / "no_stats.pt")
    with pytest.raises(ValueError, match="'target_transform'"):
        Audiobox(weights=tmp_path / "no_stats.pt")
    bad_tt = dict(ckpt, target_transform={"PQ": {"mean": 1.0, "std": 1.0}})
    torch.save(bad_tt, tmp_path / "bad_stats.pt")
    with pytest.raises(ValueError, match="target_transform"):
        Audiobox(weights=tmp_path / "bad_stats.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        Audiobox(weights=tmp_path / "empty")
    with pytest.raises(WeightsNotFoundError, match="missing"):
        Audiobox(weights=tmp_path / "missing")


def test_offline_download_error_names_file_url_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=re.escape("huggingface.co/facebook/audiobox-aesthetics")) as err:
        Audiobox(cache_dir=tmp_path)
    assert "weights=" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------------
# metric


def test_metric_mono_then_resample_per_call_rates_and_details():
    net = small_audiobox()
    torch.manual_seed(5)
    stereo = 0.2 * torch.randn(2, 24000)
    mono = 0.2 * torch.randn(44100 * 2)
    metric = AudioboxAesthetics(sample_rate=48000, backbone=net)
    metric.update([stereo], sample_rate=24000)
    metric.update([mono.unsqueeze(0)], sample_rate=[44100])
    result = metric.compute()
    w0 = resample(stereo.mean(0), 24000, 16000, "torchaudio_functional")
    w1 = resample(mono, 44100, 16000, "torchaudio_functional")
    expected = net([w0, w1])
    d = metric.details
    assert torch.allclose(scores(d), expected, atol=1e-6)
    with pytest.warns(FutureWarning, match="scores"):
        assert torch.equal(d["scores"], scores(metric.per_sample()))  # deprecated (N, 4) form
    for j, axis in enumerate(AXES):
        assert float(result[axis]) == pytest.approx(float(expected[:, j].mean()), abs=1e-6)
    assert d["duration_s"].tolist() == pytest.approx([1.0, 2.0])
    assert d["num_windows"].tolist() == [1, 1]
    assert d["n_samples"] == 2
    # forward returns the batch mean and keeps accumulating
    batch = metric(torch.stack([w0, w0]), sample_rate=16000)
    assert float(batch["PQ"]) == pytest.approx(float(expected[0, 3]), abs=1e-5)
    metric.compute()
    assert metric.details["n_samples"] == 4


def test_metric_bad_inputs():
    metric = AudioboxAesthetics(sample_rate=16000, backbone=small_audiobox())
    with pytest.raises(ValueError, match="no scored samples"), pytest.warns(UserWarning, match="before the ``update``"):
        metric.compute()
    with pytest.raises(ValueError, match="NaN"):
        metric.update(torch.full((1, 100), float("nan")))
    with pytest.raises(ValueError, match="empty batch"):
        metric.update([])
    with pytest.raises(ValueError, match="channel-last"):
        metric.update(torch.zeros(1, 16000, 2))
    with pytest.raises(ValueError, match="`sample_rate` is required"):
        AudioboxAesthetics(backbone=small_audiobox()).update(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="`sample_rate` has 1 entries for 2 clips"):
        metric.update(torch.zeros(2, 100), sample_rate=[16000])
    with pytest.raises(ValueError, match="`protocol`"):
        AudioboxAesthetics(protocol="verse-bench")
    with pytest.raises(ValueError, match="`batch_size`"):
        Audiobox(pretrained=False, batch_size=0)
    # silence is valid audio for this metric (the reference scores it)
    metric.update(torch.zeros(1, 3200))
    assert all(math.isfinite(float(v)) for v in metric.compute().values())


def _ddp_worker(rank: int, world: int, clips: list[torch.Tensor]) -> dict:
    metric = AudioboxAesthetics(sample_rate=16000, backbone=small_audiobox())
    mine = clips[:3] if rank == 0 else clips[3:]
    metric.update(mine)
    result = metric.compute()
    # DistributedSampler-style: 3 clips on 2 ranks, rank 1 padded with a repeat of clip 0.
    ids = [0, 2] if rank == 0 else [1, 0]
    m_ids = AudioboxAesthetics(sample_rate=16000, backbone=metric.backbone)
    m_ids.update([clips[i] for i in ids], ids=ids)
    with_ids = m_ids.compute()
    return {
        "with_ids": {k: float(v) for k, v in with_ids.items()},
        "ids_details": m_ids.details,
        "result": {k: float(v) for k, v in result.items()},
        "scores": scores(metric.details),
        "n": metric.details["n_samples"],
        "duration": metric.details["duration_s"],
    }


@pytest.mark.ddp
def test_ddp_equals_single_process():
    torch.manual_seed(6)
    clips = [0.2 * torch.randn(n) for n in (3000, 9000, 170000, 5000)]
    out = run_ddp(_ddp_worker, 2, clips)
    single = AudioboxAesthetics(sample_rate=16000, backbone=small_audiobox())
    single.update(clips)
    expected = single.compute()
    for r in out:
        assert r["n"] == 4
        assert torch.allclose(r["scores"], scores(single.details), atol=1e-5)  # rank 0's clips first
        assert torch.equal(r["duration"], single.details["duration_s"])
        for axis in AXES:
            assert r["result"][axis] == pytest.approx(float(expected[axis]), abs=1e-5)
    first3 = AudioboxAesthetics(sample_rate=16000, backbone=single.backbone)
    first3.update(clips[:3])
    expected3 = first3.compute()
    for r in out:
        d = r["ids_details"]
        assert d["n_samples"] == 3 and d["n_duplicates_dropped"] == 1 and d["ids"].tolist() == [0, 1, 2]
        assert torch.allclose(scores(d), scores(first3.details), atol=1e-5)
        for axis in AXES:
            assert r["with_ids"][axis] == pytest.approx(float(expected3[axis]), abs=1e-5)
