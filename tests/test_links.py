from __future__ import annotations

import dataclasses

from notifier import events
from notifier.compose.links import Rewriter, leaks
from notifier.compose.pipeline import Pipeline

HOSTS = ("nordname.com", "www.nordname.com", "manage.nordname.com")


def rw(text: str) -> str:
    return Rewriter(HOSTS, "domain.acme.fi").rewrite_text(text)


def test_rewrites_host_and_keeps_path_query_fragment() -> None:
    assert (
        rw("https://manage.nordname.com/renew/1?a=b&c=d#top")
        == "https://domain.acme.fi/renew/1?a=b&c=d#top"
    )
    assert rw('<a href="http://nordname.com/x">') == '<a href="https://domain.acme.fi/x">'
    assert (
        rw("<img src='//www.nordname.com/logo.png'>")
        == "<img src='https://domain.acme.fi/logo.png'>"
    )
    assert rw("see https://NordName.com.") == "see https://domain.acme.fi."
    assert rw("https://manage.nordname.com:8443/a") == "https://domain.acme.fi/a"
    assert rw("(https://nordname.com)") == "(https://domain.acme.fi)"


def test_leaves_third_party_and_mailto_alone() -> None:
    for text in (
        "https://example.com/nordname.com",
        "https://nordname.com.evil.example/x",
        "https://notnordname.com/x",
        "mailto:support@acme.fi",
        "https://www.traficom.fi/",
    ):
        assert rw(text) == text


def test_event_data_links_are_rewritten_in_reseller_mail(pipeline: Pipeline) -> None:
    c = pipeline.compose(pipeline.sample("domain.renewal_reminder", "acme", "en"))
    assert "https://domain.acme.fi/renew/48213?source=mail" in c.rendered.text
    assert 'href="https://domain.acme.fi/renew/48213?source=mail"' in c.rendered.html
    assert not leaks(c.rendered.html + c.rendered.text, ["nordname"], HOSTS)


def test_platform_brand_is_not_rewritten(pipeline: Pipeline) -> None:
    c = pipeline.compose(pipeline.sample("reseller.balance_low", "acme", "en"))
    assert c.brand.platform
    assert "https://manage.nordname.com/account/funds" in c.rendered.text


def test_third_party_link_in_data_survives(pipeline: Pipeline) -> None:
    spec = events.get("forwarding.updated")
    ev = pipeline.sample(spec.name, "acme", "en")
    ev = dataclasses.replace(
        ev,
        data=events.validate_data(
            spec.name, {**spec.sample, "target_url": "https://shop.example.org/nordname.com?x=1"}
        ),
    )
    c = pipeline.compose(ev)
    assert "https://shop.example.org/nordname.com?x=1" in c.rendered.text
