"""Office receipts: what was accepted, and for each rejected row what to fix.

Written as CSV (UTF-8 with BOM so Excel opens it; formula-leading cells neutralised), a small
HTML page for people, and JSON for machines. The pipeline calls `write_receipt` with
`outbox/<office_id>/`; `creditpipe check --receipt-dir` does the same for a single file.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from etl import settings
from etl.check import CheckResult
from etl.fsutil import atomic_write_text, atomic_writer

HTML_ROW_LIMIT = 2000
CSV_HEADER = ["行号", "字段", "错误代码", "说明", "原值"]
_FORMULA_LEAD = r"^([=+\-@\t\r])"


@dataclass(frozen=True)
class ReceiptPaths:
    csv: Path
    html: Path
    json: Path


def neutralise_formulas(values: pd.Series) -> pd.Series:
    """Prefix cells that a spreadsheet would run as a formula (= + - @, tab, CR) with '."""
    return values.astype("str").str.replace(_FORMULA_LEAD, r"'\1", regex=True)


NAME_LIMIT = 150  # UTF-8 bytes of the original name kept in a receipt's file name (max 255)


def receipt_stem(result: CheckResult, tag: str = "") -> str:
    """`<original name>.<sha256[:12]>[.<tag>].receipt`: unique per content (and per `tag`, e.g.
    a duplicate drop's own receipt), readable by a clerk, and always a valid file name."""
    name = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in Path(result.file).name)
    parts = [name.encode("utf-8", "replace")[:NAME_LIMIT].decode("utf-8", "ignore")]
    if result.sha256:
        parts.append(result.sha256[:12])
    if tag:
        parts.append(tag)
    return ".".join([*parts, "receipt"])


def receipt_context(result: CheckResult, **extra: Any) -> dict[str, Any]:
    """What a JSON receipt keeps besides the `check --json` object (it follows its keys)."""
    return {
        "contract": result.contract,
        "office": result.office,
        "size": result.size,
        "blank_rows": result.blank_rows,
        "header_row": result.header_row,
        "quality": result.quality,
        "generated_at": datetime.now(settings.SHANGHAI).isoformat(timespec="seconds"),
        **extra,
    }


def write_receipt(
    result: CheckResult, outdir: Path, *, tag: str = "", **extra: Any
) -> ReceiptPaths:
    """Write the CSV, HTML and JSON receipt of `result` into `outdir` (atomically).

    The CSV and JSON are written a batch of rejections at a time (`_CSV_BATCH`,
    `CheckResult.write_json`): the same bytes as in one piece, without holding every rejection
    as Python objects and text at once (116,000 rejected rows: ~200 MB more at the end of a
    5,000,000-row load)."""
    stem = receipt_stem(result, tag)
    paths = ReceiptPaths(outdir / f"{stem}.csv", outdir / f"{stem}.html", outdir / f"{stem}.json")
    with atomic_writer(paths.csv) as fh:
        for piece in _csv_pieces(result):
            fh.write(piece.encode("utf-8"))
    atomic_write_text(paths.html, _html(result))
    with atomic_writer(paths.json) as fh:
        result.write_json(
            lambda text: fh.write(text.encode("utf-8")),
            indent=2,
            extra=receipt_context(result, **extra),
        )
        fh.write(b"\n")
    return paths


_CSV_BATCH = 20_000  # rejections per piece of the CSV receipt


def _csv_pieces(result: CheckResult) -> Iterator[str]:
    notices = [("（文件）", "", n.code, n.message, "") for n in result.file_errors]
    notices += [("（提示）", "", n.code, n.message, "") for n in result.warnings]
    yield "\ufeff"
    yield _csv_text(pd.DataFrame(notices, columns=CSV_HEADER), header=True)
    rej = result.rejections
    for start in range(0, len(rej), _CSV_BATCH):
        yield _csv_text(rejection_table(rej.iloc[start : start + _CSV_BATCH]), header=False)


def rejection_table(rejections: pd.DataFrame) -> pd.DataFrame:
    """Rejections under the receipt's column titles (`CSV_HEADER`)."""
    return pd.DataFrame(
        {
            "行号": rejections["row"].astype("str"),
            "字段": rejections["field"],
            "错误代码": rejections["code"],
            "说明": rejections["message"],
            "原值": rejections["value"],
        }
    )


def _csv_text(table: pd.DataFrame, *, header: bool) -> str:
    table = table.apply(neutralise_formulas) if len(table) else table
    return str(table.to_csv(index=False, header=header, lineterminator="\r\n"))


def summary_lines(result: CheckResult) -> list[str]:
    """The receipt's summary in Chinese (also printed by `creditpipe check`)."""
    if any(n.code == "W_DUPLICATE_FILE" for n in result.warnings):
        status = "重复报送（内容与已处理的文件相同，未再次入库）"
    elif result.file_errors:
        status = "文件被拒收"
    else:
        status = "全部通过" if result.ok else "部分行被拒绝"
    lines = [
        f"文件：{Path(result.file).name}",
        f"数据集：{result.dataset}（{result.contract}）"
        + (f"　报送机构：{result.office}" if result.office else ""),
        f"结果：{status}",
    ]
    if result.sha256:
        lines.append(
            f"编码：{result.encoding}　大小：{result.size:,} 字节　SHA-256：{result.sha256}"
        )
    if not result.file_errors and result.header_row is not None:
        lines.append(
            f"读取 {result.rows_read:,} 行（表头在第 {result.header_row} 行，另有空行 {result.blank_rows:,} 行已忽略）："
            f"接受 {result.accepted:,} 行，拒绝 {result.rejected:,} 行"
        )
    return lines


def _html(result: CheckResult) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>数据报送回执 — {esc(Path(result.file).name)}</title>",
        "<style>body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;margin:2em;}"
        "table{border-collapse:collapse;}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;}"
        "th{background:#f3f3f3;}.err{color:#b00020;}.warn{color:#8a6d00;}.ok{color:#116611;}</style>",
        "</head><body><h1>数据报送回执</h1>",
    ]
    parts += [f"<p>{esc(line)}</p>" for line in summary_lines(result)]
    for notice in result.file_errors:
        parts.append(f"<p class='err'>[{esc(notice.code)}] {esc(notice.message)}</p>")
    for notice in result.warnings:
        parts.append(f"<p class='warn'>[{esc(notice.code)}] {esc(notice.message)}</p>")
    rej = result.rejections
    if rej.empty and not result.file_errors:
        parts.append("<p class='ok'>所有数据行均已通过校验。</p>")
    elif not rej.empty:
        shown = rej.head(HTML_ROW_LIMIT)
        parts.append(f"<h2>被拒绝的行（{result.rejected:,} 行，{len(rej):,} 个问题）</h2>")
        if len(rej) > HTML_ROW_LIMIT:
            parts.append(
                f"<p>此处只列出前 {HTML_ROW_LIMIT:,} 个问题，完整清单见同名 CSV 回执。</p>"
            )
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in CSV_HEADER) + "</tr>")
        for row, field, code, msg, value in shown.itertuples(index=False):
            cells = (str(row), field, code, msg, value)
            parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)
