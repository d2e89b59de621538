"""Text of the preview and unsubscribe pages in English, Finnish and Swedish.

The page language follows the browser's ``Accept-Language``; the language a previewed
*mail* is rendered in is chosen separately (the fi / sv / en switch).
"""

from __future__ import annotations

from collections.abc import Iterable

UI_LANGUAGES: tuple[str, ...] = ("en", "fi", "sv")

#: each language's own name, for the mail-language switch
NATIVE_NAMES = {"fi": "suomi", "sv": "svenska", "en": "English"}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Mail preview",
        "sign_in": "Sign in",
        "sign_in_help": "Sign in with your API token. A reseller token shows your own brand; "
        "an admin token shows every brand.",
        "token": "API token",
        "sign_out": "Sign out",
        "bad_token": "That token is not valid or has been revoked.",
        "unbound_token": "This token is not bound to a brand. Sign in with a reseller token "
        "or an admin token.",
        "session_expired": "Your session has ended. Please sign in again.",
        "brands": "Brands",
        "choose_brand": "Choose a brand to preview its mail.",
        "reseller": "reseller",
        "platform": "platform",
        "audience_registrant": "Mail to domain holders",
        "audience_reseller": "Mail to resellers",
        "mandatory": "required notice",
        "mail_language": "Language of the mail",
        "subject": "Subject",
        "from": "From",
        "reply_to": "Reply-To",
        "envelope": "Envelope sender (bounces)",
        "signed_by": "Signed by (DKIM d=)",
        "to": "To",
        "html_part": "HTML version",
        "text_part": "Plain-text version",
        "download": "Download .eml",
        "data": "Sample data (JSON)",
        "data_help": "Edit the data and update the preview. Nothing is sent.",
        "update": "Update preview",
        "reset": "Back to the sample data",
        "data_errors": "The data has errors:",
        "invalid_json": "This is not valid JSON: {error}",
        "render_failed": "The message could not be rendered: {error}",
        "send_test": "Send me a test",
        "test_to": "The test goes to the brand's test address {address}.",
        "test_sent": "A test message is on its way to {address}.",
        "test_limited": "Too many test messages. Try again in {minutes} min.",
        "no_test_address": "This brand has no test address, so no test can be sent.",
        "test_domain_locked": "A test of this message must use the sample domain: with a "
        "real domain it would cancel that domain's pending reminders.",
        "test_unavailable": "Sending is not possible right now. Try again in a moment.",
        "via_platform": "This brand's DNS is not verified yet, so its mail goes out from "
        "the platform's domain on its behalf.",
        "held": "This brand's DNS is not verified yet and its mail is held until it is; "
        "required notices still go out from the platform's domain.",
        "captured": "Captured mail",
        "captured_help": "Local capture mode: nothing leaves this machine. Every message is "
        "saved as an .eml file under var/mail/.",
        "captured_empty": "No mail yet.",
        "date": "Date",
        "back": "Back",
        "event": "Event",
        "not_found": "Not found.",
        "csrf": "The form had expired. Please try again.",
        "unsub_title": "Unsubscribe",
        "unsub_question": "Do you want {brand} to stop sending optional messages to {email}?",
        "unsub_note": "Required notices about your domains, such as renewal reminders, "
        "are still sent.",
        "unsub_button": "Unsubscribe",
        "unsub_done": "Done. {brand} will no longer send optional messages to {email}.",
        "unsub_invalid": "This unsubscribe link is not valid.",
        "unsub_failed": "Something went wrong and your choice was not saved. "
        "Please try again in a moment.",
    },
    "fi": {
        "title": "Viestien esikatselu",
        "sign_in": "Kirjaudu sisään",
        "sign_in_help": "Kirjaudu sisään API-avaimellasi. Jälleenmyyjän avaimella näet oman "
        "brändisi viestit, ylläpitäjän avaimella kaikkien brändien.",
        "token": "API-avain",
        "sign_out": "Kirjaudu ulos",
        "bad_token": "Avain ei kelpaa, tai se on peruttu.",
        "unbound_token": "Tätä avainta ei ole sidottu mihinkään brändiin. Kirjaudu "
        "jälleenmyyjän tai ylläpitäjän avaimella.",
        "session_expired": "Istuntosi on päättynyt. Kirjaudu uudelleen.",
        "brands": "Brändit",
        "choose_brand": "Valitse brändi, jonka viestejä haluat esikatsella.",
        "reseller": "jälleenmyyjä",
        "platform": "alusta",
        "audience_registrant": "Viestit verkkotunnusten haltijoille",
        "audience_reseller": "Viestit jälleenmyyjille",
        "mandatory": "pakollinen ilmoitus",
        "mail_language": "Viestin kieli",
        "subject": "Aihe",
        "from": "Lähettäjä",
        "reply_to": "Vastausosoite",
        "envelope": "Palautusosoite (kirjekuori)",
        "signed_by": "Allekirjoittaja (DKIM d=)",
        "to": "Vastaanottaja",
        "html_part": "HTML-versio",
        "text_part": "Tekstiversio",
        "download": "Lataa .eml-tiedosto",
        "data": "Esimerkkitiedot (JSON)",
        "data_help": "Muokkaa tietoja ja päivitä esikatselu. Mitään ei lähetetä.",
        "update": "Päivitä esikatselu",
        "reset": "Palauta esimerkkitiedot",
        "data_errors": "Tiedoissa on virheitä:",
        "invalid_json": "Tämä ei ole kelvollista JSONia: {error}",
        "render_failed": "Viestiä ei voitu muodostaa: {error}",
        "send_test": "Lähetä minulle testiviesti",
        "test_to": "Testiviesti lähtee brändin testiosoitteeseen {address}.",
        "test_sent": "Testiviesti on matkalla osoitteeseen {address}.",
        "test_limited": "Liian monta testiviestiä. Yritä uudelleen {minutes} minuutin kuluttua.",
        "no_test_address": "Brändille ei ole määritetty testiosoitetta, joten testiviestiä "
        "ei voi lähettää.",
        "test_domain_locked": "Tämän viestin testissä on käytettävä esimerkkiverkkotunnusta: "
        "oikealla verkkotunnuksella testi peruisi verkkotunnuksen odottavat muistutukset.",
        "test_unavailable": "Lähettäminen ei onnistu juuri nyt. Yritä hetken kuluttua uudelleen.",
        "via_platform": "Brändin DNS-asetuksia ei ole vielä vahvistettu, joten sen viestit "
        "lähtevät alustan verkkotunnuksesta brändin puolesta.",
        "held": "Brändin DNS-asetuksia ei ole vielä vahvistettu, joten sen viestit odottavat "
        "vahvistusta. Pakolliset ilmoitukset lähtevät silti alustan verkkotunnuksesta.",
        "captured": "Tallennetut viestit",
        "captured_help": "Paikallinen tallennustila: mitään ei lähetetä tältä koneelta. "
        "Jokainen viesti tallennetaan .eml-tiedostona kansioon var/mail/.",
        "captured_empty": "Ei vielä viestejä.",
        "date": "Päiväys",
        "back": "Takaisin",
        "event": "Tapahtuma",
        "not_found": "Sivua ei löytynyt.",
        "csrf": "Lomake ehti vanhentua. Yritä uudelleen.",
        "unsub_title": "Peru tilaus",
        "unsub_question": "Haluatko, ettei {brand} enää lähetä valinnaisia viestejä "
        "osoitteeseen {email}?",
        "unsub_note": "Verkkotunnuksiasi koskevat pakolliset ilmoitukset, kuten "
        "uusimismuistutukset, lähetetään edelleen.",
        "unsub_button": "Peru tilaus",
        "unsub_done": "Valmis. {brand} ei enää lähetä valinnaisia viestejä osoitteeseen {email}.",
        "unsub_invalid": "Tämä peruutuslinkki ei kelpaa.",
        "unsub_failed": "Jokin meni vikaan, eikä valintaasi tallennettu. Yritä hetken "
        "kuluttua uudelleen.",
    },
    "sv": {
        "title": "Förhandsgranskning av e-post",
        "sign_in": "Logga in",
        "sign_in_help": "Logga in med din API-nyckel. Med en återförsäljarnyckel ser du ditt "
        "eget varumärke, med en administratörsnyckel alla varumärken.",
        "token": "API-nyckel",
        "sign_out": "Logga ut",
        "bad_token": "Nyckeln är ogiltig eller har återkallats.",
        "unbound_token": "Nyckeln är inte kopplad till något varumärke. Logga in med en "
        "återförsäljar- eller administratörsnyckel.",
        "session_expired": "Sessionen har gått ut. Logga in igen.",
        "brands": "Varumärken",
        "choose_brand": "Välj ett varumärke för att förhandsgranska dess e-post.",
        "reseller": "återförsäljare",
        "platform": "plattform",
        "audience_registrant": "E-post till domäninnehavare",
        "audience_reseller": "E-post till återförsäljare",
        "mandatory": "obligatoriskt meddelande",
        "mail_language": "Meddelandets språk",
        "subject": "Ämne",
        "from": "Från",
        "reply_to": "Svarsadress",
        "envelope": "Returadress (kuvert)",
        "signed_by": "Signerat av (DKIM d=)",
        "to": "Till",
        "html_part": "HTML-version",
        "text_part": "Textversion",
        "download": "Ladda ner .eml-fil",
        "data": "Exempeldata (JSON)",
        "data_help": "Ändra uppgifterna och uppdatera förhandsvisningen. Ingenting skickas.",
        "update": "Uppdatera förhandsvisningen",
        "reset": "Återställ exempeldata",
        "data_errors": "Uppgifterna innehåller fel:",
        "invalid_json": "Det här är inte giltig JSON: {error}",
        "render_failed": "Meddelandet kunde inte skapas: {error}",
        "send_test": "Skicka ett testmeddelande till mig",
        "test_to": "Testet skickas till varumärkets testadress {address}.",
        "test_sent": "Ett testmeddelande är på väg till {address}.",
        "test_limited": "För många testmeddelanden. Försök igen om {minutes} min.",
        "no_test_address": "Varumärket har ingen testadress, så inget test kan skickas.",
        "test_domain_locked": "Ett test av det här meddelandet måste använda exempeldomänen: "
        "med en riktig domän skulle testet avbryta domänens väntande påminnelser.",
        "test_unavailable": "Det går inte att skicka just nu. Försök igen om en stund.",
        "via_platform": "Varumärkets DNS är inte verifierad ännu, så dess e-post skickas "
        "från plattformens domän för varumärkets räkning.",
        "held": "Varumärkets DNS är inte verifierad ännu, så dess e-post hålls kvar tills den "
        "är det. Obligatoriska meddelanden skickas ändå från plattformens domän.",
        "captured": "Sparade meddelanden",
        "captured_help": "Lokalt sparläge: ingenting lämnar den här datorn. Varje meddelande "
        "sparas som en .eml-fil i var/mail/.",
        "captured_empty": "Inga meddelanden ännu.",
        "date": "Datum",
        "back": "Tillbaka",
        "event": "Händelse",
        "not_found": "Sidan hittades inte.",
        "csrf": "Formuläret hade gått ut. Försök igen.",
        "unsub_title": "Avsluta prenumeration",
        "unsub_question": "Vill du att {brand} slutar skicka meddelanden som inte är "
        "obligatoriska till {email}?",
        "unsub_note": "Obligatoriska meddelanden om dina domäner, till exempel "
        "förnyelsepåminnelser, skickas fortfarande.",
        "unsub_button": "Avsluta prenumerationen",
        "unsub_done": "Klart. {brand} skickar inte längre meddelanden som inte är "
        "obligatoriska till {email}.",
        "unsub_invalid": "Länken för att avsluta prenumerationen är ogiltig.",
        "unsub_failed": "Något gick fel och ditt val sparades inte. Försök igen om en stund.",
    },
}


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language tags by preference: ``"sv-FI,sv;q=0.9,en;q=0.5"`` → sv, sv, en."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, tag.split("-")[0]))
    return [tag for _, _, tag in sorted(ranked)]


def choose(header: str | None, available: Iterable[str] = UI_LANGUAGES, default: str = "en") -> str:
    offered = list(available)
    for tag in parse_accept_language(header):
        if tag in offered:
            return tag
    return default if default in offered else offered[0]


class Texts(dict[str, str]):
    """One language's page text, looked up as ``t.update`` or ``t["update"]`` alike.

    Jinja resolves ``t.update`` with ``getattr`` first, so on a plain dict it found the
    dict's ``update`` method and the page showed ``<built-in method update …>``. The
    text is copied into the instance's ``__dict__``, which attribute lookup consults
    before the class's methods: every key, whatever its name, reads as its text.
    """

    def __init__(self, text: dict[str, str]) -> None:
        super().__init__(text)
        self.__dict__.update(text)


_TEXTS = {lang: Texts(text) for lang, text in TEXT.items()}


def texts(lang: str) -> Texts:
    return _TEXTS.get(lang, _TEXTS["en"])
