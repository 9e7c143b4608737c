"""Readable CaptureError text: where capture failed, what each path said, what to do."""

from __future__ import annotations

import os
import traceback

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
_OUR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REMEDIES = (
    "remedies: mark the failing submodule as a leaf (it is then called as one node), "
    "or pass simpler example inputs (no data-dependent shapes or values), "
    "or use HCModule(model, ..., fallback=\"per_block\"), which plans over module calls"
)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def user_frame(exc: BaseException) -> str | None:
    """The deepest traceback line outside torch and tiny_backprop (the model's code)."""
    best = None
    for e in _chain(exc):
        for fr in traceback.extract_tb(e.__traceback__):
            path = os.path.abspath(fr.filename)
            if path.startswith((_TORCH_DIR, _OUR_DIR)) or fr.filename.startswith("<"):
                continue
            best = f"{fr.filename}:{fr.lineno} in {fr.name}: {(fr.line or '').strip()}"
        if best:
            return best
    return None


def first_line(exc: BaseException) -> str:
    """``TypeName: first non-empty line of the message`` (at most 240 characters)."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}"[:240]


def failure_message(model_name: str, attempts: list[tuple[str, BaseException]]) -> str:
    """The CaptureError text for a model every path failed on."""
    where = None
    for _, exc in reversed(attempts):
        where = user_frame(exc)
        if where:
            break
    lines = [f"could not capture {model_name} as a graph"]
    if where:
        lines.append(f"failed at: {where}")
    for path, exc in attempts:
        lines.append(f"  {path}: {first_line(exc)}")
    lines.append(REMEDIES)
    return "\n".join(lines)
