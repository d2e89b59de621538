"""Transport URLs: the factory picks the transport; errors name the setting, not the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.delivery import transport_from_url
from notifier.delivery.capture import CaptureTransport
from notifier.delivery.direct import DirectTransport
from notifier.delivery.relay import RelayTransport
from notifier.errors import ConfigError

# ----------------------------------------------------------------------------- configuration


def test_transport_from_url_picks_the_transport(tmp_path: Path) -> None:
    assert isinstance(transport_from_url(None, tmp_path), CaptureTransport)
    assert isinstance(transport_from_url("  ", tmp_path), CaptureTransport)
    plain = transport_from_url("smtp://relay.example:2525?pool_size=8", tmp_path)
    assert isinstance(plain, RelayTransport)
    assert (plain.endpoint.port, plain.endpoint.implicit_tls, plain.limits.size) == (2525, False, 8)
    tls = transport_from_url("smtps://relay.example", tmp_path)
    assert isinstance(tls, RelayTransport)
    assert (tls.endpoint.port, tls.endpoint.implicit_tls) == (465, True)
    direct = transport_from_url("direct://?port=2525&nameserver=127.0.0.1:5353", tmp_path)
    assert isinstance(direct, DirectTransport)
    assert direct.port == 2525
    assert (direct.resolver.nameservers, direct.resolver.port) == (["127.0.0.1"], 5353)


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example",
        "relay.example:25",
        "smtp://",
        "smtp://user:hunter2@relay.example:99999",
        "smtp://user:hunter2@relay.example?starttls=maybe",
        "smtp://user:hunter2@relay.example?colour=blue",
        "smtp://user:hunter2@relay.example?pool_size=0",
        "smtps://user:hunter2@relay.example?starttls=required",
        "direct://mx.example",
        "direct://?nameserver=dns.example",
    ],
)
def test_bad_url_is_a_config_error_naming_the_setting(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        transport_from_url(url, tmp_path)
    assert "NOTIFIER_SMTP_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_repr_hides_the_password() -> None:
    transport = RelayTransport("smtp://user:hunter2@relay.example:587?starttls=required")
    assert "hunter2" not in repr(transport)
    assert "hunter2" not in repr(transport.endpoint)
    assert "user:***@relay.example:587" in repr(transport)
