"""Log every torchmetrics-av metric from a LightningModule's validation step (single device or DDP).

The "generator" here is a toy (a learnable gain and low-pass on reference audio) so the example runs anywhere; swap
in your model. Each validation sample carries a dataset index, a reference clip, a video, a text prompt and a
transcript; the generated audio is scored by

* FD_PaSST and KL_PaSST against the reference clips, sharing ONE PaSST (one backbone object passed to both);
* CLAP score against the prompt, WER against the transcript, Audiobox Aesthetics (reference-free);
* ImageBind score and DeSync against the video (``--no-desync`` skips DeSync, which needs clips of >= 4.8 s);
* with ``--suite``, also :func:`~torchmetrics_av.av_benchmark_suite` (av-benchmark's ``output_metrics.json`` keys:
  FD-VGG, FD-PANN, FD-PASST, KL-*, ISC-*, LAION-CLAP-Score, MS-CLAP-Score, and IB-Score / DeSync when DeSync is on),
  on its own backbones. Its Inception Scores need at least 10 clips (one per split).

Logging. Scalar metrics are logged as metric *objects* (``self.log(name, metric)``): Lightning calls ``compute()``
(which all-gathers the per-sample states across ranks) at the end of the epoch and resets the metric.
``AudioboxAesthetics.compute()`` returns a dict of four axes, which ``self.log`` does not accept from a metric object;
wrapping each axis in its own metric would run the Audiobox model four times or share states between objects, so
instead ``on_validation_epoch_end`` calls ``compute()`` once (it is DDP-synced, so every rank gets the same four
numbers; the suite's dict of av-benchmark keys is handled the same way, as ``val/avbench/<key>``), logs them with
``self.log_dict`` (``sync_dist=False``: nothing left to reduce, so Lightning's advice to
sync is silenced for these keys) and resets the metric. Lightning stores logged values in the default dtype
(float32); read ``metric.compute()`` / ``metric.details`` yourself where you need the float64 values.

DDP. ``DistributedSampler`` pads ranks by repeating samples when the dataset length does not divide by the world
size. Every ``update()`` gets the dataset indices as ``ids``, so each metric counts a repeated sample once and sorts
per-sample values by id: 2 processes log exactly what 1 process logs (up to float32 batch-composition noise).

    python examples/lightning_validation.py --tiny               # 1 CPU process
    python examples/lightning_validation.py --tiny --devices 2   # 2 CPU processes (ddp_spawn, gloo)

    python examples/lightning_validation.py --tiny --suite --n 11 --no-desync   # + av-benchmark's suite

``--tiny`` builds tiny RANDOM-WEIGHT backbones (PaSST, CLAP with a toy tokenizer, Whisper, Audiobox, ImageBind,
Synchformer; the suite's from :func:`torchmetrics_av.testing.tiny_backbone`): the numbers only exercise the
pipeline. Without ``--tiny`` the official checkpoints are downloaded.
"""

from __future__ import annotations

import argparse
import math
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from torchmetrics_av import (
    AudioboxAesthetics,
    CLAPScore,
    DeSync,
    FrechetAudioDistance,
    ImageBindScore,
    PaSSTKLDivergence,
    SpeechWordErrorRate,
    av_benchmark_suite,
)
from torchmetrics_av.backbones import PaSST
from torchmetrics_av.suites import SUITE_BACKBONES, AVBenchmarkSuite

SAMPLE_RATE = 16000
VIDEO_FPS = 25.0
# Toy video frame size: the backbones resize to 224 themselves, so small frames keep the example light.
VIDEO_HEIGHT, VIDEO_WIDTH = 24, 32
# DeSync needs >= 14 Synchformer segments (4.8 s); shorter clips validate every other metric.
DESYNC_MIN_SECONDS = 4.8
DESYNC_SECONDS = 5.0
NO_DESYNC_SECONDS = 1.0
# Toy CLAP tokenizer: RoBERTa's special ids (<s>, <pad>, </s>), first ordinary id, vocabulary size, padded length.
BOS_ID, PAD_ID, EOS_ID, FIRST_WORD_ID, VOCAB_SIZE = 0, 1, 2, 4, 50265
TOY_PROMPT_TOKENS = 16
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


# Audiobox's four axes and the suite's keys are logged as already-synced plain values (see the module docstring).
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/(audiobox_|avbench/)")


class ToyAV(Dataset):
    """``n`` reference clips (tones + noise) with a toy video, a prompt and a transcript each.

    Item ``i`` is ``{"id": i, "audio": (T,) float, "video": (F, 3, H, W) uint8, "prompt": str, "transcript": str}``.
    """

    def __init__(self, n: int = 7, seconds: float = 1.0) -> None:
        g = torch.Generator().manual_seed(0)
        t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        self.f0 = torch.empty(n).uniform_(150, 600, generator=g)
        noise = 0.05 * torch.randn(n, t.numel(), generator=g)
        self.audio = 0.4 * torch.sin(2 * math.pi * self.f0[:, None] * t) + noise
        frames = int(seconds * VIDEO_FPS)
        self.video = torch.randint(0, 256, (n, frames, 3, VIDEO_HEIGHT, VIDEO_WIDTH), generator=g, dtype=torch.uint8)

    def __len__(self) -> int:
        return self.audio.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "id": i,
            "audio": self.audio[i],
            "video": self.video[i],
            "prompt": f"a tone at {int(self.f0[i])} hertz",
            # 1 to 4 words, so that per-sample WERs (of a real ASR) differ from sample to sample.
            "transcript": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 4)),
        }


def toy_clap_tokenizer(texts: Sequence[str], **kwargs: Any) -> dict[str, Tensor]:
    """A stand-in for CLAP's RoBERTa tokenizer (random weights need no real vocabulary).

    Words map to ids by CRC32 (stable across processes, unlike ``hash``) and every prompt is padded to the same
    length, so a prompt's tokens never depend on its batch. A module-level function, so DDP can pickle it.
    """
    words = VOCAB_SIZE - FIRST_WORD_ID
    rows = [[BOS_ID, *(FIRST_WORD_ID + zlib.crc32(w.encode()) % words for w in t.split()), EOS_ID] for t in texts]
    width = kwargs.get("max_length", TOY_PROMPT_TOKENS) if kwargs.get("padding") == "max_length" else TOY_PROMPT_TOKENS
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        row = row[:width]
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def seeded(cls: type[torch.nn.Module], *args: Any, **kwargs: Any) -> torch.nn.Module:
    """``cls(*args, **kwargs)`` built from a fixed seed: the same random weights whatever was built before it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(*args, **kwargs)


def build_metrics(tiny: bool, with_desync: bool) -> dict[str, Any]:
    """The metrics, keyed by their log name; ``tiny``: small RANDOM-WEIGHT backbones (seeded, so reproducible)."""
    if not tiny:
        from torchmetrics_av.backbones import Audiobox

        passt = PaSST()
        metrics: dict[str, Any] = {
            "clap": CLAPScore(sample_rate=SAMPLE_RATE),
            "wer": SpeechWordErrorRate(sample_rate=SAMPLE_RATE),
            "audiobox": AudioboxAesthetics(sample_rate=SAMPLE_RATE, backbone=Audiobox()),
            "ib_score": ImageBindScore(sample_rate=SAMPLE_RATE, video_fps=VIDEO_FPS),
        }
    else:
        from torchmetrics_av.backbones import CLAP, Audiobox, ImageBind, Whisper
        from torchmetrics_av.backbones.clap import small_clap_config

        passt = seeded(PaSST, pretrained=False, embed_dim=32, depth=1, num_heads=2)
        clap = seeded(CLAP, pretrained=False, config=small_clap_config())
        whisper_dims = dict(
            n_audio_state=32, n_audio_head=2, n_audio_layer=1, n_text_state=32, n_text_head=2, n_text_layer=1
        )
        whisper = seeded(Whisper, pretrained=False, name="tiny", dims=whisper_dims, sample_len=8)
        audiobox_encoder = dict(
            encoder_layers=1,
            encoder_embed_dim=32,
            encoder_ffn_embed_dim=32,
            encoder_attention_heads=2,
            conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
            conv_pos=4,
            conv_pos_groups=2,
        )
        audiobox = seeded(Audiobox, pretrained=False, encoder_config=audiobox_encoder, model_config={"nth_layer": 2})
        imagebind = seeded(
            ImageBind,
            pretrained=False,
            vision_embed_dim=16,
            vision_num_blocks=1,
            vision_num_heads=2,
            audio_embed_dim=16,
            audio_num_blocks=1,
            audio_num_heads=2,
            out_embed_dim=8,
        )
        metrics = {
            "clap": CLAPScore(sample_rate=SAMPLE_RATE, backbone=clap, tokenizer=toy_clap_tokenizer),
            "wer": SpeechWordErrorRate(sample_rate=SAMPLE_RATE, backbone=whisper),
            "audiobox": AudioboxAesthetics(sample_rate=SAMPLE_RATE, backbone=audiobox),
            "ib_score": ImageBindScore(sample_rate=SAMPLE_RATE, video_fps=VIDEO_FPS, backbone=imagebind),
        }
    # One PaSST object for both: the FD and KL windows are embedded in a single pass per batch.
    metrics["fd_passt"] = FrechetAudioDistance(sample_rate=SAMPLE_RATE, backbone=passt)
    metrics["kl_passt"] = PaSSTKLDivergence(sample_rate=SAMPLE_RATE, backbone=passt)
    if with_desync:
        from torchmetrics_av.backbones import Synchformer

        sync = (
            seeded(Synchformer, pretrained=False, embed_dim=16, depth=1, num_heads=2, sync_depth=1, sync_heads=2)
            if tiny
            else None
        )
        metrics["desync"] = DeSync(sample_rate=SAMPLE_RATE, video_fps=VIDEO_FPS, backbone=sync)
    return metrics


def build_suite(tiny: bool, with_video: bool) -> AVBenchmarkSuite:
    """av-benchmark's suite; ``tiny``: every backbone from ``testing.tiny_backbone`` (seeded RANDOM weights)."""
    if not tiny:
        return av_benchmark_suite(sample_rate=SAMPLE_RATE, video_fps=VIDEO_FPS)
    from torchmetrics_av.testing import tiny_backbone

    names = [n for n in SUITE_BACKBONES if with_video or n not in ("imagebind", "synchformer")]
    # The suite runs under av-benchmark's protocol, whose CLAP is the unfused laion_clap model.
    backbones = {n: tiny_backbone(n, **({"protocol": "av-benchmark"} if n == "clap" else {})) for n in names}
    return av_benchmark_suite(backbones, sample_rate=SAMPLE_RATE, video_fps=VIDEO_FPS)


class ToyGenerator(L.LightningModule):
    """A toy audio "generator" validated with every torchmetrics-av metric (see the module docstring)."""

    def __init__(self, tiny: bool = True, with_desync: bool = True, with_suite: bool = False) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.8))
        # A ModuleDict registers the metrics as children: they follow the module's device, and Lightning finds the
        # logged metric objects among its modules.
        self.val_metrics = torch.nn.ModuleDict(build_metrics(tiny, with_desync))
        # Videos reach the suite (IB-Score, DeSync) only when the clips are long enough for DeSync.
        self.suite_video = with_desync
        self.suite = build_suite(tiny, with_desync) if with_suite else None

    def forward(self, ref: Tensor) -> Tensor:
        smooth = torch.nn.functional.avg_pool1d(ref.unsqueeze(1), 5, stride=1, padding=2).squeeze(1)
        return (self.gain * smooth).clamp(-1, 1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        ids, ref, video = batch["id"], batch["audio"], batch["video"]
        gen = self(ref)
        m = self.val_metrics
        m["fd_passt"].update(preds=gen, target=ref, ids=ids, target_ids=ids)
        m["kl_passt"].update(gen, ref, ids=ids)
        m["clap"].update(gen, list(batch["prompt"]), ids=ids)
        m["wer"].update(gen, list(batch["transcript"]), language="en", ids=ids)
        m["audiobox"].update(gen, ids=ids)
        m["ib_score"].update(gen, video, ids=ids)
        if "desync" in m:
            m["desync"].update(gen, video, ids=ids)
        if self.suite is not None:
            video_in = video if self.suite_video else None
            self.suite.update(preds=gen, target=ref, text=list(batch["prompt"]), video=video_in, ids=ids)
        for name, metric in m.items():
            if name != "audiobox":  # dict-valued: logged in on_validation_epoch_end
                self.log(f"val/{name}", metric)

    def on_validation_epoch_end(self) -> None:
        aes = self.val_metrics["audiobox"]
        self.log_dict({f"val/audiobox_{axis}": value for axis, value in aes.compute().items()}, sync_dist=False)
        aes.reset()
        if self.suite is not None:
            self.log_dict({f"val/avbench/{k}": v for k, v in self.suite.compute().items()}, sync_dist=False)
            self.suite.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.gain], lr=0.01)


def validate(
    devices: int = 1,
    tiny: bool = True,
    n: int = 7,
    batch_size: int = 2,
    seconds: float | None = None,
    desync: bool = True,
    suite: bool = False,
) -> dict[str, float]:
    """Run ``Trainer.validate`` on CPU; return the logged values.

    Args:
        devices: CPU processes (``ddp_spawn`` with gloo when > 1).
        tiny: tiny random backbones.
        n: dataset length.
        batch_size: clips per validation step (per process).
        seconds: clip length (default: enough for DeSync when it is used, else 1 s).
        desync: include DeSync (it needs clips of at least 4.8 s).
        suite: also log :func:`~torchmetrics_av.av_benchmark_suite` (``val/avbench/<key>``; ``n`` >= 10 for its
            Inception Scores).
    """
    if seconds is None:
        seconds = DESYNC_SECONDS if desync else NO_DESYNC_SECONDS
    if desync and seconds < DESYNC_MIN_SECONDS:
        raise ValueError(f"DeSync needs clips of at least {DESYNC_MIN_SECONDS} s, got `seconds={seconds}`")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(ToyAV(n, seconds), batch_size=batch_size)
    (logged,) = trainer.validate(ToyGenerator(tiny, desync, suite), dataloaders=loader, verbose=False)
    return {k: float(v) for k, v in logged.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="tiny RANDOM-WEIGHT backbones")
    p.add_argument("--n", type=int, default=7, help="validation samples")
    p.add_argument("--seconds", type=float, default=None, help="clip length (default: 5 with DeSync, else 1)")
    p.add_argument("--no-desync", action="store_true", help="skip DeSync (needs >= 4.8 s clips)")
    p.add_argument("--suite", action="store_true", help="also log av_benchmark_suite() (needs --n >= 10)")
    args = p.parse_args()
    if args.tiny:
        print("!! RANDOM WEIGHTS: tiny random backbones; the values are NOT the real metrics, only a pipeline check")
    values = validate(
        args.devices, args.tiny, args.n, seconds=args.seconds, desync=not args.no_desync, suite=args.suite
    )
    for key, value in sorted(values.items()):
        print(f"{key}={value:.6g}")


if __name__ == "__main__":
    main()
