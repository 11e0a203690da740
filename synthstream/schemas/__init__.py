"""schemas: what crosses a topic.

Record schemas (inferred or given, expressed in Avro), serde for JSON and Avro with Confluent
framing, and the pydantic event models of every output topic with their Avro schemas.
"""
