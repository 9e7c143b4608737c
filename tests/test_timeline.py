"""plot_timeline: data handling (line data, budget line, spans), not pixels."""

from __future__ import annotations

import sys

import pytest

from tiny_backprop.timeline import TimelineEvent, as_events, plot_timeline, region_spans, series

MiB = 2**20


def _timeline() -> list[TimelineEvent]:
    ev = [("forward_start", "", 0, 0), ("pack", "", 1, 1),
          ("region_forward", "r0", 2, 2), ("pack", "r0", 3, 3), ("region_forward", "r0", 2, 2),
          ("pack", "", 4, None), ("backward", "", 3, 3),
          ("recompute", "r0", 5, 5), ("recompute", "r0", 4, 4),
          ("backward", "", 1, 1), ("step_end", "", 0, 0)]
    return [TimelineEvent(i, k, r, None if m is None else m * MiB, None if p is None else p * MiB)
            for i, (k, r, m, p) in enumerate(ev)]


def test_event_validation():
    with pytest.raises(ValueError, match="kind must be one of"):
        TimelineEvent(0, "forward", "", 0, 0)
    with pytest.raises(ValueError, match=">= 0 bytes"):
        TimelineEvent(0, "pack", "", -1, 0)
    with pytest.raises(ValueError, match="two events at index 1"):
        as_events([TimelineEvent(1, "pack", "", 0, 0), TimelineEvent(1, "pack", "", 0, 0)])
    with pytest.raises(TypeError):
        as_events([(0, "pack", "", 0, 0)])


def test_dicts_are_accepted_and_sorted_by_index():
    evs = as_events([{"index": 2, "kind": "step_end", "measured_bytes": 0},
                     {"index": 0, "kind": "forward_start", "region": None,
                      "measured_bytes": 5, "predicted_bytes": 6}])
    assert [e.index for e in evs] == [0, 2]
    assert evs[0].region == "" and evs[1].predicted_bytes is None


def test_series_skips_unknown_values():
    xs, ys = series(_timeline(), "predicted")
    assert 5 not in xs and len(xs) == 10
    assert ys[xs.index(7)] == 5 * MiB
    xs_m, _ = series(_timeline(), "measured")
    assert xs_m == list(range(11))


def test_spans_pair_start_and_end_per_region():
    spans = region_spans(_timeline())
    assert [(s.kind, s.region, s.start, s.end) for s in spans] == [
        ("region_forward", "r0", 2, 4), ("recompute", "r0", 7, 8)]
    # a truncated timeline: the open start becomes a one-event span
    spans = region_spans(_timeline()[:8])
    assert spans[-1].kind == "recompute" and (spans[-1].start, spans[-1].end) == (7, 7)


def test_plot_line_data_budget_and_spans(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "timeline.png"
    fig = plot_timeline(_timeline(), out, budget_bytes=4 * MiB, title="gpt2 step")
    assert out.stat().st_size > 0
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"measured", "predicted", "budget"}
    assert list(lines["measured"].get_xdata()) == list(range(11))
    assert list(lines["measured"].get_ydata()) == [0, 1, 2, 3, 2, 4, 3, 5, 4, 1, 0]
    assert 5 not in list(lines["predicted"].get_xdata())
    assert list(lines["budget"].get_ydata()) == [4, 4]  # axhline in MiB
    assert ax.get_title() == "gpt2 step"
    spans = list(ax.patches)
    assert len(spans) == 2
    xs = sorted(round(p.get_x(), 6) for p in spans)
    assert xs == [1.5, 6.5]  # each span covers its events +- half an index


def test_plot_without_budget_or_predictions():
    pytest.importorskip("matplotlib")
    evs = [TimelineEvent(i, "pack", "", i * MiB, None) for i in range(3)]
    fig = plot_timeline(evs)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["measured"]
    assert len(fig.axes[0].patches) == 0
    with pytest.raises(ValueError, match="empty"):
        plot_timeline([])


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"tiny-backprop\[plot\]"):
        plot_timeline(_timeline())
