"""
### abnormal_patent_intake — 非正常专利申请 drops into the store (Airflow DAG)

Every 15 minutes (Asia/Shanghai; `CREDITPIPE_INTAKE_SCHEDULE` overrides the cron expression)
and on demand:

1. **list_new_drops** lists `inbox/<office>/abnormal_patent/` and gives refused entries their
   receipt in `outbox/<office>/`.
2. **process_file**, one mapped task per file: archive, register, check against
   `schemas/abnormal_patent.v1.yaml` (申请号, district, the 处理状态 lifecycle), versioned load,
   receipt. A district office may report only its own district; `sh-ipa` reports any. A file
   that fails is rolled back, stays in the inbox and fails only its own task.
3. **announce** emits `creditpipe://store/abnormal_patent` when records changed, which triggers
   `credit_publish`; it is skipped otherwise.
4. **totals**: files and rows accepted/rejected; failed if any file failed.

Rerunning a task is harmless (a processed file has left the inbox; repeated content is a
duplicate). Param `as_of` (YYYY-MM-DD) sets the business date; default: today.
"""

from __future__ import annotations

from _creditpipe import intake_dag

abnormal_patent_intake = intake_dag("abnormal_patent", __doc__)
