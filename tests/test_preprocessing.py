"""Preprocessing parity with the references' own libraries (librosa/soxr, torchaudio, pyloudnorm, hear21passt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchmetrics_av.backbones.passt import PaSSTMelSpectrogram
from torchmetrics_av.preprocessing import (
    as_clip_list,
    librosa_length,
    pad_or_trim,
    peak_normalize,
    protocol_waveform,
    remove_dc,
    resample,
    sample_rates,
)


def _noise(n: int, seed: int = 0, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(channels, n, generator=g) - 0.5) * 0.8


@pytest.mark.parametrize(
    "orig,target", [(44100, 32000), (16000, 32000), (48000, 32000), (22050, 48000), (32000, 16000)]
)
def test_soxr_hq_equals_librosa_resample(orig, target):
    librosa = pytest.importorskip("librosa")
    x = _noise(orig // 3 + 17, seed=orig)[0]
    expected = librosa.resample(x.numpy(), orig_sr=orig, target_sr=target, res_type="soxr_hq")
    got = resample(x, orig, target, "soxr_hq")
    assert got.dtype == torch.float32 and got.numel() == len(expected) == librosa_length(x.numel(), orig, target)
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("orig,target", [(44100, 32000), (16000, 32000), (48000, 16000)])
def test_torchaudio_equals_transforms_resample(orig, target):
    torchaudio = pytest.importorskip("torchaudio")
    x = _noise(orig // 4, seed=1)[0]
    expected = torchaudio.transforms.Resample(orig, target)(x)
    assert torch.equal(resample(x, orig, target, "torchaudio"), expected)
    torch.testing.assert_close(resample(x, orig, target, "torchaudio_functional"), expected, atol=1e-5, rtol=0)


def test_peak_normalize_equals_pyloudnorm():
    pyln = pytest.importorskip("pyloudnorm")
    x = _noise(5000, seed=2)[0]
    expected = pyln.normalize.peak(x.numpy(), -1.0)
    got = peak_normalize(x)
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float64))
    with pytest.raises(ValueError, match="silent"):
        peak_normalize(torch.zeros(10))


def test_protocol_waveform_rules():
    x = _noise(44100, seed=3, channels=2) + torch.tensor([[0.03], [-0.01]])
    fv = protocol_waveform(x, 44100, 32000, "fastvideo")
    assert fv.numel() == 32000 and float(fv.abs().max()) == pytest.approx(10 ** (-1 / 20), rel=1e-7)
    av = protocol_waveform(x, 44100, 32000, "av-benchmark", duration=0.5)
    assert av.numel() == 16000
    assert protocol_waveform(x, 44100, 32000, "av-benchmark").numel() == 32000  # the spec's 8 s: the whole 1 s clip
    with pytest.warns(FutureWarning, match="`audio_length` is deprecated"):
        assert torch.equal(protocol_waveform(x, 44100, 32000, "av-benchmark", audio_length=0.5), av)
    assert protocol_waveform(torch.zeros(1, 100), 32000, 32000, "fastvideo") is None
    torch.testing.assert_close(remove_dc(x).mean(dim=-1), torch.zeros(2), atol=1e-7, rtol=0)
    assert pad_or_trim(torch.ones(5), 3).tolist() == [1, 1, 1] and pad_or_trim(torch.ones(2), 3).tolist() == [1, 1, 0]


def test_passt_mel_equals_hear21passt():
    preprocess = pytest.importorskip("hear21passt.models.preprocess")
    ref = preprocess.AugmentMelSTFT(
        n_mels=128,
        sr=32000,
        win_length=800,
        hopsize=320,
        n_fft=1024,
        freqm=48,
        timem=192,
        htk=False,
        fmin=0.0,
        fmax=None,
        norm=1,
        fmin_aug_range=10,
        fmax_aug_range=2000,
    ).eval()
    x = _noise(64000, seed=4, channels=2)
    state = torch.random.get_rng_state()
    ours = PaSSTMelSpectrogram()(x)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global-RNG side effect
    assert torch.equal(ours, ref(x))


def test_as_clip_list_layouts_and_errors():
    assert [c.shape for c in as_clip_list(torch.zeros(2, 100))] == [(1, 100), (1, 100)]
    assert [c.shape for c in as_clip_list(torch.zeros(2, 2, 100))] == [(2, 100), (2, 100)]
    assert [c.shape for c in as_clip_list([torch.zeros(50), torch.zeros(2, 70)])] == [(1, 50), (2, 70)]
    codes = torch.tensor([[-32768, 16384]], dtype=torch.int16)
    assert as_clip_list(codes)[0].tolist() == [[-1.0, 0.5]]
    with pytest.raises(ValueError, match="`x` is an empty batch"):
        as_clip_list(torch.zeros(0, 10), "x")
    with pytest.raises(ValueError, match=r"`x\[0\]` has 0 samples"):
        as_clip_list([torch.zeros(0)], "x")
    with pytest.raises(ValueError, match=r"`x\[1\]` must be a \(T,\) or \(C, T\)"):
        as_clip_list([torch.zeros(3), torch.zeros(1, 1, 3)], "x")
    with pytest.raises(ValueError, match="Inf"):
        as_clip_list(torch.tensor([[0.0, float("inf")]]), "x")
    with pytest.raises(ValueError, match="must be a tensor"):
        as_clip_list("a.wav", "x")
    with pytest.raises(ValueError, match="positive integer"):
        sample_rates(0, 1, "sample_rate")
    assert sample_rates(16000.0, 2, "sample_rate") == [16000, 16000]
    for bad in (-16000, 22050.5, "16000", True, float("inf")):
        with pytest.raises(ValueError, match="`sample_rate` must"):
            sample_rates(bad, 1, "sample_rate")


def test_one_text_list_rule_for_every_metric():
    """A bare str is an error naming the argument everywhere (it used to be one sample in CLAP, an error in WER)."""
    from torchmetrics_av.functional.wer import speech_word_error_rate
    from torchmetrics_av.preprocessing import as_text_list

    assert as_text_list(("a", "b"), "target", 2) == ["a", "b"]
    for call in (
        lambda: as_text_list("a dog", "target"),
        lambda: speech_word_error_rate(["a dog"], "a dog"),
    ):
        with pytest.raises(ValueError, match="`target` must be a list of strings, one per sample, got a bare str"):
            call()
    with pytest.raises(ValueError, match="`preds` must be a list of strings"):
        speech_word_error_rate("a dog", ["a dog"])
    with pytest.raises(ValueError, match=r"`target\[1\]` must be a string"):
        as_text_list(["a", 3], "target")
    with pytest.raises(ValueError, match=r"`target\[0\]` is empty"):
        as_text_list(["  "], "target", allow_blank=False)
    with pytest.raises(ValueError, match="`target` has 1 texts for 2 clips"):
        as_text_list(["a"], "target", 2)


def test_backbone_text_inputs_follow_the_same_rule():
    """CLAP's and MS-CLAP's own text entry points refuse a bare str (CLAP used to tokenise it letter by letter)."""
    from torchmetrics_av import testing
    from torchmetrics_av.backbones.msclap import msclap_scores

    clap = testing.tiny_backbone("clap")
    msclap = testing.tiny_backbone("msclap")
    bare = "`texts` must be a list of strings, one per sample, got a bare str"
    for call in (
        lambda: clap.tokenize("a dog barks"),
        lambda: msclap.tokenizer("a dog barks", name="texts"),
        lambda: msclap_scores(msclap, torch.zeros(1, 4410), 44100, "a dog barks"),
    ):
        with pytest.raises(ValueError, match=bare):
            call()
    with pytest.raises(ValueError, match=r"`texts\[1\]` must be a string, got int"):
        clap.tokenize(["a dog", 3])
    with pytest.raises(ValueError, match=r"`texts\[1\]` must be a string, got NoneType"):
        msclap.tokenizer(["a dog", None], name="texts")
    with pytest.raises(ValueError, match="`texts` has 2 captions for 1 clips"):
        msclap_scores(msclap, torch.zeros(1, 4410), 44100, ["a", "b"])
    assert clap.tokenize(["a dog barks"])[0].shape[0] == 1


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("PaSSTMelSpectrogram", "torchmetrics_av.backbones.passt"),
        ("PASST_HOP", "torchmetrics_av.backbones.passt"),
        ("nearest_frame_indices", "torchmetrics_av.backbones.synchformer"),
        ("short_side_resize_crop", "torchmetrics_av.backbones.synchformer"),
    ],
)
def test_model_front_ends_moved_to_their_backbones_and_old_names_still_work(name: str, module: str) -> None:
    import importlib

    import torchmetrics_av.preprocessing as pre

    assert name not in vars(pre)  # preprocessing keeps only model-agnostic primitives
    with pytest.warns(DeprecationWarning, match=f"moved to `{module}.{name}`"):
        assert getattr(pre, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no_such_name"):
        pre.no_such_name  # noqa: B018


# ---------------------------------------------------------------------------------------------------------------------
# LoaderCache: protocol_waveform outputs stored per clip (the CLI loads once for every metric, on decoder threads)


@pytest.mark.parametrize("protocol", ["fastvideo", "av-benchmark"])
@pytest.mark.parametrize("float64", [False, True])
def test_loader_cache_returns_the_uncached_waveform_bit_for_bit(protocol, float64):
    import threading

    from torchmetrics_av.preprocessing import LoaderCache, protocol_waveform

    g = torch.Generator().manual_seed(0)
    clips = [0.3 * torch.randn(2, 22050, generator=g) + 0.01, 0.5 * torch.randn(1, 8000, generator=g)]
    rates = [22050, 16000]
    plain = [protocol_waveform(c, r, 32000, protocol, float64=float64) for c, r in zip(clips, rates)]
    cache = LoaderCache()
    with cache.active():
        first = protocol_waveform(clips[0], rates[0], 32000, protocol, float64=float64)  # computed, call learnt
    worker = threading.Thread(target=cache.prefetch, args=(clips[1], rates[1]))  # as a decoder thread does
    worker.start()
    worker.join()
    with cache.active():
        again = [protocol_waveform(c, r, 32000, protocol, float64=float64) for c, r in zip(clips, rates)]
    assert (cache.misses, cache.hits) == (1, 2)
    for want, got in zip(plain, [first, again[1]]):
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert again[0] is first
    # Other arguments are another call: computed, not served from the 32 kHz entry.
    with cache.active():
        other = protocol_waveform(clips[0], rates[0], 16000, protocol, float64=float64)
    assert cache.misses == 2 and torch.equal(
        other, protocol_waveform(clips[0], rates[0], 16000, protocol, float64=float64)
    )


def test_loader_cache_misses_after_an_in_place_edit_and_forgets():
    from torchmetrics_av.preprocessing import LoaderCache, protocol_waveform

    clip = torch.linspace(-0.5, 0.5, 16000).reshape(1, -1)
    cache = LoaderCache()
    with cache.active():
        before = protocol_waveform(clip, 16000, 32000, "av-benchmark")
        clip.mul_(0.25)  # torch bumps the version counter: the stored waveform is stale
        after = protocol_waveform(clip, 16000, 32000, "av-benchmark")
    assert cache.misses == 2 and not torch.equal(before, after)
    assert torch.equal(after, protocol_waveform(clip, 16000, 32000, "av-benchmark"))
    assert len(cache) == 1 and cache.forget([clip]) == 1 and len(cache) == 0
    assert cache.forget([clip]) == 0


def test_loader_cache_stores_silent_clips_as_none():
    from torchmetrics_av.preprocessing import LoaderCache, protocol_waveform

    silent = torch.zeros(1, 16000)
    cache = LoaderCache()
    with cache.active():
        assert protocol_waveform(silent, 16000, 32000, "fastvideo") is None
        assert protocol_waveform(silent, 16000, 32000, "fastvideo") is None
    assert (cache.misses, cache.hits) == (1, 1)


def test_loader_cache_waits_for_a_load_in_flight_instead_of_repeating_it(monkeypatch):
    import threading

    from torchmetrics_av import preprocessing
    from torchmetrics_av.preprocessing import LoaderCache, protocol_waveform

    clip, other = torch.randn(1, 8000), torch.randn(1, 8000)
    cache = LoaderCache()
    with cache.active():
        protocol_waveform(clip, 16000, 32000, "fastvideo")  # the call is learnt
    started, release = threading.Event(), threading.Event()
    original, computed = preprocessing._protocol_waveform, []

    def slow(x, *args):
        computed.append(threading.current_thread().name)
        started.set()
        release.wait(timeout=30)
        return original(x, *args)

    monkeypatch.setattr(preprocessing, "_protocol_waveform", slow)
    worker = threading.Thread(target=cache.prefetch, args=(other, 16000), name="decoder")
    worker.start()
    assert started.wait(timeout=30)
    threading.Timer(0.2, release.set).start()
    with cache.active():
        got = protocol_waveform(other, 16000, 32000, "fastvideo")  # waits for the decoder thread's load
    worker.join()
    assert computed == ["decoder"] and (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(
        got,
        original(
            other, 16000, preprocessing._LoaderCall(32000, preprocessing.get_protocol("fastvideo"), None, None, False)
        ),
    )


def test_a_failed_prefetch_leaves_the_load_to_the_caller(monkeypatch):
    from torchmetrics_av import preprocessing
    from torchmetrics_av.preprocessing import LoaderCache, protocol_waveform

    clip = torch.randn(1, 8000)
    cache = LoaderCache()
    with cache.active():
        protocol_waveform(clip, 16000, 32000, "fastvideo")
        protocol_waveform(clip, 16000, 16000, "av-benchmark")  # two calls learnt
    original = preprocessing._protocol_waveform

    def fails_once(x, *args):
        monkeypatch.setattr(preprocessing, "_protocol_waveform", original)
        raise RuntimeError("decoder-thread failure")

    monkeypatch.setattr(preprocessing, "_protocol_waveform", fails_once)
    other = torch.randn(1, 8000)
    with pytest.raises(RuntimeError, match="decoder-thread"):
        cache.prefetch(other, 16000)
    with cache.active():  # neither the failed load nor the one never started is stored: both computed here
        a = protocol_waveform(other, 16000, 32000, "fastvideo")
        b = protocol_waveform(other, 16000, 16000, "av-benchmark")
    assert torch.equal(a, protocol_waveform(other, 16000, 32000, "fastvideo"))
    assert torch.equal(b, protocol_waveform(other, 16000, 16000, "av-benchmark"))
    assert cache.misses == 4


def test_all_finite_matches_isfinite_all():
    from torchmetrics_av.preprocessing import all_finite

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 4001, generator=gen, dtype=dtype)
        assert all_finite(x) and all_finite(x[:, :0])
        for bad in (float("nan"), float("inf"), -float("inf")):
            y = x.clone()
            y[2, 4000] = bad
            assert not all_finite(y) and all_finite(y) == bool(torch.isfinite(y).all())
    with pytest.raises(ValueError, match=r"`preds\[1\]` contains NaN"):
        as_clip_list([torch.zeros(100), torch.tensor([0.0, float("-inf")])], "preds")


def _pad_counter(calls: list[int], length: int):
    def pad(t):
        calls.append(1)
        return pad_or_trim(t, length)

    return pad


def test_derived_values_are_shared_while_held_and_plain_otherwise():
    from torchmetrics_av.preprocessing import LoaderCache, derived, held_token, protocol_waveform

    clip, calls = torch.randn(1, 16000), []
    pad = _pad_counter(calls, 40000)
    assert torch.equal(derived(clip[0], ("pad_or_trim", 40000), pad), pad_or_trim(clip[0], 40000))  # no cache
    cache = LoaderCache()
    with cache.active():
        x = protocol_waveform(clip, 16000, 32000, "fastvideo")
        a = derived(x, ("pad_or_trim", 40000), pad)
        b = derived(x[:32000], ("pad_or_trim", 40000), pad)  # a view with x's memory, shape and version: held
        assert a is b and len(calls) == 2 and (cache.derived_misses, cache.derived_hits) == (1, 1)
        assert torch.equal(a, pad_or_trim(protocol_waveform(clip, 16000, 32000, "fastvideo"), 40000))
        assert held_token(a) is not None and held_token(a) == held_token(a) != held_token(x)
        # Equal samples in another tensor the cache did not make: computed, never stored, no name.
        other = x.clone()
        assert derived(other, ("pad_or_trim", 40000), pad) is not a and len(calls) == 3
        assert held_token(other) is None
        a.add_(0.0)  # an in-place edit through torch: the name and the stored values no longer apply
        assert held_token(a) is None
        cache.forget([clip])
        assert held_token(x) is None and derived(x, ("pad_or_trim", 40000), pad) is not a
    assert held_token(x) is None  # outside the cache


def test_prefetch_repeats_the_learnt_steps_on_another_thread():
    import threading

    from torchmetrics_av.preprocessing import LoaderCache, derived, held_token, protocol_waveform

    first, second, calls = torch.randn(1, 16000), torch.randn(1, 16000), []
    pad = _pad_counter(calls, 40000)
    cache, learnt = LoaderCache(), []
    cache.on_learn = lambda: learnt.append(1)
    with cache.active():
        derived(protocol_waveform(first, 16000, 32000, "fastvideo"), ("pad_or_trim", 40000), pad)
        derived(protocol_waveform(first, 16000, 32000, "fastvideo"), ("pad_or_trim", 40000), pad)
    assert len(learnt) == 2 and len(calls) == 1  # one loader call and one step, each learnt once
    worker = threading.Thread(target=cache.prefetch, args=(second, 16000))
    worker.start()
    worker.join()
    assert len(calls) == 2  # the step ran on the prefetching thread
    with cache.active():
        x = protocol_waveform(second, 16000, 32000, "fastvideo")
        window = derived(x, ("pad_or_trim", 40000), pad)
        assert len(calls) == 2 and cache.derived_hits == 2 and held_token(window) is not None
    assert torch.equal(window, pad_or_trim(protocol_waveform(second, 16000, 32000, "fastvideo"), 40000))


def test_cli_prefetcher_loads_held_clips_once_the_first_call_is_learnt(monkeypatch):
    from pathlib import Path

    from torchmetrics_av import preprocessing
    from torchmetrics_av.cli.inputs import Clip
    from torchmetrics_av.cli.runner import _Prefetcher

    threads: list[bool] = []
    original = preprocessing._protocol_waveform

    def counted(*args):
        import threading

        threads.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    monkeypatch.setattr(preprocessing, "_protocol_waveform", counted)
    clips = [Clip(f"c{i}", Path(f"c{i}.wav"), torch.randn(1, 8000), 16000) for i in range(3)]
    prefetcher = _Prefetcher(workers=2)
    for c in clips:
        prefetcher.add(c)  # decoded before any metric ran: nothing to load yet
    assert threads == []
    with prefetcher.active():
        protocol_waveform(clips[0].audio, 16000, 32000, "fastvideo")  # teaches the call: the others are prefetched
        prefetcher._pool.shutdown(wait=True)
        outs = [protocol_waveform(c.audio, 16000, 32000, "fastvideo") for c in clips[1:]]
    assert sorted(threads) == [False, False, True] and prefetcher.cache.hits == 2  # main thread: the first only
    for c, out in zip(clips[1:], outs):
        call = preprocessing._LoaderCall(32000, preprocessing.get_protocol("fastvideo"), None, None, False)
        assert torch.equal(out, original(c.audio, 16000, call))
