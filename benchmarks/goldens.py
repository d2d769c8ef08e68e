"""The visible goldens as runnable cases: one metric on one golden's inputs, at a chosen device and precision.

Each :class:`GoldenCase` builds the full-size backbone with the golden's fill-v1 weights, feeds the golden's clips
through the public metric and returns the metric value, the backbone outputs it produced (the "embeddings", recorded
by :class:`cases.ForwardSpy` on the methods the golden README says carry the model outputs) and the golden's own
numbers with their README tolerances. ``gpu_check.py`` compares a CUDA float32 run with the golden (parity) and
``bf16_shift.py`` a bf16 run with a float32 run (the shift).

Golden data is read from ``tests/golden/<name>`` (the repo's copy), else from ``../shared/golden/<name>``
(``TORCHMETRICS_AV_GOLDEN_DIR`` overrides it), the same order as ``tests/conftest.py``.

Example:
    >>> "fd_passt-fastvideo" in GOLDEN_CASES
    True
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.cases import ForwardSpy, precision_kwargs, precision_scope, update_context

REPO = Path(__file__).resolve().parents[1]
REPO_GOLDEN_DIR = REPO / "tests" / "golden"
SHARED_GOLDEN_DIR = Path(os.environ.get("TORCHMETRICS_AV_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


def golden_file(name: str, filename: str) -> Path:
    """``tests/golden/<name>/<filename>``, else the shared copy; ``FileNotFoundError`` naming both when absent."""
    for folder in (REPO_GOLDEN_DIR / name, SHARED_GOLDEN_DIR / name):
        if (folder / filename).is_file():
            return folder / filename
    raise FileNotFoundError(
        f"golden file {filename} of {name!r} is in neither {REPO_GOLDEN_DIR / name} nor {SHARED_GOLDEN_DIR / name}"
    )


@functools.cache
def load_golden(name: str, filename: str) -> Any:
    """``torch.load(weights_only=True)`` of a golden file (cached: several cases read the same file)."""
    return torch.load(golden_file(name, filename), weights_only=True)


def fill_v1() -> Callable[[nn.Module], nn.Module]:
    """The fill-v1 rule: the repo's ``tests/fill_v1.py`` where present, else the shared golden folder's ``fill.py``."""
    try:
        from tests.fill_v1 import fill_v1 as fn
    except ImportError as err:
        shared = SHARED_GOLDEN_DIR / "fill.py"
        if not shared.is_file():
            raise FileNotFoundError(
                f"neither tests/fill_v1.py nor {shared} exists: the fill-v1 rule is missing"
            ) from err
        sys.path.insert(0, str(SHARED_GOLDEN_DIR))
        try:
            from fill import fill_v1 as fn
        finally:
            sys.path.pop(0)
    return fn


@dataclasses.dataclass
class GoldenResult:
    """One run of a golden case.

    Attributes:
        value: the metric value(s), float64 ``(K,)`` on CPU (``K`` = 1, or the axes of a dict-valued metric).
        embeddings: the recorded backbone outputs, flattened and concatenated, float64 on CPU.
        reference_value: the golden's value(s) in the same order.
        value_atol: the golden README's absolute tolerance on ``value`` (``value_rtol`` relative, where it gives one).
        reference_embeddings, embeddings_atol: the golden's embeddings in the order of ``parity_embeddings`` and
            their tolerance; ``None`` where the case has no such comparison.
        parity_embeddings: embeddings of the golden's clips in the order of ``reference_embeddings``.
    """

    value: Tensor
    embeddings: Tensor
    reference_value: Tensor
    value_atol: float = 0.0
    value_rtol: float = 0.0
    parity_embeddings: Tensor | None = None
    reference_embeddings: Tensor | None = None
    embeddings_atol: float | None = None


@dataclasses.dataclass(frozen=True)
class GoldenCase:
    """A metric on one golden: ``build()`` the filled backbone once, then ``run(backbone, device, precision)``.

    ``golden`` keys the built backbone: consecutive cases with the same key share one.
    """

    name: str
    golden: str
    build: Callable[[], nn.Module]
    run: Callable[[nn.Module, torch.device, str], GoldenResult]
    # Rough CPU cost (float32 seconds on 2 quiet cores), to pick the cheap ones in a dry run.
    cpu_seconds: float


def _flat(outputs: Sequence[Any]) -> Tensor:
    parts: list[Tensor] = []
    for out in outputs:
        items = out if isinstance(out, list | tuple) else [out]
        parts.extend(
            t.detach().double().flatten().cpu() for t in items if isinstance(t, Tensor) and t.is_floating_point()
        )
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def compare(result: GoldenResult, other: GoldenResult | None = None) -> dict[str, Any]:
    """Max |Δ| of value and embeddings: against the golden (``other=None``) or against another run (the shift)."""
    if other is not None:
        n = min(result.embeddings.numel(), other.embeddings.numel())
        same = result.embeddings.numel() == other.embeddings.numel()
        return {
            "value_max_abs_diff": float((result.value - other.value).abs().max()),
            "value_max_rel_diff": float(
                ((result.value - other.value).abs() / other.value.abs().clamp_min(1e-300)).max()
            ),
            "embeddings_max_abs_diff": float((result.embeddings[:n] - other.embeddings[:n]).abs().max()) if n else 0.0,
            "embeddings_max_abs": float(other.embeddings.abs().max()) if n else 0.0,
            "embeddings_count": int(other.embeddings.numel()),
            "embeddings_aligned": same,
        }
    diff = (result.value - result.reference_value).abs()
    allowed = result.value_atol + result.value_rtol * result.reference_value.abs()
    out: dict[str, Any] = {
        "value": result.value.tolist(),
        "reference_value": result.reference_value.tolist(),
        "value_max_abs_diff": float(diff.max()),
        "value_atol": result.value_atol,
        "value_rtol": result.value_rtol,
        "value_ok": bool((diff <= allowed).all()),
    }
    if result.reference_embeddings is not None and result.parity_embeddings is not None:
        ediff = float((result.parity_embeddings.double() - result.reference_embeddings.double()).abs().max())
        out.update(
            embeddings_max_abs_diff=ediff,
            embeddings_atol=result.embeddings_atol,
            embeddings_ok=ediff <= float(result.embeddings_atol or 0.0),
        )
    out["ok"] = out["value_ok"] and out.get("embeddings_ok", True)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# PaSST: FD and KL, both protocols (golden README §7 tolerances)

PASST_EMB_ATOL = 5e-5
KL_SOFTMAX_ATOL = 1e-5
FD_RTOL = {"fastvideo": 1e-6, "av-benchmark": 1e-4}
_PASST_KEY = {"fastvideo": "fastvideo", "av-benchmark": "avbench"}


def _passt_build() -> nn.Module:
    from torchmetrics_av.backbones import PaSST

    net = PaSST(pretrained=False, cache_size=0)  # no memo: FD and KL each run their own forwards
    fill_v1()(net.model)
    return net


def _passt_clips() -> tuple[list[dict], list[dict]]:
    g = load_golden("passt", "passt_golden.pt")
    clips = {c["name"]: c for c in g["clips"]}
    return [clips[a] for a, _ in g["pairs"]], [clips[b] for _, b in g["pairs"]]


def _fd_run(protocol: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av import FrechetAudioDistance

        g = load_golden("passt", "passt_golden.pt")[_PASST_KEY[protocol]]
        gens, refs = _passt_clips()
        kw = precision_kwargs(FrechetAudioDistance, precision)
        fd = FrechetAudioDistance(protocol=protocol, backbone=net, **kw).to(device)
        with ForwardSpy(net, ["forward"]) as spy, update_context(FrechetAudioDistance, precision, device):
            # One clip per update, generated then reference, so the recorded embeddings follow the golden's clips.
            for c in gens:
                fd.update(preds=[c["wave"]], sample_rate=c["sr"])
            for c in refs:
                fd.update(target=[c["wave"]], target_sample_rate=c["sr"])
        value = torch.tensor([float(fd.compute())], dtype=torch.float64)
        emb = torch.cat([call.output[0] for call in spy.calls]).cpu()
        ref_emb = torch.stack([g["clips"][c["name"]]["embedding"] for c in gens + refs])
        return GoldenResult(
            value=value,
            embeddings=_flat([call.output for call in spy.calls]),
            reference_value=torch.tensor([g["fd"]["score"]], dtype=torch.float64),
            value_rtol=FD_RTOL[protocol],
            parity_embeddings=emb,
            reference_embeddings=ref_emb,
            embeddings_atol=PASST_EMB_ATOL,
        )

    return run


def _kl_run(protocol: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av import PaSSTKLDivergence

        g = load_golden("passt", "passt_golden.pt")[_PASST_KEY[protocol]]
        gens, refs = _passt_clips()
        kw = precision_kwargs(PaSSTKLDivergence, precision)
        kl = PaSSTKLDivergence(protocol=protocol, backbone=net, **kw).to(device)
        with ForwardSpy(net, ["forward"]) as spy, update_context(PaSSTKLDivergence, precision, device):
            kl.update(
                [c["wave"] for c in gens],
                [c["wave"] for c in refs],
                sample_rate=[c["sr"] for c in gens],
                target_sample_rate=[c["sr"] for c in refs],
            )
        value = torch.tensor([float(kl.compute())], dtype=torch.float64)
        if protocol == "fastvideo":
            ref = sum(p["kl_softmax"] for p in g["pairs"]) / len(g["pairs"])
        else:
            ref = g["kl_mean"]["kl_softmax"]
        return GoldenResult(
            value=value,
            embeddings=_flat([call.output for call in spy.calls]),
            reference_value=torch.tensor([ref], dtype=torch.float64),
            value_atol=KL_SOFTMAX_ATOL,
        )

    return run


# ---------------------------------------------------------------------------------------------------------------------
# MS-CLAP (golden README §8 tolerances; tests/golden/msclap)

MSCLAP_COSINE_ATOL = 1e-6
MSCLAP_AUDIO_EMB_ATOL = 5e-5


def _msclap_build() -> nn.Module:
    from torchmetrics_av.backbones import MSCLAP

    g = load_golden("msclap", "msclap_golden_trimmed.pt")
    net = MSCLAP(pretrained=False, crop_seed=g["crop_seed"])
    # fill-v1 on the root, then the torchlibrosa constant kernels put back (golden README).
    keep = {k: v.clone() for k, v in net.model.state_dict().items() if k in g["constant_keys"]}
    fill_v1()(net.model)
    net.model.load_state_dict(keep, strict=False)
    return net


def _msclap_run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
    from torchmetrics_av.backbones.msclap import msclap_scores

    g = load_golden("msclap", "msclap_golden_trimmed.pt")
    pairs = g["pairs"]
    clips = [g["clips"][c]["pcm16"].to(torch.float32) / 32768 for c, _ in pairs]
    rates = [g["clips"][c]["sample_rate"] for c, _ in pairs]
    texts = [g["texts"][t]["caption"] for _, t in pairs]
    starts = [g["clips"][c]["crop_start"] for c, _ in pairs]
    net.to(device)
    # No metric class wraps MS-CLAP yet: msclap_scores is the per-pair number MS-CLAP-Score averages.
    with ForwardSpy(net, ["audio_embedding", "text_embedding"]) as spy, precision_scope(precision, device):
        cosine = msclap_scores(net, clips, rates, texts, crop_starts=starts)
    audio = [c.output for c in spy.calls if c.method == "audio_embedding"]
    return GoldenResult(
        value=torch.tensor([float(cosine.double().mean())], dtype=torch.float64),
        embeddings=_flat([c.output for c in spy.calls]),
        reference_value=torch.tensor([g["score"]], dtype=torch.float64),
        value_atol=MSCLAP_COSINE_ATOL,
        parity_embeddings=torch.cat(audio).cpu(),
        reference_embeddings=torch.stack([g["clips"][c]["audio_emb"] for c, _ in pairs]),
        embeddings_atol=MSCLAP_AUDIO_EMB_ATOL,
    )


# ---------------------------------------------------------------------------------------------------------------------
# LAION-CLAP, both protocols (golden README §6 tolerances)

CLAP_COSINE_ATOL = 1e-5
CLAP_EMB_ATOL = 1e-5
_CLAP_KEY = {"fastvideo": "fastvideo", "av-benchmark": "avbench"}
# RoBERTa's special ids: <s> 0, <pad> 1, </s> 2 (the golden's texts are RoBERTa id sequences).
ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS = 0, 1, 2


class WordIdTokenizer:
    """Tokenizer whose words are ``w<id>``: the golden's RoBERTa id sequences, framed, padded and truncated like
    transformers' RoBERTa tokenizer (``<s> ids </s>``; truncation keeps the first ``max_length - 2`` ids)."""

    pad_token_id = ROBERTA_PAD

    def __call__(
        self,
        texts: Sequence[str],
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        **_: Any,
    ) -> dict[str, Tensor]:
        rows = [[int(w[1:]) for w in t.split()] for t in texts]
        if truncation and max_length is not None:
            rows = [r[: max_length - 2] for r in rows]
        rows = [[ROBERTA_BOS, *r, ROBERTA_EOS] for r in rows]
        width = max_length if padding == "max_length" and max_length else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), ROBERTA_PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        return {"input_ids": ids, "attention_mask": mask}


def _clap_build(protocol: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from transformers import ClapConfig

        from torchmetrics_av.backbones import CLAP

        gp = load_golden("clap", "clap_golden.pt")[_CLAP_KEY[protocol]]
        cfg = ClapConfig(audio_config=gp["model_config"]["audio_config"])
        net = CLAP(pretrained=False, protocol=protocol, config=cfg, tokenizer=WordIdTokenizer())
        fill_v1()(net.model)
        return net

    return build


def _clap_run(protocol: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av import CLAPScore

        g = load_golden("clap", "clap_golden.pt")
        gp = g[_CLAP_KEY[protocol]]
        pairs = gp["pairs"]
        clips = [g["clips"][c]["pcm16"].to(torch.float32) / 32768 for c, _ in pairs]
        rates = [g["clips"][c]["sample_rate"] for c, _ in pairs]
        texts = [" ".join(f"w{i}" for i in g["texts"][t]["content_ids"].tolist()) for _, t in pairs]
        metric = CLAPScore(protocol=protocol, backbone=net, **precision_kwargs(CLAPScore, precision)).to(device)
        with ForwardSpy(net, ["embed_features", "embed_text_ids"]) as spy, update_context(CLAPScore, precision, device):
            metric.update(clips, texts, sample_rate=rates)
        ref = gp["cosine"] if protocol == "fastvideo" else gp["cosine_laion_code"]
        audio = [c.output for c in spy.calls if c.method == "embed_features"]
        return GoldenResult(
            value=torch.tensor([float(metric.compute())], dtype=torch.float64),
            embeddings=_flat([c.output for c in spy.calls]),
            reference_value=torch.tensor([float(ref.double().mean())], dtype=torch.float64),
            value_atol=CLAP_COSINE_ATOL,
            parity_embeddings=torch.cat(audio).cpu(),
            reference_embeddings=torch.stack([gp["clips"][c]["audio_emb"] for c, _ in pairs]),
            embeddings_atol=CLAP_EMB_ATOL,
        )

    return run


# ---------------------------------------------------------------------------------------------------------------------
# Audiobox aesthetics (golden README: clip scores atol 5e-5)

AUDIOBOX_SCORE_ATOL = 5e-5


def _audiobox_build() -> nn.Module:
    from torchmetrics_av.backbones import Audiobox

    # pretrained=False builds the hub config's architecture (the golden's model_config, checked by test_audiobox).
    net = Audiobox(pretrained=False, batch_size=8)
    fill_v1()(net.model)
    return net


def _audiobox_run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
    from torchmetrics_av import AudioboxAesthetics
    from torchmetrics_av.backbones.audiobox import AXES

    g = load_golden("audiobox", "audiobox_golden.pt")
    clips = list(g["clips"].values())
    metric = AudioboxAesthetics(backbone=net, **precision_kwargs(AudioboxAesthetics, precision)).to(device)
    with ForwardSpy(net, ["predict_windows"]) as spy, update_context(AudioboxAesthetics, precision, device):
        metric.update([c["pcm16"] for c in clips], sample_rate=[c["sample_rate"] for c in clips])
    result = metric.compute()
    expected = torch.stack([c["scores"] for c in clips]).double()
    return GoldenResult(
        value=torch.tensor([float(result[a]) for a in AXES], dtype=torch.float64),
        embeddings=_flat([c.output for c in spy.calls]),
        reference_value=expected.mean(dim=0),
        value_atol=AUDIOBOX_SCORE_ATOL,
        parity_embeddings=metric.details["scores"].cpu(),
        reference_embeddings=expected,
        embeddings_atol=AUDIOBOX_SCORE_ATOL,
    )


# ---------------------------------------------------------------------------------------------------------------------
# DeSync / Synchformer, pair v0 (5 s, 14 segments), both protocols (golden README §5: every window's margin > 0.016,
# so the offsets and DeSync are exact; logits atol 1e-4)

DESYNC_PAIR = "v0_5s_24fps"
DESYNC_LOGITS_ATOL = 1e-4
_DESYNC_KEY = {"fastvideo": "fastvideo", "av-benchmark": "avbench"}


def golden_video(d: dict[str, Any]) -> Tensor:
    """A Synchformer golden pair's uint8 video ``(T, 3, H, W)``, rebuilt from its texture and per-frame shifts."""
    tex = d["input.texture"]
    ht, wt, _ = tex.shape
    ys, xs = torch.arange(d["input.height"]), torch.arange(d["input.width"])
    frames = [tex[((ys + dy) % ht)[:, None], ((xs + dx) % wt)[None, :]] for dx, dy in zip(d["input.dx"], d["input.dy"])]
    video = torch.stack(frames).contiguous()
    if int(video.sum()) != d["input.video_sum"]:
        raise ValueError("the rebuilt golden video does not match its recorded sum")
    return video.permute(0, 3, 1, 2)


def _desync_build() -> nn.Module:
    from torchmetrics_av.backbones import Synchformer

    net = Synchformer(pretrained=False)
    fill_v1()(net.model)
    return net.eval()


def _desync_run(protocol: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av import DeSync

        d = load_golden("synchformer", f"pair_{DESYNC_PAIR}.pt")
        key = _DESYNC_KEY[protocol]
        kwargs = {"duration": d["avbench.duration_sec"]} if protocol == "av-benchmark" else {}
        metric = DeSync(
            sample_rate=d["input.audio_sr"],
            video_fps=float(d["input.fps"]),
            protocol=protocol,
            backbone=net,
            keep_logits=True,
            **kwargs,
            **precision_kwargs(DeSync, precision),
        ).to(device)
        methods = ["video_features", "audio_features", "sync_logits"]
        with ForwardSpy(net, methods) as spy, update_context(DeSync, precision, device):
            metric.update(d["input.audio_int16"][None], golden_video(d)[None])
        value = float(metric.compute())
        det = metric.details
        return GoldenResult(
            value=torch.tensor([value], dtype=torch.float64),
            embeddings=_flat([c.output for c in spy.calls]),
            reference_value=torch.tensor([d[f"{key}.desync"]], dtype=torch.float64),
            parity_embeddings=torch.cat([det["logits_front"][0], det["logits_back"][0]]).cpu(),
            reference_embeddings=torch.cat([d[f"{key}.logits_front"], d[f"{key}.logits_back"]]),
            embeddings_atol=DESYNC_LOGITS_ATOL,
        )

    return run


# ---------------------------------------------------------------------------------------------------------------------
# ImageBind huge, pair v1, av-benchmark protocol (3 vision + 3 audio clips; golden README: score atol 1e-5,
# vision embedding 1e-5)

IMAGEBIND_SCORE_ATOL = 1e-5
IMAGEBIND_VISION_EMB_ATOL = 1e-5


def _imagebind_build() -> nn.Module:
    from torchmetrics_av.backbones import ImageBind

    # The port's .model state_dict names are the checkpoint's (test_imagebind checks them against the manifest).
    net = ImageBind(pretrained=False)
    fill_v1()(net.model)
    return net


def _imagebind_run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
    from torchmetrics_av import ImageBindScore

    d = load_golden("imagebind", "inputs.pt")["v1"]
    ref = load_golden("imagebind", "outputs_v1.pt")["avbench"]
    metric = ImageBindScore(
        sample_rate=int(d["audio_sample_rate"]),
        video_fps=float(d["video_fps"]),
        protocol="av-benchmark",
        backbone=net,
        duration=float(d["avbench_duration_sec"]),
        **precision_kwargs(ImageBindScore, precision),
    ).to(device)
    with ForwardSpy(net, ["embed_audio", "embed_vision"]) as spy, update_context(ImageBindScore, precision, device):
        metric.update([d["audio_pcm_int16"].float() / 32768], [d["video_uint8_thwc"].permute(0, 3, 1, 2)])
    vision = [c.output for c in spy.calls if c.method == "embed_vision"]
    return GoldenResult(
        value=torch.tensor([float(metric.compute())], dtype=torch.float64),
        embeddings=_flat([c.output for c in spy.calls]),
        reference_value=torch.tensor([ref["ib_score"]], dtype=torch.float64),
        value_atol=IMAGEBIND_SCORE_ATOL,
        parity_embeddings=torch.cat(vision).mean(dim=0).cpu(),
        reference_embeddings=ref["vision_emb"],
        embeddings_atol=IMAGEBIND_VISION_EMB_ATOL,
    )


# ---------------------------------------------------------------------------------------------------------------------
# FD-PANN and FD-VGG (av-benchmark; tests/golden/panns: 22 PCM16 FLAC clips; README §8: FD rtol 1e-5 from our
# features). No metric class wraps these backbones yet: prepare + embed + the functional FD, as av-benchmark does.

PANNS_FD_RTOL = 1e-5


def _panns_clips() -> tuple[list[Tensor], list[int], list[str], dict]:
    import soundfile

    g = load_golden("panns", "panns_golden.pt")
    entries = {f"{c['side']}/{c['name']}": c for c in g["clips"]}
    order = g["avbench"]["row_order"]
    names = [f"pred/{s}" for s in order["pred"]] + [f"gt/{s}" for s in order["gt"]]
    clips, rates = [], []
    for name in names:
        e = entries[name]
        codes, rate = soundfile.read(golden_file("panns", e["file"]), dtype="int16", always_2d=True)
        clips.append(torch.from_numpy(codes.T.copy()).to(torch.float32) / 32768)  # AudioDataset: PCM16 / 32768
        rates.append(rate)
    return clips, rates, names, g


def _panns_like_build(kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchmetrics_av import backbones

        net = getattr(backbones, kind)(pretrained=False)
        fill_v1()(net.model)
        return net

    return build


def _panns_like_run(kind: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av.functional import frechet_distance_from_features

        clips, rates, names, g = _panns_clips()
        net.to(device)
        waves = [net.prepare(c, r) for c, r in zip(clips, rates)]
        with torch.no_grad(), precision_scope(precision, device):
            out = net.embed(waves)
        rows = list(out[0]) if kind == "PANNs" else out  # PANNs: (emb, logits); VGGish: per-clip example rows
        n_pred = sum(n.startswith("pred/") for n in names)
        preds, target = (
            torch.cat([r.reshape(-1, r.shape[-1]) for r in rows[:n_pred]]),
            torch.cat([r.reshape(-1, r.shape[-1]) for r in rows[n_pred:]]),
        )
        fd = frechet_distance_from_features(preds.double().cpu(), target.double().cpu(), eps_policy="on_failure")
        key = "FD-PANN" if kind == "PANNs" else "FD-VGG"
        return GoldenResult(
            value=torch.tensor([float(fd)], dtype=torch.float64),
            embeddings=_flat([out]),
            reference_value=torch.tensor([g["avbench"]["metrics"][key]], dtype=torch.float64),
            value_rtol=PANNS_FD_RTOL,
        )

    return run


PANNS_KL_ATOL = 1e-6  # golden README §8: KL-PANNS-softmax mean, against av-benchmark's float32 compute_kl
PANNS_ISC_ATOL = 1e-9  # golden README §8: ISC-PANNS mean and std


def _panns_metric_run(kind: str) -> Callable[[nn.Module, torch.device, str], GoldenResult]:
    """KL-PANNS (``kind="kl"``, the golden's pairs) or ISC-PANNS (``"isc"``, every generated clip) through the
    metric classes, as ``tests/test_panns_metrics.py`` feeds them."""

    def run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
        from torchmetrics_av import InceptionScore, KLDivergence

        clips, rates, names, g = _panns_clips()
        av = g["avbench"]
        by_name = dict(zip(names, zip(clips, rates)))
        cls = KLDivergence if kind == "kl" else InceptionScore
        metric = cls(protocol="av-benchmark", backbone=net, **precision_kwargs(cls, precision)).to(device)
        with ForwardSpy(net, ["forward"]) as spy, update_context(cls, precision, device):
            if kind == "kl":
                pred = [by_name[f"pred/{s}"] for s in av["kl_pairs_order"]]
                gt = [by_name[f"gt/{s}"] for s in av["kl_pairs_order"]]
                metric.update(
                    [c for c, _ in pred],
                    [c for c, _ in gt],
                    sample_rate=[r for _, r in pred],
                    target_sample_rate=[r for _, r in gt],
                )
            else:
                pred = [by_name[f"pred/{s}"] for s in av["row_order"]["pred"]]
                metric.update([c for c, _ in pred], sample_rate=[r for _, r in pred], ids=list(range(len(pred))))
        if kind == "kl":
            value = [float(metric.compute())]
            reference, atol = [av["metrics"]["KL-PANNS-softmax"]], PANNS_KL_ATOL
        else:
            value = [float(metric.compute()), float(metric.details["inception_score_std"])]
            reference, atol = [av["metrics"]["ISC-PANNS-mean"], av["metrics"]["ISC-PANNS-std"]], PANNS_ISC_ATOL
        return GoldenResult(
            value=torch.tensor(value, dtype=torch.float64),
            embeddings=_flat([c.output for c in spy.calls]),
            reference_value=torch.tensor(reference, dtype=torch.float64),
            value_atol=atol,
        )

    return run


# ---------------------------------------------------------------------------------------------------------------------
# WER with Whisper base (fill-v1; golden README: the auto-detected transcripts exactly, hence the WER)


def _wer_build() -> nn.Module:
    import json

    from torchmetrics_av.backbones import Whisper

    meta = json.loads(load_golden("wer", "whisper_golden.pt")["meta_json"])
    net = Whisper(pretrained=False, name="base", sample_len=64)
    if dataclasses.asdict(net.model.dims) != meta["dims"]:
        raise ValueError(f"Whisper base dims {net.model.dims} differ from the golden's {meta['dims']}")
    fill_v1()(net.model)
    return net


def _wer_run(net: nn.Module, device: torch.device, precision: str) -> GoldenResult:
    import json
    import math

    import soundfile

    from torchmetrics_av import SpeechWordErrorRate
    from torchmetrics_av.functional.wer import score_transcript

    g = load_golden("wer", "whisper_golden.pt")
    meta = json.loads(g["meta_json"])
    raw = [soundfile.read(golden_file("wer", f"whisper_inputs/{n}.wav"), dtype="float32") for n in g["names"]]
    spoken = [c["text"] for c in meta["clips"] for _ in (0, 1)]
    metric = SpeechWordErrorRate(backbone=net, **precision_kwargs(SpeechWordErrorRate, precision)).to(device)
    with ForwardSpy(net, ["model.encoder.forward"]) as spy, update_context(SpeechWordErrorRate, precision, device):
        metric.update([torch.from_numpy(x) for x, _ in raw], spoken, sample_rate=[sr for _, sr in raw])
    expected = [score_transcript(t, ref).wer for t, ref in zip(g["decode_auto_text"], spoken)]
    return GoldenResult(
        value=torch.tensor([float(metric.compute())], dtype=torch.float64),
        embeddings=_flat([c.output for c in spy.calls]),
        reference_value=torch.tensor([math.fsum(expected) / len(expected)], dtype=torch.float64),
        value_atol=1e-12,
    )


GOLDEN_CASES: dict[str, GoldenCase] = {
    case.name: case
    for case in [
        GoldenCase("fd_passt-fastvideo", "passt", _passt_build, _fd_run("fastvideo"), 20),
        GoldenCase("fd_passt-av-benchmark", "passt", _passt_build, _fd_run("av-benchmark"), 20),
        GoldenCase("kl_passt-fastvideo", "passt", _passt_build, _kl_run("fastvideo"), 30),
        GoldenCase("kl_passt-av-benchmark", "passt", _passt_build, _kl_run("av-benchmark"), 20),
        GoldenCase("ms_clap", "msclap", _msclap_build, _msclap_run, 15),
        GoldenCase("clap-fastvideo", "clap", _clap_build("fastvideo"), _clap_run("fastvideo"), 30),
        GoldenCase("clap-av-benchmark", "clap-avbench", _clap_build("av-benchmark"), _clap_run("av-benchmark"), 40),
        GoldenCase("audiobox", "audiobox", _audiobox_build, _audiobox_run, 60),
        GoldenCase("desync-fastvideo", "synchformer", _desync_build, _desync_run("fastvideo"), 90),
        GoldenCase("desync-av-benchmark", "synchformer", _desync_build, _desync_run("av-benchmark"), 90),
        GoldenCase("imagebind-av-benchmark", "imagebind", _imagebind_build, _imagebind_run, 120),
        GoldenCase("fd_panns", "panns", _panns_like_build("PANNs"), _panns_like_run("PANNs"), 30),
        GoldenCase("kl_panns", "panns", _panns_like_build("PANNs"), _panns_metric_run("kl"), 30),
        GoldenCase("isc_panns", "panns", _panns_like_build("PANNs"), _panns_metric_run("isc"), 30),
        GoldenCase("fd_vggish", "vggish", _panns_like_build("VGGish"), _panns_like_run("VGGish"), 30),
        GoldenCase("wer-whisper", "wer", _wer_build, _wer_run, 60),
    ]
}


def build_backbone(case: GoldenCase) -> nn.Module:
    """The case's filled backbone with its precision hooks (as a metric installs them), so that code calling the
    backbone directly inside ``precision_scope`` gets the same precision as a metric."""
    from torchmetrics_av.precision import install

    return install(case.build())
