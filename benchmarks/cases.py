"""One benchmark case per backbone: how to build it, feed its metric and find its bare forward.

A :class:`BackboneCase` says, for one backbone, how to build it (``"tiny"``: a few layers, for ``--quick`` and
``--dry-run``; ``"full"``: the official architecture with random weights, which runs the same graph as the
checkpoint), which metric ``update()`` uses it, what a batch of inputs looks like, and which backbone methods are
"the forward": the calls whose arguments are already preprocessed model inputs. :class:`ForwardSpy` records those
calls during one ``update()`` so that exactly the same preprocessed batch can be replayed without the metric around
it. Adding a backbone is one entry of :data:`CASES`.

Example:
    >>> sorted(CASES)[:3]
    ['audiobox', 'clap', 'imagebind']
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

# Sample rate of the generated test audio: 16 kHz is what most generators output (every metric resamples it).
AUDIO_RATE = 16000
# Frame rate of the generated test video: Synchformer's native 25 fps (no frame-rate conversion needed).
VIDEO_FPS = 25.0
# Clip length for the audio-only backbones: av-benchmark's default --audio_length (8 s).
AUDIO_SECONDS = 8.0
# DeSync clips: 5 s gives exactly 14 segments ((125 - 16) // 8 + 1), the one window Synchformer scores.
DESYNC_SECONDS = 5.0
# ImageBind clips: 8 s (av-benchmark's duration_sec) gives fastvideo's 5 x 2 s vision clips x 3 crops.
IMAGEBIND_SECONDS = 8.0
# Video frame size: 360p-like for "full" (a typical generated video), tiny frames for "tiny" (resized to 224 anyway).
VIDEO_HW = {"tiny": (48, 64), "full": (360, 640)}
# Vision clips per pair (fastvideo: 5 clips x 3 spatial crops) and segments per DeSync clip (see DESYNC_SECONDS).
IMAGEBIND_CLIPS_PER_PAIR = 15
DESYNC_SEGMENTS_PER_CLIP = 14
# Greedy decoding length of the Whisper benchmark: random weights never emit end-of-text, so every clip decodes
# exactly this many tokens and batched and per-clip runs do equal work.
WHISPER_TOKENS = {"tiny": 4, "full": 32}
# VGGish examples per 8 s clip: 0.96 s each, no overlap (vggish_params EXAMPLE_WINDOW/HOP_SECONDS).
VGGISH_EXAMPLES_PER_CLIP = 8
PROMPT = "a dog barks while a car passes by"
TRANSCRIPT = "the quick brown fox jumps over the lazy dog"


# ---------------------------------------------------------------------------------------------------------------------
# small helpers


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA timings are otherwise the launch time)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn``, synchronised on CUDA."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list]:
    """Time each function ``repeats`` times, alternating between them.

    Alternating makes a load burst on a shared machine hit every variant alike, so their ratio stays meaningful even
    when the absolute numbers are not.
    """
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            out[key].append(time_once(fn, device))
    return out


def _leaves(x: Any) -> Iterator[Any]:
    if isinstance(x, Tensor):
        yield x
    elif isinstance(x, list | tuple):
        for item in x:
            yield from _leaves(item)
    elif isinstance(x, dict):
        for key in sorted(x):
            yield from _leaves(x[key])
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        for field in dataclasses.fields(x):
            yield from _leaves(getattr(x, field.name))
    else:
        yield x


def _clone(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().clone()
    if isinstance(x, list | tuple):
        return type(x)(_clone(v) for v in x)
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def compare_outputs(a: Sequence[Any], b: Sequence[Any]) -> dict[str, float | int]:
    """``{"max_abs_diff", "mismatches"}`` between two output lists: numbers by value, anything else by equality."""
    la, lb = list(_leaves(list(a))), list(_leaves(list(b)))
    if len(la) != len(lb):
        return {"max_abs_diff": float("inf"), "mismatches": abs(len(la) - len(lb))}
    worst, mismatches = 0.0, 0
    for x, y in zip(la, lb):
        if isinstance(x, Tensor) and isinstance(y, Tensor) and x.shape == y.shape and x.is_floating_point():
            if x.numel():
                worst = max(worst, float((x.double().cpu() - y.double().cpu()).abs().max()))
        elif isinstance(x, float) and isinstance(y, float):
            worst = max(worst, abs(x - y))
        elif isinstance(x, Tensor) and isinstance(y, Tensor):
            mismatches += int(x.shape != y.shape or not torch.equal(x.cpu(), y.cpu()))
        else:
            mismatches += int(x != y)
    return {"max_abs_diff": worst, "mismatches": mismatches}


@dataclasses.dataclass
class Call:
    """One recorded backbone call: method name, cloned arguments and cloned output."""

    method: str
    args: tuple
    kwargs: dict
    output: Any


class ForwardSpy:
    """Record the outermost calls of ``methods`` on ``backbone`` (instance-level wrappers, removed on exit).

    Only outermost calls are kept, so a spied method that calls another spied method is counted once. A dotted
    name (``"model.forward"``) spies on a submodule's method.

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> with ForwardSpy(lin, ["forward"]) as spy:
        ...     _ = lin(torch.ones(3, 2))
        >>> [(c.method, tuple(c.args[0].shape)) for c in spy.calls]
        [('forward', (3, 2))]
        >>> "forward" in vars(lin)
        False
    """

    def __init__(self, backbone: nn.Module, methods: Sequence[str]) -> None:
        self.backbone, self.methods = backbone, list(methods)
        self.calls: list[Call] = []
        self._depth = 0

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return method(*args, **kwargs)
            saved_args, saved_kwargs = _clone(args), _clone(kwargs)
            self._depth += 1
            try:
                out = method(*args, **kwargs)
            finally:
                self._depth -= 1
            self.calls.append(Call(name, saved_args, saved_kwargs, _clone(out)))
            return out

        return spied

    def __enter__(self) -> ForwardSpy:
        for name in self.methods:
            owner, attr = _owner(self.backbone, name)
            setattr(owner, attr, self._wrap(name, getattr(owner, attr)))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.methods:
            owner, attr = _owner(self.backbone, name)
            owner.__dict__.pop(attr, None)


def _owner(backbone: nn.Module, name: str) -> tuple[Any, str]:
    """``("model.forward")`` -> ``(backbone.model, "forward")``: the object that holds a (dotted) method."""
    *path, attr = name.split(".")
    owner: Any = backbone
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


# Autocast dtypes of the precision options (torchmetrics_av.precision where present).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_kwargs(metric_cls: type, precision: str) -> dict[str, Any]:
    """``{"precision": precision}`` when ``metric_cls`` takes that argument, else ``{}`` (see ``update_context``)."""
    # Metrics forward **kwargs to BackboneMetric, so the argument may live on any class of the MRO.
    if any(
        "precision" in inspect.signature(cls.__init__).parameters for cls in metric_cls.__mro__ if cls is not object
    ):
        return {"precision": precision}
    if precision != "fp32" and precision not in AUTOCAST_DTYPES:
        raise ValueError(f"`precision` must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return {}


@contextmanager
def update_context(metric_cls: type, precision: str, device: torch.device) -> Iterator[None]:
    """Around ``update()``: nothing when the metric applies ``precision`` itself (or fp32), else plain autocast.

    The fallback is for checkouts whose metrics have no ``precision=``; unlike it, it also runs the front end
    (mel filterbanks, conv resamplers) in low precision.
    """
    if precision == "fp32" or precision_kwargs(metric_cls, precision):
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision]):
            yield


@contextmanager
def precision_scope(precision: str, device: torch.device) -> Iterator[None]:
    """The precision a metric's ``update()`` gives its backbone calls, for code that calls the backbone directly.

    With :mod:`torchmetrics_av.precision` this is its ``precision_scope`` (the backbones autocast their encoders);
    in a checkout without it, plain autocast around everything (``fp32``: nothing).
    """
    try:
        from torchmetrics_av.precision import precision_scope as scope
    except ImportError:
        if precision == "fp32":
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision]):
                yield
        return
    with torch.autocast(device_type=device.type, enabled=False), scope(precision):
        yield


def replay(
    backbone: nn.Module, calls: Sequence[Call], precision: str = "fp32", device: torch.device | None = None
) -> list[Any]:
    """Run the recorded calls again (no autograd, like ``update()``, same precision) and return their outputs."""
    device = device if device is not None else torch.device("cpu")
    with torch.no_grad(), precision_scope(precision, device):
        return [getattr(*_owner(backbone, c.method))(*c.args, **c.kwargs) for c in calls]


# ---------------------------------------------------------------------------------------------------------------------
# inputs


def _audio(n: int, seconds: float, gen: torch.Generator) -> Tensor:
    """``(n, T)`` noise at 16 kHz, about -20 dBFS (never silent, so no metric skips a clip)."""
    return 0.1 * torch.randn(n, round(seconds * AUDIO_RATE), generator=gen)


def _video(n: int, seconds: float, size: str, gen: torch.Generator) -> Tensor:
    """``(n, F, 3, H, W)`` uint8 frames at 25 fps."""
    h, w = VIDEO_HW[size]
    return torch.randint(0, 256, (n, round(seconds * VIDEO_FPS), 3, h, w), generator=gen, dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# tiny / full builders


def _fixed_tokenizer(texts: Sequence[str], **_: Any) -> dict[str, Tensor]:
    """Offline stand-in for CLAP's RoBERTa tokenizer: a fixed 12-token prompt (throughput does not depend on it)."""
    ids = torch.tensor([[0, *range(1000, 1012), 2]] * len(texts))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _backbone_class(name: str) -> type[nn.Module]:
    from torchmetrics_av import backbones

    classes = {
        "passt": "PaSST",
        "clap": "CLAP",
        "imagebind": "ImageBind",
        "synchformer": "Synchformer",
        "whisper": "Whisper",
        "audiobox": "Audiobox",
        "msclap": "MSCLAP",
        "panns": "PANNs",
        "vggish": "VGGish",
    }
    return getattr(backbones, classes[name])


def build_backbone(name: str, size: str, **overrides: Any) -> nn.Module:
    """The backbone of case ``name``: ``size="tiny"`` (few layers, random) or ``"full"`` (official sizes, random).

    Random weights run the same graph as the checkpoint, so throughput does not depend on them; seeded, so two
    builds are identical.
    """
    if size not in ("tiny", "full"):
        raise ValueError(f"`size` must be 'tiny' or 'full', got {size!r}")
    net = _build(name, size, **overrides)
    try:
        from torchmetrics_av.precision import install
    except ImportError:  # a checkout before the precision option
        return net
    return install(net)  # replays outside a metric still autocast the encoders (precision_scope)


def _build(name: str, size: str, **overrides: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name == "msclap":
            from torchmetrics_av.backbones.msclap import MSCLAP, tiny_msclap

            return tiny_msclap(**overrides) if size == "tiny" else MSCLAP(pretrained=False, **overrides)
        if name in ("panns", "vggish") and size == "tiny":
            from torchmetrics_av.backbones.panns import tiny_panns
            from torchmetrics_av.backbones.vggish import tiny_vggish

            return (tiny_panns if name == "panns" else tiny_vggish)(**overrides)
        if name == "clap":
            overrides.setdefault("tokenizer", _fixed_tokenizer)
            if size == "tiny":
                from torchmetrics_av.backbones.clap import small_clap_config

                # fastvideo's checkpoint is the fused HTSAT, av-benchmark's the unfused one.
                fusion = overrides.get("protocol", "fastvideo") == "fastvideo"
                overrides.setdefault("config", small_clap_config(fusion=fusion))
        if size == "tiny":
            from torchmetrics_av.testing import tiny_backbone

            return tiny_backbone(name, **overrides)
        return _backbone_class(name)(pretrained=False, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# the registry


@dataclasses.dataclass(frozen=True)
class BackboneCase:
    """How to benchmark one backbone through its metric.

    Attributes:
        name: registry key (also the :func:`torchmetrics_av.testing.tiny_backbone` name).
        metric: what ``update()`` means here, as ``(backbone, batch, precision) -> update(**inputs)``; built once
            per batch size (forward batch sizes are set to ``batch`` so that ``batch`` clips share one forward).
        inputs: ``(batch, size, generator) -> kwargs`` of one ``update()`` call.
        forwards: backbone methods whose calls carry preprocessed model inputs (the "bare forward").
        clips: units that ``batch`` counts ("clips", "pairs").
        build_kwargs: ``(size, batch) -> overrides`` for :func:`build_backbone` (e.g. no window cache).
        set_batch: ``(backbone, batch)`` puts forward-batch attributes of the backbone to ``batch``.
    """

    name: str
    metric: Callable[[nn.Module, int, str], Callable[..., None]]
    inputs: Callable[[int, str, torch.Generator], dict[str, Any]]
    forwards: tuple[str, ...]
    clips: str = "clips"
    build_kwargs: Callable[[str], dict[str, Any]] = lambda size: {}
    set_batch: Callable[[nn.Module, int], None] = lambda bb, batch: None

    def build(self, size: str) -> nn.Module:
        """Build this case's backbone (see :func:`build_backbone`)."""
        return build_backbone(self.name, size, **self.build_kwargs(size))


def _metric_update(metric: Any, precision: str) -> Callable[..., None]:
    """``update`` of a metric at ``precision``, reset before each call (states do not grow across repeats)."""

    def update(**inputs: Any) -> None:
        metric.reset()
        with update_context(type(metric), precision, metric.device):
            metric.update(**inputs)

    update.to = metric.to  # type: ignore[attr-defined]  # the runner moves the metric with the backbone
    return update


def _passt_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import FrechetAudioDistance as Cls

    return _metric_update(
        Cls(sample_rate=AUDIO_RATE, backbone=bb, batch_size=batch, **precision_kwargs(Cls, precision)), precision
    )


def _clap_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import CLAPScore as Cls

    return _metric_update(
        Cls(sample_rate=AUDIO_RATE, backbone=bb, batch_size=batch, **precision_kwargs(Cls, precision)), precision
    )


def _imagebind_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import ImageBindScore as Cls

    clip_batch = batch * IMAGEBIND_CLIPS_PER_PAIR
    metric = Cls(AUDIO_RATE, VIDEO_FPS, backbone=bb, clip_batch_size=clip_batch, **precision_kwargs(Cls, precision))
    return _metric_update(metric, precision)


def _desync_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import DeSync as Cls

    metric = Cls(sample_rate=AUDIO_RATE, video_fps=VIDEO_FPS, backbone=bb, **precision_kwargs(Cls, precision))
    return _metric_update(metric, precision)


def _wer_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import SpeechWordErrorRate as Cls

    return _metric_update(Cls(sample_rate=AUDIO_RATE, backbone=bb, **precision_kwargs(Cls, precision)), precision)


def _audiobox_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    from torchmetrics_av import AudioboxAesthetics as Cls

    return _metric_update(Cls(sample_rate=AUDIO_RATE, backbone=bb, **precision_kwargs(Cls, precision)), precision)


def _msclap_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    # No metric class wraps MS-CLAP yet: msclap_scores is the per-pair scoring a metric's update() runs.
    from torchmetrics_av.backbones.msclap import msclap_scores

    def update(preds: Tensor, target: list[str]) -> None:
        with torch.no_grad(), precision_scope(precision, bb.device):
            msclap_scores(bb, preds, AUDIO_RATE, target)

    return update


def _avbench_embed_metric(bb: nn.Module, batch: int, precision: str) -> Callable[..., None]:
    # No metric class wraps PANNs / VGGish yet: prepare + embed is what av-benchmark's FD-PANN / FD-VGG extraction
    # (and a metric's update()) runs per batch.
    per_clip = VGGISH_EXAMPLES_PER_CLIP if type(bb).__name__ == "VGGish" else 1

    def update(preds: Tensor) -> None:
        with torch.no_grad(), precision_scope(precision, bb.device):
            bb.embed([bb.prepare(c, AUDIO_RATE) for c in preds], batch_size=batch * per_clip)

    return update


def _set_attr(attr: str, per_batch: int = 1) -> Callable[[nn.Module, int], None]:
    def set_batch(bb: nn.Module, batch: int) -> None:
        setattr(bb, attr, batch * per_batch)

    return set_batch


def _audio_inputs(seconds: float, text: str | None = None) -> Callable[[int, str, torch.Generator], dict[str, Any]]:
    def inputs(batch: int, size: str, gen: torch.Generator) -> dict[str, Any]:
        out: dict[str, Any] = {"preds": _audio(batch, seconds, gen)}
        if text is not None:
            out["target"] = [text] * batch
        return out

    return inputs


def _av_inputs(seconds: float) -> Callable[[int, str, torch.Generator], dict[str, Any]]:
    def inputs(batch: int, size: str, gen: torch.Generator) -> dict[str, Any]:
        # One video shared by every pair (a list of views, no copies): 64 distinct 8 s 360p clips would be 8.8 GB of
        # uint8 and seconds of random generation, for the same work per pair (nothing is memoised by content).
        return {"preds": _audio(batch, seconds, gen), "target": [_video(1, seconds, size, gen)[0]] * batch}

    return inputs


def _wer_inputs(batch: int, size: str, gen: torch.Generator) -> dict[str, Any]:
    return {"preds": _audio(batch, AUDIO_SECONDS, gen), "target": [TRANSCRIPT] * batch, "language": "en"}


CASES: dict[str, BackboneCase] = {
    case.name: case
    for case in [
        BackboneCase(
            "passt",
            _passt_metric,
            _audio_inputs(AUDIO_SECONDS),
            ("forward",),
            # No window memoisation: every timed update() must run its forwards, not look them up.
            build_kwargs=lambda size: {"cache_size": 0},
        ),
        BackboneCase("clap", _clap_metric, _audio_inputs(AUDIO_SECONDS, PROMPT), ("embed_features", "embed_text_ids")),
        BackboneCase(
            "imagebind", _imagebind_metric, _av_inputs(IMAGEBIND_SECONDS), ("embed_audio", "embed_vision"), "pairs"
        ),
        BackboneCase(
            "synchformer",
            _desync_metric,
            _av_inputs(DESYNC_SECONDS),
            ("video_features", "audio_features", "sync_logits"),
            "pairs",
            set_batch=_set_attr("segment_batch", DESYNC_SEGMENTS_PER_CLIP),
        ),
        BackboneCase(
            "whisper",
            _wer_metric,
            _wer_inputs,
            # decode() = log-mel + whisper.decode on the 16 kHz clips the metric prepared.
            ("decode",),
            build_kwargs=lambda size: {"sample_len": WHISPER_TOKENS[size]},
            set_batch=_set_attr("batch_size"),
        ),
        BackboneCase(
            "audiobox",
            _audiobox_metric,
            _audio_inputs(AUDIO_SECONDS),
            ("predict_windows",),
            set_batch=_set_attr("batch_size"),
        ),
        BackboneCase(
            "msclap",
            _msclap_metric,
            _audio_inputs(AUDIO_SECONDS, PROMPT),
            ("audio_embedding", "text_embedding"),
            set_batch=_set_attr("batch_size"),
        ),
        BackboneCase("panns", _avbench_embed_metric, _audio_inputs(AUDIO_SECONDS), ("forward",)),
        # VGGish.embed calls its network directly, batch after batch of 0.96 s examples.
        BackboneCase("vggish", _avbench_embed_metric, _audio_inputs(AUDIO_SECONDS), ("model.forward",)),
    ]
}
