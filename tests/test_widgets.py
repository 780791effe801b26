"""The Python-rendered choice widgets (`sparklin.widgets`) write exactly Django's markup."""

import pytest
from django import forms

from sparklin.widgets import CheckboxList, OptionList

CHOICES = [(1, "Anne <A&B>"), (2, "Bruno"), (30, "Céline")]


def _form(checkboxes, select, **kwargs):
    class Form(forms.Form):
        members = forms.MultipleChoiceField(choices=CHOICES, required=False, widget=checkboxes)
        user = forms.TypedChoiceField(
            choices=[("", "---------"), *CHOICES], coerce=int, widget=select
        )
        free = forms.MultipleChoiceField(choices=CHOICES, required=False, widget=checkboxes)

    return Form(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"initial": {"members": [2, 30], "user": 30}},
        {"data": {"members": ["1"], "user": "2"}},
        {"data": {"members": ["9"], "user": "x"}},  # invalid: errors, values kept
        {"auto_id": False, "initial": {"members": [1]}},
    ],
)
def test_same_markup_as_djangos_widgets(kwargs):
    django_form = _form(forms.CheckboxSelectMultiple, forms.Select, **kwargs)
    ours = _form(CheckboxList, OptionList, **kwargs)
    for name in ("members", "user", "free"):
        assert str(ours[name]) == str(django_form[name]), name


@pytest.mark.community_scope
def test_model_choices_render_the_same(db, community):
    from accounts.models import User
    from rules.forms import GroupForm, LimitForm
    from tests import builders

    people = [builders.make_member(community).user for _ in range(3)]
    for form_class, field in ((GroupForm, "members"), (LimitForm, "user")):
        ours = form_class(community=community, initial={field: people[1].pk})
        theirs = form_class(community=community, initial={field: people[1].pk})
        widget = theirs.fields[field].widget
        base = forms.CheckboxSelectMultiple if field == "members" else forms.Select
        theirs.fields[field].widget = base(attrs=widget.attrs)
        theirs.fields[field].widget.choices = theirs.fields[field].choices
        assert type(ours.fields[field].widget) is not base
        assert str(ours[field]) == str(theirs[field])
    assert User.objects.count() >= 3
