"""Seeded generator of realistic penalty files, for benchmarks and demonstrations.

Real-shaped names, valid USCCs and resident ID numbers (check characters computed), mixed date
and amount forms as offices write them, and a chosen share of bad rows with known defects.
Vectorised with numpy and written in chunks, so generating 10 million rows needs little memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from etl.checks.identifiers import USCC_ALPHABET, id_check_char, uscc_check_char
from etl.contracts import load_contract
from etl.errors import CreditpipeError

CHUNK = 200_000
DISTRICTS = [
    "310101",
    "310104",
    "310105",
    "310106",
    "310107",
    "310109",
    "310110",
    "310112",
    "310113",
    "310114",
    "310115",
    "310116",
    "310117",
    "310118",
    "310120",
    "310151",
]
AUTHORITY = ("上海市静安区市场监督管理局", "11310106MB2F00001B")
_PLACES = ["静安", "杨浦", "浦东", "徐汇", "长宁", "普陀", "虹口", "黄浦", "闵行", "宝山"]
_WORDS = [
    "华信",
    "申通",
    "恒达",
    "瑞丰",
    "鼎盛",
    "新锐",
    "佳禾",
    "远航",
    "明德",
    "正源",
    "博雅",
    "汇通",
    "联创",
    "天成",
    "嘉禾",
    "中科",
    "盛世",
    "金桥",
    "海纳",
    "同舟",
]
_TRADES = ["贸易", "科技", "商贸", "电子", "餐饮", "服饰", "医药", "文化传媒", "信息技术", "建材"]
_FORMS = ["有限公司", "有限责任公司", "股份有限公司", "商行", "经营部"]
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚")
_VIOLATIONS = [
    "侵犯注册商标专用权",
    "假冒专利",
    "销售侵犯注册商标专用权的商品",
    "虚假宣传",
    "无照经营",
    "销售不合格产品",
    "违反价格管理规定",
    "未按规定公示年度报告",
]
_CATEGORIES = [
    "罚款",
    "警告",
    "罚款;没收违法所得",
    "没收违法所得、没收非法财物",
    "警告、罚款",
    "罚款;没收非法财物",
    "通报批评",
]


def _pick(rng: np.random.Generator, options: list[str], n: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


def _usccs(rng: np.random.Generator, n: int) -> pd.Series:
    alphabet = np.array(list(USCC_ALPHABET))
    head = np.char.add(
        np.where(rng.random(n) < 0.9, "91", "92"), _pick(rng, DISTRICTS, n).astype(str)
    )
    body = alphabet[rng.integers(0, len(alphabet), (n, 9))]
    bodies = pd.Series(np.char.add(head, ["".join(r) for r in body]), dtype="str")
    return bodies + uscc_check_char(bodies)


def _resident_ids(rng: np.random.Generator, n: int) -> pd.Series:
    birth = pd.Timestamp("1960-01-01") + pd.to_timedelta(rng.integers(0, 15000, n), unit="D")
    serial = pd.Series(rng.integers(0, 1000, n)).astype(str).str.zfill(3)
    body = (
        pd.Series(_pick(rng, DISTRICTS, n), dtype="str")
        + pd.Series(birth.strftime("%Y%m%d"), dtype="str")
        + serial.astype("str")
    )
    return body + id_check_char(body)


def _dates(rng: np.random.Generator, days: pd.DatetimeIndex) -> pd.Series:
    """The same dates written the ways offices write them."""
    form = rng.integers(0, 5, len(days))
    iso = pd.Series(days.strftime("%Y-%m-%d"), dtype="str")
    slash = pd.Series(days.strftime("%Y/%-m/%-d"), dtype="str")
    chinese = pd.Series(days.strftime("%Y年%-m月%-d日"), dtype="str")
    compact = pd.Series(days.strftime("%Y%m%d"), dtype="str")
    timed = pd.Series(days.strftime("%Y-%m-%d 00:00:00"), dtype="str")
    return iso.where(
        form == 0, slash.where(form == 1, chinese.where(form == 2, compact.where(form == 3, timed)))
    )


def penalty_frame(rng: np.random.Generator, start: int, n: int, error_rate: float) -> pd.DataFrame:
    """`n` penalty rows (Chinese headers), row ids from `start`; a share of them defective."""
    person = rng.random(n) < 0.15
    company = (
        pd.Series(_pick(rng, _PLACES, n), dtype="str")
        + _pick(rng, _WORDS, n)
        + _pick(rng, _TRADES, n)
        + _pick(rng, _FORMS, n)
    )
    people = (
        pd.Series(_pick(rng, _SURNAMES, n), dtype="str")
        + _pick(rng, _GIVEN, n)
        + _pick(rng, _GIVEN, n)
    )
    decided = pd.Timestamp("2025-11-01") - pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    decided = pd.DatetimeIndex(decided)
    categories = pd.Series(_pick(rng, _CATEGORIES, n), dtype="str")
    fines = rng.integers(1, 500, n) * 100
    amount_form = rng.integers(0, 3, n)
    fine_text = np.where(
        amount_form == 0,
        (fines / 10000).astype(str),
        np.where(
            amount_form == 1,
            np.char.add(fines.astype(str), "元"),
            np.char.add((fines / 10000).astype(str), "万元"),
        ),
    )
    has_fine = categories.str.contains("罚款").to_numpy()
    has_confiscation = categories.str.contains("没收").to_numpy()
    ids = np.arange(start, start + n)
    frame = pd.DataFrame(
        {
            "行政相对人名称": people.where(person, company),
            "行政相对人类别": np.where(person, "自然人", "法人及非法人组织"),
            "统一社会信用代码": _usccs(rng, n).where(~person, ""),
            "法定代表人": people.where(~person, ""),
            "证件类型": np.where(person, "身份证", ""),
            "证件号码": _resident_ids(rng, n).where(person, ""),
            "行政处罚决定书文号": pd.Series(ids.astype(str), dtype="str")
            .radd("沪静市监处〔2025〕")
            .add("号"),
            "违法行为类型": _pick(rng, _VIOLATIONS, n),
            "违法事实": "经查，当事人"
            + pd.Series(_pick(rng, _VIOLATIONS, n), dtype="str")
            + "，事实清楚，证据确凿。",
            "处罚依据": "《中华人民共和国商标法》第六十条第二款",
            "处罚类别": categories,
            "处罚内容": "罚款人民币" + pd.Series(fines.astype(str), dtype="str") + "元",
            "罚款金额（万元）": np.where(has_fine, fine_text, ""),
            "没收违法所得、没收非法财物的金额（万元）": np.where(has_confiscation, "0.05", ""),
            "处罚决定日期": _dates(rng, decided),
            "处罚有效期": _dates(rng, decided + pd.Timedelta(days=1095)),
            "处罚机关": AUTHORITY[0],
            "处罚机关统一社会信用代码": AUTHORITY[1],
            "数据来源单位": AUTHORITY[0],
            "数据来源单位统一社会信用代码": AUTHORITY[1],
            "备注": "",
        }
    )
    bad = np.flatnonzero(rng.random(n) < error_rate)
    kinds = rng.integers(0, 6, len(bad))
    for kind, column, value in [
        (0, "统一社会信用代码", "91310106MA1FL0000X"),  # wrong check character
        (1, "行政相对人名称", ""),  # missing required
        (2, "处罚决定日期", "2023年13月45日"),  # not a date
        (3, "罚款金额（万元）", "约5千"),  # not an amount
        (4, "处罚类别", "罚款;拘役"),  # unknown category
    ]:
        rows = frame.index[bad[kinds == kind]]
        frame.loc[rows, column] = value
        if kind == 0:
            frame.loc[rows, "行政相对人类别"] = "法人及非法人组织"
    dup_rows = bad[kinds == 5]  # repeat the previous row's decision number
    numbers = frame["行政处罚决定书文号"].to_numpy()
    frame.loc[frame.index[dup_rows], "行政处罚决定书文号"] = numbers[np.maximum(dup_rows - 1, 0)]
    return frame


def generate_file(
    dataset: str,
    rows: int,
    out: Path,
    *,
    seed: int = 42,
    error_rate: float = 0.02,
    encoding: str = "utf-8",
) -> int:
    """Write `rows` generated rows of `dataset` to `out` (CSV); returns the rows written."""
    load_contract(dataset)  # an unknown dataset fails with the contract's message
    if dataset != "penalty":
        raise CreditpipeError(f"暂不支持生成 {dataset} 数据（可用：penalty）")
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding=encoding, newline="") as fh:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            frame = penalty_frame(rng, start, n, error_rate)
            frame.to_csv(fh, index=False, header=start == 0, lineterminator="\r\n")
            written += n
    return written
