"""How a batch of decoded files reaches a metric's ``update``: one :class:`Feed` per shape of input.

These shapes cover every metric of the library and those being added:

==========================  ===========================================  ===========================================
feed                        takes                                        metrics
==========================  ===========================================  ===========================================
:class:`GeneratedAudio`     every generated clip                         Audiobox aesthetics, Inception Score
:class:`Unpaired`           generated clips, all references (or stats)   FD (any backbone), KAD
:class:`PaSSTSets`          as Unpaired; pairs under av-benchmark        FD_PaSST
:class:`Paired`             generated clips with a reference of the stem KL (any backbone)
:class:`GeneratedOfPairs`   generated clips with a reference of the stem IS_PaSST (av-benchmark's paired subset)
:class:`WithText`           clips with a prompt / transcript             CLAP, MS-CLAP, WER
:class:`AudioVideo`         generated videos (audio + frames)            ImageBind, DeSync
==========================  ===========================================  ===========================================

``ids`` passed to ``update`` are the clips' positions in :attr:`Inventory.order` (paired stems, then the others, each
by name), whatever order the batches come in (``--batch-order``), so that a metric's ``per_sample()`` rows map back
to files and sorting by id gives that stable order. Unpaired metrics get no ids: their
per-clip features would then be kept as rows instead of float64 sums, and they have no per-sample values.

Example:
    >>> from torchmetrics_av.cli.feeds import Paired, WithText
    >>> Paired().needs_ref, WithText("prompts").option
    (True, '--prompts')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchmetrics_av.cli.inputs import Clip, Inventory, Item, Texts, is_video
from torchmetrics_av.protocols import get_protocol


@dataclass
class FeedContext:
    """What a run was given: the files, the texts by kind (``"prompts"``, ``"transcripts"``), ``--ref-stats`` and
    ``--protocol``.
    """

    inv: Inventory
    texts: dict[str, Texts]
    ref_stats: bool = False
    protocol: str = "fastvideo"


class Feed:
    """Base feed: every generated clip, audio only."""

    needs_ref = False  # decode the reference of each paired stem
    needs_frames = False  # keep the frames of generated videos
    unpaired_refs = False  # also feed the references without a generated file (FD)

    def reads_refs(self, ctx: FeedContext) -> bool:
        """Whether this run must decode reference files for this feed."""
        return self.needs_ref

    def missing(self, ctx: FeedContext) -> str | None:
        """What the inputs lack for this feed (``None``: nothing)."""
        return None

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """The items of ``batch`` this feed gives to the metric."""
        return batch

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """One ``metric.update`` call with ``items``."""
        raise NotImplementedError


def _ids(items: list[Item]) -> list[int]:
    return [it.id for it in items]


def _rates(clips: list[Clip]) -> list[int]:
    return [c.sample_rate for c in clips]


class GeneratedAudio(Feed):
    """``update(audio, sample_rate=, ids=)`` with every generated clip."""

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """Feed the generated audio."""
        clips = [it.gen for it in items]
        metric.update([c.audio for c in clips], sample_rate=_rates(clips), ids=_ids(items))


class Unpaired(Feed):
    """``update(preds=, target=)``: generated clips with the references of their batch, then the other references.

    Args:
        ref_stats: the metric can take its reference side from ``--ref-stats`` instead of ``--ref``.
    """

    needs_ref = True
    unpaired_refs = True

    def __init__(self, ref_stats: bool = False) -> None:
        self.ref_stats = ref_stats

    def reads_refs(self, ctx: FeedContext) -> bool:
        """References come from ``--ref`` files unless the metric takes ``--ref-stats`` and it was given."""
        return not (self.ref_stats and ctx.ref_stats)

    def missing(self, ctx: FeedContext) -> str | None:
        """References are needed: a folder, or statistics when the metric takes them."""
        if ctx.inv.ref or (self.ref_stats and ctx.ref_stats):
            return None
        return "--ref DIR or --ref-stats FILE" if self.ref_stats else "--ref DIR"

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """Feed the generated audio and, unless from statistics, the paired references of the same batch."""
        gen = [it.gen for it in items]
        refs = [it.ref for it in items if it.ref is not None] if self.reads_refs(ctx) else []
        metric.update(
            preds=[c.audio for c in gen],
            target=[c.audio for c in refs] or None,
            sample_rate=_rates(gen),
            target_sample_rate=_rates(refs) or None,
        )

    def update_refs(self, metric: Any, clips: list[Clip]) -> None:
        """Feed references that have no generated file (or whose generated file is broken)."""
        metric.update(target=[c.audio for c in clips], target_sample_rate=_rates(clips))


class PaSSTSets(Unpaired):
    """FD_PaSST's feed: :class:`Unpaired`, except under a protocol that pairs PaSST features
    (:attr:`~torchmetrics_av.protocols.ProtocolSpec.passt_pairs_only`: av-benchmark's FD-PASST), where only the
    generated clips with a reference of their stem, and those references, are fed (with ``--ref-stats``: every
    generated clip against the statistics).
    """

    def _pairs_only(self, ctx: FeedContext) -> bool:
        return get_protocol(ctx.protocol).passt_pairs_only and self.reads_refs(ctx)

    def missing(self, ctx: FeedContext) -> str | None:
        """Pairs under a pairing protocol, else what :class:`Unpaired` needs."""
        if self._pairs_only(ctx) and not ctx.inv.paired:
            return "--ref DIR with files paired by stem (or --ref-stats FILE)"
        return super().missing(ctx)

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """Under a pairing protocol, the items whose reference decoded."""
        return [it for it in batch if it.ref is not None] if self._pairs_only(ctx) else batch

    def update_refs(self, metric: Any, clips: list[Clip]) -> None:
        """References without a generated file, unless the metric's protocol pairs PaSST features."""
        if not get_protocol(metric.protocol).passt_pairs_only:
            super().update_refs(metric, clips)


class GeneratedOfPairs(GeneratedAudio):
    """``update(audio, sample_rate=, ids=)`` with the generated clips that have a reference of the same stem
    (av-benchmark's ISC-PASST: the paired subset).
    """

    needs_ref = True

    def missing(self, ctx: FeedContext) -> str | None:
        """Pairs are needed."""
        return None if ctx.inv.paired else "--ref DIR with files paired by stem"

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """Items whose reference decoded."""
        return [it for it in batch if it.ref is not None]


class Paired(Feed):
    """``update(preds, target, sample_rate=, target_sample_rate=, ids=)`` with the generated clips that have a
    reference of the same stem.
    """

    needs_ref = True

    def missing(self, ctx: FeedContext) -> str | None:
        """Pairs are needed."""
        return None if ctx.inv.paired else "--ref DIR with files paired by stem"

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """Items whose reference decoded."""
        return [it for it in batch if it.ref is not None]

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """Feed generated/reference pairs."""
        gen, ref = [it.gen for it in items], [it.ref for it in items if it.ref is not None]
        metric.update(
            [c.audio for c in gen],
            [c.audio for c in ref],
            sample_rate=_rates(gen),
            target_sample_rate=_rates(ref),
            ids=_ids(items),
        )


class WithText(Feed):
    """``update(audio, texts, sample_rate=, ids=[, language=])`` with the clips that have a text of ``kind``.

    Args:
        kind: ``"prompts"`` (``--prompts``) or ``"transcripts"`` (``--transcripts``).
        language: also pass the file's ``language`` column (WER).
    """

    HELP = {
        "prompts": "--prompts FILE (CSV name,caption or JSON {stem: text})",
        "transcripts": "--transcripts FILE (CSV name,text[,language] or JSON {stem: text})",
    }

    def __init__(self, kind: str, language: bool = False) -> None:
        if kind not in self.HELP:
            raise ValueError(f"`kind` must be one of {sorted(self.HELP)}, got {kind!r}")
        self.kind, self.language = kind, language

    @property
    def option(self) -> str:
        """The command-line option of the texts."""
        return f"--{self.kind}"

    def missing(self, ctx: FeedContext) -> str | None:
        """The texts file is needed."""
        return None if ctx.texts.get(self.kind) else self.HELP[self.kind]

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """Items with a text."""
        texts = ctx.texts.get(self.kind, {})
        return [it for it in batch if it.stem in texts]

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """Feed the clips with their texts."""
        texts = ctx.texts[self.kind]
        clips = [it.gen for it in items]
        kw: dict[str, Any] = {"sample_rate": _rates(clips), "ids": _ids(items)}
        if self.language:
            kw["language"] = [texts[it.stem][1] for it in items]
        metric.update([c.audio for c in clips], [texts[it.stem][0] for it in items], **kw)


class AudioVideo(Feed):
    """``update(audio, frames, sample_rate=, video_fps=, ids=)`` with the generated videos."""

    needs_frames = True

    def missing(self, ctx: FeedContext) -> str | None:
        """Generated videos are needed."""
        if any(is_video(p) for p in ctx.inv.gen.values()):
            return None
        return "generated videos (.mp4/.mkv/.webm/.mov/.avi) in --gen"

    def select(self, batch: list[Item], ctx: FeedContext) -> list[Item]:
        """Items with frames."""
        return [it for it in batch if it.gen.frames is not None]

    def update(self, metric: Any, items: list[Item], ctx: FeedContext) -> None:
        """Feed the videos' audio and frames."""
        clips = [it.gen for it in items]
        metric.update(
            [c.audio for c in clips],
            [c.frames for c in clips],
            sample_rate=_rates(clips),
            video_fps=[c.fps for c in clips],
            ids=_ids(items),
        )
