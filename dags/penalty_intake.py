"""
### penalty_intake — 行政处罚 drops into the store (Airflow DAG)

Every 15 minutes (Asia/Shanghai; `CREDITPIPE_INTAKE_SCHEDULE` overrides the cron expression)
and on demand:

1. **list_new_drops** lists `inbox/<office>/penalty/` and gives refused entries (unknown office,
   dataset the office may not submit, symlinks) their receipt in `outbox/<office>/`.
2. **process_file**, one mapped task per file (named after the file): archive by sha256,
   register, check every row against `schemas/penalty.v1.yaml`, load the accepted rows with a
   versioned upsert in one transaction, write the receipt, clear the file from the inbox. A
   file that fails is rolled back, stays in the inbox and fails only its own task.
3. **announce** emits `creditpipe://store/penalty` when records changed (inserted, corrected,
   withdrawn), which triggers `credit_publish`; it is skipped otherwise.
4. **totals**: files and rows accepted/rejected; failed if any file failed.

Rerunning a task is harmless: a file already processed is gone from the inbox (`vanished`), and
the same content dropped again is recognised as a duplicate and not loaded twice.
Param `as_of` (YYYY-MM-DD) sets the business date used for the date checks; default: today.
"""

from __future__ import annotations

from _creditpipe import intake_dag

penalty_intake = intake_dag("penalty", __doc__)
