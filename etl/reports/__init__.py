"""Office receipts, KPI and data-quality reports."""
