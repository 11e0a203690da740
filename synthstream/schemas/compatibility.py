"""Avro schema compatibility, as a Schema Registry checks it before registering a new version.

The rules are Avro's schema resolution rules (the specification's "Schema Resolution"): a
*reader* schema can read data written with a *writer* schema when

- both are the same primitive, or the writer's is promotable (``int`` -> ``long``/``float``/``double``,
  ``long`` -> ``float``/``double``, ``float`` -> ``double``, ``string`` <-> ``bytes``);
- both are records of the same name (or a reader alias), every reader field is either in the
  writer (by name or alias; types recursively readable) or has a default;
- both are enums of the same name and every writer symbol is a reader symbol (or the reader has a default);
- arrays/maps whose items/values are readable; fixed of the same name and size;
- the writer is a union and *every* branch is readable by the reader; or the reader is a union
  and *some* branch reads the (non-union) writer.

Logical types are ignored (their underlying types decide), as Confluent's checker does.

Levels (Confluent's names): ``BACKWARD`` the new schema reads data of the latest version,
``FORWARD`` the latest reads the new one's data, ``FULL`` both; the ``*_TRANSITIVE`` forms
check against every earlier version instead of the latest; ``NONE`` checks nothing.

>>> old = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
>>> new = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"},
...        {"name": "b", "type": "string"}]}
>>> check_compatibility(new, [old], "BACKWARD")
["new schema cannot read old data: reader field 'R.b' has no default and is missing from the writer"]
>>> new["fields"][1]["default"] = ""
>>> check_compatibility(new, [old], "FULL")
[]
"""

from __future__ import annotations

from typing import Any, Final

#: Compatibility levels a registry accepts, in Confluent's spelling.
COMPATIBILITY_LEVELS: Final = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)

_PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS: Final = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED: Final = frozenset({"record", "enum", "fixed", "error"})
_COMPLEX: Final = _NAMED | {"array", "map"}


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def named_types(schema: Any, namespace: str | None = None, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type (record, enum, fixed) defined in ``schema``, by full name and by short name."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, namespace, out)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED and isinstance(schema.get("name"), str):
            full = _fullname(schema["name"], schema.get("namespace", namespace))
            ns = full.rpartition(".")[0] or None
            out[full] = schema
            out.setdefault(full.rpartition(".")[2], schema)
            for field in schema.get("fields", []) or []:
                if isinstance(field, dict):
                    named_types(field.get("type"), ns, out)
        elif kind in ("array", "map"):
            named_types(schema.get("items", schema.get("values")), namespace, out)
        elif isinstance(kind, (dict, list)):
            named_types(kind, namespace, out)
    return out


class _Checker:
    """One reader/writer pair: resolves named references and records every problem found."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names = named_types(reader)
        self.writer_names = named_types(writer)
        self.problems: list[str] = []
        self._seen: set[tuple[int, int]] = set()

    def _resolve(self, schema: Any, names: dict[str, Any]) -> Any:
        # A reference to a named type by name, a {"type": <primitive>} wrapper or a logical type.
        while True:
            if isinstance(schema, str) and schema not in _PRIMITIVES:
                found = names.get(schema) or names.get(schema.rpartition(".")[2])
                if found is None:
                    return schema
                schema = found
            elif isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
                schema = schema["type"]
            elif isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
                return schema["type"]
            elif isinstance(schema, dict) and isinstance(schema.get("type"), str) and schema["type"] not in _COMPLEX:
                schema = schema["type"]  # {"type": "<a named type>"}
            else:
                return schema

    def readable(self, reader: Any, writer: Any, where: str) -> bool:
        """Whether ``reader`` reads ``writer``'s data; problems are appended to :attr:`problems`."""
        reader = self._resolve(reader, self.reader_names)
        writer = self._resolve(writer, self.writer_names)
        if isinstance(writer, list):
            ok = True
            for branch in writer:
                ok = self.readable(reader, branch, where) and ok
            return ok
        if isinstance(reader, list):
            mark = len(self.problems)
            for branch in reader:
                if self.readable(branch, writer, where):
                    del self.problems[mark:]
                    return True
                del self.problems[mark:]
            self.problems.append(f"{where}: no branch of the reader's union reads the writer's {_kind(writer)}")
            return False
        rkind, wkind = _kind(reader), _kind(writer)
        if rkind in _PRIMITIVES or wkind in _PRIMITIVES:
            if rkind == wkind or rkind in _PROMOTIONS.get(wkind, ()):
                return True
            self.problems.append(f"{where}: the reader's {rkind} cannot read the writer's {wkind}")
            return False
        if rkind != wkind and not ({rkind, wkind} <= {"record", "error"}):
            self.problems.append(f"{where}: the reader's {rkind} cannot read the writer's {wkind}")
            return False
        if rkind in ("record", "error", "enum", "fixed") and not _same_name(reader, writer):
            self.problems.append(f"{where}: the reader's {rkind} {reader.get('name')!r} is not {writer.get('name')!r}")
            return False
        if rkind in ("record", "error"):
            return self._records(reader, writer)
        if rkind == "enum":
            missing = [s for s in writer.get("symbols", []) if s not in set(reader.get("symbols", []))]
            if missing and "default" not in reader:
                self.problems.append(f"{where}: the reader's enum lacks the writer's symbols {missing}")
                return False
            return True
        if rkind == "fixed":
            if reader.get("size") != writer.get("size"):
                self.problems.append(f"{where}: fixed sizes differ ({reader.get('size')} vs {writer.get('size')})")
                return False
            return True
        if rkind == "array":
            return self.readable(reader.get("items"), writer.get("items"), f"{where}[]")
        if rkind == "map":
            return self.readable(reader.get("values"), writer.get("values"), f"{where}{{}}")
        self.problems.append(f"{where}: unknown type {rkind!r}")
        return False

    def _records(self, reader: dict[str, Any], writer: dict[str, Any]) -> bool:
        key = (id(reader), id(writer))
        if key in self._seen:  # a recursive type: assume readable on the second visit
            return True
        self._seen.add(key)
        writer_fields = {f["name"]: f for f in writer.get("fields", [])}
        ok = True
        for field in reader.get("fields", []):
            where = f"{reader.get('name')}.{field['name']}"
            candidates = [field["name"], *field.get("aliases", [])]
            source = next((writer_fields[n] for n in candidates if n in writer_fields), None)
            if source is None:
                if "default" not in field:
                    self.problems.append(f"reader field {where!r} has no default and is missing from the writer")
                    ok = False
                continue
            ok = self.readable(field.get("type"), source.get("type"), f"field {where!r}") and ok
        return ok


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return "union" if isinstance(schema, list) else type(schema).__name__


def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    wname = str(writer.get("name", "")).rpartition(".")[2]
    names = {str(reader.get("name", "")).rpartition(".")[2]}
    names.update(str(a).rpartition(".")[2] for a in reader.get("aliases", []))
    return wname in names


def reader_problems(reader: Any, writer: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    checker = _Checker(reader, writer)
    checker.readable(reader, writer, "schema")
    return checker.problems


def check_compatibility(new: Any, previous: list[Any], level: str) -> list[str]:
    """Problems that make ``new`` incompatible with ``previous`` versions (oldest first) under ``level``.

    An empty list means compatible. ``level`` is one of :data:`COMPATIBILITY_LEVELS`.
    """
    if level not in COMPATIBILITY_LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; choose one of {list(COMPATIBILITY_LEVELS)}")
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    problems: list[str] = []
    for old in against:
        if backward:
            problems += [f"new schema cannot read old data: {p}" for p in reader_problems(new, old)]
        if forward:
            problems += [f"old schema cannot read new data: {p}" for p in reader_problems(old, new)]
    return problems
