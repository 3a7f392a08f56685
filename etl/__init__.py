"""creditpipe: the enforcement credit-information sharing pipeline (library; imports no Airflow)."""

__version__ = "0.1.0"
