"""The 非正常专利申请 withdrawal-rate report, per district and for the city.

The definition is our own (SPEC.md §6 [OURS]: no public formula was found) and is printed with
every output: for the notices whose 通知日期 falls in the period, in their state as of the run
date (the overdue rule applied),

    撤回率 = 已撤回 ÷ (通知总数 − 申诉成立)

with pending (待处理 + 申诉中) and overdue shown separately. The city average pools every
district's counts (it is not a mean of district rates). A district with no eligible notice has
no rate ("—"), never a division by zero.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from etl import settings
from etl.contracts import Contract, load_contract
from etl.fsutil import atomic_write_bytes, atomic_write_text
from etl.store.query import state_as_of

DATASET = "abnormal_patent"
CITY = "310000"
DEFINITION = (
    "撤回率 = 已撤回 ÷（通知总数 − 申诉成立）。统计范围：通知日期在统计期间内的非正常专利申请，"
    "按截至统计日的最新处理状态计（通知之日起 2 个月内仍待处理的按“逾期未处理”计）；"
    "待处理、申诉中的单列为“处理中”。全市平均按各区合计数计算（不是各区撤回率的平均）。"
    "该口径为本系统自定（SPEC.md §6 [OURS]），无公开的官方计算公式。"
)
COUNTS = ["notified", "withdrawn", "upheld", "rejected", "pending", "overdue"]
TITLES = {
    "district": "区划代码",
    "name": "区",
    "notified": "通知总数",
    "withdrawn": "已撤回",
    "upheld": "申诉成立",
    "rejected": "申诉驳回",
    "pending": "处理中（待处理+申诉中）",
    "overdue": "逾期未处理",
    "eligible": "应撤回基数",
    "rate": "撤回率",
    "versus_city": "与全市平均比较",
}
_STATUS_COUNTS = {
    "已撤回": "withdrawn",
    "申诉成立": "upheld",
    "申诉驳回": "rejected",
    "待处理": "pending",
    "申诉中": "pending",
    "逾期未处理": "overdue",
}


@dataclass
class WithdrawalReport:
    start: date
    end: date
    as_of: date
    table: pd.DataFrame  # one row per district, then the city; columns as TITLES

    @property
    def city(self) -> pd.Series:
        return self.table.iloc[-1]

    def to_json(self) -> dict[str, Any]:
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict("records")
        return {
            "report": "withdrawal-rate",
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "as_of": self.as_of.isoformat(),
            "definition": DEFINITION,
            "columns": TITLES,
            "rows": rows,
        }


def district_names(contract: Contract) -> dict[str, str]:
    """District code → its name as staff write it (静安区), from the contract's look-up."""
    names = {}
    for code, variants in contract.lookups.get("district", {}).items():
        names[code] = next((v for v in variants if v.endswith("区")), variants[0])
    return names


def compute(counts: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """The report table from per-district counts (columns COUNTS, index district codes)."""
    table = counts.reindex(list(names)).fillna(0).astype("int64")
    table.loc[CITY] = table.sum()
    table["eligible"] = table["notified"] - table["upheld"]
    table["rate"] = (table["withdrawn"] / table["eligible"].where(table["eligible"] > 0)).round(6)
    city_rate: Any = table.loc[CITY, "rate"]
    versus = pd.Series("—", index=table.index, dtype="str")
    if pd.notna(city_rate):
        rate = table["rate"]
        versus[rate > city_rate] = "高于全市平均"
        versus[rate < city_rate] = "低于全市平均"
        versus[rate == city_rate] = "等于全市平均"
    versus[CITY] = "（全市平均）"
    table["versus_city"] = versus
    table.insert(0, "name", [names.get(c, "全市") for c in table.index])
    table.index.name = "district"
    return table.reset_index()[list(TITLES)]


def withdrawal_rate(conn: Connection, start: date, end: date, as_of: date) -> WithdrawalReport:
    """Count the as-of state in chunks (memory stays flat) and compute the table."""
    contract = load_contract(DATASET)
    parts = []
    for chunk in state_as_of(conn, DATASET, as_of):
        notice = chunk["notice_date"]
        chunk = chunk[(notice >= pd.Timestamp(start)) & (notice <= pd.Timestamp(end))]
        kind = chunk["handling_status"].map(_STATUS_COUNTS)
        counted = pd.crosstab(chunk["district"], kind).reindex(columns=COUNTS[1:], fill_value=0)
        counted.insert(0, "notified", chunk.groupby("district").size())
        parts.append(counted)
    counts = (
        pd.concat(parts).groupby(level=0).sum()
        if parts
        else pd.DataFrame(columns=COUNTS, dtype="int64")
    )
    return WithdrawalReport(start, end, as_of, compute(counts, district_names(contract)))


def format_rate(rate: float | None) -> str:
    return "—" if rate is None or pd.isna(rate) else f"{rate * 100:.1f}%"


def display_table(report: WithdrawalReport) -> pd.DataFrame:
    """The table as staff read it: Chinese headers, rates as percentages."""
    shown = report.table.copy()
    shown["rate"] = shown["rate"].map(format_rate)
    return shown.rename(columns=TITLES)


@dataclass(frozen=True)
class ReportPaths:
    csv: Path
    json: Path
    html: Path


def write_report(report: WithdrawalReport, outdir: Path) -> ReportPaths:
    """CSV (UTF-8 with BOM), JSON and an HTML page with a bar chart, written atomically."""
    stem = f"withdrawal-rate_{report.start}_{report.end}_as-of-{report.as_of}"
    paths = ReportPaths(outdir / f"{stem}.csv", outdir / f"{stem}.json", outdir / f"{stem}.html")
    csv_text = display_table(report).to_csv(index=False, lineterminator="\r\n")
    atomic_write_bytes(paths.csv, csv_text.encode("utf-8-sig"))
    body = report.to_json() | {
        "generated_at": datetime.now(settings.SHANGHAI).isoformat(timespec="seconds")
    }
    atomic_write_text(paths.json, json.dumps(body, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(paths.html, _html(report))
    return paths


def _html(report: WithdrawalReport) -> str:
    esc = html.escape
    shown = display_table(report)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False)
    )
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>非正常专利申请撤回率 {report.start} 至 {report.end}</title>"
        "<style>body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:2em;}"
        "table{border-collapse:collapse;margin-top:1em;}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right;}th{background:#f3f3f3;}"
        ".def{max-width:60em;color:#444;}</style></head><body>"
        f"<h1>非正常专利申请撤回率</h1><p>统计期间（通知日期）：{report.start} 至 {report.end}；"
        f"状态截至：{report.as_of}</p><p class='def'>口径：{esc(DEFINITION)}</p>"
        f"{_chart(report)}<table><tr>{head}</tr>{rows}</table></body></html>\n"
    )


def _chart(report: WithdrawalReport) -> str:
    """An inline SVG bar chart: one bar per district, a dashed line at the city average."""
    districts = report.table.iloc[:-1]
    city: Any = report.city["rate"]
    width, height, left, bottom, bar = 760, 320, 50, 60, 36
    plot = height - bottom - 20
    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='各区撤回率'>"]
    for tick in (0, 25, 50, 75, 100):
        y = 20 + plot * (1 - tick / 100)
        parts.append(
            f"<line x1='{left}' x2='{width - 10}' y1='{y:.0f}' y2='{y:.0f}' stroke='#eee'/>"
            f"<text x='{left - 6}' y='{y + 4:.0f}' font-size='11' text-anchor='end'>{tick}%</text>"
        )
    row: Any
    for i, row in enumerate(districts.itertuples(index=False)):
        x = left + 8 + i * (bar + 6)
        label = f"<text x='{x + bar / 2:.0f}' y='{height - bottom + 16}' font-size='11' "
        label += f"text-anchor='middle'>{html.escape(str(row.name))}</text>"
        parts.append(label)
        if pd.isna(row.rate):
            parts.append(
                f"<text x='{x + bar / 2:.0f}' y='{20 + plot - 4}' font-size='11' "
                "text-anchor='middle' fill='#999'>—</text>"
            )
            continue
        h = plot * float(row.rate)
        colour = "#2e7d32" if pd.notna(city) and row.rate >= city else "#c62828"
        parts.append(
            f"<rect x='{x}' y='{20 + plot - h:.1f}' width='{bar}' height='{h:.1f}' "
            f"fill='{colour}'><title>{html.escape(str(row.name))} {format_rate(row.rate)}"
            "</title></rect>"
        )
    if pd.notna(city):
        y = 20 + plot * (1 - float(city))
        parts.append(
            f"<line x1='{left}' x2='{width - 10}' y1='{y:.1f}' y2='{y:.1f}' stroke='#1565c0' "
            f"stroke-dasharray='6 4'/><text x='{width - 12}' y='{y - 4:.1f}' font-size='12' "
            f"text-anchor='end' fill='#1565c0'>全市平均 {format_rate(city)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
