"""The catalogue of stable codes: rejections (per row), file errors and warnings.

Codes never change meaning once published: offices' scripts and the platform match on them.
Each has a Chinese template; `{field}` is the field's Chinese title. The README's table of codes
is checked against this catalogue by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["row", "file", "warning", "review", "publish"]


@dataclass(frozen=True)
class Code:
    """One code: what level it applies to and its Chinese message template."""

    level: Level
    template: str


CODES: dict[str, Code] = {
    # Row rejections.
    "E_REQUIRED": Code("row", "「{field}」为必填项，不能为空"),
    "E_TOO_LONG": Code("row", "「{field}」最多 {max_length} 个字符，当前内容超长"),
    "E_ENUM": Code("row", "「{field}」的值不在允许范围内，应为：{allowed}"),
    "E_USCC_FORMAT": Code(
        "row", "「{field}」格式错误：统一社会信用代码应为 18 位数字或大写字母（不含 I、O、S、V、Z）"
    ),
    "E_USCC_CHECKSUM": Code(
        "row", "「{field}」校验位错误（GB 32100-2015），请核对是否抄错；按前 17 位计算校验位应为 "
    ),
    "E_ID_CHECKSUM": Code("row", "「{field}」不是有效的居民身份证号码（GB 11643-1999）：{reason}"),
    "E_DATE_INVALID": Code(
        "row",
        "「{field}」不是可识别的日期，请使用 2023-05-11、2023/5/11、2023年5月11日 或 20230511",
    ),
    "E_DATE_FUTURE": Code("row", "「{field}」晚于今天（{as_of}），不能是将来的日期"),
    "E_DATE_ORDER": Code("row", "「{field}」不能早于「{other}」"),
    "E_AMOUNT_INVALID": Code("row", "「{field}」不是有效金额：{reason}"),
    "E_AMOUNT_REQUIRED": Code("row", "{condition}时，「{field}」必须填写且大于 0"),
    "E_LICENCE_REQUIRED": Code("row", "{condition}时，「{field}」必须填写"),
    "E_DUPLICATE_IN_FILE": Code(
        "row", "本文件中有多行的{key}相同（同一条记录只能报送一行），涉及第 {rows} 行"
    ),
    "E_OFFICE_NOT_AUTHORISED": Code("row", "{reason}"),
    "E_ROW_SHAPE": Code(
        "row", "该行的单元格多于表头的列数，多出的内容可能是未加引号的逗号造成的：{extra}"
    ),
    "E_PATENT_APPNO": Code("row", "「{field}」不是有效的专利申请号：{reason}"),
    "E_DISTRICT": Code("row", "「{field}」不是上海市的区级行政区划代码"),
    "E_STATUS_DATE": Code("row", "「{field}」{reason}"),
    "E_STATUS_TRANSITION": Code(
        "row",
        "「{field}」不能从「{before}」改为「{after}」（{key} 已报送的状态为「{before}」），"
        "允许的后续状态：{allowed}",
    ),
    # File errors: the whole file is refused, nothing of it is loaded.
    "E_FILE_NOT_FOUND": Code("file", "文件不存在：{path}"),
    "E_FILE_TYPE": Code(
        "file", "不支持的文件类型 {suffix}：请提交 CSV（.csv）或 Excel（.xlsx/.xls）文件"
    ),
    "E_FILE_EMPTY": Code("file", "文件为空，没有可读取的内容"),
    "E_ENCODING": Code(
        "file",
        "无法识别文件编码（支持 UTF-8、UTF-8 BOM、GBK、GB18030）：第 {offset} 字节处无法解码{hint}",
    ),
    "E_CSV_STRUCTURE": Code("file", "CSV 文件结构错误，无法解析：{detail}"),
    "E_XLSX_UNREADABLE": Code("file", "Excel 文件无法打开：{detail}"),
    "E_SHEET_NOT_FOUND": Code("file", "Excel 文件中没有名为「{sheet}」的工作表（现有：{sheets}）"),
    "E_HEADER_NOT_FOUND": Code(
        "file", "前 {limit} 行中找不到表头：请确认列标题使用标准名称（如「行政相对人名称」）"
    ),
    "E_MISSING_COLUMN": Code("file", "缺少必填列：{columns}"),
    "E_DUPLICATE_COLUMN": Code(
        "file", "多列对应同一字段「{field}」：第 {columns} 列，请只保留一列"
    ),
    "E_FILE_UNREADABLE": Code(
        "file", "无法读取文件（{detail}）：文件可能已被替换为链接、目录或正在被占用，下次运行将重试"
    ),
    "E_STAGING": Code(
        "file",
        "入库暂存文件写入失败（{detail}）：请检查临时目录 {folder} 所在磁盘的空间与权限"
        "（可用 TMPDIR 指定），本文件已回滚，下次运行将重试",
    ),
    "E_OFFICE_UNKNOWN": Code("file", "报送机构 {office} 未登记，不能报送数据"),
    "E_DATASET_NOT_ALLOWED": Code(
        "file", "报送机构 {office} 无权报送「{dataset}」数据（可报送：{allowed}），文件未处理"
    ),
    "E_DATASET_UNKNOWN": Code(
        "file", "没有名为「{dataset}」的数据集（现有：{known}），文件未处理：请检查目录名"
    ),
    "E_INBOX_LAYOUT": Code(
        "file",
        "「{path}」放错了位置，未处理：文件须直接放在 inbox/<机构ID>/<数据集>/ 目录下，"
        "其下的子目录不会被处理",
    ),
    "E_INBOX_SYMLINK": Code(
        "file", "「{name}」是符号链接，出于安全考虑不予处理：请放入文件本身，而不是链接"
    ),
    # Review of serious-dishonesty flags (creditpipe flags confirm|reject|show).
    "E_FLAG_UNKNOWN": Code(
        "review", "没有编号为「{flag}」的失信标记：请用 creditpipe flags list 查看"
    ),
    "E_FLAG_AMBIGUOUS": Code(
        "review", "编号前缀「{flag}」对应多个失信标记（{matches}），请输入更完整的编号"
    ),
    "E_FLAG_DECIDED": Code(
        "review", "失信标记 {flag} 已于 {decided_at} 由 {decided_by} {decision}，审核结论不可覆盖"
    ),
    "E_FLAG_STATE": Code(
        "review", "失信标记 {flag} 当前状态为「{state}」，只有待审核的标记可以审核"
    ),
    # Publication (creditpipe publish, the end of creditpipe run): nothing partial is written.
    "E_PUBLISH": Code("publish", "无法发布 {dataset}（{as_of}）：{detail}"),
    "E_PUBLISH_PERSONAL_ID": Code(
        "publish",
        "公开数据的「{column}」列中有无法自动脱敏的身份证号码，本次发布已停止，未写入任何文件",
    ),
    # Warnings: the file is processed; the office should still look.
    "W_UNKNOWN_COLUMN": Code("warning", "以下列不属于数据规范，已忽略：{columns}"),
    "W_UNNAMED_COLUMN": Code("warning", "第 {columns} 列没有表头但有内容，已忽略"),
    "W_DUPLICATE_FILE": Code(
        "warning",
        "该文件与 {received} 收到的「{original}」内容完全相同（SHA-256 一致），"
        "已记录为重复报送，未再次入库",
    ),
    "W_QUALITY": Code("warning", "数据质量检查（Great Expectations）未通过：{failed}"),
}


def message(code: str, **params: object) -> str:
    """The Chinese message of `code` with its parameters filled in."""
    return CODES[code].template.format(**params)


def column_letter(index: int) -> str:
    """0-based column index → spreadsheet letters (0 → A, 26 → AA), as clerks see them."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters
