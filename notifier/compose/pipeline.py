"""The one compose sequence: raw event → validated → sender decided → rendered → links
rewritten → MIME → a frozen :class:`Composed` message.

Every door calls :meth:`Pipeline.prepare` (or :meth:`Pipeline.compose` for an event it
validated itself): the API intake and its worker processes, ``notifier render``,
``send-test`` and the preview. So the From, Reply-To, envelope sender, Message-ID and
signer are the same whichever door a message came through, and a preview is exactly
what would be sent. Each stage takes a frozen value and returns the next; nothing here
does I/O except loading brands and templates once. Signing happens at send time
(``notifier.worker``), with the key of :attr:`Sender.signer`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .. import events as catalog
from ..brands import Brand, BrandRegistry
from ..config import Settings
from ..errors import (
    FieldError,
    NotifierError,
    RenderError,
    UnknownEvent,
    ValidationError,
    from_pydantic,
)
from ..fields import Email, SafeStr, check_tree
from . import mime, unsubscribe
from .links import Rewriter, refuse_disguised
from .mime import Outgoing
from .render import Event, Recipient, Rendered, Renderer, sample_event
from .sender import Sender
from .sender import decide as decide_sender

log = logging.getLogger("notifier.pipeline")


class RecipientIn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    email: Email
    name: Annotated[SafeStr, Field(max_length=200)] | None = None
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2}([-_][A-Za-z0-9]{2,8})?$")] | None = None


class EventIn(BaseModel):
    """The intake shape (HTTP body, CLI ``--data`` wrapper)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event: str
    brand: Annotated[str, Field(max_length=40)]
    recipient: RecipientIn
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: Annotated[SafeStr, Field(min_length=1, max_length=255)] | None = None


@dataclass(frozen=True, slots=True)
class Composed:
    """A message as it will be sent (unsigned), with what decided its shape."""

    event: Event
    sender: Sender
    rendered: Rendered
    outgoing: Outgoing

    @property
    def brand(self) -> Brand:
        """The brand the mail goes out in."""
        return self.sender.brand


class Pipeline:
    def __init__(self, settings: Settings, brands: BrandRegistry | None = None) -> None:
        self.settings = settings
        self.brands = brands or BrandRegistry(settings.brands_dir, settings.platform_brand)
        self.renderer = Renderer(settings.templates_dir, self.brands)
        self._rewriters: dict[str, Rewriter | None] = {}
        self._secret: bytes | None = None
        #: brand id → signs as itself, as the stored DNS checks observed it (brands never
        #: checked are absent); kept fresh by :class:`notifier.dns.verify.DnsView`
        self.dns_observed: Mapping[str, bool] = {}

    def observe_dns(self, observed: Mapping[str, bool]) -> None:
        """Take the brands' observed DNS state (replaced whole: safe across threads)."""
        self.dns_observed = dict(observed)

    # --- the sequence ------------------------------------------------------------

    def prepare(self, raw: Any, loc: str = "") -> Composed:
        """The whole sequence for one raw event. Errors name the field path (``loc``
        prefixes it, e.g. ``events[3]``); a render error carries a note naming ``loc``."""
        event = self.validate(raw, loc)
        try:
            return self.compose(event)
        except NotifierError as exc:
            if loc:
                exc.add_note(f"while rendering {loc}")
            raise

    def compose(
        self, event: Event, *, message_id: str | None = None, date: datetime | None = None
    ) -> Composed:
        """A validated event → the message as it will be sent."""
        sender = self.sender(event)
        rendered = self.render(event, sender.brand)
        outgoing = mime.build(
            rendered,
            sender,
            message_id=message_id or mime.new_message_id(sender.message_id_domain),
            date=date,
        )
        if not outgoing.data:
            raise RenderError(f"{event.name}: rendered an empty message")
        return Composed(event=event, sender=sender, rendered=rendered, outgoing=outgoing)

    # --- stage 1: validate --------------------------------------------------------

    def validate(self, raw: Any, prefix: str = "") -> Event:
        """Raw intake object → :class:`Event`; errors name the field path."""
        if not isinstance(raw, Mapping):
            raise ValidationError([FieldError(prefix or "body", "must be an object")])
        # whatever door it came through, the whole tree once: text UTF-8 can encode,
        # numbers Python can hold (no field type has to remember)
        problems = check_tree(raw, prefix)
        if problems:
            raise ValidationError(problems)
        p = f"{prefix}." if prefix else ""
        try:
            envelope = EventIn.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc.errors(include_url=False), prefix) from exc
        spec = catalog.CATALOG.get(envelope.event)
        if spec is None:
            raise UnknownEvent(envelope.event, sorted(catalog.CATALOG), f"{p}event")
        self.brands.get(envelope.brand, f"{p}brand")
        data = catalog.validate_data(envelope.event, envelope.data, f"{p}data")
        r = envelope.recipient
        refuse_disguised(
            self.settings.platform_hosts, [(f"{p}data", data), (f"{p}recipient.name", r.name)]
        )
        return Event(
            name=envelope.event,
            spec=spec,
            brand_id=envelope.brand,
            recipient=Recipient(email=r.email, name=r.name, language=r.language),
            data=data,
            idempotency_key=envelope.idempotency_key,
        )

    # --- stage 2: the sender decision ---------------------------------------------

    def sender(self, event: Event) -> Sender:
        """Reseller mail goes out in the platform's brand; registrant mail in the
        reseller's, from its own domain or the platform's (see :mod:`.sender`)."""
        account = self.brands.get(event.brand_id)
        brand = self.renderer.sending_brand(event.spec, event.data, account)
        return decide_sender(
            brand,
            self.brands.platform,
            mandatory=event.spec.mandatory,
            verified=self.dns_observed.get(brand.id),
        )

    # --- stages 3-4: render, rewrite links -----------------------------------------

    def rewriter(self, brand: Brand) -> Rewriter | None:
        if brand.id not in self._rewriters:
            self._rewriters[brand.id] = (
                None if brand.platform else Rewriter(self.settings.platform_hosts, brand.link_host)
            )
        return self._rewriters[brand.id]

    def unsubscribe_url(self, event: Event, brand: Brand) -> str | None:
        if event.spec.mandatory:
            return None
        if self._secret is None:
            self._secret = self.settings.secret()
        # the subscription belongs to the account (the reseller), whichever brand the mail
        # goes out in; the link is on the sending brand's link domain and carries the
        # language the mail is written in (the renderer's choice), for the confirmation page
        account = self.brands.get(event.brand_id)
        writer = self.renderer.sending_brand(event.spec, event.data, account)
        token = unsubscribe.make_token(
            self._secret,
            unsubscribe.Subscription(
                event.brand_id,
                event.recipient.email,
                event.name,
                writer.choose_language(event.recipient.language),
            ),
        )
        return unsubscribe.url(brand.link_host, token)

    def render(self, event: Event, brand: Brand) -> Rendered:
        """Render in ``brand`` and move platform links to its link domain."""
        rendered = self.renderer.render(event, unsubscribe_url=self.unsubscribe_url(event, brand))
        rewriter = self.rewriter(brand)
        return rewriter.rewrite(rendered) if rewriter else rendered

    # --- helpers -------------------------------------------------------------------

    def warm_up(self) -> None:
        """Render every event once per brand and language, so that no request pays for
        compiling a template (tens of milliseconds each)."""
        for brand in self.brands.all():
            for name in catalog.CATALOG:
                for lang in brand.languages:
                    try:
                        self.compose(self.sample(name, brand.id, lang))
                    except NotifierError as exc:
                        log.warning("warm-up: %s %s %s: %s", brand.id, name, lang, exc)

    def sample(self, name: str, brand_id: str, language: str | None = None) -> Event:
        self.brands.get(brand_id)
        return sample_event(name, brand_id, language)
