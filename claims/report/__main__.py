"""`python -m claims.report [REPORT_DIR] --readme docs/results.md`: a report's summary table into that file."""

from claims.report.readme import main

raise SystemExit(main())
