"""Bulk writes in one statement each, whatever the number of rows.

On PostgreSQL all rows travel as one JSON parameter expanded with `jsonb_array_elements` and
cast to the columns' types (jsonb, not json: the text is parsed once, where `->>` on a json
value parses the row again for each column): the statement has one parameter instead of one
per value, so neither Django nor psycopg spends time compiling it (Django's `bulk_update`
builds a CASE WHEN per field and row: seconds for a few hundred rows; psycopg quotes list items
one by one in Python). Reads of a batch's rows by a list of keys use `among` (one array
parameter) for the same reason. Elsewhere (SQLite, the embedded default) Django's own bulk
methods and `__in`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar, cast

import orjson
from django.db import connection
from django.db.models import F, Field, JSONField, Model, Q, QuerySet
from django.db.models.base import ModelState
from django.db.models.lookups import Lookup
from psycopg.adapt import Loader


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _db_type(field: Field) -> str:
    db_type = field.db_type(connection)
    if db_type is None:  # a relation: its target's column type
        db_type = field.target_field.rel_db_type(connection)  # type: ignore[attr-defined]
    return {"bigserial": "bigint", "serial": "integer", "smallserial": "smallint"}.get(
        db_type, db_type
    )


def _json_default(value: Any) -> str:
    # Decimal and datetime: their text form, which PostgreSQL reads back exactly.
    if isinstance(value, Decimal):
        return str(value)
    return _isoformat(value) if isinstance(value, (datetime, date)) else str(value)


@lru_cache(maxsize=4096)
def _isoformat(value: date) -> str:
    # The samples of a batch share a few times (one per meter value): formatted once each.
    return value.isoformat()


class _FastTimestamptzLoader(Loader):
    """What Django's timestamptz loader returns (an aware datetime in the connection's time
    zone, `timezone` set to it), parsed by psycopg's C loader: Django's loader is a Python
    subclass of psycopg's pure-Python one, and parsing the times of the rows a batch reads was
    a tenth of the worker's CPU."""

    timezone: tzinfo | None = None
    _c_loader: Any = None

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._load = self._c_loader(oid, context).load

    def load(self, data: Any) -> datetime:
        return self._load(data).replace(tzinfo=self.timezone)


def use_fast_timestamps() -> None:
    """Read timestamptz columns with psycopg's C parser on this connection (the worker's);
    values are the same as Django's. Django keeps a loader whose `timezone` matches the
    connection's, so registering it once per connection is enough."""
    if not _is_postgres():
        return
    from psycopg.pq import Format

    connection.ensure_connection()
    adapters = connection.connection.adapters
    oid = adapters.types["timestamptz"].oid
    current = adapters.get_loader(oid, Format.TEXT)
    if current is not None and issubclass(current, _FastTimestamptzLoader):
        return
    c_loader = _c_loader(oid)
    if c_loader is None:
        return  # no C implementation installed: Django's loader stays
    loader = type(
        "FastTimestamptzLoader",
        (_FastTimestamptzLoader,),
        {"timezone": connection.timezone, "_c_loader": c_loader},
    )
    adapters.register_loader(oid, loader)


def _c_loader(oid: int) -> Any:
    """psycopg's C text loader of type `oid`, or None when only the Python one is installed."""
    import psycopg
    from psycopg.pq import Format

    loader = psycopg.adapters.get_loader(oid, Format.TEXT)
    return loader if loader is not None and loader.__module__.startswith("psycopg_") else None


def _c_timestamptz_loader() -> tuple[int, Any] | None:
    """(oid, psycopg's C timestamptz loader) when it gives the very values Django's loader
    gives: times in the `tzinfo` object of Django's connection (UTC sessions, where psycopg
    gives `datetime.timezone.utc` too). Registered on one cursor of `load_where` only, it skips
    even `_FastTimestamptzLoader`'s Python call per value (a batch reads a few thousand times;
    half the CPU of reading its chargers). It cannot be the connection's: Django checks the
    `timezone` attribute of the connection's loader, which a C class cannot carry."""
    raw = connection.connection
    oid = raw.adapters.types["timestamptz"].oid
    c_loader = _c_loader(oid)
    if c_loader is None:
        return None
    sample = c_loader(oid, raw).load(b"2000-01-01 00:00:00+00")
    return (oid, c_loader) if sample.tzinfo is connection.timezone else None


class _AnyOf(Lookup):
    """`column = ANY(%s::type[])`: one array parameter however many values. An `IN (%s, %s,
    …)` of a few hundred identities or ids costs more in Python than in the database: Django
    prepares each value, and psycopg parses and composes a query text that is new each time
    (its cache holds short queries only)."""

    lookup_name = "sparklin_any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> tuple[str, list[Any]]:
        field = cast(Field, self.lhs.output_field)
        return "%s", [[field.get_db_prep_value(v, connection) for v in value]]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, rhs_params = self.process_rhs(compiler, connection)
        # The base type, without a length: a cast to varchar(48)[] would truncate.
        array_type = _db_type(cast(Field, self.lhs.output_field)).split("(")[0]
        return f"{lhs} = ANY(%s::{array_type}[])", [*lhs_params, *rhs_params]


def among(field: str, values: Iterable[Any]) -> Q:
    """The filter `field__in=values`, as one array parameter on PostgreSQL (`_AnyOf`)."""
    values = list(values)
    if not _is_postgres():
        return Q(**{f"{field}__in": values})
    return Q(_AnyOf(F(field), values))


M = TypeVar("M", bound=Model)


def load_rows(queryset: QuerySet[M]) -> list[M]:
    """The rows of `queryset` as model instances, like iterating it, at a third of the cost:
    each instance gets its column values in its `__dict__` at once, where `Model.from_db` goes
    through `__init__`, a `setattr` and a descriptor per field, and the pre/post_init signals
    (no receiver for the worker's models; `test_event_sql` checks both give the same
    instances). A batch reads about two rows per event: this was a tenth of the worker's CPU."""
    model = queryset.model
    names = [f.attname for f in model._meta.concrete_fields]
    return _instances(model, names, queryset.values_list(*names), queryset.db)


def _instances(model: type[M], names: Sequence[str], rows: Iterable[Any], db: str) -> list[M]:
    """Saved instances of `model` from rows of values in the order of `names` (attribute
    names), each put in its `__dict__` at once (`load_rows`)."""
    found: list[M] = []
    append = found.append
    new = model.__new__
    for row in rows:
        obj = new(model)
        state = ModelState()
        state.adding = False
        state.db = db
        values = obj.__dict__
        values.update(zip(names, row, strict=True))
        values["_state"] = state
        append(obj)
    return found


@lru_cache(maxsize=32)
def _select_sql(
    model: type[Model],
) -> tuple[str, tuple[str, ...], tuple[tuple[int, Any, Any], ...]]:
    """SELECT of every concrete column, their attribute names, and the converters Django would
    apply to them (a JSONField's decoding), by column position."""
    meta = model._meta
    qn = connection.ops.quote_name
    fields = meta.concrete_fields
    columns = ", ".join(f"{qn(meta.db_table)}.{qn(str(f.column))}" for f in fields)
    converters = tuple(
        (i, converter, f.get_col(meta.db_table))
        for i, f in enumerate(fields)
        for converter in f.get_db_converters(connection)  # type: ignore[attr-defined]
    )
    select = f"SELECT {columns} FROM {qn(meta.db_table)}"  # noqa: S608 (names from the model)
    return select, tuple(f.attname for f in fields), converters


def load_where(model: type[M], where: str, params: Sequence[Any]) -> list[M]:
    """The rows of `model` matching `where` (raw PostgreSQL, everything after the table name:
    conditions, order, lock), as `load_rows` builds them, with the values Django gives (its
    converters applied). The statement is composed once per process: compiling the batch's
    querysets (and Django's row-by-row iteration) cost about as much as reading the rows, and
    the ORM cannot express some reads without losing their index (an OR of two keyed
    conditions)."""
    select, names, converters = _select_sql(model)
    with connection.cursor() as cursor:
        c_loader = _c_timestamptz_loader()
        if c_loader is not None:
            cursor.cursor.adapters.register_loader(c_loader[0], c_loader[1])
        cursor.execute(f"{select} {where}", params)
        rows = cursor.fetchall()
    if converters:
        rows = [list(row) for row in rows]
        for row in rows:
            for i, converter, expression in converters:
                row[i] = converter(row[i], expression, connection)
    return _instances(model, names, rows, connection.alias)


def _rows_sql(columns: Sequence[Field]) -> str:
    """SELECT expressions reading column i of each JSON row `r`, cast to its column's type."""
    parts = []
    for i, c in enumerate(columns):
        if isinstance(c, JSONField):
            parts.append(f"(r->{i})::jsonb")
        else:
            parts.append(f"(r->>{i})::{_db_type(c)}")
    return ", ".join(parts)


def _orjson_default(value: Any) -> str:
    # What orjson does not encode itself (it does datetimes, dates, UUIDs): Decimal as its
    # text, like `_json_default`.
    return str(value)


def _rows_param(rows: Sequence[Sequence[Any]]) -> str:
    """All rows as one JSON text: a single parameter, serialised in C, that PostgreSQL expands
    with jsonb_array_elements. Quoting thousands of values one by one in Python (psycopg's
    client-side binding of lists) would cost more than the database does. orjson encodes a
    batch's rows 4–5× faster than the json module, whose encoder called `_json_default` for
    every Decimal and datetime; what orjson refuses (an integer beyond 64 bits in a logged
    frame, text that is not valid UTF-8) goes through the json module as before."""
    try:
        return orjson.dumps(rows, default=_orjson_default).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def insert_rows(model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT rows (tuples in the order of `fields`, Python values) ON CONFLICT DO NOTHING."""
    if not rows:
        return
    meta = model._meta
    columns = [cast(Field, meta.get_field(f)) for f in fields]
    if not _is_postgres():
        model._default_manager.bulk_create(
            [model(**{c.attname: v for c, v in zip(columns, row, strict=True)}) for row in rows],
            ignore_conflicts=True,
            batch_size=500,
        )
        return
    qn = connection.ops.quote_name
    names = ", ".join(qn(str(c.column)) for c in columns)
    # Names come from the model's metadata, values travel as one parameter.
    sql = f"INSERT INTO {qn(meta.db_table)} ({names}) SELECT {_rows_sql(columns)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            sql + " FROM jsonb_array_elements(%s::jsonb) AS r ON CONFLICT DO NOTHING",
            [_rows_param(rows)],
        )


def create_rows(model: type[M], objs: Sequence[M], key: Sequence[str]) -> None:
    """INSERT `objs` (new instances, every concrete field but the primary key) in one
    statement, and give each its primary key, matched back by `key` (fields unique together):
    Django's `bulk_create` prepares and psycopg quotes every value of every row in Python.
    No ON CONFLICT: a row that exists already is an IntegrityError, as with `bulk_create`."""
    if not objs:
        return
    if not _is_postgres():
        model._default_manager.bulk_create(objs)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [f for f in meta.concrete_fields if f is not pk]
    attnames = [c.attname for c in columns]
    relations = [c for c in columns if c.many_to_one]
    key_fields = [cast(Field, meta.get_field(k)) for k in key]
    key_attnames = [k.attname for k in key_fields]
    rows, by_key = [], {}
    for obj in objs:
        for relation in relations:
            _sync_foreign_key(obj, relation)
        rows.append([getattr(obj, a) for a in attnames])
        by_key[tuple(getattr(obj, a) for a in key_attnames)] = obj
    qn = connection.ops.quote_name
    names = ", ".join(qn(str(c.column)) for c in columns)
    returned = ", ".join(qn(str(c.column)) for c in [pk, *key_fields])
    # Names come from the model's metadata, values travel as one parameter.
    sql = f"INSERT INTO {qn(meta.db_table)} ({names}) SELECT {_rows_sql(columns)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            f"{sql} FROM jsonb_array_elements(%s::jsonb) AS r RETURNING {returned}",
            [_rows_param(rows)],
        )
        for pk_value, *key_values in cursor.fetchall():
            obj = by_key[tuple(key_values)]
            obj.pk = pk_value
            obj._state.adding = False
            obj._state.db = connection.alias


def _sync_foreign_key(obj: Model, field: Field) -> None:
    """What `Model._prepare_related_fields_for_save` does, for one written relation only: an
    object assigned before it was saved (an outlet created in this batch) gives its primary
    key now; an unsaved one is a bug, refused."""
    if not field.is_cached(obj):  # type: ignore[attr-defined]
        return
    related = field.get_cached_value(obj)  # type: ignore[attr-defined]
    if related is None:
        return
    if related.pk is None:
        raise ValueError(f"update_rows: {field.name} of {obj!r} is not saved")
    if getattr(obj, field.attname) != related.pk:
        setattr(obj, field.name, related)  # the key, and the object kept cached


def update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> None:
    """Write `fields` of `objs` (saved instances) in one UPDATE … FROM (rows of one JSON)."""
    if not objs:
        return
    if not _is_postgres():
        model._default_manager.bulk_update(objs, fields)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [cast(Field, meta.get_field(f)) for f in fields]
    attnames = [c.attname for c in columns]
    relations = [c for c in columns if c.many_to_one]
    rows = []
    for obj in objs:
        for relation in relations:
            _sync_foreign_key(obj, relation)
        rows.append([obj.pk, *(getattr(obj, a) for a in attnames)])
    qn = connection.ops.quote_name
    names = ", ".join(qn(str(c.column)) for c in [pk, *columns])
    assignments = ", ".join(f"{qn(str(c.column))} = v.{qn(str(c.column))}" for c in columns)
    values = f"SELECT {_rows_sql([pk, *columns])} FROM jsonb_array_elements(%s::jsonb) AS r"  # noqa: S608
    # Names come from the model's metadata, values travel as one parameter.
    sql = f"UPDATE {qn(meta.db_table)} AS t SET {assignments} FROM ({values})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            f"{sql} AS v({names}) WHERE t.{qn(str(pk.column))} = v.{qn(str(pk.column))}",
            [_rows_param(rows)],
        )
