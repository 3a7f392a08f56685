"""Benchmark flag evaluation and publication over a store of 1,000,000 penalties and 100,000
abnormal-patent notices.

Set-up (not timed, made once per size and reused): generate both files with the seeded generator,
drop them into a bench home's inbox and load them with `run_inbox(flags=False, publish=False)`.
Then, each in its own child process (wall time, peak RSS from os.wait4):

1. `flags`: `evaluate_flags` over the whole store (evaluate + registry update, first time);
2. `flags-rerun`: the same date again (nothing changes);
3. `publish`: all three datasets for the date (snapshot, delta, descriptors, restricted twin);
4. `republish`: the same date again (files rebuilt and found identical: “unchanged”).

Targets (issues #5, #6): flags in seconds, not minutes; publishing 1,000,000 records under 1 GB.
Results: OUT_DIR/flags_publish_bench.json and .md. Exit 0 when the targets hold, 1 otherwise.

Usage: .venv/bin/python bench/flags_publish_bench.py [--rows N] [--patents N] [--pg-url URL]
(`--pg-url` also runs everything on a PostgreSQL scratch schema.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_bench import CREDITPIPE, BenchError, bench_day, machine_facts
from load_bench import pg_scratch

AS_OF = bench_day()  # the store stamps received files with the wall clock
MB = 1_000_000
FLAGS_TARGET_S = 60.0  # “seconds, not minutes”
RSS_TARGET_MB = 1000.0
STEPS = ("flags", "flags-rerun", "publish", "republish")


def generated(out_dir: Path, dataset: str, rows: int, seed: int) -> Path:
    path = out_dir / f"{dataset}_rows{rows}_seed{seed}_err0.csv"
    if path.is_file():
        return path
    partial = path.with_name(path.name + ".partial")
    cmd = [str(CREDITPIPE), "generate", dataset, "--rows", str(rows), "--out", str(partial),
           "--seed", str(seed), "--error-rate", "0"]  # fmt: skip
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BenchError(f"generate {dataset} exited {done.returncode}: {done.stderr.strip()}")
    partial.replace(path)
    return path


def child(step: str, url: str, home: Path) -> dict[str, Any]:
    from etl.flags import evaluate_flags
    from etl.publish import publish
    from etl.run import run_inbox
    from etl.store import db

    engine = db.make_engine(url)
    started = time.perf_counter()
    if step == "load":
        summary = run_inbox(as_of=AS_OF, home=home, engine=engine, flags=False, publish=False)
        body: dict[str, Any] = {"totals": summary.totals()}
    elif step.startswith("flags"):
        body = evaluate_flags(engine, AS_OF).to_json()
    else:
        body = publish(engine, AS_OF, home=home).to_json()
    body["wall_s"] = round(time.perf_counter() - started, 2)
    engine.dispose()
    return body


def run_child(step: str, url: str, home: Path, out_dir: Path) -> dict[str, Any]:
    result = out_dir / f"flags_publish_{step}.json"
    cmd = [sys.executable, __file__, "--child", step, "--child-url", url, "--home", str(home),
           "--child-out", str(result)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{step} child failed")
    body: dict[str, Any] = json.loads(result.read_text("utf-8"))
    body["peak_rss_mb"] = round(usage.ru_maxrss * 1024 / MB, 1)
    print(f"  {step}: {body['wall_s']} s, {body['peak_rss_mb']} MB", file=sys.stderr)
    return body


def bench_store(name: str, url: str, out_dir: Path, penalty: Path, patents: Path) -> dict[str, Any]:
    home = out_dir / f"flags_publish_home_{name}"
    shutil.rmtree(home, ignore_errors=True)
    for office, dataset, source in (("jingan-amr", "penalty", penalty),
                                    ("sh-ipa", "abnormal_patent", patents)):  # fmt: skip
        inbox = home / "inbox" / office / dataset
        inbox.mkdir(parents=True)
        os.link(source, inbox / source.name)
    print(f"{name}: loading (not timed) ...", file=sys.stderr)
    results = {"load": run_child("load", url, home, out_dir)}
    for step in STEPS:
        results[step] = run_child(step, url, home, out_dir)
    return results


def markdown(results: dict[str, Any], rows: int, patents: int, facts: dict[str, Any]) -> str:
    lines = [
        f"Flags and publication over {rows:,} penalties + {patents:,} abnormal-patent notices — "
        f"{facts['nproc']} CPUs, Python {facts['python']}",
        "",
        "| store | step | wall s | peak RSS MB | what |",
        "|---|---|---:|---:|---|",
    ]
    for name, steps in results.items():
        for step in STEPS:
            body = steps[step]
            if step.startswith("flags"):
                what = f"{body['flags']:,} flags (new {body['new']:,}, changed {body['changed']:,})"
            else:
                what = ", ".join(
                    f"{d['dataset']} {d['rows']:,} rows {d['result']}" for d in body["datasets"]
                )
            lines.append(
                f"| {name} | {step} | {body['wall_s']:.1f} | {body['peak_rss_mb']:.0f} | {what} |"
            )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--patents", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        body = child(args.child, args.child_url, args.home)
        args.child_out.write_text(json.dumps(body, ensure_ascii=False), "utf-8")
        return 0
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        penalty = generated(out_dir, "penalty", args.rows, args.seed)
        patents = generated(out_dir, "abnormal_patent", args.patents, args.seed)
        lite = out_dir / "flags_publish.db"
        lite.unlink(missing_ok=True)
        results = {"sqlite": bench_store("sqlite", f"sqlite:///{lite}", out_dir, penalty, patents)}
        if args.pg_url:
            url, drop = pg_scratch(args.pg_url)
            try:
                results["postgresql"] = bench_store("postgresql", url, out_dir, penalty, patents)
            finally:
                drop()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    facts = machine_facts()
    report = markdown(results, args.rows, args.patents, facts)
    (out_dir / "flags_publish_bench.md").write_text(report, "utf-8")
    payload = {"rows": args.rows, "patents": args.patents, "machine": facts, "results": results}
    (out_dir / "flags_publish_bench.json").write_text(
        json.dumps(payload, ensure_ascii=False, indent=1)
    )
    print(report)
    ok = all(
        s["flags"]["wall_s"] < FLAGS_TARGET_S
        and all(s[k]["peak_rss_mb"] < RSS_TARGET_MB for k in STEPS)
        for s in results.values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
