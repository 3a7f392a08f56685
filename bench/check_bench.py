"""Benchmark `creditpipe check` on a large generated penalty file.

What it measures: the wall time (time.perf_counter around the child) and the peak resident
set size (ru_maxrss from os.wait4 for that one child process) of

    creditpipe check FILE --json --as-of 2026-11-21

run as a separate process on a seeded, realistic penalty CSV made by
`creditpipe generate penalty` (reused when a file with the same rows/seed/error-rate exists).

Targets (the issue): a 1,000,000-row penalty CSV is checked in under 60 s and under 1.5 GB
peak RSS on a 2-core machine. 1.5 GB is taken as 1.5e9 bytes and every "MB" here is 1e6 bytes.
Exit status: 0 both targets met, 1 a target missed (the same limits are applied at any --rows),
2 the run itself failed (the check exiting with anything other than 0 or 1, unparsable JSON,
broken row accounting). Results go to OUT_DIR/check_bench.json and OUT_DIR/check_bench.md.

Usage: .venv/bin/python bench/check_bench.py [--rows N] [--seed S] [--error-rate R] [--out-dir DIR]
Linux only (ru_maxrss is in KiB there; macOS reports bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


def bench_day() -> date:
    """The benches' business date: 2026-11-21 (the generated files' dates are set around it),
    or today in Shanghai once that is later. A run stamps each file it receives with the wall
    clock, so a run as of an earlier day sees none of them: from midnight in Shanghai on
    2026-11-22 the end-to-end bench measured runs that flagged and published nothing."""
    return max(date(2026, 11, 21), datetime.now(ZoneInfo("Asia/Shanghai")).date())


AS_OF = bench_day().isoformat()
TARGET_WALL_S = 60.0
TARGET_RSS_BYTES = 1_500_000_000
MB = 1_000_000
CREDITPIPE = Path(sys.executable).parent / "creditpipe"


class BenchError(Exception):
    """The run itself failed (not merely slow): reported, exit status 2."""


@dataclass(frozen=True)
class Measurement:
    rows: int
    seed: int
    error_rate: float
    file: str
    file_size_mb: float
    exit_status: int
    wall_s: float
    rows_per_s: float
    peak_rss_mb: float
    rows_read: int
    accepted: int
    rejected: int
    wall_pass: bool
    rss_pass: bool

    @property
    def passed(self) -> bool:
        return self.wall_pass and self.rss_pass


def machine_facts() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "chunk_rows_env": os.environ.get("CREDITPIPE_CHUNK_ROWS"),
    }


def input_file(out_dir: Path, rows: int, seed: int, error_rate: float) -> Path:
    """The generated CSV for these parameters, made once and then reused."""
    path = out_dir / f"penalty_rows{rows}_seed{seed}_err{error_rate:g}.csv"
    if path.is_file():
        print(f"reusing {path}", file=sys.stderr)
        return path
    partial = path.with_name(path.name + ".partial")  # never reuse a half-written file
    cmd = [
        str(CREDITPIPE),
        "generate",
        "penalty",
        "--rows",
        str(rows),
        "--out",
        str(partial),
        "--seed",
        str(seed),
        "--error-rate",
        str(error_rate),
    ]
    print(f"generating {path} ...", file=sys.stderr)
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BenchError(f"generate exited {done.returncode}: {done.stderr.strip()}")
    partial.replace(path)
    print(f"generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def run_check(path: Path, out_dir: Path) -> tuple[int, float, int, dict[str, Any]]:
    """Run the check as one child; returns (exit status, wall s, peak RSS bytes, JSON)."""
    stdout_path = out_dir / "check_stdout.json"
    stderr_path = out_dir / "check_stderr.txt"
    cmd = [str(CREDITPIPE), "check", str(path), "--json", "--as-of", AS_OF]
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: tell Popen so it does not wait again
    tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-1500:]
    if code not in (0, 1):
        raise BenchError(f"check exited {code} (0 or 1 expected); stderr tail:\n{tail}")
    try:  # an uncaught Python exception also exits 1: only the JSON tells the two apart
        result = json.loads(stdout_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(
            f"check exited {code} without JSON on stdout ({exc}); stderr tail:\n{tail}"
        ) from exc
    return code, wall, usage.ru_maxrss * 1024, result


def measure(rows: int, seed: int, error_rate: float, out_dir: Path) -> Measurement:
    path = input_file(out_dir, rows, seed, error_rate)
    code, wall, rss, result = run_check(path, out_dir)
    rows_read, accepted, rejected = (int(result[k]) for k in ("rows_read", "accepted", "rejected"))
    if result.get("file_errors"):
        raise BenchError(f"file rejected: {result['file_errors']}")
    if accepted + rejected != rows_read:
        raise BenchError(f"accounting broken: {accepted} + {rejected} != {rows_read}")
    if rows_read != rows:
        raise BenchError(f"rows_read {rows_read} != generated rows {rows}")
    distinct = len({r["row"] for r in result.get("rejections", [])})
    if distinct != rejected:
        raise BenchError(f"rejections list {distinct} distinct rows != rejected {rejected}")
    return Measurement(
        rows=rows,
        seed=seed,
        error_rate=error_rate,
        file=str(path),
        file_size_mb=round(path.stat().st_size / MB, 1),
        exit_status=code,
        wall_s=round(wall, 2),
        rows_per_s=float(round(rows_read / wall)) if wall > 0 else 0.0,
        peak_rss_mb=round(rss / MB, 1),
        rows_read=rows_read,
        accepted=accepted,
        rejected=rejected,
        wall_pass=wall < TARGET_WALL_S,
        rss_pass=rss < TARGET_RSS_BYTES,
    )


def markdown(m: Measurement, facts: dict[str, Any]) -> str:
    verdict = "PASS" if m.passed else "MISS"
    target = f"<{TARGET_WALL_S:g} s and <{TARGET_RSS_BYTES / 1e9:g} GB → {verdict}"
    header = [
        "rows",
        "file MB",
        "wall s",
        "rows/s",
        "peak RSS MB",
        "accepted",
        "rejected",
        "target",
    ]
    cells = [
        f"{m.rows:,}",
        f"{m.file_size_mb:.1f}",
        f"{m.wall_s:.2f}",
        f"{m.rows_per_s:,.0f}",
        f"{m.peak_rss_mb:.1f}",
        f"{m.accepted:,}",
        f"{m.rejected:,}",
        target,
    ]
    return "\n".join(
        [
            f"`creditpipe check --json --as-of {AS_OF}` — {facts['nproc']} CPUs, "
            f"Python {facts['python']}, seed {m.seed}, error rate {m.error_rate:g}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---:" if i < 7 else "---" for i in range(len(header))) + "|",
            "| " + " | ".join(cells) + " |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--error-rate", type=float, default=0.02)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    if args.rows <= 0 or not 0 <= args.error_rate <= 1:
        parser.error("--rows must be positive and --error-rate within 0–1")
    if not CREDITPIPE.is_file():
        parser.error(f"{CREDITPIPE} not found: run with the project's venv Python")
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    try:
        m = measure(args.rows, args.seed, args.error_rate, out_dir)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        (out_dir / "check_bench.json").write_text(
            json.dumps({"error": str(exc), "machine": facts}, indent=2) + "\n", encoding="utf-8"
        )
        return 2
    table = markdown(m, facts)
    print(table)
    (out_dir / "check_bench.md").write_text(table, encoding="utf-8")
    report = {
        **asdict(m),
        "passed": m.passed,
        "as_of": AS_OF,
        "targets": {"wall_s": TARGET_WALL_S, "peak_rss_bytes": TARGET_RSS_BYTES},
        "machine": facts,
    }
    (out_dir / "check_bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if m.passed else 1


if __name__ == "__main__":
    sys.exit(main())
