import pytest


@pytest.fixture(autouse=True)
def _english(settings):
    # Assertions read English messages; French is checked in tests/test_templates.py.
    settings.LANGUAGE_CODE = "en"
