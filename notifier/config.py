"""Settings: every ``NOTIFIER_*`` setting, declared once, validated once.

Each setting is one field of :class:`Settings` with its type, default and a one-line
description. The same keys work in ``notifier.toml`` (``retry_delays = "5m,10m"`` or a
TOML list) and in the environment (``NOTIFIER_RETRY_DELAYS=5m,10m``); the environment
wins. An unknown key in either place is an error that names it and suggests the closest
known key, so a typo such as ``NOTIFIER_SMTP_ULR`` never passes silently.

Durations take a unit (``90s``, ``5m``, ``2h``, ``4d``, ``2y``; a bare number is
seconds). Secrets are hidden from ``repr`` and from ``notifier config``. All state lives
under ``var_dir`` (database, keys, captured mail). The outbox and the worker read their
slices through :meth:`Settings.outbox_config` and :meth:`Settings.worker_config`.

Pydantic models the fields; the two sources are merged here rather than by
pydantic-settings because ops need to see where each value came from
(``notifier config``) and unknown keys must be refused in both places alike.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .errors import ConfigError

if TYPE_CHECKING:
    from .outbox.model import OutboxConfig
    from .worker.loop import WorkerConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "NOTIFIER_"
#: environment variables that configure the tools around the service, not the service
META_KEYS = frozenset({"NOTIFIER_CONFIG"})
META_PREFIXES = ("NOTIFIER_TEST_",)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


class Secret(str):
    """A string that does not show itself in repr or logs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('**********')"


# --- value parsers (text from the environment or TOML → typed values) ------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w|y)?\s*$")
_UNITS: dict[str | None, float] = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "m": MINUTE,
    "min": MINUTE,
    "h": HOUR,
    "d": DAY,
    "w": 7 * DAY,
    "y": 365 * DAY,
}


def parse_duration(text: str, what: str = "duration") -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"2h"``, ``"4d"``, ``"2y"`` → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 5m, 2h, 4d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


def _off_or_duration(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("off", "never", "0"):
        return 0.0
    return _duration(value)


def _durations(value: Any) -> Any:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return tuple(_duration(v) for v in value)
    return value


def _interval(value: Any) -> Any:
    if isinstance(value, str):
        value = [p for p in value.replace("-", ",").split(",") if p.strip()]
    if isinstance(value, list | tuple):
        parts = [_duration(v) for v in value]
        if len(parts) not in (1, 2):
            raise ValueError("one duration or low,high")
        return (parts[0], parts[-1])
    return value


def _names(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip().lower() for v in value)
    return value


def _lifetimes(value: Any) -> Any:
    if isinstance(value, str):
        out: dict[str, float] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            name, eq, duration = part.partition("=")
            if not eq:
                raise ValueError("use event=duration,… (e.g. transfer.auth_code=1d)")
            out[name.strip()] = parse_duration(duration)
        return out
    if isinstance(value, Mapping):
        return {str(k): _duration(v) for k, v in value.items()}
    return value


def _processes(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit():
            raise ValueError("a number of processes, or auto")
        return int(text)
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
Durations = Annotated[tuple[float, ...], BeforeValidator(_durations)]
Interval = Annotated[tuple[float, float], BeforeValidator(_interval)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Lifetimes = Annotated[dict[str, float], BeforeValidator(_lifetimes)]
SecretStr = Annotated[Secret, BeforeValidator(lambda v: Secret(v) if isinstance(v, str) else v)]

#: settings whose values are secrets (shown redacted) or URLs that may carry a password
SECRETS = frozenset({"secret_key"})
URLS = frozenset({"database_url", "smtp_url"})


class Settings(BaseModel):
    """Every ``NOTIFIER_*`` setting. Construct with keywords in code and tests; load
    from ``notifier.toml`` and the environment with :meth:`load`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    # --- where things are ------------------------------------------------------------
    var_dir: Path = Field(Path("var"), description="all state: database, keys, mail")
    key_dir: Path | None = Field(None, description="DKIM key store (default var_dir/keys)")
    database_url: str | None = Field(
        None, description="sqlite:///path or postgresql://… (default SQLite in var_dir)"
    )
    smtp_url: str | None = Field(
        None, description="relay smtp[s]://…, direct://, or capture (default: capture)"
    )
    brands_dir: Path = Field(PROJECT_ROOT / "brands", description="brand files (<id>.toml)")
    templates_dir: Path = Field(PROJECT_ROOT / "templates", description="message templates")
    secret_key: SecretStr = Field(
        Secret(""), description="signs unsubscribe links and sessions (default: made in var_dir)"
    )
    # --- the platform ----------------------------------------------------------------
    platform_brand: str = Field("nordname", description="the registrar's own brand id")
    platform_hosts: Names = Field(
        ("nordname.com", "www.nordname.com", "manage.nordname.com"),
        description="hosts whose links are rewritten to a reseller's link domain",
    )
    platform_names: Names = Field(
        ("nordname",), description="words that must never appear in reseller mail"
    )
    spf_include: str = Field(
        "include:_spf.nordname.com", description="SPF mechanism resellers must include"
    )
    link_target: str = Field(
        "links.nordname.com", description="where reseller link domains must point (CNAME)"
    )
    link_addresses: Names = Field((), description="A/AAAA a link domain may point to instead")
    # --- brand DNS verification (docs/DNS.md) -----------------------------------------
    dns_recheck: Annotated[float, BeforeValidator(_off_or_duration), Field(ge=0)] = Field(
        6 * HOUR, description="workers re-check every brand's DNS this often (±10 %); off: never"
    )
    dns_nameserver: str | None = Field(
        None, description="DNS checks ask this HOST[:PORT] (default: the system's resolver)"
    )
    dns_timeout: Duration = Field(5.0, description="DNS checks: seconds per lookup, then unknown")
    dns_refresh: Duration = Field(
        2.0, description="each process re-reads the brands' observed DNS state this often"
    )
    # --- intake ----------------------------------------------------------------------
    max_event_bytes: int = Field(64 * 1024, ge=1024, description="largest event body (bytes)")
    max_batch: int = Field(1000, ge=1, description="largest accepted batch (events)")
    intake_processes: Annotated[int | Literal["auto"] | None, BeforeValidator(_processes)] = Field(
        None,
        description="processes that validate and render large batches; 0: in-process, "
        "auto: one per core (default: auto for serve, 0 elsewhere)",
    )
    worker_processes: int = Field(
        1,
        ge=0,
        description="notifier serve: delivery workers in processes of their own; "
        "0: one worker in the server's process",
    )
    # --- delivery policy -------------------------------------------------------------
    retry_delays: Durations = Field(
        (5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE),
        description="waits after the 1st, 2nd, … failed attempt",
    )
    retry_interval: Interval = Field(
        (1 * HOUR, 2 * HOUR), description="then a random wait in low,high between attempts"
    )
    retry_jitter: float = Field(0.10, ge=0, lt=0.5, description="± fraction of jitter on waits")
    max_lifetime: Duration = Field(4 * DAY, description="give up (4.4.7) this long after accept")
    event_lifetimes: Lifetimes = Field(
        default_factory=dict, description="shorter lifetimes by event (event=duration,…)"
    )
    expiry_grace: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = Field(
        1 * HOUR, description="a message reached this long past its deadline fails unsent"
    )
    # --- the outbox ------------------------------------------------------------------
    lease: Duration = Field(15 * MINUTE, description="how long a claim holds without heartbeat")
    retention: Duration = Field(730 * DAY, description="keep sent mail and evidence this long")
    db_busy_timeout: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = Field(
        5.0, description="SQLite: wait this long for a lock before failing (503)"
    )
    # --- the worker ------------------------------------------------------------------
    worker_batch: int = Field(100, ge=1, description="messages leased per claim")
    worker_concurrency: int = Field(16, ge=1, description="sends in flight per worker")
    worker_poll: Duration = Field(1.0, description="sleep between claims when nothing is due")
    # --- notifier serve: slow and many clients ---------------------------------------
    http_header_timeout: Duration = Field(
        10.0, description="serve: close a connection whose request head takes longer"
    )
    http_body_timeout: Duration = Field(
        30.0, description="serve: close a connection whose request body takes longer"
    )
    http_keep_alive: Duration = Field(5.0, description="serve: close idle connections after")
    http_max_connections: int = Field(
        1000, ge=1, description="serve: open connections at most; more get 503"
    )
    # --- status webhooks ---------------------------------------------------------------
    webhook_allow_private: bool = Field(
        False, description="let webhooks reach loopback/private/link-local addresses"
    )
    webhook_timeout: Duration = Field(15.0, description="one webhook attempt's time limit")
    webhook_concurrency: int = Field(64, ge=1, description="webhook attempts in flight per worker")
    webhook_endpoint_concurrency: int = Field(
        16, ge=1, description="webhook attempts in flight to one endpoint per worker"
    )
    webhook_rotation_grace: Duration = Field(
        24 * HOUR, description="rotate-secret: the old secret keeps signing this long"
    )
    # --- notifier inbound: bounces and complaints ------------------------------------
    inbound_host: str = Field("127.0.0.1", description="inbound: address the SMTP server binds")
    inbound_port: int = Field(2526, ge=0, le=65535, description="inbound: its port (MX: 25)")
    inbound_max_size: int = Field(
        2 * 1024 * 1024, ge=1024, description="inbound: largest report accepted (bytes)"
    )

    @pydantic.field_validator("brands_dir", "templates_dir")
    @classmethod
    def _is_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @pydantic.field_validator("dns_nameserver")
    @classmethod
    def _nameserver(cls, value: str | None) -> str | None:
        from .dns.resolver import NameserverError, parse_nameserver

        if value is not None:
            try:
                parse_nameserver(value, names=False)
            except NameserverError as exc:
                if "must be an IP address" not in str(exc):  # a name is looked up later
                    raise ValueError(str(exc)) from None
        return value

    @pydantic.field_validator("retry_delays")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(d <= 0 for d in value):
            raise ValueError("every delay must be positive")
        return value

    @pydantic.field_validator("retry_interval")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("need 0 < low <= high")
        return value

    @pydantic.field_validator("event_lifetimes")
    @classmethod
    def _lifetimes_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v <= 0 for v in value.values()):
            raise ValueError("lifetimes must be positive")
        return value

    @pydantic.field_validator("intake_processes")
    @classmethod
    def _not_negative(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must not be negative")
        return value

    # --- derived values ----------------------------------------------------------------

    @property
    def keys_path(self) -> Path:
        return self.key_dir or self.var_dir / "keys"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'notifier.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    def intake_process_count(self, default: int | Literal["auto"] = 0) -> int:
        """Intake worker processes: the setting, else ``default`` (``auto``: one per
        core, none on one core)."""
        value = self.intake_processes if self.intake_processes is not None else default
        if value == "auto":
            from .intake.preparer import auto_processes

            return auto_processes()
        assert isinstance(value, int)
        return value

    def outbox_config(self) -> OutboxConfig:
        from .outbox.model import OutboxConfig

        return OutboxConfig(
            retry_delays=self.retry_delays,
            retry_interval=self.retry_interval,
            retry_jitter=self.retry_jitter,
            max_lifetime=self.max_lifetime,
            lifetimes=dict(self.event_lifetimes),
            expiry_grace=self.expiry_grace,
            lease=self.lease,
            retention=self.retention,
            busy_timeout=self.db_busy_timeout,
            max_batch=self.max_batch,
            intake_processes=self.intake_process_count(),
        )

    def worker_config(self, **overrides: Any) -> WorkerConfig:
        """The worker's slice; keyword arguments that are not None win (CLI options)."""
        from .worker.loop import WorkerConfig

        values: dict[str, Any] = {
            "batch_size": self.worker_batch,
            "concurrency": self.worker_concurrency,
            "poll_interval": self.worker_poll,
            "dns_refresh": self.dns_refresh,
            "dns_poll": min(60.0, self.dns_recheck / 4) or 60.0,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return WorkerConfig(**values)

    def secret(self) -> bytes:
        """The signing secret for unsubscribe links and sessions; made once under var/."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.var_dir / "secret.key"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.var_dir.mkdir(parents=True, exist_ok=True)
        # written aside, then linked into place: a concurrent process (the intake
        # workers start together) either makes it first or reads the complete file
        tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_hex(32).encode())
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
        return path.read_bytes().strip()

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, config: Path | None = None) -> Settings:
        """``notifier.toml`` (or ``NOTIFIER_CONFIG``, or ``config``) under the
        environment's ``NOTIFIER_*`` variables."""
        return load_with_sources(env, config)[0]


def known_keys() -> list[str]:
    return list(Settings.model_fields)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def load_with_sources(
    env: Mapping[str, str] | None = None, config: Path | None = None
) -> tuple[Settings, dict[str, str]]:
    """The settings and, for each key set, where its value came from (``env
    NOTIFIER_X``, ``notifier.toml``)."""
    env = dict(os.environ if env is None else env)
    known = known_keys()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    path = config or Path(env.get("NOTIFIER_CONFIG", "notifier.toml"))
    if path.is_file():
        try:
            document = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for key, value in document.items():
            if key not in known:
                problems.append(f"{path}: unknown setting {key!r}{_suggest(key, known)}")
                continue
            values[key] = value
            sources[key] = str(path)
    elif config is not None:
        raise ConfigError(f"{path}: no such file")
    for name, value in env.items():
        if not name.startswith(PREFIX) or name in META_KEYS or name.startswith(META_PREFIXES):
            continue
        key = name[len(PREFIX) :].lower()
        if key not in known:
            hint = _suggest(key, known)
            if hint:
                hint = f"; did you mean {PREFIX}{hint.rpartition(' ')[2][:-1].upper()}?"
            problems.append(f"environment: unknown setting {name}{hint}")
            continue
        values[key] = value
        sources[key] = f"env {name}"
    if problems:
        raise ConfigError("; ".join(problems))
    try:
        settings = Settings(**values)
    except pydantic.ValidationError as exc:
        raise ConfigError("; ".join(_describe(e, sources) for e in exc.errors())) from exc
    return settings, sources


def _describe(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """``NOTIFIER_LEASE: 'soon' is not a duration …`` — named the way it was set."""
    key = str(error["loc"][0]) if error.get("loc") else "settings"
    where = sources.get(key, "")
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if where.startswith("env "):
        return f"{where[4:]}: {message}"
    if where:
        return f"{where}: {key}: {message}"
    return f"{key}: {message}"


def redacted(name: str, value: Any) -> Any:
    """A value as ``notifier config`` shows it: secrets hidden, URL passwords masked."""
    if name in SECRETS:
        return "**********" if value else ""
    if name in URLS and isinstance(value, str):
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1**********@", value)
    return value


__all__ = [
    "PROJECT_ROOT",
    "Secret",
    "Settings",
    "known_keys",
    "load_with_sources",
    "parse_duration",
    "redacted",
]
