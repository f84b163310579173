"""The claims report: a compact table in the terminal; report.md, summary.md, report.json and PNG plots on disk.

- `model`: `SuiteReport` and `build_report` (a finished scheduler's claims, decisions, runs and provenance, Holm and
  Benjamini-Hochberg applied), and the values every view shares;
- `text`: the terminal table and report.md / summary.md;
- `schema`: report.json, its schema versioned, every field named by its unit;
- `plots`: one PNG a claim and one of its training curves;
- `write`: the report folder (`reports/<timestamp>-<profile>/` and `reports/latest/`);
- `readme`: the README writer (generated blocks between marker lines), and `python -m claims.report`.

This package imports none of them, so `claims.report.readme` stays light for the commands that only fill docs.
"""
