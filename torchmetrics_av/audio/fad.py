"""FD: Fréchet distance between embeddings of generated and reference audio (FD_PaSST, FD_PANNs, FD_VGG).

FastVideo's ``audio.frechet_distance`` ("fastvideo", default) and av-benchmark's FD-PASST / FD-PANN / FD-VGG
("av-benchmark"), as streaming float64 moments (sum, sum of outer products, count per side) that reduce across DDP
ranks by summation; embedding rows are kept only when asked (``keep_rows`` or ``ids``), for FD∞ and the bootstrap.
"""

from __future__ import annotations

import math
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
    dedup_rows,
    embed_unpaired,
    embedding_dim,
    sample_rate_of,
)
from torchmetrics_av.base import (
    BOOTSTRAP_CI,
    BOOTSTRAP_NUM,
    BOOTSTRAP_SEED,
    Details,
    Rows,
)
from torchmetrics_av.functional.fad import DEFAULT_EPS, FDMethod, frechet_distance, gaussian_from_sums
from torchmetrics_av.functional.infinity import DEFAULT_MIN_N, DEFAULT_STEPS, fd_infinity
from torchmetrics_av.preprocessing import (
    AudioInput,
    Resampler,
    check_bool,
    check_positive_int,
    check_sample_rate,
)

# File format tag of saved reference statistics; bump when the layout changes.
STATS_FORMAT = "torchmetrics-av-fd-stats-v1"
FD_METHODS: tuple[str, ...] = ("eigh", "scipy")
# FD needs a covariance per side: at least two embeddings (np.cov / the unbiased N-1 estimate).
MIN_EMBEDDINGS = 2


class FrechetAudioDistance(DurationAlias, UnpairedSetMetric):
    r"""Fréchet distance between Gaussians fitted to embeddings of generated and reference audio (FD_PaSST/PANNs/VGG).

    .. math::
        FD = \lVert\mu_g-\mu_r\rVert^2 + \operatorname{tr}\Sigma_g + \operatorname{tr}\Sigma_r
             - 2\operatorname{tr}\sqrt{\Sigma_g\Sigma_r}

    Squared distance (not square-rooted); lower is better. Unpaired: any number of generated (``preds``) and
    reference (``target``) clips, in any ``update`` calls, either side may be omitted in a call.

    Backbones (``backbone=``, a name or an instance shared with KL / IS / KAD; see
    :mod:`torchmetrics_av.audio.embedding`):

    * ``"passt"`` (default, FD_PaSST / FD-PASST): one 768-d row per clip from its first 10 s window (below).
    * ``"panns"`` (FD_PANNs / FD-PANN): Cnn14 16 kHz, one 2048-d ``relu(fc1)`` row per clip on the whole loaded clip,
      never padded (at least 0.31 s).
    * ``"vggish"`` (FD_VGG / FD-VGG): every non-overlapping 0.96 s example of every clip is a 128-d row (8 rows for
      an 8 s clip; at least 0.975 s), all examples of all references against all of the generated clips;
      ``details["n_preds"]`` / ``["n_target"]`` count rows.

    av-benchmark computes FD-PANN and FD-VGG over all generated against all reference files (unpaired) and FD-PASST
    over the paired subset. PANNs and VGGish see the protocol's loader at 16 kHz (``"av-benchmark"``: its
    ``AudioDataset``: mono mean, DC removal, ``torchaudio`` Resample, first ``duration`` = 8 s, no padding;
    ``"fastvideo"``: soxr HQ, whole clip, peak −1 dBFS, which no reference harness pairs with these models).

    Protocols (``protocol=``), PaSST:

    * ``"fastvideo"`` (default, FastVideo ``audio.frechet_distance``): mono mean, soxr-HQ resampling to 32 kHz
      (``librosa.load``), peak normalisation to −1 dBFS, first 10 s zero-padded/trimmed to 320000 samples, 768-d
      embedding ``(CLS+DIST)/2``; ``eps·I`` (1e-6) always added to both covariances. Silent clips are skipped and
      counted (FastVideo drops their NaN embeddings).
    * ``"av-benchmark"`` (MMAudio tables): mono mean, per-clip DC removal, ``torchaudio.transforms.Resample`` to
      32 kHz, truncation to ``duration`` (8 s), zero-pad to 10 s; ``eps·I`` only if the square root fails.
      av-benchmark evaluates only generated clips that have a reference (paired subset): select your data likewise.

    The covariance regulariser follows the protocol for every backbone (``eps·I`` always under ``"fastvideo"``, only
    when the square root fails under ``"av-benchmark"``, as its ``calculate_frechet_distance``).

    Moments are float64 sums (``np.cov``'s unbiased N−1 covariance); the mean term is float64 where the references
    use float32 (≤ 3.3e-6 absolute on the goldens). ``method="eigh"`` (default) computes the matrix square-root trace
    from a Cholesky factor and one symmetric eigenvalue solve, ``"scipy"`` with the references'
    ``scipy.linalg.sqrtm``; they agree to ≤ 1e-6 relative. A clip with a NaN/Inf embedding row is dropped whole,
    its rows counted.

    As input to ``update``: ``preds`` / ``target``: ``(B, T)`` or ``(B, C, T)`` audio tensors or lists of ``(T,)`` /
    ``(C, T)`` clips, float in [-1, 1] or int16; ``sample_rate`` / ``target_sample_rate``: Hz, one int or one per clip.

    As output of ``compute``: scalar float64 tensor. ``forward`` returns the FD of this batch alone (of every rank's
    batch with ``dist_sync_on_step``) when each side of it has at least 2 embeddings, as torchmetrics' FID, else
    ``None``. ``details`` (after ``compute``): ``n_preds``, ``n_target``, ``n_preds_dropped_nonfinite``,
    ``n_target_dropped_nonfinite``, ``n_preds_skipped_silent``, ``n_target_skipped_silent``,
    ``n_preds_duplicates_dropped``, ``n_target_duplicates_dropped`` (repeated ``ids``), ``target_source``
    (``"samples"``, ``"stats"`` or ``"samples+stats"``), ``protocol``.

    Rows or sums: by default FD keeps float64 sums (memory O(D²), whatever N). With ``keep_rows=True``, and for
    clips given with ``ids`` / ``target_ids``, it keeps the embedding rows instead (memory O(N·D); the moments are
    formed at ``compute``), which :meth:`fd_infinity` and :meth:`bootstrap` need. ``per_sample()`` returns the kept
    rows: ``preds_ids`` / ``target_ids`` (int64, sorted, repeats dropped; -1 without id), ``preds_example`` /
    ``target_example`` (VGGish's example index within its clip, else 0) and ``preds_embeddings`` /
    ``target_embeddings`` (float64 ``(N, D)``); clips streamed into the sums are not in it.

    ``bootstrap()`` resamples the kept clips of each side (a VGGish clip's rows together; generated first, then
    reference, from one stream; reference statistics loaded from a file stay fixed). It needs every clip kept as rows
    (``keep_rows=True``), and, as every bootstrap of FD, it is biased upwards for small N (a resample repeats rows,
    which shrinks its covariance's rank): use :meth:`fd_infinity` for an N-free estimate.

    Args:
        sample_rate: rate of ``preds`` (and of ``target`` unless ``target_sample_rate`` is given), in Hz.
        target_sample_rate: rate of ``target`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: ``"passt"`` (default; ``None`` is the same), ``"panns"``, ``"vggish"``, or a
            :class:`~torchmetrics_av.backbones.PaSST` / :class:`~torchmetrics_av.backbones.PANNs` /
            :class:`~torchmetrics_av.backbones.VGGish` instance to share (e.g. with KL and IS).
        weights: local path of the official checkpoint when ``backbone`` is a name.
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"`` (whole clips).
        resampler: override the protocol's resampler (``"soxr_hq"``, ``"torchaudio"``, ``"torchaudio_functional"``).
        method: ``"eigh"`` or ``"scipy"`` for the square-root trace.
        eps: covariance regulariser (positive).
        reset_real_features: whether ``reset()`` also clears the streamed reference moments (statistics loaded with
            :meth:`load_reference_stats` always survive ``reset()``; drop them with :meth:`clear_reference_stats`).
        batch_size: most clips per forward (VGGish: examples are batched 64 at a time).
        keep_rows: keep every embedding row (memory O(N·D)) instead of streaming sums, for :meth:`fd_infinity` and
            :meth:`bootstrap`; the value is the same.
        audio_length: deprecated alias of ``duration``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named), bad audio input, a missing sample rate; at ``compute`` fewer than 2 finite
            embeddings on a side.
        ModuleNotFoundError: ``hear21passt`` is missing and the PaSST backbone must be built.

    Example:
        >>> import torch
        >>> from torchmetrics_av import FrechetAudioDistance
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_backbone("passt"))  # random weights: demo only
        >>> fd.update(preds=torch.rand(4, 16000) - 0.5, target=torch.rand(4, 16000) - 0.5)
        >>> bool(fd.compute() >= 0)
        True
        >>> vgg = FrechetAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("vggish"))
        >>> vgg.update(preds=torch.rand(3, 32000) - 0.5, target=torch.rand(3, 32000) - 0.5)  # 2 s: 2 rows each
        >>> _ = vgg.compute()
        >>> vgg.details["n_preds"]
        6
    """

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: str | nn.Module | None = "passt",
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        method: FDMethod = "eigh",
        eps: float = DEFAULT_EPS,
        reset_real_features: bool = True,
        batch_size: int = 8,
        keep_rows: bool = False,
        audio_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__("passt" if backbone is None else backbone, AUDIO_BACKBONES, weights, protocol, **kwargs)
        if method not in FD_METHODS:
            raise ValueError(f"`method` must be one of {FD_METHODS}, got {method!r}")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"`eps` must be a positive finite float, got {eps!r}")
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.target_sample_rate = check_sample_rate(target_sample_rate, "target_sample_rate")
        self._set_loader(duration, audio_length, resampler)
        self.method, self.eps = method, float(eps)
        self.reset_real_features = check_bool(reset_real_features, "reset_real_features")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.keep_rows = check_bool(keep_rows, "keep_rows")
        self.num_features = embedding_dim(self.backbone_name, self._held_backbone())
        d = self.num_features
        for side in SIDES:
            self.add_float64_state(f"{side}_sum", (d,))
            self.add_float64_state(f"{side}_outer", (d, d))
            self.add_float64_state(f"{side}_n")
            self.add_float64_state(f"{side}_nonfinite")
            self.add_float64_state(f"{side}_silent")
            # Clips given with `ids` (or all, with keep_rows) are kept as rows until compute(), where repeated ids are
            # dropped; `row_example` numbers a VGGish clip's rows, so a repeated clip drops all of them.
            self.add_sample_state(f"{side}_rows", (d,))
            self.add_sample_state(f"{side}_row_ids", dtype=torch.int64)
            self.add_sample_state(f"{side}_row_example", dtype=torch.int64)
        # Statistics loaded from a file: plain buffers, so they are in state_dict, follow .to(device), and are *not*
        # summed across ranks (every rank loads the same file).
        self.register_buffer("loaded_target_sum", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("loaded_target_outer", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("loaded_target_n", torch.zeros((), dtype=torch.float64))
        self._float64_buffers += ["loaded_target_sum", "loaded_target_outer", "loaded_target_n"]

    # ----------------------------------------------------------------------------------------------------------------
    # life cycle: a batch is, per side, its finite embedding rows (+ ids, example index) and its counts of skipped clips

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
        parts = embed_unpaired(self, preds, target, sample_rate, target_sample_rate, ids, target_ids)
        # Clips given with ids (all, with keep_rows) are kept as rows; the others go into the sums.
        given = {"preds": ids, "target": target_ids}
        return {
            side: None if part is None else {**part, "as_rows": self.keep_rows or given[side] is not None}
            for side, part in parts.items()
        }

    def update(
        self,
        preds: AudioInput | None = None,
        target: AudioInput | None = None,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        ids: Sequence[int] | Tensor | None = None,
        target_ids: Sequence[int] | Tensor | None = None,
    ) -> None:
        """Embed generated (``preds``) and/or reference (``target``) clips and add them to the moments.

        ``ids`` / ``target_ids`` (optional, one non-negative int per clip, e.g. dataset indices): a clip whose id was
        already seen on any rank is counted once at ``compute`` (``DistributedSampler`` pads ranks with repeats).
        Such clips (all, with ``keep_rows``) are kept as rows (D float64 each) until ``compute``. Nothing is added if
        the batch raises.
        """
        self._add(self._score(preds, target, sample_rate, target_sample_rate, ids, target_ids))

    def _add(self, batch: Rows) -> None:
        self._last_record = batch
        for side, part in batch.items():
            if part is None:
                continue
            setattr(self, f"{side}_silent", getattr(self, f"{side}_silent") + part["silent"])
            setattr(self, f"{side}_nonfinite", getattr(self, f"{side}_nonfinite") + part["nonfinite"])
            emb = part["emb"]
            if part["as_rows"]:
                getattr(self, f"{side}_rows").append(emb)
                getattr(self, f"{side}_row_ids").append(part["ids"])
                getattr(self, f"{side}_row_example").append(part["example"])
                continue
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + emb.sum(dim=0))
            setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + emb.T @ emb)
            setattr(self, f"{side}_n", getattr(self, f"{side}_n") + emb.shape[0])

    def _frechet(self, p: tuple[Tensor, Tensor, Tensor], t: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        mu1, s1 = gaussian_from_sums(*p)
        mu2, s2 = gaussian_from_sums(*t)
        return frechet_distance(mu1, s1, mu2, s2, eps=self.eps, eps_policy=self.spec.eps_policy, method=self.method)

    def _batch_value(self, batch: Rows) -> Tensor | None:
        """The FD of this batch's embeddings (every rank's with ``dist_sync_on_step``), or None below 2 per side."""
        moments = []
        for side in SIDES:
            part = batch[side]
            emb = torch.zeros(0, self.num_features, dtype=torch.float64, device=self.device)
            ids = example = torch.zeros(0, dtype=torch.int64, device=self.device)
            if part is not None:
                emb, ids, example = part["emb"], part["ids"], part["example"]
            _, _, (emb,), _ = dedup_rows(self._gather(ids), self._gather(example), self._gather(emb))
            moments.append((emb.sum(dim=0), emb.T @ emb, torch.tensor(float(emb.shape[0]), dtype=torch.float64)))
        if min(float(m[2]) for m in moments) < MIN_EMBEDDINGS:
            return None
        return self._frechet(moments[0], moments[1])

    def _moments(self, side: str) -> tuple[Tensor, Tensor, Tensor, int]:
        """Sums, outer-product sums and count of one side: streamed sums plus the id-deduplicated rows."""
        rows, dropped = self._side_rows(side)
        rows = rows[f"{side}_embeddings"]
        total = getattr(self, f"{side}_sum") + rows.sum(dim=0)
        outer = getattr(self, f"{side}_outer") + rows.T @ rows
        n = getattr(self, f"{side}_n") + rows.shape[0]
        if side == "target":
            total, outer, n = total + self.loaded_target_sum, outer + self.loaded_target_outer, n + self.loaded_target_n
        return total, outer, n, dropped

    def compute(self) -> Tensor:
        """Squared Fréchet distance (float64 scalar) over everything seen on all ranks."""
        p_sum, p_outer, p_n, p_dup = self._moments("preds")
        t_sum, t_outer, t_n, t_dup = self._moments("target")
        for name, n in (("preds (generated)", p_n), ("target (reference)", t_n)):
            if float(n) < MIN_EMBEDDINGS:
                raise ValueError(
                    f"FD needs at least {MIN_EMBEDDINGS} finite embeddings per side; {name} has {int(n)}. Feed more "
                    "clips to update()" + (" or load reference statistics" if name.startswith("target") else "")
                )
        value = self._frechet((p_sum, p_outer, p_n), (t_sum, t_outer, t_n))
        streamed = float(self.target_n) + len(self._cat("target_row_ids"))
        sources = [s for s, n in (("samples", streamed), ("stats", float(self.loaded_target_n))) if n > 0]
        self._details = Details(
            {
                "n_preds": int(p_n),
                "n_target": int(t_n),
                "n_preds_dropped_nonfinite": int(self.preds_nonfinite),
                "n_target_dropped_nonfinite": int(self.target_nonfinite),
                "n_preds_skipped_silent": int(self.preds_silent),
                "n_target_skipped_silent": int(self.target_silent),
                "n_preds_duplicates_dropped": p_dup,
                "n_target_duplicates_dropped": t_dup,
                "target_source": "+".join(sources),
                "protocol": self.protocol,
            }
        )
        return value

    def _reduce(self, rows: Rows) -> Tensor:
        """FD of kept rows (``per_sample()`` keys), the reference statistics loaded from a file added (never
        resampled). The streamed sums are not rows: :meth:`compute` adds them.
        """
        moments = []
        for side, name in zip(SIDES, ("preds (generated)", "target (reference)")):
            x = rows[f"{side}_embeddings"].to(self.device, torch.float64)
            total, outer = x.sum(dim=0), x.T @ x
            n = torch.tensor(float(x.shape[0]), dtype=torch.float64, device=self.device)
            if side == "target":
                total, outer, n = (
                    total + self.loaded_target_sum,
                    outer + self.loaded_target_outer,
                    n + self.loaded_target_n,
                )
            if float(n) < MIN_EMBEDDINGS:
                raise ValueError(f"FD needs at least {MIN_EMBEDDINGS} embeddings per side; {name} has {int(n)}")
            moments.append((total, outer, n))
        return self._frechet(moments[0], moments[1])

    def _streamed(self) -> tuple[int, int]:
        """Clips streamed into the sums on all ranks (not kept as rows): ``(generated, reference)`` counts."""
        with self._synced():
            return int(self.preds_n), int(self.target_n)

    def _require_rows(self, what: str, *, reference_stats: bool) -> None:
        preds_n, target_n = self._streamed()
        if preds_n or target_n:
            raise ValueError(
                f"{what} resamples embedding rows, but {preds_n} generated and {target_n} reference rows were "
                "streamed into sums; construct the metric with keep_rows=True (or give ids to every update)"
            )
        if not reference_stats and float(self.loaded_target_n) > 0:
            raise ValueError(
                f"{what} needs the reference rows; statistics loaded with load_reference_stats() have none "
                "(clear_reference_stats() and update() with the reference clips)"
            )

    def bootstrap(
        self, num: int = BOOTSTRAP_NUM, seed: int = BOOTSTRAP_SEED, ci: float = BOOTSTRAP_CI
    ) -> dict[str, Tensor]:
        """Percentile bootstrap of FD over the kept clips of each side (see :meth:`BackboneMetric.bootstrap`).

        Needs ``keep_rows=True`` (or ids on every update); reference statistics loaded from a file stay fixed. The
        resampled FDs are biased upwards for small N against the embedding width: see :meth:`fd_infinity`.

        Raises:
            ValueError: some clips were streamed into sums, or (from the base) bad arguments.

        Example:
            >>> import torch
            >>> from torchmetrics_av.testing import tiny_backbone
            >>> fd = FrechetAudioDistance(sample_rate=16000, protocol="av-benchmark", backbone=tiny_backbone("panns"),
            ...                           keep_rows=True)
            >>> g = torch.Generator().manual_seed(0)
            >>> fd.update(preds=torch.rand(40, 8000, generator=g) - 0.5, target=torch.rand(40, 8000, generator=g) - 0.5)
            >>> out = fd.bootstrap(num=20)
            >>> bool(out["low"] <= out["high"]), bool(out["value"] == fd.compute())
            (True, True)
        """
        self._require_rows("bootstrap", reference_stats=True)
        return super().bootstrap(num, seed, ci)

    def fd_infinity(self, steps: int = DEFAULT_STEPS, min_n: int = DEFAULT_MIN_N, seed: int | None = None) -> dict:
        """FD∞ (fadtk's ``score_inf``) on the synced rows: FD of resampled generated sets extrapolated to ``n → ∞``.

        The reference rows are never resampled; ``n`` generated rows are drawn with replacement for each size of
        ``np.linspace(min_n, N, steps)`` and the FDs are fitted on ``1/n`` (see
        :func:`~torchmetrics_av.functional.fd_infinity`); each FD uses this metric's ``eps`` and the protocol's eps
        policy. With ``method="eigh"`` the draws take the functional's ``"auto"`` route (the exact low-rank trace when
        a draw has fewer rows than dimensions and no eps is added, else ``"eigh"``); ``method="scipy"`` keeps the
        references' ``sqrtm``. Needs ``keep_rows=True`` (or ids on every update) and the reference as rows.

        Args:
            steps: number of draw sizes (fadtk: 25).
            min_n: smallest draw size (fadtk: 500; with fewer generated rows the sizes run downwards, as fadtk).
            seed: seed of ``np.random.RandomState`` for the draws; ``None`` draws a fresh one (returned as ``"seed"``).

        Returns:
            ``{"value" (FD∞), "slope", "r2", "points" ((steps, 2): n, FD_n), "seed"}``.

        Raises:
            ValueError: clips were streamed into sums, the reference comes from a statistics file, or too few rows.
        """
        self._require_rows("fd_infinity", reference_stats=False)
        rows = self.per_sample()
        return fd_infinity(
            rows["preds_embeddings"],
            rows["target_embeddings"],
            steps=steps,
            min_n=min_n,
            seed=seed,
            eps=self.eps,
            eps_policy=self.spec.eps_policy,
            method="scipy" if self.method == "scipy" else "auto",
        )

    # ----------------------------------------------------------------------------------------------------------------
    # reference statistics files

    def _provenance(self) -> dict[str, Any]:
        import torchmetrics_av

        return {
            "backbone": type(self.backbone).__name__,
            "checkpoint": getattr(self.backbone, "checkpoint_id", "unknown"),
            "protocol": self.protocol,
            # The file format keeps its v1 key name for the truncation (`duration`, seconds; None = whole clips).
            "audio_length": self.duration,
            "resampler": self.resampler,
            "sample_rate": sample_rate_of(self.backbone_name),
            "num_features": self.num_features,
            "version": torchmetrics_av.__version__,
        }

    def save_reference_stats(self, path: str | os.PathLike) -> None:
        """Write the reference (``target``) moments of all ranks to ``path`` (``torch.save``; rank 0 writes).

        The file holds ``sum``, ``outer``, ``n`` (float64) and the provenance: backbone class and checkpoint id,
        protocol, truncation ``duration`` (stored under the key ``audio_length``), resampler, sample rate, feature size
        and library version.
        """
        with self.sync_context():
            t_sum, t_outer, t_n, _ = self._moments("target")
            payload = {"format": STATS_FORMAT, "sum": t_sum.cpu(), "outer": t_outer.cpu(), "n": t_n.cpu()}
        if float(payload["n"]) < 2:
            raise ValueError(f"only {int(payload['n'])} reference embeddings were accumulated; need at least 2")
        payload.update(self._provenance())
        if (
            not torch.distributed.is_available()
            or not torch.distributed.is_initialized()
            or torch.distributed.get_rank() == 0
        ):
            torch.save(payload, path)

    def load_reference_stats(self, path: str | os.PathLike) -> None:
        """Use the reference moments saved by :meth:`save_reference_stats` (they survive ``reset()``).

        Raises:
            ValueError: the file was made under another format, backbone checkpoint, protocol, ``duration``,
                resampler or feature size than this metric's.
        """
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != STATS_FORMAT:
            raise ValueError(f"{path} is not a torchmetrics-av FD statistics file (format {payload.get('format')!r})")
        mine = self._provenance()
        if payload.get("audio_length") is None and payload.get("protocol") == mine["protocol"]:
            # Files of 0.1.0 stored None for the protocol's default truncation (8 s under av-benchmark).
            payload["audio_length"] = self.spec.duration
        for key in ("backbone", "checkpoint", "protocol", "audio_length", "resampler", "sample_rate", "num_features"):
            if payload.get(key) != mine[key]:
                raise ValueError(
                    f"{path} was made with {key}={payload.get(key)!r}, but this metric uses {key}={mine[key]!r}; "
                    "statistics from another backbone or protocol are not comparable"
                )
        self.loaded_target_sum = payload["sum"].to(self.device, torch.float64)
        self.loaded_target_outer = payload["outer"].to(self.device, torch.float64)
        self.loaded_target_n = payload["n"].to(self.device, torch.float64)
        self._computed = None

    def clear_reference_stats(self) -> None:
        """Forget statistics loaded with :meth:`load_reference_stats`."""
        for name in ("loaded_target_sum", "loaded_target_outer", "loaded_target_n"):
            setattr(self, name, torch.zeros_like(getattr(self, name)))
        self._computed = None
