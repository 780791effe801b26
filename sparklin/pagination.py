"""Pages of long lists without counting them: `COUNT(*)` over a million sessions costs more
than the page itself. The page reads one row more than it shows to know whether there is a
next one; `templates/_pagination.html` then shows "Page N" without a total."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet


class UncountedPage(Sequence[Any]):
    paginator = None  # no total: the template says "Page N"

    def __init__(self, object_list: list[Any], number: int, has_next: bool) -> None:
        self.object_list, self.number, self._has_next = object_list, number, has_next

    def __getitem__(self, index: Any) -> Any:
        return self.object_list[index]

    def __len__(self) -> int:
        return len(self.object_list)

    def has_next(self) -> bool:
        return self._has_next

    def has_previous(self) -> bool:
        return self.number > 1

    def has_other_pages(self) -> bool:
        return self.has_next() or self.has_previous()

    def next_page_number(self) -> int:
        return self.number + 1

    def previous_page_number(self) -> int:
        return self.number - 1


def uncounted_page(queryset: QuerySet[Any], number: object, per_page: int) -> UncountedPage:
    """Page `number` (1 for anything that is not a positive integer) of an ordered queryset."""
    try:
        page = max(1, int(str(number)))
    except ValueError:
        page = 1
    page = min(page, 100_000)
    start = (page - 1) * per_page
    rows = list(queryset[start : start + per_page + 1])
    return UncountedPage(rows[:per_page], page, len(rows) > per_page)
