"""GX is imported with the modules our suites never use left lazy (etl.quality._import_gx).

Each test runs in a fresh interpreter: in this one GX and its modules may be imported already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> dict[str, object]:
    """Runs `code` in a fresh interpreter; it prints its findings as JSON on the last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_validation_gives_its_result_without_running_the_lazy_modules() -> None:
    found = _run(
        """
        import json, sys
        import pandas as pd
        from etl import quality
        from etl.contracts import load_contract

        contract = load_contract("penalty")
        frame = pd.DataFrame({f.name: pd.Series(["x", "y"], dtype="str") for f in contract.fields})
        frame["fine_amount"] = pd.Series([-1.0, 2.0])  # breaks 罚款金额 非负 once
        frame["confiscation_amount"] = pd.Series([0.5, 0.0])  # keeps 没收金额 非负
        run = quality.QualityRun(contract)
        run.validate(frame)
        summary = run.summary()
        amounts = {
            r["kwargs"]["column"]: [r["success"], r["unexpected_count"]]
            for r in summary["results"]
            if r["expectation"] == "expect_column_values_to_be_between"
        }
        print(json.dumps({
            "success": summary["success"],
            "amounts": amounts,
            "lazy": sorted(quality._GX_LAZY_MODULES),
            "executed": sorted(
                m for m in sys.modules
                if m.startswith(("scipy.stats.", "altair.", "narwhals", "jsonschema."))
            ),
            "types": {n: type(sys.modules.get(n)).__name__ for n in quality._GX_LAZY_MODULES},
        }))
        """
    )
    assert found["success"] is False
    assert found["amounts"] == {"fine_amount": [False, 1], "confiscation_amount": [True, 0]}
    assert {"scipy.stats", "altair"} <= set(found["lazy"])
    # Imported (GX holds them) but never run: no submodule of theirs was imported.
    assert found["types"] == {name: "_LazyModule" for name in found["lazy"]}
    assert found["executed"] == []


def test_a_lazy_module_loads_for_real_once_touched_from_any_thread() -> None:
    found = _run(
        """
        import json, sys, threading, types
        import mistune  # imported before GX: left as it is
        from etl import quality

        before = sys.modules["mistune"]
        quality._import_gx()
        stats, altair = sys.modules["scipy.stats"], sys.modules["altair"]
        start, got, errors = threading.Barrier(8), [], []

        def touch():
            start.wait()  # all at once: the others wait for the thread that loads it
            try:
                got.append([float(stats.norm.cdf(0)), altair.Chart.__name__])
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=touch) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        from scipy.stats import entropy

        print(json.dumps({
            "got": got,
            "errors": errors,
            "plain": [type(m) is types.ModuleType for m in (stats, altair)],
            "same": sys.modules["scipy.stats"] is stats and sys.modules["scipy"].stats is stats,
            "entropy": float(entropy([0.5, 0.5])),
            "mistune": sys.modules["mistune"] is before and type(before) is types.ModuleType,
        }))
        """
    )
    assert found["errors"] == []
    assert found["got"] == [[0.5, "Chart"]] * 8
    assert found["plain"] == [True, True] and found["same"] is True
    assert abs(found["entropy"] - 0.6931471805599453) < 1e-12
    assert found["mistune"] is True
