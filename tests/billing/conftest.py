import pytest


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.SMS_BACKEND = "memory"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    """Stored PDFs and ZIPs go to a per-test folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
