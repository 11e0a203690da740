"""evaluation: quality and privacy metrics used by the auditor, the demo summary and the benchmarks."""
