"""``ibx audit report``: one self-contained HTML file over a period of the ledger.

:func:`build_report` reads an export's entries whose time falls in the period
(UTC dates, both ends included) into sections of tables and charts;
:meth:`AuditReport.to_html` writes them as ONE file that needs no network to
open: CSS inline, charts drawn by matplotlib as inline SVG (text kept as text,
``svg.fonttype = none``; ids salted per chart with ``svg.hashsalt`` and no date
in the metadata, so the same export gives the same bytes), no fonts, scripts
or images fetched, and a Content-Security-Policy that forbids any fetch. Every
value read from the ledger is HTML-escaped: an actor name or an alert message
is text, never markup.

Sections (each present, with "None in this period / 本期无记录" when empty):
decisions over time, denials by reason, data use per enterprise, key
operations, certificates issued and revoked, alerts. A report reads; it does
not verify (``ibx audit verify`` does).
"""

from __future__ import annotations

import html
import io
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from audit._export import LedgerExport
from audit._trace import decoded_entries
from core.canonical import JsonValue
from core.clock import format_rfc3339
from ledger import LedgerEntry

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "NONE_IN_PERIOD",
    "AuditReport",
    "Chart",
    "ReportSection",
    "ReportTable",
    "build_report",
]

NONE_IN_PERIOD: Final = "None in this period / 本期无记录"
_DAILY_LIMIT: Final = 92
"""Periods longer than this many days are charted per month, shorter ones per day."""
_LABEL: Final = 48
"""Chart labels are cut to this many characters (the table beside the chart has them whole)."""
_ISSUED: Final = ("edge.certificate.issue", "edge.certificate.renew", "identity.certificate.issue")
_REVOKED: Final = ("edge.certificate.revoke", "identity.certificate.revoke")
_ALLOWING: Final = re.compile(r"^[a-z]+: (allowed by |attribute rules allow)")
"""A decision's reasons name every engine's verdict; an engine's allowing verdict
(``casbin: allowed by ...``, ``rego: attribute rules allow``) is not why it denied."""
_COLOURS: Final = ("#2f6db3", "#c0392b", "#2e8b57", "#d68910", "#7d3c98")


@dataclass(frozen=True)
class ReportTable:
    """A table: its column headings and its rows of text."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if any(len(row) != len(self.columns) for row in self.rows):
            raise ValueError("every row of a report table has one cell per column")


@dataclass(frozen=True)
class Chart:
    """A bar chart: categories along one axis, one bar per series in each."""

    categories: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]
    """(name, one value per category) for each series."""
    value_label: str
    horizontal: bool = False

    def __post_init__(self) -> None:
        if any(len(values) != len(self.categories) for _, values in self.series):
            raise ValueError("every series of a chart has one value per category")


@dataclass(frozen=True)
class ReportSection:
    """One section: an anchor, a bilingual title, a sentence, a chart and a table."""

    key: str
    title: str
    summary: str
    table: ReportTable | None
    chart: Chart | None = None

    @property
    def empty(self) -> bool:
        """True when the period has nothing for this section."""
        return self.table is None or not self.table.rows


@dataclass(frozen=True)
class AuditReport:
    """What ``ibx audit report`` found in the period, ready to be written as HTML."""

    origin: str
    tree_size: int
    start: date
    end: date
    exported_at: datetime
    source: str
    entries_in_period: int
    sections: tuple[ReportSection, ...] = field(default=())

    def to_html(self) -> str:
        """The whole report as one self-contained HTML document."""
        meta = ReportTable(
            ("", ""),
            (
                ("Ledger origin / 账本来源", self.origin),
                ("Period (UTC) / 统计期间", f"{self.start.isoformat()} – {self.end.isoformat()}"),
                ("Entries in the period / 期间条目", str(self.entries_in_period)),
                ("Tree size of the export / 导出树大小", str(self.tree_size)),
                ("Exported at / 导出时间", format_rfc3339(self.exported_at)),
                ("Read from / 数据来源", self.source or "-"),
            ),
        )
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>ibx audit report: {_e(self.origin)} {self.start} – {self.end}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<header>",
            "<h1>Audit report / 审计报告</h1>",
            _table_html(meta, "meta", header=False),
            '<p class="note">This report reads the ledger export; it does not verify it. '
            "Run <code>ibx audit verify</code> on the same export for that. / "
            "本报告仅读取账本导出，不做验证；请用 <code>ibx audit verify</code> 验证。</p>",
            "<nav><ul>",
            *(f'<li><a href="#{s.key}">{_e(s.title)}</a></li>' for s in self.sections),
            "</ul></nav>",
            "</header>",
            "<main>",
            *(_section_html(s) for s in self.sections),
            "</main>",
            "</body>",
            "</html>",
        ]
        return "\n".join(parts) + "\n"

    def write(self, path: Path) -> None:
        """Write :meth:`to_html` to ``path`` (UTF-8).

        Raises:
            OSError: the file cannot be written.
        """
        path.write_text(self.to_html(), encoding="utf-8")


def build_report(export: LedgerExport, start: date, end: date) -> AuditReport:
    """Read the entries of ``[start, end]`` (UTC days, both included) into the report's sections.

    Raises:
        ValueError: ``start`` is after ``end``.
    """
    if start > end:
        raise ValueError(f"the period starts ({start}) after it ends ({end})")
    low = datetime.combine(start, time.min, UTC)
    high = datetime.combine(end + timedelta(days=1), time.min, UTC)
    entries = [e for e in decoded_entries(export) if low <= e.time < high]
    buckets = _Buckets(start, end)
    sections = (
        _decisions(entries, buckets),
        _denials(entries),
        _data_use(entries),
        _keys(entries),
        _certificates(entries, buckets),
        _alerts(entries),
    )
    header = export.header
    return AuditReport(
        header.origin,
        header.tree_size,
        start,
        end,
        header.exported_at,
        export.source,
        len(entries),
        sections,
    )


class _Buckets:
    """The period cut into days (or months, for a long period), as chart categories."""

    def __init__(self, start: date, end: date) -> None:
        self.monthly = (end - start).days + 1 > _DAILY_LIMIT
        labels: list[str] = []
        day = start
        while day <= end:
            label = self.label(day)
            if not labels or labels[-1] != label:
                labels.append(label)
            day += timedelta(days=1)
        self.labels = tuple(labels)

    def label(self, when: date) -> str:
        return when.strftime("%Y-%m") if self.monthly else when.isoformat()

    def of(self, entry: LedgerEntry) -> str:
        return self.label(entry.time.astimezone(UTC).date())


# -- sections -----------------------------------------------------------------------------


def _decisions(entries: Sequence[LedgerEntry], buckets: _Buckets) -> ReportSection:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        if entry.type == "authz.decision":
            effect = "allowed" if entry.payload.get("effect") == "allow" else "denied"
            counts[buckets.of(entry)][effect] += 1
        elif entry.type == "pipeline.decision":
            counts[buckets.of(entry)]["jobs"] += 1
    names = (("allowed", "allowed"), ("denied", "denied"), ("jobs", "jobs authorized"))
    rows = tuple(
        (label, *(str(counts[label][key]) for key, _ in names))
        for label in buckets.labels
        if label in counts
    )
    totals = {key: sum(c[key] for c in counts.values()) for key, _ in names}
    chart = Chart(
        buckets.labels,
        tuple(
            (title, tuple(float(counts[b][key]) for b in buckets.labels)) for key, title in names
        ),
        "decisions",
    )
    return ReportSection(
        "decisions",
        "Decisions over time / 决策趋势",
        f"{totals['allowed']} allowed and {totals['denied']} denied authorization decisions "
        f"(authz.decision); {totals['jobs']} compute jobs authorized (pipeline.decision).",
        ReportTable(("period", "allowed", "denied", "jobs authorized"), rows),
        chart if rows else None,
    )


def _denials(entries: Sequence[LedgerEntry]) -> ReportSection:
    reasons: Counter[str] = Counter()
    where: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        found: list[str] = []
        if entry.type == "authz.decision" and entry.payload.get("effect") != "allow":
            given = entry.payload.get("reasons")
            texts = [r for r in given if isinstance(r, str)] if isinstance(given, list) else []
            texts = [r for r in texts if not _ALLOWING.match(r)]
            found = texts or ["(no reason recorded)"]
        elif entry.type == "pipeline.job" and entry.payload.get("state") == "refused":
            found = [f"job refused: {_text(entry.payload, 'reason') or '(no reason recorded)'}"]
        for reason in found:
            reasons[reason] += 1
            where[reason].append(entry.index)
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    rows = tuple((reason, str(n), _indices(where[reason])) for reason, n in ranked)
    chart = Chart(
        tuple(_short(reason) for reason, _ in ranked),
        (("denials", tuple(float(n) for _, n in ranked)),),
        "denials",
        horizontal=True,
    )
    return ReportSection(
        "denials",
        "Denials by reason / 拒绝原因",
        f"{len({i for found in where.values() for i in found})} denials (authorization "
        "decisions denied and compute jobs refused); a denial that gave several reasons is "
        "counted under each.",
        ReportTable(("reason", "count", "ledger indices"), rows),
        chart if rows else None,
    )


def _data_use(entries: Sequence[LedgerEntry]) -> ReportSection:
    use: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        payload = entry.payload
        if entry.type == "pipeline.decision":
            for part in _mappings(payload, "participants"):
                use[_text(part, "enterprise") or "?"]["cited"] += 1
        elif entry.type == "pipeline.contribution":
            use[_text(payload, "enterprise") or entry.actor]["contributed"] += 1
        elif entry.type == "pipeline.refusal":
            use[_text(payload, "enterprise") or entry.actor]["refused"] += 1
        elif entry.type == "pipeline.result":
            for name in _texts(payload, "contributors"):
                use[name]["released"] += 1
    names = (
        ("cited", "consents used by decisions"),
        ("contributed", "contributions"),
        ("refused", "refusals"),
        ("released", "released results"),
    )
    firms = sorted(use)
    rows = tuple((firm, *(str(use[firm][key]) for key, _ in names)) for firm in firms)
    chart = Chart(
        tuple(_short(f) for f in firms),
        tuple((title, tuple(float(use[f][key]) for f in firms)) for key, title in names),
        "uses",
        horizontal=True,
    )
    return ReportSection(
        "data-use",
        "Data use per enterprise / 企业数据使用",
        f"{len(firms)} enterprises whose data was used: consents cited by decisions, "
        "contributions their agents sent, refusals, and released results they are part of.",
        ReportTable(("enterprise", *(title for _, title in names)), rows),
        chart if rows else None,
    )


def _keys(entries: Sequence[LedgerEntry]) -> ReportSection:
    ops: Counter[str] = Counter()
    jobs: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        if entry.type.startswith("mpc.key."):
            ops[entry.type] += 1
            job = _text(entry.payload, "job_id")
            if job is not None:
                jobs[entry.type].add(job)
    kinds = sorted(ops)
    rows = tuple((kind, str(ops[kind]), str(len(jobs[kind]))) for kind in kinds)
    chart = Chart(
        tuple(k.removeprefix("mpc.key.") for k in kinds),
        (("operations", tuple(float(ops[k]) for k in kinds)),),
        "operations",
    )
    return ReportSection(
        "keys",
        "Key operations / 密钥操作",
        f"{sum(ops.values())} key operations by the key custodian (mpc.key.*): keys "
        "generated, aggregates decrypted, keys destroyed.",
        ReportTable(("operation", "count", "jobs"), rows),
        chart if rows else None,
    )


def _certificates(entries: Sequence[LedgerEntry], buckets: _Buckets) -> ReportSection:
    per_type: Counter[str] = Counter()
    certs: Counter[str] = Counter()
    timeline: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        if entry.type in _ISSUED:
            n = 1
            timeline[buckets.of(entry)]["issued"] += n
        elif entry.type in _REVOKED:
            line = entry.payload.get("line") or entry.payload.get("serials")
            n = len(line) if isinstance(line, list) and line else 1
            timeline[buckets.of(entry)]["revoked"] += n
        else:
            continue
        per_type[entry.type] += 1
        certs[entry.type] += n
    kinds = [k for k in (*_ISSUED, *_REVOKED) if k in per_type]
    rows = tuple((k, str(per_type[k]), str(certs[k])) for k in kinds)
    chart = Chart(
        buckets.labels,
        tuple(
            (name, tuple(float(timeline[b][name]) for b in buckets.labels))
            for name in ("issued", "revoked")
        ),
        "certificates",
    )
    issued = sum(certs[k] for k in _ISSUED)
    revoked = sum(certs[k] for k in _REVOKED)
    return ReportSection(
        "certificates",
        "Certificates issued and revoked / 证书签发与吊销",
        f"{issued} certificates issued or renewed (edge devices, servers, administrators) "
        f"and {revoked} revoked.",
        ReportTable(("entry type", "entries", "certificates"), rows),
        chart if rows else None,
    )


def _alerts(entries: Sequence[LedgerEntry]) -> ReportSection:
    alerts = [e for e in entries if e.type == "audit.alert"]
    rows = tuple(
        (
            str(e.index),
            format_rfc3339(e.time),
            _text(e.payload, "rule") or "?",
            _text(e.payload, "severity") or "?",
            _text(e.payload, "subject") or "",
            _text(e.payload, "message") or "",
        )
        for e in alerts
    )
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for e in alerts:
        by_rule[_text(e.payload, "rule") or "?"][_text(e.payload, "severity") or "?"] += 1
    rules = sorted(by_rule)
    severities = sorted({s for c in by_rule.values() for s in c})
    chart = Chart(
        tuple(_short(r) for r in rules),
        tuple((s, tuple(float(by_rule[r][s]) for r in rules)) for s in severities),
        "alerts",
        horizontal=True,
    )
    return ReportSection(
        "alerts",
        "Alerts / 风险告警",
        f"{len(alerts)} alerts recorded on the ledger (audit.alert).",
        ReportTable(("index", "time", "rule", "severity", "subject", "message"), rows),
        chart if rows else None,
    )


# -- HTML and SVG -------------------------------------------------------------------------


def _section_html(section: ReportSection) -> str:
    parts = [f'<section id="{section.key}">', f"<h2>{_e(section.title)}</h2>"]
    if section.empty:
        parts.append(f'<p class="none">{_e(NONE_IN_PERIOD)}</p>')
    else:
        parts.append(f'<p class="summary">{_e(section.summary)}</p>')
        if section.chart is not None:
            parts.append(f'<figure class="chart">{_svg(section.chart, section.key)}</figure>')
        if section.table is not None:
            parts.append(_table_html(section.table, "data"))
    parts.append("</section>")
    return "\n".join(parts)


def _table_html(table: ReportTable, css: str, *, header: bool = True) -> str:
    head = ""
    if header:
        head = "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in table.columns) + "</tr></thead>"
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    return f'<table class="{css}">{head}<tbody>{body}</tbody></table>'


_SVG_START = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^")]+)')


def _svg(chart: Chart, key: str) -> str:
    """The chart drawn by matplotlib as SVG text, ready to inline (ids prefixed by ``key``)."""
    import matplotlib  # noqa: PLC0415 -- loaded only when a report is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415 -- no pyplot: no GUI, no state

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": f"ibx-report-{key}",
            "text.parse_math": False,
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        rows = max(len(chart.categories), 1)
        height = min(1.6 + 0.2 * rows * max(len(chart.series), 1), 9.0) if chart.horizontal else 3.4
        figure = Figure(figsize=(7.5, height), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        _bars(axes, chart)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = _METADATA.sub("", _SVG_START.sub("", out.getvalue(), count=1))
    text = _ID.sub(lambda m: f'id="{key}-{m.group(1)}"', text)
    return _REF.sub(lambda m: f"{m.group(1)}{key}-{m.group(2)}", text).strip()


def _bars(axes: Axes, chart: Chart) -> None:
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 -- as in _svg

    count = max(len(chart.series), 1)
    width = 0.8 / count
    positions = range(len(chart.categories))
    for number, (name, values) in enumerate(chart.series):
        offset = [p - 0.4 + width * (number + 0.5) for p in positions]
        colour = _COLOURS[number % len(_COLOURS)]
        if chart.horizontal:
            axes.barh(offset, values, height=width, label=name, color=colour)
        else:
            axes.bar(offset, values, width=width, label=name, color=colour)
    ticks, labels = list(positions), list(chart.categories)
    step = max(1, len(labels) // 15)
    if chart.horizontal:
        axes.set_yticks(ticks, labels)
        axes.invert_yaxis()
        axes.set_xlabel(chart.value_label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.set_xticks(ticks[::step], labels[::step], rotation=45 if len(labels) > 4 else 0,
                        ha="right" if len(labels) > 4 else "center")  # fmt: skip
        axes.set_ylabel(chart.value_label)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(chart.series) > 1:
        axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _short(text: str) -> str:
    return text if len(text) <= _LABEL else text[: _LABEL - 1] + "…"


def _indices(indices: Sequence[int]) -> str:
    shown = ", ".join(f"#{i}" for i in indices[:8])
    return shown + (f" and {len(indices) - 8} more" if len(indices) > 8 else "")


def _text(payload: Mapping[str, JsonValue], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def _texts(payload: Mapping[str, JsonValue], key: str) -> tuple[str, ...]:
    value = payload.get(key)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _mappings(payload: Mapping[str, JsonValue], key: str) -> tuple[Mapping[str, JsonValue], ...]:
    value = payload.get(key)
    return tuple(v for v in value if isinstance(v, Mapping)) if isinstance(value, list) else ()


_CSS: Final = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
       "Microsoft YaHei", sans-serif; margin: 2rem auto; max-width: 1000px; padding: 0 1rem;
       color: #1c2733; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .5rem; }
h2 { font-size: 1.2rem; border-bottom: 2px solid #2f6db3; padding-bottom: .2rem;
     margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #c9d3de; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef3f8; }
table.data td { overflow-wrap: anywhere; }
table.meta td:first-child { font-weight: 600; background: #f6f8fa; }
.note { font-size: .85rem; color: #51606f; }
.none { font-style: italic; color: #51606f; }
nav ul { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; padding: 0; list-style: none; }
figure.chart { margin: .6rem 0; }
figure.chart svg { max-width: 100%; height: auto; }
code { background: #f1f3f5; padding: 0 .2rem; }
"""
