"""Precision options of every metric: ``precision="fp32"`` (default), ``"bf16"`` or ``"fp16"``.

``"bf16"`` / ``"fp16"`` run a backbone's *encoders* under :func:`torch.autocast` and nothing else: the front ends
(resampling, STFT, mel filterbanks), the heads (classifiers, projections, Synchformer's sync head) and every metric
reduction stay in float32 / float64. Low precision moves the numbers (the README lists the shift on every golden):
report fp32 numbers in papers, use bf16 for fast monitoring.

How it works:

- Each backbone class names its encoder submodules in ``autocast_modules`` and any head nested inside one of them
  in ``float32_modules`` (dotted paths from the backbone).
- :func:`install` puts forward hooks on those submodules (once; inert outside a precision scope). An encoder's hook
  enters autocast for the scope's dtype and casts the encoder's floating outputs back to float32, so everything
  downstream sees float32; a head's hook leaves autocast and casts its inputs to float32.
- :func:`precision_scope` sets the precision for the code inside it and switches off any autocast around it (a
  LightningModule's ``bf16-mixed`` must not leak into a metric's front end). Every metric runs its backbone calls
  inside ``precision_scope(self.precision)``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     autocast_modules = ("encoder",)
    ...     float32_modules = ()
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.encoder, self.head = nn.Linear(4, 4), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.head(self.encoder(x))
    >>> net = install(Net())
    >>> x = torch.randn(3, 4)
    >>> with precision_scope("bf16"):
    ...     y = net(x)
    >>> y.dtype, bool((y - net(x)).abs().max() > 0)  # float32 out, but the encoder ran in bfloat16
    (torch.float32, True)
    >>> with precision_scope("fp32"):
    ...     torch.equal(net(x), net.head(net.encoder(x)))
    True
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
_LOW = (torch.bfloat16, torch.float16)
# The precision of the innermost precision_scope; None outside any scope (the hooks then do nothing).
_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("torchmetrics_av_precision", default=None)
# Marks a module whose hooks are installed (install() is idempotent).
_INSTALLED = "_torchmetrics_av_precision_hooks"


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError`` naming the argument.

    Example:
        >>> check_precision("bf16")
        'bf16'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    return precision


def current_precision() -> str | None:
    """The precision of the innermost :func:`precision_scope`, or ``None`` outside any.

    Example:
        >>> current_precision() is None
        True
    """
    return _SCOPE.get()


def memo_tag() -> str:
    """The precision backbone outputs are computed at now: what an output memo must key on besides the input.

    A backbone shared by an fp32 and a ``precision="bf16"`` metric (or called under a caller's own autocast) must not
    hand one the other's memoised outputs.

    Example:
        >>> memo_tag()
        'fp32'
        >>> with precision_scope("bf16"):
        ...     memo_tag()
        'bf16'
    """
    scoped = current_precision()
    if scoped is not None:
        return scoped
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type):
            return f"autocast-{device_type}-{torch.get_autocast_dtype(device_type)}"
    return "fp32"


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Run backbone encoders at ``precision`` inside the block; any surrounding autocast is switched off.

    Example:
        >>> with precision_scope("bf16"):
        ...     current_precision()
        'bf16'
        >>> current_precision() is None
        True
    """
    token = _SCOPE.set(check_precision(precision))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast(device_type="cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast(device_type="cuda", enabled=False))
            yield
    finally:
        _SCOPE.reset(token)


def _device_type(module: nn.Module, args: Any, kwargs: Any) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return value.device.type
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device.type
    return "cpu"


def _cast(value: Any) -> Any:
    """Floating bf16/fp16 tensors in a (nested) output -> float32; everything else unchanged."""
    if isinstance(value, Tensor):
        return value.float() if value.dtype in _LOW else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_cast(v) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_cast(v) for v in value)
    if isinstance(value, dict):  # includes transformers' ModelOutput, updated in place to keep its type
        for key in list(value.keys()):
            value[key] = _cast(value[key])
        return value
    return value


class _EncoderHooks:
    """Forward hooks of an encoder: autocast at the scope's precision inside, float32 outputs."""

    def __init__(self) -> None:
        self._open: list[Any] = []

    def pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        precision = _SCOPE.get()
        if precision is None or precision == "fp32":
            self._open.append(None)
            return
        ctx = torch.autocast(device_type=_device_type(module, args, kwargs), dtype=AUTOCAST_DTYPES[precision])
        ctx.__enter__()
        self._open.append(ctx)

    def post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        ctx = self._open.pop() if self._open else None
        if ctx is None:
            return None
        ctx.__exit__(None, None, None)
        return _cast(output)


class _Float32Hooks:
    """Forward hooks of a head inside an encoder: autocast off, float32 inputs."""

    def __init__(self) -> None:
        self._open: list[Any] = []

    def pre(self, module: nn.Module, args: Any, kwargs: Any) -> tuple[Any, Any] | None:
        device_type = _device_type(module, args, kwargs)
        if _SCOPE.get() is None or not torch.is_autocast_enabled(device_type):
            self._open.append(None)
            return None
        ctx = torch.autocast(device_type=device_type, enabled=False)
        ctx.__enter__()
        self._open.append(ctx)
        return _cast(args), _cast(kwargs)

    def post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        ctx = self._open.pop() if self._open else None
        if ctx is not None:
            ctx.__exit__(None, None, None)


def _hook(module: nn.Module, hooks: _EncoderHooks | _Float32Hooks) -> None:
    module.register_forward_pre_hook(hooks.pre, with_kwargs=True)
    # always_call: the autocast state is restored even when the forward raises.
    module.register_forward_hook(hooks.post, with_kwargs=True, always_call=True)


def install(backbone: nn.Module) -> nn.Module:
    """Put the precision hooks on ``backbone``'s ``autocast_modules`` / ``float32_modules`` (once) and return it.

    A backbone without ``autocast_modules`` is left as it is (it then always runs in float32).

    Raises:
        ValueError: a listed submodule does not exist (the class attribute is stale).

    Example:
        >>> from torch import nn
        >>> class Tagger(nn.Module):
        ...     autocast_modules = ("body",)
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Linear(2, 2)
        >>> net = install(Tagger())
        >>> len(net.body._forward_pre_hooks), install(net) is net  # a second call adds nothing
        (1, True)
    """
    if getattr(backbone, _INSTALLED, False):
        return backbone
    for names, hooks_cls in (
        (getattr(backbone, "autocast_modules", ()), _EncoderHooks),
        (getattr(backbone, "float32_modules", ()), _Float32Hooks),
    ):
        for name in names:
            try:
                module = backbone.get_submodule(name)
            except AttributeError as err:
                raise ValueError(
                    f"{type(backbone).__name__} lists {name!r} for autocast but has no such submodule"
                ) from err
            _hook(module, hooks_cls())
    setattr(backbone, _INSTALLED, True)
    return backbone
