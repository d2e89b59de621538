"""Settings: ``NOTIFIER_*`` environment variables over an optional ``notifier.toml``.

Validated once at construction; secrets are hidden from ``repr`` so settings can be
logged. All state lives under ``var_dir`` (database, keys, captured mail).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Secret(str):
    """A string that does not show itself in repr or logs."""

    def __repr__(self) -> str:
        return "Secret('**********')"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    var_dir: Path = Path("var")
    key_dir: Path | None = None
    database_url: str | None = None
    smtp_url: str | None = None
    brands_dir: Path = PROJECT_ROOT / "brands"
    templates_dir: Path = PROJECT_ROOT / "templates"
    platform_brand: str = "nordname"
    #: hosts whose links are rewritten to a reseller's link domain
    platform_hosts: tuple[str, ...] = ("nordname.com", "www.nordname.com", "manage.nordname.com")
    #: words that must never appear in reseller-branded mail
    platform_names: tuple[str, ...] = ("nordname",)
    #: SPF mechanism resellers must include, and where link domains must point
    spf_include: str = "include:_spf.nordname.com"
    link_target: str = "links.nordname.com"
    link_addresses: tuple[str, ...] = ()
    secret_key: Secret = field(default_factory=lambda: Secret(""), repr=True)
    max_event_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if not self.brands_dir.is_dir():
            raise ConfigError(f"brands_dir: {self.brands_dir} is not a directory")
        if not self.templates_dir.is_dir():
            raise ConfigError(f"templates_dir: {self.templates_dir} is not a directory")
        if self.max_event_bytes < 1024:
            raise ConfigError("max_event_bytes: must be at least 1024")

    @property
    def keys_path(self) -> Path:
        return self.key_dir or self.var_dir / "keys"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'notifier.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

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

    @classmethod
    def load(cls, env: dict[str, str] | None = None, config: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        path = config or Path(env.get("NOTIFIER_CONFIG", "notifier.toml"))
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text("utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
        names = {f.name for f in fields(cls)}
        for key, value in env.items():
            if key.startswith("NOTIFIER_") and key[9:].lower() in names:
                values[key[9:].lower()] = value
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"{path}: unknown settings: {', '.join(sorted(unknown))}")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})


def _coerce(name: str, value: Any) -> Any:
    if name in {"var_dir", "key_dir", "brands_dir", "templates_dir"}:
        return Path(value)
    if name in {"platform_hosts", "platform_names", "link_addresses"}:
        return _split(value) if isinstance(value, str) else tuple(value)
    if name == "secret_key":
        return Secret(value)
    if name == "max_event_bytes":
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: must be an integer") from exc
    return value
