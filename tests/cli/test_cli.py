from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notifier import events
from notifier.api.v1 import catalog_document
from notifier.cli import app

runner = CliRunner()


def test_events_table_and_json() -> None:
    out = runner.invoke(app, ["events"])
    assert out.exit_code == 0
    assert "domain.renewal_reminder" in out.stdout and "mandatory" in out.stdout
    doc = json.loads(runner.invoke(app, ["events", "--json"]).stdout)
    data = doc["events"]
    assert {e["name"] for e in data} == set(events.CATALOG)
    reminder = next(e for e in data if e["name"] == "domain.renewal_reminder")
    assert reminder["audience"] == "registrant" and reminder["mandatory"] is True
    assert "days_left" in reminder["schema"]["required"]
    # JSON Schema, the very document GET /v1/events/catalog serves
    assert reminder["schema"]["properties"]["days_left"]["type"] == "integer"
    assert doc == json.loads(catalog_document())


def test_brands_json() -> None:
    data = json.loads(runner.invoke(app, ["brands", "--json"]).stdout)
    assert {"nordname", "acme", "kustwebb"} <= {b["id"] for b in data}
    assert all("private" not in json.dumps(b).lower() for b in data)


def test_render_writes_eml(env_var_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.eml"
    result = runner.invoke(
        app,
        [
            "render",
            "--brand",
            "kustwebb",
            "--event",
            "domain.expired",
            "--lang",
            "sv",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    msg = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    # kustwebb's DNS is not verified and domain.expired is mandatory: the mail goes out
    # as it would be sent, from the platform's domain under Kustwebb's name, replies to
    # Kustwebb (issue 9: render shows what is sent, and says why)
    assert msg["From"].addresses[0].domain == "nordname.com"
    assert msg["From"].addresses[0].display_name == "Kustwebb"
    assert msg["Reply-To"].addresses[0].domain == "kustwebb.fi"
    assert "brand DNS not verified" in result.stderr
    assert msg["Content-Language"] == "sv"


def test_render_decides_the_sender_by_the_recorded_dns_checks(env_var_dir: Path) -> None:
    """The brand file says kustwebb is unverified; the periodic checks found its DNS in
    order: the service sends from kustwebb.fi, so ``render`` must show that too."""
    from notifier.config import Settings
    from notifier.outbox import open_outbox

    def sender() -> tuple[str, str]:
        result = runner.invoke(
            app, ["render", "--brand", "kustwebb", "--event", "domain.expired", "--lang", "sv"]
        )
        assert result.exit_code == 0, result.output
        msg = email.message_from_bytes(result.stdout_bytes, policy=email.policy.default)
        return msg["From"].addresses[0].domain, result.stderr

    assert sender()[0] == "nordname.com"  # no database yet: the brand file decides
    outbox = open_outbox(Settings.load())
    try:
        outbox.record_dns_check(
            "kustwebb", "ok", [], initial="unverified", next_check_in=3600, source="test"
        )
    finally:
        outbox.close()
    domain, notes = sender()
    assert domain == "kustwebb.fi"
    assert "DKIM d=kustwebb.fi" in notes and "brand DNS verified" in notes


def test_render_with_data_file(env_var_dir: Path, tmp_path: Path) -> None:
    data = dict(events.get("domain.renewal_reminder").sample, days_left=1)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(
        app,
        [
            "render",
            "--brand",
            "acme",
            "--event",
            "domain.renewal_reminder",
            "--lang",
            "fi",
            "--data",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    msg = email.message_from_bytes(result.stdout_bytes, policy=email.policy.default)
    # "1 päivä" with a no-break space: a count never breaks across lines (issue 12)
    assert "1 päivä" in msg.get_body(("plain",)).get_content().replace("\xa0", " ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--brand", "acme", "--event", "domain.exploded"], "unknown event 'domain.exploded'"),
        (["--brand", "nosuch", "--event", "domain.renewed"], "brand: unknown brand 'nosuch'"),
        (
            ["--brand", "acme", "--event", "domain.renewed", "--to", "not an address"],
            "recipient.email",
        ),
    ],
)
def test_render_bad_input_exits_non_zero(env_var_dir: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["render", *args])
    assert result.exit_code == 2
    assert needle in result.stderr


def test_render_bad_data_names_the_field(env_var_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({**events.get("domain.renewed").sample, "expires_at": "soon"}))
    result = runner.invoke(
        app, ["render", "--brand", "acme", "--event", "domain.renewed", "--data", str(path)]
    )
    assert result.exit_code == 2
    assert "data.expires_at" in result.stderr
    path.write_text("{not json")
    result = runner.invoke(
        app, ["render", "--brand", "acme", "--event", "domain.renewed", "--data", str(path)]
    )
    assert result.exit_code == 2 and "--data" in result.stderr


def test_templates_check_passes_for_shipped_templates(env_var_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "templates", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    rendered, failed, leaks = (int(part.split()[0]) for part in summary.split(", "))
    assert (failed, leaks) == (0, 0)
    assert rendered >= 3 * 3 * len(events.CATALOG)


def test_templates_check_catches_a_leak(env_var_dir: Path, tmp_path: Path) -> None:
    import shutil

    from notifier.config import PROJECT_ROOT

    brands = tmp_path / "brands"
    shutil.copytree(PROJECT_ROOT / "brands", brands)
    override = brands / "acme" / "templates" / "en"
    override.mkdir(parents=True)
    (override / "domain.renewed.jinja").write_text(
        "{% extends layout %}{% block subject %}Renewed{% endblock %}"
        "{% block body %}Powered by NordName.{% endblock %}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "notifier.cli", "templates", "check"],
        capture_output=True,
        text=True,
        check=False,
        env={**__import__("os").environ, "NOTIFIER_BRANDS_DIR": str(brands)},
    )
    assert result.returncode == 1
    assert "LEAK acme" in result.stdout and "domain.renewed" in result.stdout
    assert (
        result.stdout.strip().splitlines()[-1].endswith(" leaks")
        and " 0 leaks" not in result.stdout
    )
