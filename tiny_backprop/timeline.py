"""A training step's held activation bytes, event by event, and a plot of it.

    from tiny_backprop.timeline import plot_timeline
    fig = plot_timeline(hc.memory_timeline(), "step.png", budget_bytes=hc.plan.budget_bytes)

A timeline is a list of `TimelineEvent` in step order. Kinds:

- ``forward_start``: the training forward begins (the first event).
- ``region_forward``: a recompute region's forward starts or ends; the events of one
  region come in pairs, start then end (``region`` names the region).
- ``pack``: a saved tensor is kept (or a region input held).
- ``recompute``: a region's recomputation during backward starts or ends; pairs, like
  ``region_forward``.
- ``backward``: backward consumed saved tensors (bytes released).
- ``step_end``: backward finished.

``measured_bytes`` are held bytes counted by the runtime's accountant at the event,
``predicted_bytes`` the plan simulator's figure at the same point; either may be None
where it is not known. The plot draws both over the event index, the budget as a
horizontal line, region forwards and recomputations as shaded spans. Plotting needs
matplotlib (``pip install 'tiny-backprop[plot]'``); nothing else here does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

KINDS = ("forward_start", "region_forward", "pack", "recompute", "backward", "step_end")
SPAN_KINDS = ("region_forward", "recompute")  # kinds whose events open and close a span
MiB = 2**20


@dataclass(frozen=True)
class TimelineEvent:
    """One event of a step.

    Attributes:
        index: position in the step (0, 1, 2, ...), the plot's x axis.
        kind: one of `KINDS`.
        region: the recompute region the event belongs to ("" outside regions).
        measured_bytes: held activation bytes measured just after the event, or None.
        predicted_bytes: held activation bytes the plan predicts there, or None.
    """

    index: int
    kind: str
    region: str
    measured_bytes: int | None
    predicted_bytes: int | None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TimelineEvent.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("measured_bytes", "predicted_bytes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"TimelineEvent.{name} must be None or >= 0 bytes, got {v}")


@dataclass(frozen=True)
class Span:
    """A shaded stretch of the plot: a region's forward or its recomputation.

    Attributes:
        kind: "region_forward" or "recompute".
        region: the region's name.
        start: event index where it starts.
        end: event index where it ends (== start for an unmatched single event).
    """

    kind: str
    region: str
    start: int
    end: int


EventLike = Union[TimelineEvent, Mapping[str, Any]]


def as_events(timeline: Iterable[EventLike]) -> list[TimelineEvent]:
    """The timeline as `TimelineEvent`s (dicts with the same keys are accepted), by index.

    Raises:
        ValueError: an unknown kind, negative bytes, or a repeated index.
        TypeError: an item that is neither a TimelineEvent nor a mapping.
    """
    events: list[TimelineEvent] = []
    for item in timeline:
        if isinstance(item, TimelineEvent):
            events.append(item)
        elif isinstance(item, Mapping):
            events.append(TimelineEvent(
                index=int(item["index"]), kind=str(item["kind"]),
                region=str(item.get("region", "") or ""),
                measured_bytes=item.get("measured_bytes"),
                predicted_bytes=item.get("predicted_bytes")))
        else:
            raise TypeError(f"timeline items must be TimelineEvent or dict, not "
                            f"{type(item).__name__}")
    events.sort(key=lambda e: e.index)
    for a, b in zip(events, events[1:]):
        if a.index == b.index:
            raise ValueError(f"timeline has two events at index {a.index}")
    return events


def region_spans(timeline: Iterable[EventLike]) -> list[Span]:
    """The shaded spans: per (kind, region), events are paired start, end in order.

    A start with no end left (a truncated timeline) is a span of that one event.
    """
    spans: list[Span] = []
    open_: dict[tuple[str, str], int] = {}
    for e in as_events(timeline):
        if e.kind not in SPAN_KINDS:
            continue
        key = (e.kind, e.region)
        if key in open_:
            spans.append(Span(e.kind, e.region, open_.pop(key), e.index))
        else:
            open_[key] = e.index
    spans += [Span(k, r, i, i) for (k, r), i in open_.items()]
    return sorted(spans, key=lambda s: (s.start, s.end, s.kind, s.region))


def series(timeline: Iterable[EventLike], which: str) -> tuple[list[int], list[int]]:
    """(event indices, bytes) of the events where `which` ("measured"/"predicted") is known."""
    if which not in ("measured", "predicted"):
        raise ValueError(f"which must be 'measured' or 'predicted', got {which!r}")
    xs: list[int] = []
    ys: list[int] = []
    for e in as_events(timeline):
        v = getattr(e, f"{which}_bytes")
        if v is not None:
            xs.append(e.index)
            ys.append(int(v))
    return xs, ys


_SPAN_STYLE = {"region_forward": dict(color="tab:blue", alpha=0.12),
               "recompute": dict(color="tab:orange", alpha=0.22)}


def plot_timeline(timeline: Iterable[EventLike], path: str | Path | None = None, *,
                  budget_bytes: int | None = None, title: str | None = None) -> Any:
    """Plot held activation memory over a step's events.

    Args:
        timeline: `TimelineEvent`s (or dicts with their fields), e.g. from
            ``hc.memory_timeline()``.
        path: where to save the figure (format from the suffix: .png, .svg, .pdf); None
            only returns it.
        budget_bytes: the activation budget (bytes), drawn as a dashed horizontal line.
        title: the axes' title (default "held activation memory").

    Returns:
        The matplotlib ``Figure`` (not registered with pyplot, so it needs no GUI
        backend and is freed with its last reference). Its one axes has the lines
        "measured" and "predicted" (y in MiB = bytes / 2**20, x the event index; a line is
        left out when none of its values is known), "budget" (axhline), and one shaded
        span per `region_spans` entry: blue for region forwards, orange for recomputation.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'tiny-backprop[plot]'``).
        ValueError: an empty timeline, or bad events (see `as_events`).
    """
    events = as_events(timeline)
    if not events:
        raise ValueError("the timeline is empty: nothing to plot")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_timeline needs matplotlib: pip install 'tiny-backprop[plot]'"
                          ) from exc
    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    seen_kinds: set[str] = set()
    for s in region_spans(events):
        label = None if s.kind in seen_kinds else s.kind.replace("_", " ")
        seen_kinds.add(s.kind)
        ax.axvspan(s.start - 0.5, s.end + 0.5, label=label, **_SPAN_STYLE[s.kind])
    for which, style in (("measured", dict(color="black", marker=".", linewidth=1.2)),
                         ("predicted", dict(color="tab:green", linestyle="--", linewidth=1.2))):
        xs, ys = series(events, which)
        if xs:
            ax.step(xs, [y / MiB for y in ys], where="post", label=which, **style)
    if budget_bytes is not None:
        ax.axhline(budget_bytes / MiB, color="tab:red", linestyle=":", label="budget")
    ax.set_xlabel("event index")
    ax.set_ylabel("held activations (MiB)")
    ax.set_title(title if title is not None else "held activation memory")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
