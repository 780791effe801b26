from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from phonenumber_field.formfields import PhoneNumberField


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
