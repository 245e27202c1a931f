"""A paginator that stops counting: the history can hold millions of rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

if TYPE_CHECKING:
    PaginatorBase = Paginator[Any]
else:
    PaginatorBase = Paginator


class CappedPaginator(PaginatorBase):
    """Counts at most :attr:`cap` rows, so that no page load reads the whole history.

    Past the cap the list offers :attr:`cap` rows' worth of pages and says that there
    are more; the filters and the date hierarchy narrow it to what can be counted.
    """

    cap = 10_000

    @cached_property
    def _counted(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        # COUNT(*) over a LIMIT subquery: a read of at most cap + 1 index entries.
        return rows.order_by()[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        """Whether there are more rows than :attr:`count` says."""
        return self._counted > self.cap
