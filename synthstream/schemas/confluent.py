"""What synthstream's Avro schemas look like in a Schema Registry: standard Avro only.

synthstream's Avro form of a record schema carries two attributes of its own per field:
``role`` (how generators and redaction treat the field) and ``original_name`` (the record
key when it is not a valid Avro name). Avro allows extra attributes, but Confluent tooling
and other registries' normalisers do not expect them, so the schema *registered* keeps them
in the field's ``doc`` instead, behind a marker, and :func:`from_registry` restores them on
the way back (so a decoder still returns original record keys). The binary encoding does not
depend on attributes or docs: data written with either form reads with the other.

>>> avro = {"type": "record", "name": "R", "fields": [
...     {"name": "education_num", "type": "long", "role": "numeric", "original_name": "education-num"}]}
>>> registered = to_registry(avro)
>>> registered["fields"][0]
{'name': 'education_num', 'type': 'long', 'doc': 'synthstream:{"original_name":"education-num","role":"numeric"}'}
>>> from_registry(registered) == avro
True
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

#: Field attributes of synthstream's own that the registered schema moves into ``doc``.
OWN_ATTRIBUTES: Final = ("role", "original_name")
#: Marker that starts the attributes kept in a field's doc.
DOC_MARKER: Final = "synthstream:"
_SEPARATOR: Final = "\n"


def to_registry(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` without non-standard field attributes (kept in each field's ``doc``)."""
    out = copy.deepcopy(schema)
    for field in out.get("fields", []) if isinstance(out, dict) else []:
        own = {k: field.pop(k) for k in OWN_ATTRIBUTES if k in field}
        if not own:
            continue
        note = DOC_MARKER + json.dumps(own, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        doc = field.get("doc")
        field["doc"] = f"{doc}{_SEPARATOR}{note}" if doc else note
    return out


def from_registry(schema: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_registry`: attributes kept in docs become attributes again.

    Schemas that other producers registered have no marker and come back unchanged.
    """
    if not isinstance(schema, dict):
        return schema
    out = copy.deepcopy(schema)
    for field in out.get("fields", []):
        doc = field.get("doc")
        if not isinstance(doc, str) or DOC_MARKER not in doc:
            continue
        before, _, note = doc.rpartition(DOC_MARKER)
        try:
            own = json.loads(note)
        except ValueError:
            continue
        if not isinstance(own, dict):
            continue
        field.update({k: v for k, v in own.items() if k in OWN_ATTRIBUTES})
        before = before.removesuffix(_SEPARATOR)
        if before:
            field["doc"] = before
        else:
            del field["doc"]
    return out


def full_name(schema: dict[str, Any]) -> str:
    """The full name (``namespace.Name``) of a named Avro schema: the subject of the record strategy."""
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"
