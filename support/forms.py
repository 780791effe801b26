from django import forms
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from phonenumber_field.formfields import PhoneNumberField

from .screenshots import clean_screenshot


class ReportForm(forms.Form):
    """What a person tells support; everything checked here, on the server."""

    description = forms.CharField(
        label=_("What happened?"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("What you did, what you expected, what you saw instead."),
        error_messages={"required": _("Describe the problem.")},
    )
    phone = PhoneNumberField(
        label=_("Phone number to call you back"),
        required=False,
        help_text=_("Leave it empty if you prefer an answer by e-mail."),
    )
    screenshot = forms.FileField(
        label=_("Screenshot (optional)"),
        required=False,
        help_text=_("A picture of the screen helps a lot: PNG, JPEG, WebP or GIF."),
        widget=forms.ClearableFileInput(
            attrs={"accept": "image/png,image/jpeg,image/webp,image/gif"}
        ),
    )
    page = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)

    def clean_description(self):
        text = self.cleaned_data["description"].replace("\x00", "").strip()
        if len(text) < 10:
            raise forms.ValidationError(_("Tell us a little more (10 characters at least)."))
        return text

    def clean_screenshot(self):
        upload = self.cleaned_data.get("screenshot")
        return clean_screenshot(upload) if upload else None

    def clean_page(self):
        # Where the report came from: a path of this site only (never a foreign URL).
        page = (self.cleaned_data.get("page") or "").strip()
        local = url_has_allowed_host_and_scheme(page, allowed_hosts=set())  # no host, no scheme
        if not page.startswith("/") or not local or any(c in page for c in "\r\n\\"):
            return ""
        return page
