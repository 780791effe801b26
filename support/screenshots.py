"""A screenshot attached to a support report, checked by its content (Pillow), never by its
name or declared type: PNG, JPEG, WebP or GIF, at most SUPPORT_SCREENSHOT_MAX_MB and 40
megapixels. It is stored re-encoded (JPEG stays JPEG, the rest becomes PNG): what is kept is
an image we wrote ourselves, without the metadata a photo carries (EXIF, GPS position)."""

from __future__ import annotations

import io

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}
MAX_PIXELS = 40_000_000


def clean_screenshot(upload: UploadedFile) -> ContentFile:
    """The upload as a safe image file to store, or ValidationError with a translated reason."""
    limit = settings.SUPPORT_SCREENSHOT_MAX_MB * 1024 * 1024
    if upload.size is None or upload.size > limit:
        raise ValidationError(
            _("The screenshot is too large: %(max)s MB at most.")
            % {"max": settings.SUPPORT_SCREENSHOT_MAX_MB}
        )
    not_an_image = ValidationError(_("This file is not an image (PNG, JPEG, WebP or GIF)."))
    try:
        upload.seek(0)
        with Image.open(upload) as probe:
            kind = probe.format
            width, height = probe.size
            probe.verify()  # structure and checksums, without decoding the pixels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise not_an_image from None
    if kind not in FORMATS:
        raise not_an_image
    if width * height > MAX_PIXELS:
        raise ValidationError(
            _("The screenshot is too large: %(max)s MB at most.")
            % {"max": settings.SUPPORT_SCREENSHOT_MAX_MB}
        )
    try:
        upload.seek(0)
        with Image.open(upload) as image:
            image.load()
            out = io.BytesIO()
            if kind == "JPEG":
                image.convert("RGB").save(out, "JPEG", quality=90)
                name = "screenshot.jpg"
            else:
                plain = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGBA")
                plain.save(out, "PNG")
                name = "screenshot.png"
    except (OSError, ValueError, Image.DecompressionBombError):
        raise not_an_image from None
    return ContentFile(out.getvalue(), name=name)
