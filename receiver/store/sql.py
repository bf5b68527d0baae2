"""Plain set-wise SQL for bulk sizes, on any model: peewee builds a query per value,
which was most of a bulk insert's cost (bench/RESULTS.md); these build one statement
per chunk of rows."""

from __future__ import annotations

from peewee import BooleanField, CharField, IntegerField, TextField


def chunks(values: list, size: int = 500):
    """Slices small enough for any backend's limit on bound parameters."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def select_in(model, fields: list[str], column: str, values: list, where: str = "") -> list:
    """Rows (tuples) of `fields` whose `column` is one of `values`, in chunks: plain SQL,
    since peewee's per-value query building is the cost at bulk sizes."""
    db = model._meta.database
    names = ", ".join(f'"{model._meta.fields[f].column_name}"' for f in fields)
    col = model._meta.fields[column].column_name
    rows: list = []
    for chunk in chunks(values):
        marks = ", ".join([db.param] * len(chunk))
        rows.extend(
            db.execute_sql(
                f'SELECT {names} FROM "{model._meta.table_name}" WHERE "{col}" IN ({marks}) {where}',
                chunk,
            ).fetchall()
        )
    return rows


# Field types whose db_value returns a str, int or bool unchanged (the drivers adapt those).
_AS_IS = (CharField, TextField, IntegerField, BooleanField)


def insert_rows(
    model, fields: list[str], rows: list[tuple], ignore_conflicts: bool = False
) -> None:
    """Plain multi-row INSERT: peewee's per-value query building is the cost at bulk sizes.
    `ignore_conflicts` skips rows whose key exists (content-addressed rows)."""
    if not rows:
        return
    db = model._meta.database
    # Columns left out get their model defaults, as Model.create would give them.
    defaults = [
        name
        for name, f in model._meta.fields.items()
        if name not in fields and f.default is not None
    ]
    fresh = [
        f.default() if callable(f.default) else f.default
        for f in (model._meta.fields[name] for name in defaults)
    ]
    fields = [*fields, *defaults]
    rows = [(*row, *fresh) for row in rows]
    columns = [model._meta.fields[f] for f in fields]
    names = ", ".join(f'"{c.column_name}"' for c in columns)
    marks = ", ".join([db.param] * len(columns))
    # Only the columns whose database value differs from the Python one are converted:
    # calling db_value on every text column was a tenth of a bulk insert's time.
    convert = [(n, c.db_value) for n, c in enumerate(columns) if type(c) not in _AS_IS]
    values = [list(row) for row in rows]
    for row in values:
        for n, to_db in convert:
            row[n] = to_db(row[n])
    db.cursor().executemany(
        f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES ({marks})'
        + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""),
        values,
    )
