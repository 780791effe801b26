"""Bulk writes in one statement each, whatever the number of rows.

On PostgreSQL rows travel as one array per column and are expanded with `unnest`: the statement
has a handful of parameters instead of one per value, so neither Django nor psycopg spends time
compiling it (Django's `bulk_update` builds a CASE WHEN per field and row: seconds for a few
hundred rows). Elsewhere (SQLite, the embedded default, small batches) Django's own bulk methods.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import DecimalField, Field, JSONField, Model


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _array_type(field: Field) -> str:
    db_type = field.db_type(connection)
    if db_type is None:  # a relation: its target's column type
        db_type = field.target_field.rel_db_type(connection)  # type: ignore[attr-defined]
    if db_type.endswith("serial"):
        db_type = {"bigserial": "bigint", "serial": "integer", "smallserial": "smallint"}[db_type]
    return f"{db_type}[]"


_PLAIN = (str, int, Decimal, datetime, date)  # bool is an int


def _db_value(field: Field, value: Any) -> Any:
    if isinstance(field, JSONField):
        return None if value is None else json.dumps(value, ensure_ascii=False)
    if isinstance(field, DecimalField) and isinstance(value, (int, float)):
        return Decimal(str(value))  # one type per array (a default of 0 is an int)
    if value is None or type(value) in _PLAIN or isinstance(value, _PLAIN):
        # What psycopg adapts itself: Django's per-value preparation (number formatting,
        # time-zone checks) is most of the cost of a bulk write otherwise. Times here are
        # always aware (chargers.events.values.parse_time).
        return value
    return field.get_db_prep_save(value, connection)


def insert_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT rows (tuples in the order of `fields`, Python values) ON CONFLICT DO NOTHING."""
    if not rows:
        return
    meta = model._meta
    columns = [meta.get_field(f) for f in fields]
    if not _is_postgres():
        model._default_manager.bulk_create(  # type: ignore[attr-defined]
            [model(**{c.attname: v for c, v in zip(columns, row, strict=True)}) for row in rows],
            ignore_conflicts=True,
            batch_size=500,
        )
        return
    qn = connection.ops.quote_name
    arrays = [[_db_value(c, row[i]) for row in rows] for i, c in enumerate(columns)]
    names = ", ".join(qn(c.column) for c in columns)  # type: ignore[attr-defined]
    unnest = ", ".join(f"%s::{_array_type(c)}" for c in columns)
    with connection.cursor() as cursor:
        # Names come from the model's metadata, values travel as parameters.
        sql = f"INSERT INTO {qn(meta.db_table)} ({names}) SELECT * FROM unnest({unnest})"  # noqa: S608
        cursor.execute(sql + " ON CONFLICT DO NOTHING", arrays)


def update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write `fields` of `objs` (saved instances) in one UPDATE … FROM unnest(…)."""
    if not objs:
        return
    if not _is_postgres():
        model._default_manager.bulk_update(objs, fields)  # type: ignore[attr-defined]
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [meta.get_field(f) for f in fields]
    qn = connection.ops.quote_name
    arrays: list[list[Any]] = [[] for _ in range(len(columns) + 1)]
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="update_rows")
        arrays[0].append(obj.pk)
        for i, c in enumerate(columns, start=1):
            arrays[i].append(_db_value(c, getattr(obj, c.attname)))  # type: ignore[attr-defined]
    names = ", ".join(qn(c.column) for c in [pk, *columns])  # type: ignore[attr-defined]
    unnest = ", ".join(f"%s::{_array_type(c)}" for c in [pk, *columns])
    assignments = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}" for c in columns)  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        # Names come from the model's metadata, values travel as parameters.
        sql = f"UPDATE {qn(meta.db_table)} AS t SET {assignments} FROM unnest({unnest})"  # noqa: S608
        cursor.execute(f"{sql} AS v({names}) WHERE t.{qn(pk.column)} = v.{qn(pk.column)}", arrays)
