"""The benchmark suite: workloads, providers, measurement and reports, shared by the
`kgqa-bench` CLI and the pytest-benchmark files in benchmarks/."""
