"""CSV exports that are safe to open in a spreadsheet.

Every CSV the app hands out goes through `csv_response` (or `csv_write`), so one rule
protects them all from formula injection: Excel, LibreOffice and Google Sheets run a
cell that starts with `=`, `+`, `-` or `@` (and, after a leading tab or carriage return,
what follows) as a formula — `=HYPERLINK(...)` in a student's name would send the sheet's
cells to another site. Such text cells get a leading single quote (the OWASP rule), which
the spreadsheet shows as plain text. Numbers are written as numbers: a negative score is
data, not a formula, and must stay summable.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from django.http import HttpResponse

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...


def csv_cell(value: object) -> object:
    """One cell as the spreadsheet should read it: numbers unchanged, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal):  # bool is an int, and harmless
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_write(
    sink: TextSink, *, header: Sequence[object], rows: Iterable[Sequence[object]]
) -> None:
    """Header and rows as CSV, every cell through `csv_cell`. Starts with a UTF-8 byte order
    mark so that Excel reads Chinese names as UTF-8 rather than the system code page."""
    sink.write("\ufeff")
    writer = csv.writer(sink)
    writer.writerow([csv_cell(value) for value in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)


def csv_response(
    *, filename: str, header: Sequence[object], rows: Iterable[Sequence[object]]
) -> HttpResponse:
    """A CSV download; `filename` is chosen by the caller, never taken from user input."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv_write(response, header=header, rows=rows)
    return response
