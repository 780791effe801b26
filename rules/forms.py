"""Forms of the Rules page and of user groups: every value checked server-side."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.db.models import CharField
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from chargers.forms import USER_CHOICES_MAX, OutletFilterForm
from chargers.models import Charger
from communities.models import Community, Membership
from sparklin.widgets import CheckboxList, OptionList

from .models import Mode, OfflineMode, UserGroup

WEEKDAYS = [
    ("1", _("Monday")),
    ("2", _("Tuesday")),
    ("3", _("Wednesday")),
    ("4", _("Thursday")),
    ("5", _("Friday")),
    ("6", _("Saturday")),
    ("7", _("Sunday")),
]


class MemberChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return _member_label(obj)


def _members(community: Community) -> Any:
    """The current members as choices, with only what their option shows: the phone number
    read as text, not parsed into a PhoneNumber (~70 µs each: 0.15 s for a fleet's 2,000)."""
    ids = Membership.objects.current().filter(community=community).values("user_id")
    return (
        User.objects.filter(pk__in=ids)
        .only("pk", "first_name", "last_name")
        .annotate(phone_text=Cast("phone", CharField()))
        .order_by("last_name", "first_name", "pk")
    )


def _member_label(user: Any) -> str:
    return str(user.get_full_name() or getattr(user, "phone_text", None) or user.phone)


class GroupForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    members = MemberChoiceField(
        label=_("Members"),
        queryset=User.objects.none(),
        required=False,
        widget=CheckboxList,
    )

    def __init__(self, *args: Any, community: Community, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(MemberChoiceField, self.fields["members"]).queryset = _members(community)


class PolicyForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("Who may charge"), choices=Mode.choices, widget=forms.RadioSelect
    )
    users = MemberChoiceField(
        label=_("Users"),
        queryset=User.objects.none(),
        required=False,
        widget=CheckboxList,
    )
    groups: forms.ModelMultipleChoiceField = forms.ModelMultipleChoiceField(
        label=_("Groups"),
        queryset=UserGroup.objects.none(),
        required=False,
        widget=CheckboxList,
    )

    def __init__(self, *args: Any, community: Community, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(MemberChoiceField, self.fields["users"]).queryset = _members(community)
        cast(
            forms.ModelMultipleChoiceField, self.fields["groups"]
        ).queryset = UserGroup.objects.filter(community=community)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("mode") == Mode.CHOSEN and not data.get("users") and not data.get("groups"):
            raise forms.ValidationError(_("Choose at least one user or group."))
        return data


class WindowForm(forms.Form):
    days = forms.MultipleChoiceField(
        label=_("Days"), choices=WEEKDAYS, widget=forms.CheckboxSelectMultiple
    )
    start = forms.TimeField(
        label=_("From"), widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )
    end = forms.TimeField(
        label=_("To"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_("An end before the start runs past midnight; 00:00 to 00:00 is all day."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None and start == end and start.hour + start.minute:
            raise forms.ValidationError(_("The window must not start and end at the same time."))
        return data


class MemberField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return _member_label(obj)


class LimitForm(forms.Form):
    user = MemberField(label=_("User"), queryset=User.objects.none(), widget=OptionList)
    monthly_kwh = forms.DecimalField(
        label=_("kWh per month"),
        required=False,
        min_value=1,
        max_value=100000,
        decimal_places=1,
    )
    session_minutes = forms.IntegerField(
        label=_("Session duration (minutes)"), required=False, min_value=5, max_value=7 * 24 * 60
    )

    def __init__(self, *args: Any, community: Community, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(MemberField, self.fields["user"])
        field.queryset = _members(community)
        # Above `USER_CHOICES_MAX` members the person comes from their page ("Limits of use",
        # `?user=`), as for the other person filters: no select of a fleet's 2,000 people.
        ids = Membership.objects.current().filter(community=community).values("pk")
        self.chosen_on_their_page = ids[: USER_CHOICES_MAX + 1].count() > USER_CHOICES_MAX
        if self.chosen_on_their_page:
            field.widget = forms.HiddenInput()

    def chosen_user(self) -> Any:
        """The person named by the initial `user` (their page's link), if a current member."""
        user_id = str(self.initial.get("user") or "")
        if not user_id.isdigit():
            return None
        return cast(Any, self.fields["user"]).queryset.filter(pk=user_id).first()


# The learn form lists the community's chargers up to this many; above, the charger's serial
# number is typed (a fleet's 10,000 options made a person's page weigh 400 KB).
LEARN_CHARGERS_MAX = 200


class LearnStartForm(forms.Form):
    charger: forms.ModelChoiceField = forms.ModelChoiceField(
        label=_("Charger where the card will be presented"),
        queryset=Charger.objects.none(),
        required=False,
    )
    identity = forms.CharField(
        label=_("Serial number of the charger where the card will be presented"),
        max_length=48,
        required=False,
    )
    user = MemberField(label=_("For"), queryset=User.objects.none(), required=False)

    def __init__(self, *args: Any, community: Community, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chargers = Charger.objects.filter(community=community)
        cast(forms.ModelChoiceField, self.fields["charger"]).queryset = self.chargers
        cast(MemberField, self.fields["user"]).queryset = _members(community)

    def clean(self) -> dict[str, Any]:
        """The charger chosen in the list, or the one whose serial number was typed."""
        data = super().clean() or {}
        identity = (data.get("identity") or "").strip()
        if data.get("charger") is None and "charger" not in self.errors:
            if not identity:
                raise forms.ValidationError(
                    _("Choose the charger where the card will be presented.")
                )
            data["charger"] = self.chargers.filter(identity__iexact=identity).first()
            if data["charger"] is None:
                raise forms.ValidationError(
                    _("No charger of this community has the serial number %(identity)s.")
                    % {"identity": identity}
                )
        return data


class LearnConfirmForm(forms.Form):
    name = forms.CharField(label=_("Card name"), max_length=100, required=False)


class OfflineForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("While a charger cannot reach Sparklin"),
        choices=OfflineMode.choices,
        widget=forms.RadioSelect,
    )


class RuleOutletFilterForm(OutletFilterForm):
    """The Rules page's outlets: the outlets page's filters (serial number or name, state,
    site) and whether the outlet has a rule of its own."""

    OWN, SITE = "own", "site"
    rule = forms.ChoiceField(
        label=_("Rule"),
        required=False,
        choices=[("", _("All outlets")), (OWN, _("Own rule")), (SITE, _("As their site"))],
    )

    def rule_filter(self) -> str:
        """ "own", "site" or "" (every outlet; also when the form is invalid)."""
        return self.cleaned_data.get("rule", "") if self.is_valid() else ""
