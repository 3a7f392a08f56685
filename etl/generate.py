"""Seeded generator of realistic penalty and abnormal-patent files, for benchmarks and demos.

Real-shaped names, valid USCCs, resident ID numbers and patent application numbers (check
characters computed), dates and amounts written the ways offices write them, and a chosen share
of bad rows with known defects. Each chunk also lists the rejections the checker must report, so
a test can tell an injected defect from a generator bug.

Subjects come from pools, about one per four rows (patent agencies one per fifty), each with a
log-normal activity weight: many subjects appear once or twice and a few dozens of times, so the
repeat-offence rules (schemas/policy/serious_dishonesty.v1.yaml) flag a minority. A subject keeps
its name and identifiers throughout a file, and no two subjects share an identifier.

Vectorised: per-row work is array arithmetic, takes from small tables and Arrow string joins;
Python loops run only over vocabularies, distinct days and distinct type combinations. Rows are
made and written in chunks of CHUNK, so memory is the pools plus one chunk. The file depends on
the seed, the row count and the error rate (and CHUNK, which is fixed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from math import prod
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.checks.identifiers import (
    USCC_ALPHABET,
    id_check_char,
    patent_check_char,
    uscc_check_char,
)
from etl.contracts import Contract, load_contract
from etl.errors import CreditpipeError

CHUNK = 50_000
DATASETS = ("penalty", "abnormal_patent")
# The latest date generated: files check clean on any business date from then on.
END = np.datetime64("2026-10-31", "D")
PENALTY_SPAN_DAYS = 3 * 365  # decisions spread over three years (SD-IP-REPEAT looks at 730 days)
NOTICE_BATCHES = 36  # monthly abnormal-patent notice batches, the last in END's month
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
# schemas/offices.yaml `sh-ipa`: the city office, which may report notices for any district.
IP_OFFICE = ("上海市知识产权局", "11310000MB2F00003M")

# Pools: rows per subject and per agency, and the spread of activity (log-normal sigma). Tuned
# so that, at 100,000 and at 1,000,000 rows, about 8% of penalised subjects meet SD-IP-REPEAT,
# 3% of applicants SD-PATENT-MASS and 19% of agencies SD-AGENCY (tests/test_generate.py keeps
# them in range). Agencies need the widest spread: one per fifty rows means ~14 notices a year
# each on average, above SD-AGENCY's 10, so only a skewed spread (and the long tail of agencies
# an applicant uses once, AGENCY_SWITCH_SHARE) leaves most of them below it.
ROWS_PER_SUBJECT = 4
ROWS_PER_AGENCY = 50
SUBJECT_SIGMA = 1.2
APPLICANT_SIGMA = 1.6
AGENCY_SIGMA = 2.5
PERSON_SHARE = 0.15
SELF_FILED_SHARE = 0.3  # applicants filing without an agency
AGENCY_SWITCH_SHARE = 0.15  # applications filed through another agency than the usual one

# fmt: off
_PLACES = [
    "黄浦", "徐汇", "长宁", "静安", "普陀", "虹口", "杨浦", "闵行", "宝山", "嘉定", "浦东", "金山", "松江", "青浦", "奉贤", "崇明",
]
_WORDS = [
    "华信", "申通", "恒达", "瑞丰", "鼎盛", "新锐", "佳禾", "远航", "明德", "正源", "博雅", "汇通", "联创", "天成", "嘉禾", "中科",
    "盛世", "金桥", "海纳", "同舟",
]
_TRADES = [
    "贸易", "科技", "商贸", "电子", "餐饮", "服饰", "医药", "文化传媒", "信息技术", "建材", "机械", "生物科技", "新材料", "实业", "物流",
]
_COMPANY_FORMS = ["有限公司", "有限责任公司", "股份有限公司", "集团有限公司"]
_SOLE_FORMS = ["商行", "经营部", "服务部", "工作室"]  # 个体工商户, same count as _COMPANY_FORMS
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚")
# CNIPA agency codes: province code (2 digits) + serial (3 digits).
_PROVINCES = {
    "11": "北京", "12": "天津", "13": "河北", "14": "山西", "15": "内蒙古", "21": "辽宁", "22": "吉林",
    "23": "黑龙江", "31": "上海", "32": "江苏", "33": "浙江", "34": "安徽", "35": "福建", "36": "江西", "37": "山东",
    "41": "河南", "42": "湖北", "43": "湖南", "44": "广东", "45": "广西", "46": "海南", "50": "重庆", "51": "四川",
    "52": "贵州", "53": "云南", "54": "西藏", "61": "陕西", "62": "甘肃", "63": "青海", "64": "宁夏", "65": "新疆",
}
_AGENCY_FORMS = ["专利代理事务所（普通合伙）", "知识产权代理有限公司", "专利代理有限公司"]
# fmt: on

# 违法行为类型, its usual legal basis, and a weight. About a quarter are IP violations (the
# policy's `ip_violation` keywords), the rest ordinary market-supervision cases.
_VIOLATIONS: list[tuple[str, str, float]] = [
    ("侵犯注册商标专用权", "《中华人民共和国商标法》第六十条第二款", 5),
    ("销售侵犯注册商标专用权的商品", "《中华人民共和国商标法》第六十条第二款", 4),
    ("假冒专利", "《中华人民共和国专利法》第六十八条", 3),
    ("专利侵权", "《中华人民共和国专利法》第六十五条", 1),
    ("侵犯商业秘密", "《中华人民共和国反不正当竞争法》第二十一条", 1),
    ("商业诋毁", "《中华人民共和国反不正当竞争法》第二十三条", 1),
    ("虚假宣传", "《中华人民共和国反不正当竞争法》第二十条", 15),
    ("无照经营", "《无证无照经营查处办法》第十三条", 10),
    ("销售不合格产品", "《中华人民共和国产品质量法》第五十条", 12),
    ("违反明码标价规定", "《中华人民共和国价格法》第四十二条", 10),
    ("违反食品安全规定", "《中华人民共和国食品安全法》第一百二十四条", 10),
    ("发布虚假广告", "《中华人民共和国广告法》第五十五条", 8),
]
# 处罚类别 as offices write them (legacy combined labels included), what 处罚内容 says besides a
# warning, a fine and a confiscation, and a weight. About 4% carry a 较重行政处罚 (总局令第44号 第二条).
_CATEGORIES: list[tuple[str, str, float]] = [
    ("罚款", "", 30),
    ("警告", "", 8),
    ("罚款;没收违法所得", "", 18),
    ("没收违法所得、没收非法财物", "", 6),
    ("警告、罚款", "", 10),
    ("罚款;没收非法财物", "", 10),
    ("通报批评", "通报批评", 3),
    ("罚款;没收违法所得;吊销许可证件", "吊销食品经营许可证", 1.2),
    ("罚款;责令停产停业", "责令停产停业三个月", 1.0),
    ("罚款;限制从业", "限制法定代表人三年内从事相关经营活动", 0.6),
    ("罚款;降低资质等级", "降低资质等级", 0.6),
    ("罚款;限制开展生产经营活动", "限制开展生产经营活动六个月", 0.6),
]
_PATENT_TYPES: list[tuple[str, float]] = [("1", 30), ("2", 55), ("3", 15)]  # SPEC.md §3
_USES = ["智能仓储", "新能源汽车", "医疗器械", "食品加工", "建筑施工", "纺织机械", "环境监测"]
_THINGS = ["分拣装置", "控制方法", "散热结构", "检测系统", "固定支架", "清洗设备", "连接组件"]
_DESIGNS = ["包装盒", "台灯", "手机壳", "水杯", "收纳架", "音箱", "键盘"]
# 非正常类型 (公告第411号) weights: simple combinations and implausible R&D capacity dominate.
_ABNORMAL_TYPES = [25, 10, 25, 5, 10, 8, 5, 7, 5]
# Handling status mix and the handling date's lag after the notice (days, inclusive range).
# 逾期未处理 is recorded once the [OURS] two-month window (LC-OVERDUE) has run out.
_STATUSES: list[tuple[str, float, int, int]] = [
    ("待处理", 10, 0, 0),
    ("已撤回", 55, 3, 60),
    ("申诉中", 8, 10, 60),
    ("申诉成立", 5, 40, 150),
    ("申诉驳回", 7, 40, 150),
    ("逾期未处理", 15, 62, 76),
]
_BAD_USCC = "91310106MA1FL0000X"  # well-formed, wrong check character


@dataclass(frozen=True)
class Generated:
    """One chunk of generated rows and the rejections the checker must report for it.

    `defects` has a `row` (0-based position among the file's data rows) and a `code` per
    expected rejection; a duplicated key names both rows. Every other row is valid.
    """

    frame: pd.DataFrame
    defects: pd.DataFrame


@dataclass(frozen=True)
class Pool:
    """Members (one row each) drawn in proportion to a log-normal activity weight."""

    members: pd.DataFrame
    cumulative: np.ndarray

    @classmethod
    def build(cls, rng: np.random.Generator, members: pd.DataFrame, sigma: float) -> Pool:
        # Log-normal, cut at three standard deviations: a heavy tail without one member
        # taking a large share of a big file.
        z = np.clip(rng.standard_normal(len(members)), -3.0, 3.0)
        return cls(members, np.cumsum(np.exp(sigma * z)))

    def positions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = np.searchsorted(self.cumulative, rng.random(n) * self.cumulative[-1], "right")
        return np.minimum(picks, len(self.cumulative) - 1)

    def draw(self, rng: np.random.Generator, n: int) -> pd.DataFrame:
        return self.members.take(self.positions(rng, n)).reset_index(drop=True)


# ---------------------------------------------------------------- small vectorised helpers


def _take(options: Sequence[str], idx: np.ndarray) -> pd.Series:
    return pd.Series(pd.array(list(options), dtype="str")[idx])


def _pick(rng: np.random.Generator, options: Sequence[str], n: int) -> pd.Series:
    return _take(options, rng.integers(0, len(options), n))


def _weighted(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    """Indices into `weights`, drawn in proportion to them."""
    cumulative = np.cumsum(weights)
    return np.searchsorted(cumulative, rng.random(n) * cumulative[-1], "right")


def _num(values: np.ndarray) -> pd.Series:
    """Integers as decimal text (Arrow's cast, not a Python call per value)."""
    return pd.Series(pa.array(values).cast(pa.large_string()), dtype="str")


def _wan(yuan: np.ndarray) -> pd.Series:
    """Whole yuan as exact 万元 text: 4900 → 0.49, 50000 → 5."""
    fraction = _num(yuan % 10_000).str.zfill(4).str.rstrip("0")
    return _num(yuan // 10_000) + ("." + fraction).where(fraction != "", "")


def _grouped(yuan: np.ndarray) -> pd.Series:
    """Yuan below a million with a thousands separator: 50,000."""
    return (_num(yuan // 1000) + "," + _num(yuan % 1000).str.zfill(3)).where(
        yuan >= 1000, _num(yuan)
    )


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    return (
        years.astype(np.int64) + 1970,
        (months - years).astype(np.int64) + 1,
        (days - months).astype(np.int64) + 1,
    )


def _dates(rng: np.random.Generator, days: np.ndarray) -> pd.Series:
    """The same dates (datetime64[D]) written the ways offices write them."""
    unique, inverse = np.unique(days, return_inverse=True)
    table = [
        form
        for y, m, d in zip(*_ymd(unique), strict=True)
        for form in (
            f"{y}-{m:02d}-{d:02d}",
            f"{y}/{m}/{d}",
            f"{y}年{m}月{d}日",
            f"{y}{m:02d}{d:02d}",
            f"{y}-{m:02d}-{d:02d} 00:00:00",
        )
    ]
    return _take(table, inverse.ravel() * 5 + rng.integers(0, 5, len(days)))


def _usccs(rng: np.random.Generator, n: int) -> pd.Series:
    """Valid USCCs: 91 (companies) or 92 (sole traders), a Shanghai district, 9 random chars."""
    alphabet = np.array(list(USCC_ALPHABET))
    head = _take(["91", "92"], (rng.random(n) >= 0.9).astype(np.int64)) + _pick(rng, DISTRICTS, n)
    chars = np.ascontiguousarray(alphabet[rng.integers(0, len(alphabet), (n, 9))])
    bodies = head + pd.Series(chars.view("<U9").ravel(), dtype="str")
    return bodies + uscc_check_char(bodies)


def _resident_ids(rng: np.random.Generator, n: int) -> pd.Series:
    """Valid resident ID numbers: a Shanghai district, a birth date 1960–2001, a serial."""
    year, month, day = _ymd(np.datetime64("1960-01-01", "D") + rng.integers(0, 15000, n))
    birth = _num(year * 10_000 + month * 100 + day)
    body = _pick(rng, DISTRICTS, n) + birth + _num(rng.integers(0, 1000, n)).str.zfill(3)
    return body + id_check_char(body)


def _distinct(
    make: Callable[[np.random.Generator, int], pd.Series], rng: np.random.Generator, n: int
) -> pd.Series:
    """`n` distinct identifiers: the rare repeats are drawn again."""
    values = make(rng, n)
    while (repeated := values.duplicated().to_numpy()).any():
        values[repeated] = make(rng, int(repeated.sum())).to_numpy()
    return values


def _radix_digits(codes: np.ndarray, radices: Sequence[int]) -> list[np.ndarray]:
    digits = []
    for radix in radices:
        codes, digit = np.divmod(codes, radix)
        digits.append(digit)
    return digits


def _distinct_codes(rng: np.random.Generator, size: int, capacity: int) -> np.ndarray:
    """`size` codes below `capacity`, all different while `size` fits."""
    return rng.permutation(max(capacity, size))[:size] % capacity


def _person_names(rng: np.random.Generator, n: int) -> pd.Series:
    given = _pick(rng, _GIVEN, n) + _pick(rng, _GIVEN, n).where(rng.random(n) < 0.8, "")
    return _pick(rng, _SURNAMES, n) + given


def _organisation_names(rng: np.random.Generator, sole: np.ndarray) -> pd.Series:
    """Distinct names while the pool fits the vocabulary (16·20·19·15·4 = 364,800 names)."""
    radices = [len(_PLACES), len(_WORDS), len(_WORDS) - 1, len(_TRADES), len(_COMPANY_FORMS)]
    codes = _distinct_codes(rng, len(sole), prod(radices))
    place, first, second, trade, form = _radix_digits(codes, radices)
    forms = _take(_SOLE_FORMS, form).where(sole, _take(_COMPANY_FORMS, form))
    second = (first + 1 + second) % len(_WORDS)  # never the same word twice
    return (
        _take(_PLACES, place) + _take(_WORDS, first) + _take(_WORDS, second) + _take(_TRADES, trade)
    ) + forms


def _subjects(rng: np.random.Generator, size: int) -> pd.DataFrame:
    """`size` distinct subjects: organisations, sole traders (USCC 92…) and natural persons."""
    person = rng.random(size) < PERSON_SHARE
    uscc = _distinct(_usccs, rng, size)
    ids = _distinct(_resident_ids, rng, size)
    sole = uscc.str.startswith("92").to_numpy() & ~person
    kind = np.where(person, "自然人", np.where(sole, "个体工商户", "法人及非法人组织"))
    return pd.DataFrame(
        {
            "name": _person_names(rng, size).where(person, _organisation_names(rng, sole)),
            "type": pd.Series(kind, dtype="str"),
            "uscc": uscc.where(~person, ""),
            "id_number": ids.where(person, ""),
            "legal_rep": _person_names(rng, size).where(~person, ""),
            # The district the subject is registered in: USCC or ID positions 3–8 / 1–6.
            "district": uscc.str.slice(2, 8).where(~person, ids.str.slice(0, 6)),
        }
    )


def _agencies(rng: np.random.Generator, size: int) -> pd.DataFrame:
    """`size` patent agencies, codes and names distinct while the pool fits (31,000)."""
    provinces = list(_PROVINCES)
    codes = _distinct_codes(rng, size, len(provinces) * 1000)
    serial, province = np.divmod(codes, len(provinces))
    serial %= 1000
    first, second, form = _radix_digits(serial, [len(_WORDS), len(_WORDS) - 1, len(_AGENCY_FORMS)])
    second = (first + 1 + second) % len(_WORDS)
    return pd.DataFrame(
        {
            "name": _take(list(_PROVINCES.values()), province)
            + _take(_WORDS, first)
            + _take(_WORDS, second)
            + _take(_AGENCY_FORMS, form),
            "code": _take(provinces, province) + _num(serial).str.zfill(3),
        }
    )


def _pool_size(rows: int, rows_per_member: int) -> int:
    return max(1, round(rows / rows_per_member))


# ---------------------------------------------------------------- defects


@dataclass(frozen=True)
class _Defects:
    """Which rows of a chunk get which defect; `codes[kind]` is what the checker reports.

    The last kind repeats the previous row's natural key: both rows are then rejected."""

    start: int
    rows: np.ndarray
    kinds: np.ndarray
    codes: Sequence[str]
    duplicate: int

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        start: int,
        n: int,
        error_rate: float,
        codes: Sequence[str],
    ) -> _Defects:
        rows = np.flatnonzero(rng.random(n) < error_rate)
        kinds = rng.integers(0, len(codes), len(rows))
        duplicate = len(codes) - 1
        # A repeated key needs a valid row just before it (else the repeat would go unseen or
        # pair with another defect): other rows get the first kind instead.
        lonely = (kinds == duplicate) & ((rows == 0) | np.isin(rows - 1, rows))
        kinds[lonely] = 0
        return cls(start, rows, kinds, codes, duplicate)

    def of(self, kind: int) -> np.ndarray:
        return self.rows[self.kinds == kind]

    def frame(self) -> pd.DataFrame:
        partners = self.of(self.duplicate) - 1
        return pd.DataFrame(
            {
                "row": np.concatenate([self.rows, partners]) + self.start,
                "code": np.concatenate(
                    [np.asarray(self.codes)[self.kinds], np.full(len(partners), self.codes[-1])]
                ),
            }
        ).sort_values(["row", "code"], ignore_index=True)


def _set(frame: pd.DataFrame, rows: np.ndarray, column: str, value: str | pd.Series) -> None:
    values = value.to_numpy() if isinstance(value, pd.Series) else value
    frame.loc[frame.index[rows], column] = values


# ---------------------------------------------------------------- penalty


def penalty_frame(
    rng: np.random.Generator, start: int, n: int, error_rate: float, subjects: Pool
) -> Generated:
    """`n` penalty rows (Chinese headers), row ids from `start`; a share of them defective."""
    s = subjects.draw(rng, n)
    person = (s["type"] == "自然人").to_numpy()
    decided = END - rng.integers(0, PENALTY_SPAN_DAYS, n)
    violation = _weighted(rng, [w for _, _, w in _VIOLATIONS], n)
    category = _weighted(rng, [w for _, _, w in _CATEGORIES], n)
    labels = [c for c, _, _ in _CATEGORIES]
    has_warning = np.array(["警告" in c for c in labels])[category]
    has_fine = np.array(["罚款" in c for c in labels])[category]
    has_confiscation = np.array(["没收" in c for c in labels])[category]
    has_licence = np.array(["吊销" in c for c in labels])[category]
    other = _take([h for _, h, _ in _CATEGORIES], category)
    fines = np.clip(np.round(rng.lognormal(8.3, 1.3, n) / 100), 1, 9_900).astype(np.int64) * 100
    confiscated = rng.integers(1, 400, n) * 50
    fine_text = [_wan(fines), _num(fines) + "元", _wan(fines) + "万元", _grouped(fines) + "元"]
    fine_form = rng.integers(0, len(fine_text), n)
    written_fine = fine_text[0]
    for form in range(1, len(fine_text)):
        written_fine = written_fine.where(fine_form != form, fine_text[form])
    content = (
        pd.Series("警告，", index=s.index, dtype="str").where(has_warning, "")
        + ("罚款人民币" + _num(fines) + "元，").where(has_fine, "")
        + ("没收违法所得" + _num(confiscated) + "元，").where(has_confiscation, "")
        + other
    ).str.rstrip("，")
    violations = _take([v for v, _, _ in _VIOLATIONS], violation)
    numbers = (
        "沪静市监处〔" + _num(_ymd(decided)[0]) + "〕" + _num(np.arange(start, start + n)) + "号"
    )
    licences = "食品经营许可证（JY" + _num(rng.integers(10**13, 10**14, n)) + "）"
    frame = pd.DataFrame(
        {
            "行政相对人名称": s["name"],
            "行政相对人类别": s["type"],
            "统一社会信用代码": s["uscc"],
            "法定代表人": s["legal_rep"],
            "证件类型": pd.Series("身份证", index=s.index, dtype="str").where(person, ""),
            "证件号码": s["id_number"],
            "行政处罚决定书文号": numbers,
            "违法行为类型": violations,
            "违法事实": "经查，当事人" + violations + "，事实清楚，证据确凿。",
            "处罚依据": _take([b for _, b, _ in _VIOLATIONS], violation),
            "处罚类别": _take(labels, category),
            "处罚内容": content,
            "罚款金额（万元）": written_fine.where(has_fine, ""),
            "没收违法所得、没收非法财物的金额（万元）": _wan(confiscated).where(
                has_confiscation, ""
            ),
            "暂扣或吊销证照名称及编号": licences.where(has_licence, ""),
            "处罚决定日期": _dates(rng, decided),
            "处罚有效期": _dates(rng, decided + 1095),
            "处罚机关": AUTHORITY[0],
            "处罚机关统一社会信用代码": AUTHORITY[1],
            "数据来源单位": AUTHORITY[0],
            "数据来源单位统一社会信用代码": AUTHORITY[1],
            "备注": "",
        }
    )
    defects = _Defects.draw(
        rng,
        start,
        n,
        error_rate,
        [
            "E_USCC_CHECKSUM",
            "E_REQUIRED",
            "E_DATE_INVALID",
            "E_AMOUNT_INVALID",
            "E_ENUM",
            "E_DUPLICATE_IN_FILE",
        ],
    )
    _set(frame, defects.of(0), "统一社会信用代码", _BAD_USCC)
    _set(frame, defects.of(0), "行政相对人类别", "法人及非法人组织")
    _set(frame, defects.of(1), "行政相对人名称", "")
    _set(frame, defects.of(2), "处罚决定日期", "2023年13月45日")
    _set(frame, defects.of(3), "罚款金额（万元）", "约5千")
    _set(frame, defects.of(4), "处罚类别", "罚款;拘役")  # 拘役 is a criminal sanction
    dup = defects.of(defects.duplicate)
    _set(frame, dup, "行政处罚决定书文号", frame["行政处罚决定书文号"].iloc[dup - 1])
    return Generated(frame, defects.frame())


# ---------------------------------------------------------------- abnormal patent


@dataclass(frozen=True)
class PatentPools:
    """Applicants (each with a usual agency, or none), agencies and the notice batches."""

    applicants: Pool
    agencies: Pool
    batches: pd.DataFrame  # name, date (datetime64[D])
    district_names: dict[str, str]  # code → the name offices also write, from the contract
    serial_offset: int

    @classmethod
    def build(cls, rng: np.random.Generator, rows: int, contract: Contract) -> PatentPools:
        agencies = Pool.build(rng, _agencies(rng, _pool_size(rows, ROWS_PER_AGENCY)), AGENCY_SIGMA)
        members = _subjects(rng, _pool_size(rows, ROWS_PER_SUBJECT))
        usual = agencies.positions(rng, len(members))
        members["agency"] = np.where(rng.random(len(members)) < SELF_FILED_SHARE, -1, usual)
        applicants = Pool.build(rng, members, APPLICANT_SIGMA)
        months = END.astype("datetime64[M]") - np.arange(NOTICE_BATCHES)[::-1]
        dates = np.minimum(months.astype("datetime64[D]") + rng.integers(4, 25, len(months)), END)
        year, month, _ = _ymd(dates)
        batches = pd.DataFrame({"name": _num(year) + "-第" + _num(month) + "批", "date": dates})
        names = {code: variants[1] for code, variants in contract.lookups["district"].items()}
        return cls(applicants, agencies, batches, names, int(rng.integers(0, 10**7)))


def _abnormal_types(rng: np.random.Generator, n: int) -> pd.Series:
    """One to three behaviour types per application, written as offices write them."""
    mask = np.left_shift(1, _weighted(rng, _ABNORMAL_TYPES, n))
    for share in (0.35, 0.1):
        extra = np.left_shift(1, _weighted(rng, _ABNORMAL_TYPES, n))
        mask |= np.where(rng.random(n) < share, extra, 0)
    form = _weighted(rng, [60, 25, 15], n)
    combos, inverse = np.unique(mask * 3 + form, return_inverse=True)
    table = []
    for combo in combos.tolist():
        types = [str(t + 1) for t in range(9) if combo // 3 >> t & 1]
        table.append(
            [";".join(types), "、".join(types), "、".join(f"类型{t}" for t in types)][combo % 3]
        )
    return _take(table, inverse.ravel())


def abnormal_patent_frame(
    rng: np.random.Generator, start: int, n: int, error_rate: float, pools: PatentPools
) -> Generated:
    """`n` abnormal-patent notice rows (Chinese headers) from row `start`; a share defective."""
    a = pools.applicants.draw(rng, n)
    agency = a["agency"].to_numpy()
    switched = (agency >= 0) & (rng.random(n) < AGENCY_SWITCH_SHARE)
    # Occasional filings go through any agency: the long tail of agencies with a few cases.
    agency = np.where(switched, rng.integers(0, len(pools.agencies.members), n), agency)
    agencies = pools.agencies.members.take(np.maximum(agency, 0)).reset_index(drop=True)
    with_agency = agency >= 0

    batch = rng.integers(0, len(pools.batches), n)
    notified = pools.batches["date"].to_numpy().astype("datetime64[D]")[batch]
    batch_names = pools.batches["name"].take(batch).reset_index(drop=True)
    kind = _take([t for t, _ in _PATENT_TYPES], _weighted(rng, [w for _, w in _PATENT_TYPES], n))
    filed = _ymd(notified)[0] - _weighted(rng, [50, 35, 15], n)  # filed 0–2 years before
    # A bijection of the row id (the multiplier is prime to 10): numbers stay distinct up to
    # 10 million rows, whatever the year and type.
    serial = (np.arange(start, start + n) * 7_919_233 + pools.serial_offset) % 10**7
    body = _num(filed) + kind + _num(serial).str.zfill(7)
    check = patent_check_char(body)
    numbers = [body + "." + check, "CN" + body + "." + check, body + check]
    number_form = _weighted(rng, [75, 15, 10], n)
    application_no = numbers[0].where(
        number_form == 0, numbers[1].where(number_form == 1, numbers[2])
    )
    title = ("一种" + _pick(rng, _USES, n) + "的" + _pick(rng, _THINGS, n)).where(
        kind != "3", _pick(rng, _DESIGNS, n)
    )

    status = _weighted(rng, [w for _, w, _, _ in _STATUSES], n)
    low = np.array([lo for _, _, lo, _ in _STATUSES])[status]
    high = np.array([hi for _, _, _, hi in _STATUSES])[status]
    handled = notified + rng.integers(low, high + 1)
    status[handled > END] = 0  # too recent for that outcome: still 待处理
    pending = status == 0
    district = a["district"]
    names = district.map(pools.district_names).astype("str")
    frame = pd.DataFrame(
        {
            "申请号": application_no,
            "发明创造名称": title,
            "申请人名称": a["name"],
            "申请人类别": a["type"],
            "申请人统一社会信用代码": a["uscc"],
            "申请人证件号码": a["id_number"],
            "代理机构名称": agencies["name"].where(with_agency, ""),
            "代理机构代码": agencies["code"].where(with_agency, ""),
            "非正常类型": _abnormal_types(rng, n),
            "通知批次": batch_names,
            "通知日期": _dates(rng, notified),
            "所属区": district.where(rng.random(n) < 0.85, names),  # some write 静安区
            "处理状态": _take([s for s, _, _, _ in _STATUSES], status),
            "处理日期": _dates(rng, handled).where(~pending, ""),
            "数据来源单位": IP_OFFICE[0],
            "数据来源单位统一社会信用代码": IP_OFFICE[1],
            "备注": "",
        }
    )
    defects = _Defects.draw(
        rng,
        start,
        n,
        error_rate,
        [
            "E_PATENT_APPNO",
            "E_DISTRICT",
            "E_REQUIRED",
            "E_STATUS_DATE",
            "E_STATUS_DATE",
            "E_USCC_CHECKSUM",
            "E_ENUM",
            "E_DUPLICATE_IN_FILE",
        ],
    )
    wrong = defects.of(0)  # any other check character
    chars = list("0123456789X")  # sorted: X sorts after the digits
    correct = np.searchsorted(np.array(chars), check.iloc[wrong].to_numpy(dtype=str))
    other = _take(chars, (correct + rng.integers(1, 11, len(wrong))) % 11)
    _set(frame, wrong, "申请号", body.iloc[wrong].reset_index(drop=True) + "." + other)
    _set(frame, defects.of(1), "所属区", "310199")  # not a Shanghai district
    _set(frame, defects.of(2), "申请人名称", "")
    _set(frame, defects.of(3), "处理状态", "已撤回")  # withdrawn, but no date
    _set(frame, defects.of(3), "处理日期", "")
    early = defects.of(4)  # handled before it was notified
    _set(frame, early, "处理日期", _dates(rng, notified[early] - rng.integers(1, 31, len(early))))
    _set(frame, early[pending[early]], "处理状态", "已撤回")
    _set(frame, defects.of(5), "申请人统一社会信用代码", _BAD_USCC)
    _set(frame, defects.of(5), "申请人类别", "法人及非法人组织")
    _set(frame, defects.of(6), "非正常类型", "1;10")
    dup = defects.of(defects.duplicate)
    for column in ("申请号", "通知批次"):
        _set(frame, dup, column, frame[column].iloc[dup - 1])
    return Generated(frame, defects.frame())


# ---------------------------------------------------------------- files


def generate_chunks(
    dataset: str, rows: int, *, seed: int = 42, error_rate: float = 0.02
) -> Iterator[Generated]:
    """The chunks of a generated file, in order; the same arguments give the same chunks."""
    contract = load_contract(dataset)  # an unknown dataset fails with the contract's message
    rng = np.random.default_rng(seed)
    make: Callable[[int, int], Generated]
    if dataset == "penalty":
        size = _pool_size(rows, ROWS_PER_SUBJECT)
        subjects = Pool.build(rng, _subjects(rng, size), SUBJECT_SIGMA)
        make = partial(penalty_frame, rng, error_rate=error_rate, subjects=subjects)
    elif dataset == "abnormal_patent":
        pools = PatentPools.build(rng, rows, contract)
        make = partial(abnormal_patent_frame, rng, error_rate=error_rate, pools=pools)
    else:
        raise CreditpipeError(f"暂不支持生成 {dataset} 数据（可用：{'、'.join(DATASETS)}）")
    chunk = CHUNK
    return (make(start, min(chunk, rows - start)) for start in range(0, rows, chunk))


_STRUCTURAL = np.frombuffer(b'",\r\n', dtype=np.uint8)  # bytes that make a CSV field quoted
_LARGE = pa.large_string()


def _csv_field(values: pa.ChunkedArray) -> pa.Array:
    """RFC 4180 quoting where needed (as pandas and Excel write): `,` `"` or a line break.

    A column is scanned as raw bytes: UTF-8 never uses ASCII bytes inside a multi-byte
    character, so a byte match is a character match.
    """
    text = values.combine_chunks().cast(_LARGE)
    data = text.buffers()[2]
    if data is None or not np.isin(np.frombuffer(data, dtype=np.uint8), _STRUCTURAL).any():
        return text
    needs = pc.match_substring_regex(text, r'[",\r\n]')
    quote, empty = pa.scalar('"', _LARGE), pa.scalar("", _LARGE)
    quoted = pc.binary_join_element_wise(quote, pc.replace_substring(text, '"', '""'), quote, empty)
    return pc.if_else(needs, quoted, text)


def _csv_lines(frame: pd.DataFrame) -> memoryview:
    """The frame's rows as UTF-8 CSV lines ending in CRLF, joined by Arrow, not row by row."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = [_csv_field(table.column(i)) for i in range(table.num_columns)]
    crlf, comma, empty = pa.scalar("\r\n", _LARGE), pa.scalar(",", _LARGE), pa.scalar("", _LARGE)
    columns[-1] = pc.binary_join_element_wise(columns[-1], crlf, empty)
    lines = pc.binary_join_element_wise(*columns, comma)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[first:last]


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
    chunks = generate_chunks(dataset, rows, seed=seed, error_rate=error_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("wb") as fh:
        for chunk in chunks:
            if written == 0:
                header = pd.DataFrame([list(chunk.frame.columns)], columns=chunk.frame.columns)
                fh.write(_encoded(_csv_lines(header.astype("str")), encoding))
            fh.write(_encoded(_csv_lines(chunk.frame), encoding))
            written += len(chunk.frame)
    return written


def _encoded(utf8: memoryview, encoding: str) -> bytes | memoryview:
    if encoding.replace("-", "").replace("_", "").lower() == "utf8":
        return utf8
    return str(utf8, "utf-8").encode(encoding)
