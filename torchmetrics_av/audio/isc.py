"""Inception Score of generated audio from AudioSet classifier logits (ISC-PANNS, ISC-PASST of av-benchmark)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.audio.embedding import (
    CLASSIFIER_BACKBONES,
    AudioBackboneMetric,
    clip_logits,
    model_input,
)
from torchmetrics_av.base import Rows
from torchmetrics_av.functional.isc import DEFAULT_SHUFFLE_SEED, DEFAULT_SPLITS, inception_score
from torchmetrics_av.preprocessing import (
    AudioInput,
    Resampler,
    as_clip_list,
    check_positive_int,
    check_sample_rate,
    sample_rates,
)

# AudioSet classes of PaSST and PANNs (a backbone instance may say otherwise through `num_classes`).
AUDIOSET_CLASSES = 527


class InceptionScore(AudioBackboneMetric):
    r"""Inception Score of generated audio from an AudioSet classifier's logits (IS = ISC-PANNS-mean by default).

    .. math::
        IS = \frac{1}{K}\sum_{k=1}^{K} \exp\Big(\frac{1}{|S_k|}\sum_{r\in S_k}
             \mathrm{KL}\big(p_r \,\Vert\, \bar p_{S_k}\big)\Big), \quad p = \operatorname{softmax}(\text{logits})

    Higher is better, between 1 and the number of classes. Exactly av-benchmark's ``compute_isc``
    (:func:`~torchmetrics_av.functional.inception_score`): the rows are permuted by
    ``np.random.RandomState(shuffle_seed)`` (2020), split into ``splits`` = 10 floor-division parts; the value is the
    mean of the per-split scores and ``details["inception_score_std"]`` their population std (ISC-PANNS-std).

    Backbones: ``"panns"`` (default; Cnn14 16 kHz, the paper's "IS"), ``"passt"`` (ISC-PASST), or a
    :class:`~torchmetrics_av.backbones.PANNs` / :class:`~torchmetrics_av.backbones.PaSST` instance shared with FD and
    KL. One forward per clip on the model input the backbone's FD uses:

    * PANNs: the whole clip after the protocol's loader, never padded (at least 0.31 s). ``"av-benchmark"``: mono
      mean, DC removal, ``torchaudio`` Resample to 16 kHz, first ``duration`` = 8 s (``AudioDataset``);
      ``"fastvideo"``: soxr HQ, whole clip, peak −1 dBFS (FastVideo itself has no IS).
    * PaSST: the FD window (first 10 s, zero-padded to 10 s) under the protocol's loader; under ``"av-benchmark"``
      these are exactly the ``passt_logits`` av-benchmark feeds ``compute_isc``.

    Silent clips under ``"fastvideo"`` cannot be peak-normalised: they are skipped and counted.

    The logits are kept per clip (``(N, 527)`` float32 state: the seeded permutation and the splits need the whole
    set), so DDP and ``ids`` de-duplication are exact. The permutation acts on the row order, so the score depends
    on it: rows are sorted by ``ids``; without ids they are in arrival order (rank 0's first), so pass ``ids`` for a
    value that does not depend on how samples were sharded.

    As input to ``update``: ``preds``: generated audio (``(B, T)``, ``(B, C, T)`` or a list of clips);
    ``sample_rate``: Hz, one int or one per clip; ``ids``: optional dataset indices.

    As output of ``compute``: scalar float64 mean IS; ``forward`` returns the IS of the batch alone, or ``None`` when
    it has fewer than ``splits`` scored clips. ``per_sample()``: ``ids``, ``logits`` (float32 ``(N, C)``).
    ``details``: those, ``inception_score_std`` and the base counts. ``bootstrap()`` resamples clips (logit rows).

    Args:
        sample_rate: rate of ``preds`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: ``"panns"``, ``"passt"`` or an instance.
        weights: local path of the official checkpoint when ``backbone`` is a name.
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"``.
        resampler: override the protocol's resampler.
        splits: number of parts (av-benchmark: 10).
        shuffle_seed: seed of the legacy NumPy permutation (av-benchmark: 2020), or ``None`` for no shuffle.
        batch_size: most clips per forward.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named in the message); at ``compute``, fewer scored clips than ``splits``
            (av-benchmark returns NaN there).
        ModuleNotFoundError: ``hear21passt`` is missing and the PaSST backbone must be built.

    Example:
        >>> import torch
        >>> from torchmetrics_av import InceptionScore
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> isc = InceptionScore(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("panns"))  # demo
        >>> isc.update(torch.rand(10, 8000) - 0.5)
        >>> score = isc.compute()
        >>> bool(1.0 <= score <= 527.0), isc.details["inception_score_std"].dtype
        (True, torch.float64)
    """

    higher_is_better = True
    plot_lower_bound = 1.0
    _input_hint = "generated audio"

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: str | nn.Module = "panns",
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        splits: int = DEFAULT_SPLITS,
        shuffle_seed: int | None = DEFAULT_SHUFFLE_SEED,
        batch_size: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, CLASSIFIER_BACKBONES, weights, protocol, **kwargs)
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self._set_loader(duration, None, resampler)
        self.splits = check_positive_int(splits, "splits")
        if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)):
            raise ValueError(f"`shuffle_seed` must be an int (NumPy RandomState seed) or None, got {shuffle_seed!r}")
        if shuffle_seed is not None and not 0 <= shuffle_seed < 2**32:
            raise ValueError(f"`shuffle_seed` must be in [0, 2**32) (a NumPy RandomState seed), got {shuffle_seed!r}")
        self.shuffle_seed = shuffle_seed
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_classes = int(getattr(self._held_backbone(), "num_classes", AUDIOSET_CLASSES))
        self.add_rows({"logits": ((self.num_classes,), torch.float32)})

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        clips = as_clip_list(preds, "preds")
        rates = sample_rates(sample_rate if sample_rate is not None else self.sample_rate, len(clips), "sample_rate")
        sample_id = self._ids_tensor(ids, len(clips))
        waves = [
            model_input(
                self.backbone_name,
                c,
                r,
                self.spec,
                resampler=self.resampler,
                duration=self.duration,
                label=f"preds[{i}]",
            )
            for i, (c, r) in enumerate(zip(clips, rates))
        ]
        kept = torch.tensor([w is not None for w in waves], dtype=torch.bool)
        scored = [w for w in waves if w is not None]
        logits = torch.zeros(0, self.num_classes, dtype=torch.float32)
        if scored:
            logits = clip_logits(self.backbone_name, self.backbone, scored, self.batch_size)
        return {"ids": sample_id, "kept": kept, "logits": logits}

    def update(
        self,
        preds: AudioInput,
        sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Add the logits of a batch of generated clips (nothing is added if the batch raises).

        Args:
            preds: generated audio, ``(B, T)`` / ``(B, C, T)`` or a list of ``(T,)`` / ``(C, T)`` clips.
            sample_rate: rate(s) of ``preds`` in Hz; defaults to the constructor's.
            ids: optional non-negative int per clip (dataset indices): repeats are counted once and rows are sorted
                by id.
        """
        self._add(self._score(preds, sample_rate, ids))

    def _scores(self, rows: Rows) -> tuple[Tensor, Tensor]:
        n = rows["logits"].shape[0]
        if n < self.splits:
            raise ValueError(
                f"{type(self).__name__} has {n} scored clips but `splits={self.splits}` needs at least one per split; "
                "update() with more clips or lower `splits` (av-benchmark returns NaN here)"
            )
        mean, std = inception_score(rows["logits"], self.splits, self.shuffle_seed)
        if not bool(torch.isfinite(mean)):
            # A class whose probability underflows to 0 in a whole split gives 0·log 0 terms (the reference's NaN).
            raise ValueError(
                f"{type(self).__name__} is not finite: a class has zero probability in every clip of a split "
                "(logits too large for float64 softmax); check the backbone's outputs"
            )
        return mean, std

    def _reduce(self, rows: Rows) -> Tensor:
        return self._scores(rows)[0]

    def _summary(self, rows: Rows) -> dict[str, Any]:
        return {"inception_score_std": self._scores(rows)[1]}

    def _batch_value(self, record: dict[str, Tensor]) -> Tensor | None:
        # A batch smaller than `splits` has no IS of its own; forward then only accumulates.
        record = {name: self._gather(record[name]) for name in sorted(record)}
        rows, counts, _ = self._tail(record)
        if counts["n_samples"] < self.splits:
            return None
        return self._reduce(rows)
