"""Publication to the credit platform: publicity windows, masking, extracts, deltas, manifests.

`policy` loads `schemas/policy/publicity.v1.yaml` (profiles `samr-45`, `ndrc-2026`); `windows`
says which penalties are public on a date and until when; `masking` prepares a frame for the
public extracts. All of them are pure functions over pandas frames: no I/O beyond the policy file.
"""
