from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from phonenumber_field.formfields import PhoneNumberField

from .models import Community, Role, Site


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
        self.fields["community"].queryset = communities


class MemberEditForm(forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150)
    email = forms.EmailField(label=_("E-mail"), required=False)
    role = forms.ChoiceField(label=_("Role"), choices=ADDABLE_ROLES)

    def __init__(self, *args, membership, **kwargs):
        super().__init__(*args, **kwargs)
        if membership.role == Role.OWNER:
            self.fields["role"].choices = [(Role.OWNER, Role.OWNER.label), *ADDABLE_ROLES]


class SiteForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["name", "address", "grid_limit_kw"]
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}
