from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from phonenumber_field.formfields import PhoneNumberField

from .countries import COUNTRIES


class PhoneForm(forms.Form):
    phone = PhoneNumberField(
        label=_("Phone number"),
        region=settings.PHONENUMBER_DEFAULT_REGION,
        error_messages={
            "invalid": _("Enter a valid phone number, e.g. 06 12 34 56 78 or +33 6 12 34 56 78.")
        },
        widget=forms.TextInput(
            attrs={"autocomplete": "tel", "inputmode": "tel", "autofocus": True}
        ),
    )


class CodeForm(forms.Form):
    code = forms.RegexField(
        label=_("Code received by SMS"),
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": _("The code has 6 digits.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class LanguageForm(forms.Form):
    language = forms.ChoiceField(choices=settings.LANGUAGES)
    next = forms.CharField(required=False)


class ProfileForm(forms.Form):
    """A person's own names, e-mail and country (sign-up, confirmation after being added)."""

    first_name = forms.CharField(
        label=_("First name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "given-name"}),
    )
    last_name = forms.CharField(
        label=_("Last name"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "family-name"}),
    )
    email = forms.EmailField(
        label=_("E-mail"),
        required=False,
        help_text=_("We send a link to confirm it. Expense notes and invitations arrive there."),
        error_messages={"invalid": _("Enter a valid e-mail address, e.g. name@example.com.")},
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    country = forms.ChoiceField(
        label=_("Country"),
        choices=[("", "—"), *COUNTRIES],
        widget=forms.Select(attrs={"autocomplete": "country"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.error_messages.setdefault("required", _("This field is required."))


class SignupForm(ProfileForm):
    phone = PhoneNumberField(
        label=_("Mobile phone number"),
        region=settings.PHONENUMBER_DEFAULT_REGION,
        help_text=_("You log in with it: we send a code by SMS to confirm it."),
        error_messages={
            "invalid": _("Enter a valid phone number, e.g. 06 12 34 56 78 or +33 6 12 34 56 78.")
        },
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )

    field_order = ["first_name", "last_name", "email", "country", "phone"]


class InvitationPhoneForm(PhoneForm):
    """The number of a person who opened an invitation sent by e-mail (or as a bare link)."""
