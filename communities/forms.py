from datetime import datetime, time
from typing import cast

from django import forms
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from phonenumber_field.formfields import PhoneNumberField

from .models import Community, InstallerCompany, Role, Site


class CommunityForm(forms.ModelForm):
    class Meta:
        model = Community
        fields = ["name", "kind", "address", "time_zone"]
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}


class CommunitySettingsForm(forms.ModelForm):
    class Meta:
        model = Community
        fields = ["name", "kind", "address", "time_zone", "expense_email"]
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}
        help_texts = {
            "expense_email": _("Monthly expense notes are sent to this address (companies).")
        }


ADDABLE_ROLES = [(Role.INDIVIDUAL, Role.INDIVIDUAL.label), (Role.MANAGER, Role.MANAGER.label)]


class MemberAddForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    phone = PhoneNumberField(
        label=_("Phone number"),
        region=settings.PHONENUMBER_DEFAULT_REGION,
        error_messages={
            "invalid": _("Enter a valid phone number, e.g. 06 12 34 56 78 or +33 6 12 34 56 78.")
        },
    )
    email = forms.EmailField(
        label=_("E-mail"),
        required=False,
        help_text=_("Optional: the invitation is also sent by e-mail."),
    )
    role = forms.ChoiceField(label=_("Role"), choices=ADDABLE_ROLES, initial=Role.INDIVIDUAL)
    community = forms.ModelChoiceField(
        label=_("Community"),
        queryset=Community.objects.none(),
        to_field_name="slug",
        empty_label=None,
    )

    def __init__(self, *args, communities, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["community"]).queryset = communities


class MemberEditForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    email = forms.EmailField(label=_("E-mail"), required=False)
    role = forms.ChoiceField(label=_("Role"), choices=ADDABLE_ROLES)

    def __init__(self, *args, membership, **kwargs):
        super().__init__(*args, **kwargs)
        if membership.role == Role.OWNER:
            cast(forms.ChoiceField, self.fields["role"]).choices = [
                (Role.OWNER, Role.OWNER.label),
                *ADDABLE_ROLES,
            ]


class SiteForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["name", "address"]
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}


def _phone_field(required=True, **kwargs):
    return PhoneNumberField(
        label=_("Phone number"),
        region=settings.PHONENUMBER_DEFAULT_REGION,
        required=required,
        error_messages={
            "invalid": _("Enter a valid phone number, e.g. 06 12 34 56 78 or +33 6 12 34 56 78.")
        },
        **kwargs,
    )


class InstallationForm(forms.Form):
    """An installer's new location: the customer's community and its first site."""

    name = forms.CharField(label=_("Installation name"), max_length=200)
    kind = forms.ChoiceField(label=_("Kind"), choices=Community.Kind.choices)
    address = forms.CharField(
        label=_("Address"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    site_name = forms.CharField(
        label=_("First site"),
        max_length=200,
        initial=_("Parking"),
        help_text=_("Where the chargers are, e.g. Garage or Parking A."),
    )


class CompanyMemberForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    phone = _phone_field()
    email = forms.EmailField(label=_("E-mail"), required=False)
    is_admin = forms.BooleanField(label=_("Company admin (can add members)"), required=False)


class OwnerInvitationForm(forms.Form):
    email = forms.EmailField(label=_("E-mail"), required=False)
    phone = _phone_field(required=False)

    def clean(self):
        data = super().clean() or {}
        if not data.get("email") and not data.get("phone") and not self.errors:
            raise forms.ValidationError(
                _("Enter the future owner's e-mail or phone number (or both).")
            )
        return data


class GrantAccessForm(forms.Form):
    company = forms.ModelChoiceField(
        label=_("Installer company"), queryset=InstallerCompany.objects.none(), empty_label=None
    )
    valid_until = forms.DateField(
        label=_("Until"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Leave empty to give access until you revoke it."),
    )

    def __init__(self, *args, companies, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["company"]).queryset = companies

    def clean_valid_until(self):
        day = self.cleaned_data["valid_until"]
        if day is None:
            return None
        end = datetime.combine(day, time.max, tzinfo=timezone.get_current_timezone())
        if end <= timezone.now():
            raise forms.ValidationError(_("Choose a date in the future."))
        return end


class AccessRequestForm(forms.Form):
    community = forms.SlugField(
        label=_("Installation short name"),
        max_length=60,
        help_text=_("Ask the installation's manager for it, e.g. residence-les-tilleuls."),
    )
    message = forms.CharField(
        label=_("Message to the managers"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class MemberSearchForm(forms.Form):
    """The users page's search (GET): a name, e-mail or phone fragment."""

    q = forms.CharField(label=_("Search"), max_length=100, required=False)

    def clean_q(self):
        return self.cleaned_data["q"].strip()

    def search_q(self) -> Q:
        text = self.cleaned_data["q"]
        digits = "".join(ch for ch in text if ch.isdigit())
        q = (
            Q(user__first_name__icontains=text)
            | Q(user__last_name__icontains=text)
            | Q(user__email__icontains=text)
        )
        if len(digits) >= 3:
            q |= Q(user__phone__contains=digits.lstrip("0"))
        return q
