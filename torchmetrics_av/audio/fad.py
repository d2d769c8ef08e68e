"""FD_PaSST: Fréchet distance between PaSST embeddings of generated and reference audio.

FastVideo's ``audio.frechet_distance`` ("fastvideo", default) and av-benchmark's FD-PaSST ("av-benchmark"), as
streaming float64 moments (sum, sum of outer products, count per side) that reduce across DDP ranks by summation.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from torchmetrics_av.backbones.passt import PASST_EMBED_DIM, PASST_SAMPLE_RATE, PaSST, passt_windows
from torchmetrics_av.base import BackboneMetric, Details, Rows, require_extra, resolve_rates
from torchmetrics_av.functional.fad import DEFAULT_EPS, FDMethod, frechet_distance, gaussian_from_sums
from torchmetrics_av.preprocessing import (
    RESAMPLERS,
    AudioInput,
    Resampler,
    as_clip_list,
    check_bool,
    check_positive_int,
    check_sample_rate,
    sample_rates,
)

# File format tag of saved reference statistics; bump when the layout changes.
STATS_FORMAT = "torchmetrics-av-fd-stats-v1"
FD_METHODS: tuple[str, ...] = ("eigh", "scipy")
SIDES: tuple[str, ...] = ("preds", "target")
# FD needs a covariance per side: at least two embeddings (np.cov / the unbiased N-1 estimate).
MIN_EMBEDDINGS = 2


class FrechetAudioDistance(BackboneMetric):
    r"""Fréchet distance between Gaussians fitted to PaSST embeddings of generated and reference audio (FD_PaSST).

    .. math::
        FD = \lVert\mu_g-\mu_r\rVert^2 + \operatorname{tr}\Sigma_g + \operatorname{tr}\Sigma_r
             - 2\operatorname{tr}\sqrt{\Sigma_g\Sigma_r}

    Squared distance (not square-rooted); lower is better. Unpaired: any number of generated (``preds``) and
    reference (``target``) clips, in any ``update`` calls, either side may be omitted in a call.

    Protocols (``protocol=``):

    * ``"fastvideo"`` (default, FastVideo ``audio.frechet_distance``): mono mean, soxr-HQ resampling to 32 kHz
      (``librosa.load``), peak normalisation to −1 dBFS, first 10 s zero-padded/trimmed to 320000 samples, 768-d
      embedding ``(CLS+DIST)/2``; ``eps·I`` (1e-6) always added to both covariances. Silent clips are skipped and
      counted (FastVideo drops their NaN embeddings).
    * ``"av-benchmark"`` (MMAudio tables): mono mean, per-clip DC removal, ``torchaudio.transforms.Resample`` to
      32 kHz, truncation to ``duration`` (8 s), zero-pad to 10 s; ``eps·I`` only if the square root fails.
      av-benchmark evaluates only generated clips that have a reference (paired subset): select your data likewise.

    Moments are float64 sums (``np.cov``'s unbiased N−1 covariance); the mean term is float64 where the references
    use float32 (≤ 3.3e-6 absolute on the goldens). ``method="eigh"`` (default) computes the matrix square-root trace
    from a Cholesky factor and one symmetric eigenvalue solve, ``"scipy"`` with the references'
    ``scipy.linalg.sqrtm``; they agree to ≤ 1e-6 relative. Rows with NaN/Inf embeddings are dropped and counted.

    As input to ``update``: ``preds`` / ``target``: ``(B, T)`` or ``(B, C, T)`` audio tensors or lists of ``(T,)`` /
    ``(C, T)`` clips, float in [-1, 1] or int16; ``sample_rate`` / ``target_sample_rate``: Hz, one int or one per clip.

    As output of ``compute``: scalar float64 tensor. ``forward`` returns the FD of this batch alone (of every rank's
    batch with ``dist_sync_on_step``) when each side of it has at least 2 embeddings, as torchmetrics' FID, else
    ``None``. ``details`` (after ``compute``): ``n_preds``, ``n_target``, ``n_preds_dropped_nonfinite``,
    ``n_target_dropped_nonfinite``, ``n_preds_skipped_silent``, ``n_target_skipped_silent``,
    ``n_preds_duplicates_dropped``, ``n_target_duplicates_dropped`` (repeated ``ids``), ``target_source``
    (``"samples"``, ``"stats"`` or ``"samples+stats"``), ``protocol``.

    ``per_sample()``: FD keeps float64 sums, not rows, except for clips given with ``ids`` / ``target_ids``: it
    returns those rows, ``preds_ids`` / ``target_ids`` (int64, sorted, repeats dropped) and ``preds_embeddings`` /
    ``target_embeddings`` (float64 ``(N, D)``); clips given without ids are in the sums only.

    Args:
        sample_rate: rate of ``preds`` (and of ``target`` unless ``target_sample_rate`` is given), in Hz.
        target_sample_rate: rate of ``target`` in Hz.
        protocol: ``"fastvideo"`` or ``"av-benchmark"``.
        backbone: a :class:`~torchmetrics_av.backbones.PaSST` instance to share (e.g. with KL).
        weights: local path of ``passt-s-f128-p16-s10-ap.476-swa.pt`` when ``backbone`` is not given.
        duration: av-benchmark truncation in seconds (default 8.0); an error under ``"fastvideo"`` (whole clips).
        resampler: override the protocol's resampler (``"soxr_hq"``, ``"torchaudio"``, ``"torchaudio_functional"``).
        method: ``"eigh"`` or ``"scipy"`` for the square-root trace.
        eps: covariance regulariser (positive).
        reset_real_features: whether ``reset()`` also clears the streamed reference moments (statistics loaded with
            :meth:`load_reference_stats` always survive ``reset()``; drop them with :meth:`clear_reference_stats`).
        batch_size: most clips per PaSST forward.
        audio_length: deprecated alias of ``duration``.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: a bad argument (named), bad audio input, a missing sample rate; at ``compute`` fewer than 2 finite
            embeddings on a side.
        ModuleNotFoundError: ``hear21passt`` is missing and no ``backbone`` was given.

    Example:
        >>> import torch
        >>> from torchmetrics_av import FrechetAudioDistance
        >>> from torchmetrics_av.testing import tiny_backbone
        >>> fd = FrechetAudioDistance(sample_rate=16000, backbone=tiny_backbone("passt"))  # random weights: demo only
        >>> fd.update(preds=torch.rand(4, 16000) - 0.5, target=torch.rand(4, 16000) - 0.5)
        >>> bool(fd.compute() >= 0)
        True
    """

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(
        self,
        sample_rate: int | Sequence[int] | None = None,
        target_sample_rate: int | Sequence[int] | None = None,
        protocol: str = "fastvideo",
        backbone: nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        *,
        duration: float | None = None,
        resampler: Resampler | None = None,
        method: FDMethod = "eigh",
        eps: float = DEFAULT_EPS,
        reset_real_features: bool = True,
        batch_size: int = 8,
        audio_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone=backbone, weights=weights, protocol=protocol, **kwargs)
        if backbone is None:
            require_extra(type(self).__name__, ["hear21passt", "timm"], "passt")
        if method not in FD_METHODS:
            raise ValueError(f"`method` must be one of {FD_METHODS}, got {method!r}")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps <= 0:
            raise ValueError(f"`eps` must be a positive finite float, got {eps!r}")
        if resampler is not None and resampler not in RESAMPLERS:
            raise ValueError(f"`resampler` must be one of {RESAMPLERS} or None, got {resampler!r}")
        self.sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.target_sample_rate = check_sample_rate(target_sample_rate, "target_sample_rate")
        self.duration = self.spec.resolve_duration(duration, audio_length)
        self.resampler, self.method, self.eps = resampler, method, float(eps)
        self.reset_real_features = check_bool(reset_real_features, "reset_real_features")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_features = int(getattr(backbone, "embed_dim", PASST_EMBED_DIM))
        d = self.num_features
        for side in SIDES:
            self.add_float64_state(f"{side}_sum", (d,))
            self.add_float64_state(f"{side}_outer", (d, d))
            self.add_float64_state(f"{side}_n")
            self.add_float64_state(f"{side}_nonfinite")
            self.add_float64_state(f"{side}_silent")
            # Clips given with `ids` are kept as rows until compute(), where repeated ids are dropped.
            self.add_sample_state(f"{side}_rows", (d,))
            self.add_sample_state(f"{side}_row_ids", dtype=torch.int64)
        # Statistics loaded from a file: plain buffers, so they are in state_dict, follow .to(device), and are *not*
        # summed across ranks (every rank loads the same file).
        self.register_buffer("loaded_target_sum", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("loaded_target_outer", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("loaded_target_n", torch.zeros((), dtype=torch.float64))
        self._float64_buffers += ["loaded_target_sum", "loaded_target_outer", "loaded_target_n"]

    @property
    def audio_length(self) -> float | None:
        """Deprecated name of :attr:`duration`."""
        return self.duration

    def _build_backbone(self) -> nn.Module:
        return PaSST(weights=self.weights)

    # ----------------------------------------------------------------------------------------------------------------
    # life cycle: a batch is, per side, its finite embeddings (+ ids) and its counts of skipped clips

    def _embed(self, side: str, clips: list[Tensor], rates: list[int], ids: Tensor | None) -> dict[str, Any]:
        windows, kept = [], []
        for i, (clip, sr) in enumerate(zip(clips, rates)):
            w = passt_windows(clip, sr, self.spec, "fd", resampler=self.resampler, duration=self.duration)
            if w is not None:
                windows.append(w[0])
                kept.append(i)
        d = self.num_features
        emb = torch.zeros(0, d, dtype=torch.float64, device=self.device)
        if windows:
            emb = self.backbone.embed(windows, self.batch_size)[0].to(self.device, torch.float64)
        finite = torch.isfinite(emb).all(dim=1)
        row_ids = None if ids is None else ids[torch.tensor(kept, dtype=torch.long, device=self.device)][finite]
        return {
            "emb": emb[finite],
            "ids": row_ids,
            "silent": len(clips) - len(kept),
            "nonfinite": int((~finite).sum()),
        }

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
        if preds is None and target is None:
            raise ValueError("give `preds` (generated audio) and/or `target` (reference audio) to update()")
        if preds is None and ids is not None:
            raise ValueError("`ids` were given without `preds`; use `target_ids` for reference clips")
        if target is None and target_ids is not None:
            raise ValueError("`target_ids` were given without `target`")
        rate, target_rate = resolve_rates(sample_rate, target_sample_rate, self.sample_rate, self.target_sample_rate)
        # Every input of both sides is checked before the model runs on either.
        sides = {}
        for side, audio, r, rate_name, side_ids, ids_name in (
            ("preds", preds, rate, "sample_rate", ids, "ids"),
            ("target", target, target_rate, "target_sample_rate", target_ids, "target_ids"),
        ):
            if audio is not None:
                clips = as_clip_list(audio, side)
                rates = sample_rates(r, len(clips), rate_name)
                id_tensor = None if side_ids is None else self._ids_tensor(side_ids, len(clips), ids_name)
                sides[side] = (clips, rates, id_tensor)
        return {side: self._embed(side, *sides[side]) if side in sides else None for side in SIDES}

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
        Such clips are kept as rows (D float64 each) until ``compute``. Nothing is added if the batch raises.
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
            if part["ids"] is not None:
                getattr(self, f"{side}_rows").append(emb)
                getattr(self, f"{side}_row_ids").append(part["ids"])
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
            ids = torch.zeros(0, dtype=torch.int64, device=self.device)
            if part is not None:
                emb = part["emb"]
                ids = part["ids"] if part["ids"] is not None else torch.full((emb.shape[0],), -1, device=self.device)
            _, (emb,), _ = self._dedup(self._gather(ids.to(torch.int64)), self._gather(emb))
            moments.append((emb.sum(dim=0), emb.T @ emb, torch.tensor(float(emb.shape[0]), dtype=torch.float64)))
        if min(float(m[2]) for m in moments) < MIN_EMBEDDINGS:
            return None
        return self._frechet(moments[0], moments[1])

    def _moments(self, side: str) -> tuple[Tensor, Tensor, Tensor, int]:
        """Sums, outer-product sums and count of one side: streamed sums plus the id-deduplicated rows."""
        _, (rows,), dropped = self._dedup(self._cat(f"{side}_row_ids"), self._cat(f"{side}_rows"))
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

    def per_sample(self) -> dict[str, Tensor]:
        """The rows of clips given with ids (sorted by id, repeats dropped), from every rank; see the class doc."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            process_group=self.process_group,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
            distributed_available=self.distributed_available_fn,
        ):
            out = {}
            for side in SIDES:
                ids, (rows,), _ = self._dedup(self._cat(f"{side}_row_ids"), self._cat(f"{side}_rows"))
                out[f"{side}_ids"], out[f"{side}_embeddings"] = ids, rows
        return out

    def reset(self) -> None:
        """Clear the generated side, and the streamed reference side when ``reset_real_features`` is True."""
        if self.reset_real_features:
            super().reset()
            return
        # reset() clears list states in place, so keep copies of the lists, not references to them.
        keep = {k: copy.copy(getattr(self, k)) for k in self._defaults if k.startswith("target_")}
        super().reset()
        for k, v in keep.items():
            setattr(self, k, v)

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
            "sample_rate": PASST_SAMPLE_RATE,
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
