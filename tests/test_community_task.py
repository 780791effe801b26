"""The community task base: the body runs inside the community's scope, with the instance."""

import pytest
from celery import shared_task
from django_scopes import get_scope

from sparklin.tasks import CommunityTask

from . import builders


@shared_task(base=CommunityTask, bind=True, name="tests.scope_probe")
def scope_probe(self, *, community, label):
    return {"scope": get_scope().get("community").pk, "id": community.pk, "label": label}


@pytest.mark.django_db
def test_task_body_runs_in_the_community_scope():
    community = builders.make_community(slug="probe")
    result = scope_probe.delay(community=community.pk, label="x").get()
    assert result == {"scope": community.pk, "id": community.pk, "label": "x"}
