"""KAD: the Kernel Audio Distance (kadtk) between embeddings of generated and reference audio, any audio backbone."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.audio.embedding import (
    AUDIO_BACKBONES,
    SIDES,
    DurationAlias,
    UnpairedSetMetric,
    embed_unpaired,
    embedding_dim,
)
from torchmetrics_av.base import Details, Rows
from torchmetrics_av.functional.infinity import DEFAULT_MIN_N, DEFAULT_STEPS, kad_infinity
from torchmetrics_av.functional.kad import (
    KAD_SCALE,
    BandwidthFrom,
    KADKernel,
    kernel_audio_distance,
    median_pairwise_distance,
)
from torchmetrics_av.preprocessing import (
    AudioInput,
    Resampler,
    check_bool,
    check_positive_int,
    check_sample_rate,
)

KAD_KERNELS: tuple[str, ...] = ("gaussian", "iq", "imq")
# The unbiased estimator drops the kernel diagonal: each side needs two rows.
MIN_ROWS = 2


class KernelAudioDistance(DurationAlias, UnpairedSetMetric):
    r"""Kernel Audio Distance (kadtk): unbiased MMD² between embeddings of generated and reference audio, ×100.

    .. math::
        KAD = 100 \Big( \frac{\sum_{i \ne j} k(x_i, x_j)}{m(m-1)} + \frac{\sum_{i \ne j} k(y_i, y_j)}{n(n-1)}
              - \frac{2}{mn} \sum_{i, j} k(x_i, y_j) \Big), \quad k(u, v) = e^{-|u - v|^2 / (2 h^2 + 10^{-8})}

    with ``x`` the reference rows and ``y`` the generated rows; lower is better, and the unbiased value can be
    slightly negative. Exactly :func:`~torchmetrics_av.functional.kernel_audio_distance` (kadtk 1.1.0): bandwidth
    ``h`` = the lower median of the generated set's pairwise distances unless ``bandwidth`` is given, float32
    squared distances (``kernel_dtype``), ×``scale``.

    Embeddings: as :class:`~torchmetrics_av.audio.fad.FrechetAudioDistance` (``backbone="passt"`` default: one 768-d
    row per clip from the FD window; ``"panns"``: one 2048-d row per clip; ``"vggish"``: one 128-d row per 0.96 s
    example, every example a row, all references against all generated), each under the protocol's loader (see
    :mod:`torchmetrics_av.audio.embedding`). Unpaired, either side may be omitted in a call.

    Every row is kept (float64 ``(N, D)`` per side; the kernel needs all pairs), so DDP and de-duplication by
    ``ids`` / ``target_ids`` are exact (a repeated clip drops all its rows). The kernel sums are O(N²·D) at
    ``compute``, in blocks of 2048 rows.

    As output of ``compute``: scalar float64 KAD. ``forward`` returns the KAD of the batch alone (every rank's with
    ``dist_sync_on_step``) when each side has at least 2 rows, else ``None``. ``per_sample()``: per side ``*_ids``,
    ``*_example`` (VGGish's example index within its clip, else 0) and ``*_embeddings``. ``details``:
    ``n_preds`` / ``n_target`` (rows), ``bandwidth`` (the ``h`` used), ``n_*_skipped_silent``,
    ``n_*_dropped_nonfinite`` (rows of clips with a NaN/Inf row, dropped whole), ``n_*_duplicates_dropped``,
    ``protocol``. ``kad_infinity()`` extrapolates to infinitely many generated rows; ``bootstrap()`` resamples
    clips per side. Both draw with replacement and recompute the median bandwidth on each draw, repeats included (as
    kadtk): with few clips a draw can be mostly repeats, whose median distance is 0; that raises, so pass a fixed
    ``bandwidth`` there.

    Args:
        sample_rate: rate of ``preds`` (and of ``target`` unless ``target_sample_rate`` is given), in Hz.
        target_sample_rate: rate of ``target`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"`` (the loader; see FD).
        backbone: ``"passt"``, ``"panns"``, ``"vggish"`` or an instance (shared with FD).
        weights: local path of the official checkpoint when ``backbone`` is a name.
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"``.
        resampler: override the protocol's resampler.
        kernel: ``"gaussian"`` (kadtk's default), ``"iq"`` or ``"imq"``.
        bandwidth: fixed kernel bandwidth ``h > 0``; ``None`` = the median heuristic.
        bandwidth_from: set of the median heuristic: ``"preds"`` (kadtk's code) or ``"target"``.
        scale: multiplier of the MMD² (kadtk: 100).
        kernel_dtype: ``torch.float32`` (kadtk) or ``torch.float64`` squared distances and kernel sums.
        reset_real_features: whether ``reset()`` also clears the reference rows.
        batch_size: most clips per forward.
        audio_length: deprecated alias of ``duration``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named), bad audio; at ``compute`` fewer than 2 rows on a side.
        ModuleNotFoundError: ``hear21passt`` is missing and the PaSST backbone must be built.

    Example:
        >>> import torch
        >>> from torchmetrics_av import KernelAudioDistance
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> kad = KernelAudioDistance(sample_rate=16000, backbone=tiny_backbone("panns"), protocol="av-benchmark")
        >>> g = torch.Generator().manual_seed(0)
        >>> kad.update(preds=torch.rand(4, 8000, generator=g) - 0.5, target=torch.rand(5, 8000, generator=g) - 0.5)
        >>> value = kad.compute()
        >>> value.dtype, kad.details["n_preds"], kad.details["n_target"]
        (torch.float64, 4, 5)
    """

    higher_is_better = False
    _input_hint = "generated and reference audio"

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: str | nn.Module = "passt",
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        kernel: KADKernel = "gaussian",
        bandwidth: float | None = None,
        bandwidth_from: BandwidthFrom = "preds",
        scale: float = KAD_SCALE,
        kernel_dtype: torch.dtype = torch.float32,
        reset_real_features: bool = True,
        batch_size: int = 8,
        audio_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, AUDIO_BACKBONES, weights, protocol, **kwargs)
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.target_sample_rate = check_sample_rate(target_sample_rate, "target_sample_rate")
        self._set_loader(duration, audio_length, resampler)
        if kernel not in KAD_KERNELS:
            raise ValueError(f"`kernel` must be one of {KAD_KERNELS}, got {kernel!r}")
        if bandwidth is not None and (
            isinstance(bandwidth, bool) or not isinstance(bandwidth, int | float) or not bandwidth > 0
        ):
            raise ValueError(f"`bandwidth` must be a positive number or None (median heuristic), got {bandwidth!r}")
        if bandwidth_from not in SIDES:
            raise ValueError(f"`bandwidth_from` must be one of {SIDES}, got {bandwidth_from!r}")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ValueError(f"`scale` must be a positive number (kadtk: 100), got {scale!r}")
        if kernel_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"`kernel_dtype` must be torch.float32 or torch.float64, got {kernel_dtype!r}")
        self.kernel, self.bandwidth_from = kernel, bandwidth_from
        self.bandwidth = None if bandwidth is None else float(bandwidth)
        self.scale, self.kernel_dtype = float(scale), kernel_dtype
        self.reset_real_features = check_bool(reset_real_features, "reset_real_features")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_features = embedding_dim(self.backbone_name, self._held_backbone())
        for side in SIDES:
            self.add_sample_state(f"{side}_rows", (self.num_features,))
            self.add_sample_state(f"{side}_row_ids", dtype=torch.int64)
            self.add_sample_state(f"{side}_row_example", dtype=torch.int64)
            self.add_float64_state(f"{side}_silent")
            self.add_float64_state(f"{side}_nonfinite")

    # ----------------------------------------------------------------------------------------------------------------
    # life cycle: a batch is, per side, its embedding rows (+ ids, example index) and its counts of skipped clips

    @torch.no_grad()
    def _score(
        self,
        preds: AudioInput | None = None,
        target: AudioInput | None = None,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
        target_ids: Sequence[int] | Tensor | None = None,
    ) -> Rows:
        return embed_unpaired(self, preds, target, sample_rate, target_sample_rate, ids, target_ids)

    def update(
        self,
        preds: AudioInput | None = None,
        target: AudioInput | None = None,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
        target_ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Embed generated (``preds``) and/or reference (``target``) clips and keep their rows.

        ``ids`` / ``target_ids`` (optional, one non-negative int per clip, e.g. dataset indices): a clip whose id was
        already seen on any rank is counted once at ``compute``. Nothing is added if the batch raises.
        """
        self._add(self._score(preds, target, sample_rate, target_sample_rate, ids, target_ids))

    @classmethod
    def from_frechet(cls, fd: Any, **kwargs: Any) -> KernelAudioDistance:
        """A KAD holding the embedding rows a :class:`~torchmetrics_av.FrechetAudioDistance` kept: no second forward.

        The rows go over as they are (ids, VGGish example index, float64 embeddings), synced across ranks by
        ``fd.per_sample()``, so the KAD is on exactly the FD's samples; its ``bootstrap()`` resamples clips per side
        as FD's does. Call it on every rank (``per_sample`` syncs).

        Args:
            fd: a ``FrechetAudioDistance`` built with ``keep_rows=True`` (or fed ``ids`` everywhere), without
                reference statistics loaded from a file.
            kwargs: KAD arguments (``kernel``, ``bandwidth``, ``scale``, ...); the backbone and protocol are FD's.

        Raises:
            ValueError: ``fd`` streamed clips into sums, or holds reference statistics instead of rows.

        Example:
            >>> import torch
            >>> from torchmetrics_av import FrechetAudioDistance, KernelAudioDistance
            >>> from torchmetrics_av.testing import tiny_backbone
            >>> fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_backbone("passt"), keep_rows=True)
            >>> g = torch.Generator().manual_seed(0)
            >>> fd.update(preds=torch.rand(3, 16000, generator=g) - 0.5, target=torch.rand(4, 16000, generator=g) - 0.5)
            >>> kad = KernelAudioDistance.from_frechet(fd)
            >>> bool(torch.isfinite(kad.compute()))
            True
        """
        fd._require_rows("KAD", reference_stats=False)
        rows = fd.per_sample()
        kad = cls(backbone=fd.backbone, protocol=fd.protocol, **kwargs)
        kad.to(fd.device)
        part = {
            side: {
                "emb": rows[f"{side}_embeddings"],
                "ids": rows[f"{side}_ids"],
                "example": rows[f"{side}_example"],
                "silent": 0.0,
                "nonfinite": 0.0,
            }
            for side in SIDES
        }
        kad._add(part)
        kad._update_count += 1  # the rows came in without update(): torchmetrics must know the metric holds data
        return kad

    def _add(self, batch: Rows) -> None:
        self._last_record = batch
        for side, part in batch.items():
            if part is None:
                continue
            setattr(self, f"{side}_silent", getattr(self, f"{side}_silent") + part["silent"])
            setattr(self, f"{side}_nonfinite", getattr(self, f"{side}_nonfinite") + part["nonfinite"])
            getattr(self, f"{side}_rows").append(part["emb"])
            getattr(self, f"{side}_row_ids").append(part["ids"])
            getattr(self, f"{side}_row_example").append(part["example"])

    def _kad(self, rows: Rows) -> tuple[Tensor, float]:
        preds, target = rows["preds_embeddings"], rows["target_embeddings"]
        for name, x in (("preds (generated)", preds), ("target (reference)", target)):
            if x.shape[0] < MIN_ROWS:
                raise ValueError(
                    f"{type(self).__name__} needs at least {MIN_ROWS} embedding rows per side; {name} has "
                    f"{x.shape[0]}. Feed more clips to update()"
                )
        bandwidth = self.bandwidth
        if bandwidth is None:
            bandwidth = median_pairwise_distance(preds if self.bandwidth_from == "preds" else target)
            if not bandwidth > 0.0:
                raise ValueError(
                    f"the median pairwise distance of the {self.bandwidth_from} rows is 0 (most rows are identical); "
                    "pass `bandwidth` explicitly"
                )
        value = kernel_audio_distance(
            preds, target, kernel=self.kernel, bandwidth=bandwidth, scale=self.scale, dtype=self.kernel_dtype
        )
        return value, bandwidth

    def _reduce(self, rows: Rows) -> Tensor:
        return self._kad(rows)[0]

    def _batch_value(self, batch: Rows) -> Tensor | None:
        """The KAD of this batch (every rank's with ``dist_sync_on_step``), or None below 2 rows on a side."""
        rows: Rows = {}
        for side in SIDES:
            part = batch[side]
            if part is None:
                emb = torch.zeros(0, self.num_features, dtype=torch.float64, device=self.device)
                ids = example = torch.zeros(0, dtype=torch.int64, device=self.device)
            else:
                emb, ids, example = part["emb"], part["ids"], part["example"]
            side_rows, _ = self._side_rows(side, (self._gather(ids), self._gather(example), self._gather(emb)))
            rows.update(side_rows)
        if min(rows[f"{side}_embeddings"].shape[0] for side in SIDES) < MIN_ROWS:
            return None
        return self._reduce(rows)

    def compute(self) -> Tensor:
        """KAD (float64 scalar) over every rank's rows, repeated clips counted once; fills :attr:`details`."""
        rows, dropped = {}, {}
        for side in SIDES:
            side_rows, dropped[side] = self._side_rows(side)
            rows.update(side_rows)
        value, bandwidth = self._kad(rows)
        self._details = Details(
            {
                **rows,
                "n_preds": int(rows["preds_embeddings"].shape[0]),
                "n_target": int(rows["target_embeddings"].shape[0]),
                "bandwidth": bandwidth,
                "n_preds_skipped_silent": int(self.preds_silent),
                "n_target_skipped_silent": int(self.target_silent),
                "n_preds_dropped_nonfinite": int(self.preds_nonfinite),
                "n_target_dropped_nonfinite": int(self.target_nonfinite),
                "n_preds_duplicates_dropped": dropped["preds"],
                "n_target_duplicates_dropped": dropped["target"],
                "protocol": self.protocol,
            }
        )
        return value

    def kad_infinity(self, steps: int = DEFAULT_STEPS, min_n: int = DEFAULT_MIN_N, seed: int | None = None) -> dict:
        """KAD∞ (kadtk's ``score_inf``) on the synced rows: KAD of resampled generated sets, extrapolated to ``n → ∞``.

        The reference rows are never resampled; ``n`` generated rows are drawn with replacement for each size of
        ``np.linspace(min_n, N, steps)`` (see :func:`~torchmetrics_av.functional.kad_infinity`), with this metric's
        kernel, bandwidth rule (recomputed per draw), scale and ``kernel_dtype``.

        Args:
            steps: number of draw sizes (kadtk: 25).
            min_n: smallest draw size (kadtk: 500; fewer generated rows than that draws sizes downwards, as kadtk).
            seed: seed of ``np.random.RandomState`` for the draws; ``None`` draws a fresh one (returned as ``"seed"``).

        Returns:
            ``{"value" (KAD∞), "slope", "r2", "points" ((steps, 2): n, KAD_n), "seed"}``.
        """
        rows = self.per_sample()
        return kad_infinity(
            rows["preds_embeddings"],
            rows["target_embeddings"],
            steps=steps,
            min_n=min_n,
            seed=seed,
            kernel=self.kernel,
            bandwidth=self.bandwidth,
            bandwidth_from=self.bandwidth_from,
            scale=self.scale,
            dtype=self.kernel_dtype,
        )
