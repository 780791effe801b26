"""Claim by serial + PIN says how many tries are left before the 15-minute pause."""

import pytest

from chargers.inventory import import_inventory_csv
from tests import builders

CSV = "serial,pin,vendor,model\nSPK-0001,123456,spark1,Spark 1\n"


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_wrong_pin_counts_down_the_tries(client, community, site):
    import_inventory_csv(CSV)
    company = builders.make_company()
    builders.make_grant(community, company, "full")
    client.force_login(builders.make_installer(company))
    url = f"/c/tilleuls/sites/{site.pk}/chargers/claim/"
    texts = [
        client.post(url, {"serial": "SPK-0001", "pin": "000000", "name": ""}).content.decode()
        for _n in range(5)
    ]
    assert "4 attempts left before a 15-minute pause" in texts[0]
    assert "1 attempt left before a 15-minute pause" in texts[3]
    assert "No attempt left: wait 15 minutes" in texts[4]
    sixth = client.post(url, {"serial": "SPK-0001", "pin": "123456", "name": ""})
    assert "Please wait 15 minutes" in sixth.content.decode()
