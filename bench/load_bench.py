"""Benchmark loading a validated file into the store, on SQLite and on PostgreSQL.

What it measures, per database, each in its own child process (wall time per phase with
time.perf_counter, peak RSS from os.wait4 for the child):

1. `insert`: a 1,000,000-row validated file into an empty store (stage in bulk + merge):
   every key is new, so every row becomes version 1;
2. `resend`: the same rows again as a second file (every row compared, nothing written);
3. `correct`: the same rows with 10 % of the fine amounts changed (10 % corrections).

The validated rows come from `etl.check.check_file` over the generated CSV (the same file as
`bench/check_bench.py`), written once to a Parquet file and reused, so only the load is timed.
Target (the issue): well under a minute per load on both databases.

Exit status: 0 every load under TARGET_S, 1 a target missed, 2 the run failed.
Results: OUT_DIR/load_bench.json and OUT_DIR/load_bench.md.

Usage: .venv/bin/python bench/load_bench.py [--rows N] [--out-dir DIR] [--pg-url URL]
PostgreSQL: --pg-url or CREDITPIPE_TEST_DB_URL (a scratch schema is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_bench import BenchError, input_file, machine_facts

AS_OF = date(2026, 11, 21)
TARGET_S = 60.0
MB = 1_000_000
PHASES = ("insert", "resend", "correct")


def validated_parquet(csv_path: Path) -> Path:
    """The accepted rows of `csv_path`, typed, as Parquet (made once, then reused)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from etl.check import check_file

    target = csv_path.with_suffix(".validated.parquet")
    if target.is_file():
        return target
    partial = target.with_name(target.name + ".partial")

    class ToParquet:
        writer: Any = None
        dropped: Any = None

        def write(self, frame: Any) -> None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(partial, table.schema)
            self.writer.write_table(table)

        def reject(self, rows: Any, raw: Any) -> None:
            pass

        def finish(self, dropped_rows: Any, headers: dict[str, str]) -> None:
            self.dropped = dropped_rows

    print(f"validating {csv_path} once ...", file=sys.stderr)
    sink = ToParquet()
    result = check_file(csv_path, as_of=AS_OF, sink=sink, quality=False)
    sink.writer.close()
    table = pq.read_table(partial)
    dropped = pa.array(sink.dropped, pa.int64())
    pq.write_table(table.filter(pc.invert(pc.is_in(table.column("_row"), dropped))), partial)
    partial.replace(target)
    print(f"{result.accepted:,} validated rows → {target}", file=sys.stderr)
    return target


def child(url: str, parquet: Path) -> dict[str, Any]:
    """Load the validated rows three times (insert, resend, correct); returns phase timings."""
    from decimal import Decimal

    import pyarrow.parquet as pq

    from etl.contracts import load_contract
    from etl.store import db, files
    from etl.store.load import FileLoad

    contract = load_contract("penalty")
    engine = db.make_engine(url)
    db.upgrade(engine)
    timings: dict[str, Any] = {}
    for n, phase in enumerate(PHASES, start=1):
        with db.transaction(engine) as conn:
            reg = files.register(
                conn, sha256=f"{phase}-{uuid.uuid4().hex}", office_id="bench", dataset="penalty",
                name=f"{phase}.csv", size=0, archive_path="-",
            )  # fmt: skip
        started = time.perf_counter()
        sink: FileLoad | None = None
        try:
            with db.transaction(engine) as conn:
                sink = FileLoad(conn, contract, reg.id)
                rows = 0
                with sink.writing():  # the rows written behind (PostgreSQL) count as staging
                    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=100_000):
                        frame = batch.to_pandas(types_mapper=_types)
                        if phase == "correct":
                            change = frame["_row"] % 10 == 0
                            frame.loc[change, "fine_amount"] = Decimal("123.45")
                        sink.write(frame)
                        rows += len(frame)
                staged = time.perf_counter()
                counts = sink.merge()
        finally:
            if sink is not None:  # its staging file, once the transaction has ended
                sink.close()
        done = time.perf_counter()
        timings[phase] = {
            "rows": rows,
            "stage_s": round(staged - started, 2),
            "merge_s": round(done - staged, 2),
            "total_s": round(done - started, 2),
            "rows_per_s": round(rows / (done - started)),
            "counts": counts.__dict__,
        }
        print(f"  {phase} (file {n}): {timings[phase]}", file=sys.stderr)
    engine.dispose()
    return timings


def _types(pa_type: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    return pd.ArrowDtype(pa_type) if pa.types.is_decimal(pa_type) else None


def run_child(url: str, parquet: Path, out_dir: Path, name: str) -> dict[str, Any]:
    result_path = out_dir / f"load_{name}.json"
    cmd = [sys.executable, __file__, "--child-url", url, "--parquet", str(parquet),
           "--child-out", str(result_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"{name} load child exited {proc.returncode}")
    body: dict[str, Any] = json.loads(result_path.read_text("utf-8"))
    body["peak_rss_mb"] = round(usage.ru_maxrss * 1024 / MB, 1)
    return body


def pg_scratch(base_url: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    schema = f"cp_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def markdown(results: dict[str, dict[str, Any]], rows: int, facts: dict[str, Any]) -> str:
    lines = [
        f"Store load of {rows:,} validated rows — {facts['nproc']} CPUs, Python {facts['python']}",
        "",
        "| database | phase | stage s | merge s | total s | rows/s | peak RSS MB | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, body in results.items():
        for phase in PHASES:
            t = body[phase]
            verdict = "PASS" if t["total_s"] < TARGET_S else "MISS"
            lines.append(
                f"| {name} | {phase} | {t['stage_s']:.1f} | {t['merge_s']:.1f} | "
                f"{t['total_s']:.1f} | {t['rows_per_s']:,} | {body['peak_rss_mb']:.0f} | "
                f"< {TARGET_S:g} s → {verdict} |"
            )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--error-rate", type=float, default=0.02)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    parser.add_argument("--pg-url", default=os.environ.get("CREDITPIPE_TEST_DB_URL"))
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parquet", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_url:
        body = child(args.child_url, args.parquet)
        args.child_out.write_text(json.dumps(body, indent=2), "utf-8")
        return 0
    if not args.pg_url:
        parser.error("PostgreSQL URL needed: --pg-url or CREDITPIPE_TEST_DB_URL")
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    try:
        parquet = validated_parquet(input_file(out_dir, args.rows, args.seed, args.error_rate))
        sqlite_db = out_dir / "load_bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_db}{suffix}").unlink(missing_ok=True)
        results = {"sqlite": run_child(f"sqlite:///{sqlite_db}", parquet, out_dir, "sqlite")}
        pg_url, drop = pg_scratch(args.pg_url)
        try:
            results["postgresql"] = run_child(pg_url, parquet, out_dir, "postgresql")
        finally:
            drop()
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    table = markdown(results, args.rows, facts)
    print(table)
    (out_dir / "load_bench.md").write_text(table, "utf-8")
    report = {"rows": args.rows, "results": results, "target_s": TARGET_S, "machine": facts}
    (out_dir / "load_bench.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    passed = all(b[p]["total_s"] < TARGET_S for b in results.values() for p in PHASES)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
