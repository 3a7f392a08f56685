"""Tests of the Airflow DAGs (dags/).

Airflow reads its configuration once, when it is first imported. Importing this package (which
pytest does before any test module in it) points Airflow at a throw-away home with its own
SQLite metadata database, the project's DAG folder and no example DAGs, so the tests never touch
a real Airflow installation; the folder is removed when the test session ends. The databases'
tables are created by the `airflow_db` fixture of the end-to-end test, only when it runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

if "airflow" in sys.modules:  # too late to configure it: fail loudly rather than test elsewhere
    raise RuntimeError("Airflow was imported before tests/dags could configure it")

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="creditpipe-airflow-test-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)
