"""A short human title for every event in every mail language.

The event names (``domain.renewal_reminder``) are the API contract; people choosing a
message in the preview read these titles instead, in the page's language. They live
next to the catalog so that a new event cannot ship without them
(``tests/events/test_titles.py``). Written fresh in each language, as a reader would
name the message, in the glossary's terms (docs/STYLE.md).
"""

from __future__ import annotations

#: event name → language → title
TITLES: dict[str, dict[str, str]] = {
    "domain.registered": {
        "en": "Domain registered",
        "fi": "Verkkotunnus rekisteröity",
        "sv": "Domännamnet registrerat",
    },
    "domain.renewal_reminder": {
        "en": "Renewal reminder",
        "fi": "Uusimismuistutus",
        "sv": "Påminnelse om förnyelse",
    },
    "domain.renewed": {
        "en": "Domain renewed",
        "fi": "Verkkotunnus uusittu",
        "sv": "Domännamnet förnyat",
    },
    "domain.auto_renew_failed": {
        "en": "Automatic renewal failed",
        "fi": "Automaattinen uusinta epäonnistui",
        "sv": "Automatisk förnyelse misslyckades",
    },
    "domain.expired": {
        "en": "Domain expired",
        "fi": "Voimassaolo päättynyt",
        "sv": "Domännamnet har löpt ut",
    },
    "domain.redemption": {
        "en": "Protection or redemption period",
        "fi": "Suoja-aika tai palautusjakso",
        "sv": "Skyddstid eller inlösenperiod",
    },
    "domain.deleted": {
        "en": "Domain deleted",
        "fi": "Verkkotunnus poistettu",
        "sv": "Domännamnet avregistrerat",
    },
    "domain.restored": {
        "en": "Domain back after expiry",
        "fi": "Verkkotunnus palautettu",
        "sv": "Domännamnet återställt",
    },
    "contact.verification_required": {
        "en": "Confirm e-mail address",
        "fi": "Sähköpostiosoitteen vahvistus",
        "sv": "Bekräfta e-postadressen",
    },
    "contact.verification_reminder": {
        "en": "Confirmation reminder",
        "fi": "Muistutus vahvistuksesta",
        "sv": "Påminnelse om bekräftelse",
    },
    "contact.verified": {
        "en": "E-mail address confirmed",
        "fi": "Sähköpostiosoite vahvistettu",
        "sv": "E-postadressen bekräftad",
    },
    "domain.suspended_unverified": {
        "en": "Suspended: address not confirmed",
        "fi": "Jäädytetty: osoite vahvistamatta",
        "sv": "Spärrat: adressen obekräftad",
    },
    "transfer.auth_code": {
        "en": "Auth code or registrar-change key",
        "fi": "Siirtokoodi tai vaihtoavain",
        "sv": "Auktoriseringskod eller kod för registrarbyte",
    },
    "transfer.in_requested": {
        "en": "Approve an incoming transfer",
        "fi": "Saapuvan siirron hyväksyntä",
        "sv": "Godkänn inkommande flytt",
    },
    "transfer.in_completed": {
        "en": "Incoming transfer completed",
        "fi": "Saapuva siirto valmis",
        "sv": "Inkommande flytt klar",
    },
    "transfer.in_failed": {
        "en": "Incoming transfer failed",
        "fi": "Saapuva siirto epäonnistui",
        "sv": "Inkommande flytt misslyckades",
    },
    "transfer.out_requested": {
        "en": "Transfer-out request",
        "fi": "Pyyntö siirtää toiselle välittäjälle",
        "sv": "Begäran om flytt till annan registrar",
    },
    "transfer.out_completed": {
        "en": "Moved to another registrar",
        "fi": "Siirretty toiselle välittäjälle",
        "sv": "Flyttat till annan registrar",
    },
    "contact.registrant_change_requested": {
        "en": "Confirm a change of registrant",
        "fi": "Käyttäjän vaihdon vahvistus",
        "sv": "Bekräfta överlåtelse",
    },
    "contact.registrant_changed": {
        "en": "Registrant changed",
        "fi": "Käyttäjä vaihtunut",
        "sv": "Överlåtelsen klar",
    },
    "whois.data_reminder": {
        "en": "Yearly check of registration data",
        "fi": "Rekisteröintitietojen vuositarkistus",
        "sv": "Årlig kontroll av uppgifterna",
    },
    "domain.nameservers_changed": {
        "en": "Name servers changed",
        "fi": "Nimipalvelimet vaihdettu",
        "sv": "Namnservrarna ändrade",
    },
    "domain.dnssec_changed": {
        "en": "DNSSEC turned on or off",
        "fi": "DNSSEC-suojaus päälle tai pois",
        "sv": "DNSSEC aktiverat eller avstängt",
    },
    "domain.contacts_updated": {
        "en": "Contact details updated",
        "fi": "Yhteystiedot päivitetty",
        "sv": "Kontaktuppgifterna uppdaterade",
    },
    "privacy.enabled": {
        "en": "Privacy protection turned on",
        "fi": "Yksityisyydensuoja käyttöön",
        "sv": "Integritetsskyddet aktiverat",
    },
    "privacy.disabled": {
        "en": "Privacy protection turned off",
        "fi": "Yksityisyydensuoja pois käytöstä",
        "sv": "Integritetsskyddet avstängt",
    },
    "forwarding.updated": {
        "en": "Web forwarding changed",
        "fi": "URL-ohjaus muutettu",
        "sv": "Omdirigeringen ändrad",
    },
    "domain.lock_changed": {
        "en": "Transfer lock on or off",
        "fi": "Siirtolukko päälle tai pois",
        "sv": "Domänlåset på eller av",
    },
    "reseller.balance_low": {
        "en": "Low prepaid balance",
        "fi": "Ennakkomaksutilin saldo vähissä",
        "sv": "Lågt saldo",
    },
    "reseller.funds_added": {
        "en": "Funds added: receipt",
        "fi": "Kuitti ennakkomaksusta",
        "sv": "Kvitto på insättning",
    },
    "reseller.invoice_issued": {
        "en": "Monthly summary invoice",
        "fi": "Kuukauden yhteenvetolasku",
        "sv": "Samlingsfaktura för månaden",
    },
    "reseller.invoice_due_soon": {
        "en": "Invoice due soon",
        "fi": "Lasku erääntyy pian",
        "sv": "Faktura förfaller snart",
    },
    "reseller.invoice_overdue": {
        "en": "Payment reminder",
        "fi": "Maksumuistutus",
        "sv": "Betalningspåminnelse",
    },
    "reseller.discount_tier_changed": {
        "en": "Discount tier changed",
        "fi": "Alennustaso muuttunut",
        "sv": "Rabattnivån ändrad",
    },
    "reseller.client_access_changed": {
        "en": "Client changed your access",
        "fi": "Asiakas muutti käyttöoikeuttasi",
        "sv": "Kunden ändrade din åtkomst",
    },
    "reseller.commission_paid": {
        "en": "Referral commission paid",
        "fi": "Suositteluprovisio maksettu",
        "sv": "Hänvisningsprovision utbetald",
    },
    "reseller.order_placed": {
        "en": "Order for a client",
        "fi": "Tilaus asiakkaalle",
        "sv": "Beställning för en kund",
    },
    "reseller.action_required": {
        "en": "Action required",
        "fi": "Toimenpiteitä tarvitaan",
        "sv": "Åtgärd krävs",
    },
}


def title(name: str, language: str) -> str:
    """The event's title in ``language``; English, then the event name, if missing."""
    names = TITLES.get(name, {})
    return names.get(language) or names.get("en") or name
