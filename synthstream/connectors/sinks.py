"""Drain any topic into Parquet or DuckDB, for inspection with SQL or pandas.

A drain reads a topic from the beginning up to the high-water marks seen when it starts
(so it terminates on a live topic), decodes each value (Confluent Avro via the schema
store, else JSON), and appends rows with ``_topic``, ``_partition``, ``_offset``,
``_timestamp_ms`` and ``_key`` (the record key as text) columns, plus ``_entity`` on topics whose
records carry a ``synthstream-entity`` header (the sequence feed's synthetic entity id).
Values that decode to neither are counted, never dropped silently, and reported in
:class:`DrainReport`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from synthstream.connectors.kafka import read_to_end
from synthstream.errors import SerdeError
from synthstream.schemas.serde import AvroDecoder, SchemaStore, decode_json_object
from synthstream.settings import KafkaSettings

Row = dict[str, Any]

#: The sequence feed's entity header (streams.sequence_publisher.HEADER_ENTITY; connectors import no streams).
HEADER_ENTITY = "synthstream-entity"


class Sink(Protocol):
    """Somewhere rows can be appended to in batches."""

    def write(self, rows: list[Row]) -> None:
        """Append ``rows``."""
        ...

    def close(self) -> None:
        """Flush and release the destination."""
        ...


class AutoDecoder:
    """Decodes Confluent-framed Avro (writer schema from the store) or a JSON object."""

    def __init__(self, store: SchemaStore | None = None) -> None:
        self.store = store
        self._avro = AvroDecoder(store) if store is not None else None

    def __repr__(self) -> str:
        return f"AutoDecoder(store={self.store!r})"

    def __call__(self, value: bytes) -> Row:
        """Return the value as a dict; :class:`SerdeError` when it is neither."""
        if value[:1] == b"\x00" and self._avro is not None:
            return self._avro(value)
        return decode_json_object(value)


def _nested(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple))


def _as_json(value: Any) -> str | None:
    """A nested value as canonical JSON text (``None`` stays null)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


class ParquetSink:
    """Appends rows to one Parquet file; the schema is fixed by the first batch.

    Nested values (maps, structs, lists: a stats event's ``means``, a published Avro schema)
    are written as JSON text columns. Parquet cannot hold an empty struct (a window with no
    numeric field has ``means: {}``), and maps whose keys or union members vary between
    records (Avro schemas mix strings and objects in ``type``) have no single Arrow type; JSON
    text represents every one of them and reads back with ``json.loads`` or DuckDB's
    ``json`` functions. A column is JSON as soon as any value of it is nested.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self._json_columns: set[str] = set()

    def __repr__(self) -> str:
        return f"ParquetSink(path={str(self.path)!r})"

    def _flatten(self, rows: list[Row]) -> list[Row]:
        for row in rows:
            self._json_columns.update(k for k, v in row.items() if _nested(v))
        if not self._json_columns:
            return rows
        return [{k: _as_json(v) if k in self._json_columns else v for k, v in row.items()} for row in rows]

    def write(self, rows: list[Row]) -> None:
        """Append a batch as one row group."""
        if not rows:
            return
        rows = self._flatten(rows)
        table = pa.Table.from_pylist(rows) if self._writer is None else pa.Table.from_pylist(rows, self._writer.schema)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file footer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class DuckDBSink:
    """Appends rows to a DuckDB table, created from the first batch's columns."""

    def __init__(self, path: Path, table: str) -> None:
        if not table.replace("_", "").isalnum():
            raise ValueError("table must be letters, digits and underscores")
        self.path = path
        self.table = table
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(path))
        self._created = False

    def __repr__(self) -> str:
        return f"DuckDBSink(path={str(self.path)!r}, table={self.table!r})"

    def write(self, rows: list[Row]) -> None:
        """Insert a batch (via Arrow, no per-row SQL)."""
        if not rows:
            return
        batch = pa.Table.from_pylist(rows)
        self._con.register("_synthstream_batch", batch)
        try:
            if not self._created:
                create = f'CREATE TABLE IF NOT EXISTS "{self.table}" AS SELECT * FROM _synthstream_batch LIMIT 0'  # noqa: S608 - identifier checked in __init__
                self._con.execute(create)
                self._created = True
            self._con.execute(f'INSERT INTO "{self.table}" BY NAME SELECT * FROM _synthstream_batch')  # noqa: S608 - identifier checked in __init__
        finally:
            self._con.unregister("_synthstream_batch")

    def close(self) -> None:
        """Checkpoint and close the database."""
        self._con.close()


@dataclass(frozen=True)
class DrainReport:
    """What a drain wrote."""

    topic: str
    written: int
    undecodable: int


class TopicDrain:
    """Reads a topic from the start to the high-water marks seen at start, in batches."""

    def __init__(self, settings: KafkaSettings, topic: str, decoder: AutoDecoder, *, batch_size: int = 5_000) -> None:
        self.settings = settings
        self.topic = topic
        self.decoder = decoder
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"TopicDrain(topic={self.topic!r})"

    async def into(self, sink: Sink) -> DrainReport:
        """Write every decodable record into ``sink``; count the rest."""
        written = undecodable = 0
        async for batch in read_to_end(self.settings, self.topic, max_records=self.batch_size):
            rows: list[Row] = []
            for rec in batch:
                row = self._decode(rec.value)
                if row is None:
                    undecodable += 1
                    continue
                row.update(_topic=rec.topic, _partition=rec.partition, _offset=rec.offset, _timestamp_ms=rec.timestamp)
                # The key and the synthetic entity header tell sequences apart (issue 16): kept, as text.
                row["_key"] = rec.key.decode("utf-8", "replace") if rec.key is not None else None
                entity = next((v for k, v in rec.headers or () if k == HEADER_ENTITY), None)
                if entity is not None:
                    row["_entity"] = entity.decode("utf-8", "replace")
                rows.append(row)
            sink.write(rows)
            written += len(rows)
        return DrainReport(topic=self.topic, written=written, undecodable=undecodable)

    def _decode(self, value: bytes | None) -> Row | None:
        if value is None:
            return None
        try:
            return self.decoder(value)
        except SerdeError:
            return None
