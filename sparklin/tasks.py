"""The one base for tasks that work on one community's data.

Call such a task with the community's id as the keyword `community`
(`run_month.delay(community=c.pk, year=2026, month=10)`); the body receives the `Community`
instance and runs inside its django-scopes scope, as a request does inside the middleware's.
Nothing in a community task needs `scopes_disabled()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task
from django_scopes import scope, scopes_disabled

if TYPE_CHECKING:
    _Task = Task[Any, Any]
else:
    _Task = Task


class CommunityTask(_Task):
    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from communities.models import Community

        given = kwargs.pop("community")
        if isinstance(given, Community):
            community = given
        else:
            with scopes_disabled():  # the lookup that opens the scope itself
                community = Community.objects.get(pk=int(given))
        with scope(community=community):
            return super().__call__(*args, community=community, **kwargs)
