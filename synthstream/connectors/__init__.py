"""connectors: the edges, all I/O.

Kafka clients (aiokafka), the embedded broker, file sources (CSV/Parquet/JSONL replay), and
sinks/stores (Parquet, DuckDB).
"""
