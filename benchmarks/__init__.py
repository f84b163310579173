"""Speed measurements, each a script (`python benchmarks/throughput.py`, `figures.py`, `layouts.py`, `executors.py`,
`gpu_check.py`); the throughput benchmark's parts are modules of this package (`benchmarks.arms`, `.timing`,
`.workers`, `.flops`)."""
