"""Header detection: find the header row among the first rows and bind columns to fields.

Offices' exports put a title row (“XX区市场监督管理局行政处罚信息公示表”), blank rows and
sometimes a two-row header with merged cells above the data. The header is the row that names
the most contract fields; on a tie the later row wins, because data starts below the last
header row. Columns left unbound in that row may take their name from the header rows just
above it (a merged group title over sub-columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etl.checks.codes import column_letter, message
from etl.contracts import Alias, Contract
from etl.errors import InputFileError
from etl.text import normalise_header

HEADER_SEARCH_ROWS = 20
MIN_HEADER_MATCHES = 2


@dataclass(frozen=True)
class Binding:
    """A file column bound to a contract field through one of its aliases."""

    column: int  # 0-based position in the file
    field: str
    alias: Alias
    header: str  # the header text as written


@dataclass
class HeaderMap:
    """Where the header is and what each column means."""

    row_index: int  # 0-based index of the (last) header row among the rows read
    bindings: list[Binding]
    unknown: list[tuple[int, str]] = field(default_factory=list)  # (column, header text)
    width: int = 0

    def by_field(self) -> dict[str, Binding]:
        return {b.field: b for b in self.bindings}

    def describe_unknown(self) -> str:
        return "、".join(f"{column_letter(c)} 列「{h}」" for c, h in self.unknown)


def _matches(row: list[str], index: dict[str, tuple[str, Alias]]) -> dict[int, tuple[str, Alias]]:
    found: dict[int, tuple[str, Alias]] = {}
    for col, cell in enumerate(row):
        hit = index.get(normalise_header(cell)) if cell else None
        if hit is not None:
            found[col] = hit
    return found


def find_header(rows: list[list[str]], contract: Contract) -> HeaderMap:
    """Bind the columns of `rows` (the first rows of a file, as text) to contract fields.

    Raises InputFileError for a missing header, a missing required column or two columns
    that claim the same field.
    """
    index = contract.header_index()
    scored = [(len({f for f, _ in _matches(r, index).values()}), i) for i, r in enumerate(rows)]
    best_score, best = max(scored, default=(0, -1), key=lambda t: (t[0], t[1]))
    if best_score < MIN_HEADER_MATCHES:
        raise InputFileError(
            message("E_HEADER_NOT_FOUND", limit=HEADER_SEARCH_ROWS), code="E_HEADER_NOT_FOUND"
        )
    band = [best]
    while band[-1] > 0 and scored[band[-1] - 1][0] > 0:
        band.append(band[-1] - 1)

    width = max(len(r) for r in rows[: best + 1])
    header_row = rows[best] + [""] * (width - len(rows[best]))
    claims: dict[str, list[int]] = {}
    chosen: dict[int, tuple[str, Alias, str]] = {}
    for i in band:  # the header row first, then the rows above it
        taken = {name for name, _, _ in chosen.values()}
        for col, (name, alias) in _matches(rows[i], index).items():
            # Rows above only name columns the header row left unnamed, and only with fields
            # not yet bound (a merged group title spans several sub-columns).
            if col in chosen or (i != best and (header_row[col].strip() or name in taken)):
                continue
            chosen[col] = (name, alias, rows[i][col])
    for col, (name, _, _) in chosen.items():
        claims.setdefault(name, []).append(col)
    titles = contract.titles()
    for name, cols in claims.items():
        if len(cols) > 1:
            raise InputFileError(
                message(
                    "E_DUPLICATE_COLUMN",
                    field=titles[name],
                    columns="、".join(column_letter(c) for c in sorted(cols)),
                ),
                code="E_DUPLICATE_COLUMN",
            )
    missing = [f.title for f in contract.fields if f.required and f.name not in claims]
    if missing:
        raise InputFileError(
            message("E_MISSING_COLUMN", columns="、".join(f"「{t}」" for t in missing)),
            code="E_MISSING_COLUMN",
        )
    bindings = [Binding(col, n, a, h) for col, (n, a, h) in sorted(chosen.items())]
    unknown = [
        (col, text.strip())
        for col, text in enumerate(header_row)
        if col not in chosen and text.strip()
    ]
    return HeaderMap(row_index=best, bindings=bindings, unknown=unknown, width=width)
