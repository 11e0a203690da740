"""Benchmarks: ours and the peers side by side, same data, same machine (see DESIGN.md)."""
