"""Refusals are pages a person can read, in the portal's layout, not bare server answers."""


def test_forbidden_page_explains_and_links_home(client, individual):
    client.force_login(individual)
    response = client.get("/c/tilleuls/sessions/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 403
    page = response.content.decode()
    assert "You cannot see this page" in page and 'href="/"' in page


def test_not_found_page_for_another_community(client, outsider, community):
    client.force_login(outsider)
    response = client.get("/c/tilleuls/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert "belongs to a community you are not part of" in response.content.decode()
