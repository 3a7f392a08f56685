"""Flag evaluation gives the same flags whether the matching records fit in memory or spill to
partition files (a large store), on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from etl.flags import engine as flag_engine
from etl.flags import registry as flag_registry
from etl.flags.engine import Evaluation, evaluate
from etl.flags.policy import load_policy
from etl.generate import generate_file
from etl.run import RunSummary
from etl.store.schema import flag, flag_evaluation, flag_evidence

AS_OF = date(2026, 11, 21)
OFFICES = {"penalty": "jingan-amr", "abnormal_patent": "sh-ipa"}  # schemas/offices.yaml


def test_spilled_evaluation_equals_in_memory_evaluation(
    engine: Engine,
    _isolated_home: Path,
    run: Callable[..., RunSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for dataset, rows in (("penalty", 6_000), ("abnormal_patent", 3_000)):
        folder = _isolated_home / "inbox" / OFFICES[dataset] / dataset
        folder.mkdir(parents=True)
        generate_file(dataset, rows, folder / f"{dataset}.csv", seed=5, error_rate=0.0)
    summary = run(AS_OF)
    assert not summary.failed
    policy = load_policy()
    with engine.connect() as conn:
        held = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
        monkeypatch.setattr(flag_engine, "SPILL_ROWS", 100)  # spills from the second chunk on
        monkeypatch.setattr(flag_engine, "PARTITIONS", 7)
        spilled = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
    fired = set(held.flags["rule_id"])
    assert {"SD-IP-REPEAT", "SD-PATENT-MASS", "GD-PATENT-UNCORRECTED"} <= fired, fired
    pd.testing.assert_frame_equal(spilled.flags, held.flags)
    pd.testing.assert_frame_equal(spilled.evidence, held.evidence)
    assert spilled.unidentified == held.unidentified


def test_evaluation_does_not_depend_on_the_order_the_store_hands_records_over(
    engine: Engine,
    _isolated_home: Path,
    run: Callable[..., RunSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine reads the store in the database's own order (`ordered=False`: no sort of
    every record on PostgreSQL); in key order, or with every chunk and the chunks reversed,
    held or spilled, the evaluation is the same."""
    for dataset, rows in (("penalty", 6_000), ("abnormal_patent", 3_000)):
        folder = _isolated_home / "inbox" / OFFICES[dataset] / dataset
        folder.mkdir(parents=True)
        generate_file(dataset, rows, folder / f"{dataset}.csv", seed=7, error_rate=0.0)
    assert not run(AS_OF).failed
    policy = load_policy()
    read = flag_engine.state_as_of
    orders: list[bool] = []

    def in_key_order(*args: object, **kwargs: object) -> Iterator[pd.DataFrame]:
        orders.append(bool(kwargs.pop("ordered")))
        return read(*args, **kwargs)  # type: ignore[arg-type]

    def reversed_order(*args: object, **kwargs: object) -> Iterator[pd.DataFrame]:
        orders.append(bool(kwargs.pop("ordered")))
        chunks = [chunk.iloc[::-1] for chunk in read(*args, **kwargs)]  # type: ignore[arg-type]
        return iter(chunks[::-1])

    with engine.connect() as conn:
        as_read = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
        monkeypatch.setattr(flag_engine, "state_as_of", in_key_order)
        keyed = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
        monkeypatch.setattr(flag_engine, "state_as_of", reversed_order)
        backwards = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
        monkeypatch.setattr(flag_engine, "SPILL_ROWS", 100)
        spilled_backwards = evaluate(conn, AS_OF, policy, chunk_rows=1_000)
    assert set(orders) == {False}  # the engine asks for no order
    assert {"SD-IP-REPEAT", "SD-PATENT-MASS"} <= set(keyed.flags["rule_id"])
    for other in (as_read, backwards, spilled_backwards):
        pd.testing.assert_frame_equal(other.flags, keyed.flags)
        pd.testing.assert_frame_equal(other.evidence, keyed.evidence)
        assert other.unidentified == keyed.unidentified


def test_an_evaluation_spilled_to_disk_comes_back_exactly(
    engine: Engine, _isolated_home: Path, run: Callable[..., RunSummary]
) -> None:
    """`evaluate_flags` hands the evaluation over on disk (the run publishes from it): the
    frames come back equal, dtypes included, and the folder goes with the object."""
    folder = _isolated_home / "inbox" / OFFICES["penalty"] / "penalty"
    folder.mkdir(parents=True)
    generate_file("penalty", 4_000, folder / "penalty.csv", seed=5, error_rate=0.0)
    summary = run(AS_OF)
    assert summary.flags is not None and summary.flags.new > 0
    with engine.connect() as conn:
        held = evaluate(conn, AS_OF, load_policy())
    spilled = held.spill()
    where = Path(spilled.folder.name)
    back = spilled.load()
    pd.testing.assert_frame_equal(back.flags, held.flags)
    pd.testing.assert_frame_equal(back.evidence, held.evidence)
    assert (back.as_of, back.policy_version, back.unidentified) == (
        held.as_of,
        held.policy_version,
        held.unidentified,
    )
    kept = copy.deepcopy(spilled)  # e.g. dataclasses.asdict of a summary holding it
    del spilled
    assert where.exists()  # the copy is the same object: its folder stays
    pd.testing.assert_frame_equal(kept.load().flags, held.flags)
    del kept
    assert not where.exists()


def test_flags_evaluated_when_the_evaluation_cannot_be_spilled(
    engine: Engine,
    _isolated_home: Path,
    run: Callable[..., RunSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full temporary folder does not fail the flag step: the registry is committed, and a
    publication that follows evaluates again."""
    folder = _isolated_home / "inbox" / OFFICES["penalty"] / "penalty"
    folder.mkdir(parents=True)
    generate_file("penalty", 2_000, folder / "penalty.csv", seed=5, error_rate=0.0)

    def no_space(self: Evaluation) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Evaluation, "spill", no_space)
    summary = run(AS_OF)
    assert summary.flags is not None and summary.flags.new > 0
    assert summary.flags.evaluation is None


def test_the_registry_written_in_slices_equals_it_written_at_once(
    engine: Engine,
    _isolated_home: Path,
    run: Callable[..., RunSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Content hashes and inserts a few flags at a time (memory flat in the number of flags)
    give the registry rows of one pass over all of them."""
    folder = _isolated_home / "inbox" / OFFICES["penalty"] / "penalty"
    folder.mkdir(parents=True)
    generate_file("penalty", 4_000, folder / "penalty.csv", seed=5, error_rate=0.0)
    assert not run(AS_OF).failed  # records the flags; each pass below starts from none
    with engine.connect() as conn:
        evaluation = evaluate(conn, AS_OF, load_policy())
    assert len(evaluation.flags) > 20

    def registry_rows() -> dict[str, pd.DataFrame]:
        with engine.connect() as conn, conn.begin() as tx:
            for table in (flag_evidence, flag_evaluation, flag):
                conn.execute(table.delete())
            flag_registry.record(conn, evaluation)
            tables = {
                name: pd.read_sql_table(name, conn)
                .drop(columns=["updated_at"], errors="ignore")
                .sort_values(keys, ignore_index=True)
                for name, keys in (("flag", ["id"]), ("flag_evidence", ["flag_id", "position"]))
            }
            tx.rollback()
        return tables

    whole = registry_rows()
    monkeypatch.setattr(flag_registry, "_HASH_FLAGS", 7)
    monkeypatch.setattr(flag_registry, "_INSERT_ROWS", 5)
    sliced = registry_rows()
    assert len(whole["flag"]) == len(evaluation.flags)
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(sliced[name], frame)
