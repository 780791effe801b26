"""Community tasks run in their community's scope (`CommunityTask`), called from nowhere in
particular — no scope active, as in the worker."""

from django.core import mail
from django_scopes import get_scope

from communities import invitations
from communities.models import Membership, Role
from communities.tasks import send_invitation_email_task, send_welcome_email_task
from tests import builders


def test_welcome_email_task_reads_in_the_community_scope(community):
    assert "community" not in get_scope()  # the test body runs unscoped
    user = builders.make_user(phone="+33622334455", email="new@example.org")
    membership = Membership.objects.with_scopes_disabled().create(
        community=community, user=user, role=Role.INDIVIDUAL
    )
    send_welcome_email_task.delay(community=community.pk, membership_id=membership.pk).get()
    assert mail.outbox and mail.outbox[-1].to == ["new@example.org"]


def test_invitation_email_task_reads_in_the_community_scope(
    community, owner, django_capture_on_commit_callbacks
):
    from django_scopes import scope

    with scope(community=community):
        invitation, token = invitations.invite_owner(
            community=community, actor=owner, email="next@example.org"
        )
    mail.outbox.clear()
    url = invitations.invitation_url(token)
    send_invitation_email_task.delay(
        community=community.pk, invitation_id=invitation.pk, url=url
    ).get()
    assert mail.outbox and url in mail.outbox[-1].body
