from django.conf import settings


def support(request):
    """The support address and phone, for the footer of every page."""
    return {"support_email": settings.SUPPORT_EMAIL, "support_phone": settings.SUPPORT_PHONE}
