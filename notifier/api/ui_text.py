"""Text of the preview and unsubscribe pages in English, Finnish and Swedish.

The page language follows the browser's ``Accept-Language``; the language a previewed
*mail* is rendered in is chosen separately (the fi / sv / en switch). The unsubscribe
page speaks the language of the mail its link came in (the token carries it). Event
titles live with the catalog (:mod:`notifier.events.titles`).
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
        # --- navigation and accessibility
        "skip_to_message": "Skip to the message",
        "skip_to_main": "Skip to the main content",
        "nav_main": "Main",
        "nav_events": "Message types",
        "nav_pages": "Pages of results",
        "preview_nav": "Preview",
        # --- sent mail
        "sent": "Sent mail",
        "sent_help": "Mail sent for {brand}, newest first. Search by the recipient's whole "
        "address, the domain the message is about, the message type or its state.",
        "search": "Search",
        "clear_search": "Clear the search",
        "recipient": "Recipient",
        "recipient_help": "The whole address, such as aino@example.fi",
        "domain": "Domain",
        "state": "State",
        "any": "Any",
        "sent_empty": "No messages match.",
        "last_reply": "Last reply",
        "details": "Details",
        "older": "Older messages",
        "newest": "Newest messages",
        "search_errors": "Check the search:",
        "bad_recipient": "Enter a whole e-mail address, such as aino@example.fi.",
        "bad_domain": "This is not a domain name.",
        "bad_choice": "Choose one of the options.",
        "state_queued": "Queued",
        "state_sending": "Sending",
        "state_sent": "Sent",
        "state_cancelled": "Cancelled",
        "state_deferred": "Delayed, will retry",
        "state_failed": "Failed",
        "state_held": "Held until DNS is verified",
        "state_suppressed": "Not sent (address blocked)",
        "state_bounced": "Bounced",
        "message_n": "Message {id}",
        "reason": "Reason",
        "language": "Language",
        "accepted_at": "Accepted",
        "sent_at": "Sent",
        "next_attempt": "Next attempt",
        "attempts": "Delivery attempts",
        "no_attempts": "No delivery attempt yet.",
        "server": "Server",
        "reply": "Reply",
        "outcome": "Outcome",
        "outcome_sent": "Accepted by the server",
        "outcome_transient": "Temporary failure",
        "outcome_permanent": "Permanent failure",
        "possible_duplicate": "The connection broke after the message was sent, so the "
        "recipient may get it twice.",
        "feedback": "Bounces and complaints",
        "no_feedback": "No bounce or complaint.",
        "fb_bounce": "Bounce",
        "fb_complaint": "Complaint",
        "fb_suppressed": "Blocked address",
        "fb_hard": "permanent",
        "fb_soft": "temporary",
        "fb_suppressed_text": "The address is on {brand}'s suppression list, so optional "
        "mail is not sent to it.",
        "as_sent": "The message as sent",
        "as_queued": "The message as queued (not sent yet)",
        "body_unavailable": "The stored message could not be read.",
        "back_to_sent": "Back to sent mail",
        # --- domain setup
        "domain_setup": "Domain setup",
        "domain_help": "Publish these records in your domain's DNS. Until they are in place, "
        "your mail goes out from the platform's domain on your behalf.",
        "record_dkim": "DKIM key {selector}",
        "record_spf": "SPF",
        "record_dmarc": "DMARC",
        "record_link": "Link domain",
        "why_dkim": "Lets receivers verify that the mail really comes from your domain.",
        "why_spf": "Allows the platform's servers to send mail for {domain}. If the name "
        "already has an SPF record, add {include} to it instead of publishing a second one.",
        "why_dmarc": "Tells receivers what to do with mail that fails the checks. p=none only "
        "monitors; tighten the policy once everything passes.",
        "why_link": "The links in your mail point to this name.",
        "rec_type": "Type",
        "rec_name": "Name",
        "rec_value": "Value",
        "copy": "Copy",
        "copy_what": "Copy: {what}",
        "copied": "Copied",
        "status": "Status",
        "st_ok": "In place",
        "st_fail": "Missing or wrong",
        "st_unknown": "Could not check",
        "st_none": "Not checked yet",
        "found_value": "Published now",
        "check_now": "Check now",
        "checked_at": "Last checked {time}.",
        "never_checked": "Not checked yet. DNS changes can take a few hours to show.",
        "check_limited": "Too many checks. Try again in {minutes} min.",
        "check_failed": "The check could not be run: {error}",
        "key_missing": "The platform has not made this key yet. Please contact the "
        "platform's support.",
        "not_in_use": "not in use yet",
        "all_ok": "Every record is in place.",
        "other_checks": "Other checks",
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
        # --- navigation and accessibility
        "skip_to_message": "Siirry viestiin",
        "skip_to_main": "Siirry pääsisältöön",
        "nav_main": "Päävalikko",
        "nav_events": "Viestityypit",
        "nav_pages": "Hakutulosten sivut",
        "preview_nav": "Esikatselu",
        # --- sent mail
        "sent": "Lähetetyt viestit",
        "sent_help": "Brändin {brand} nimissä lähetetyt viestit, uusimmat ensin. Voit hakea "
        "vastaanottajan koko osoitteella, verkkotunnuksella, jota viesti koskee, "
        "viestityypillä tai viestin tilalla.",
        "search": "Hae",
        "clear_search": "Tyhjennä haku",
        "recipient": "Vastaanottaja",
        "recipient_help": "Koko osoite, esimerkiksi aino@example.fi",
        "domain": "Verkkotunnus",
        "state": "Tila",
        "any": "Kaikki",
        "sent_empty": "Hakua vastaavia viestejä ei löytynyt.",
        "last_reply": "Viimeisin vastaus",
        "details": "Tiedot",
        "older": "Vanhemmat viestit",
        "newest": "Uusimmat viestit",
        "search_errors": "Tarkista hakuehdot:",
        "bad_recipient": "Anna koko sähköpostiosoite, esimerkiksi aino@example.fi.",
        "bad_domain": "Tämä ei ole verkkotunnus.",
        "bad_choice": "Valitse jokin vaihtoehdoista.",
        "state_queued": "Jonossa",
        "state_sending": "Lähdössä",
        "state_sent": "Lähetetty",
        "state_cancelled": "Peruttu",
        "state_deferred": "Viivästynyt, yritetään uudelleen",
        "state_failed": "Epäonnistui",
        "state_held": "Odottaa DNS-vahvistusta",
        "state_suppressed": "Ei lähetetty (osoite estetty)",
        "state_bounced": "Palautui",
        "message_n": "Viesti {id}",
        "reason": "Syy",
        "language": "Kieli",
        "accepted_at": "Vastaanotettu",
        "sent_at": "Lähetetty",
        "next_attempt": "Seuraava yritys",
        "attempts": "Toimitusyritykset",
        "no_attempts": "Toimitusta ei ole vielä yritetty.",
        "server": "Palvelin",
        "reply": "Vastaus",
        "outcome": "Tulos",
        "outcome_sent": "Palvelin otti viestin vastaan",
        "outcome_transient": "Tilapäinen virhe",
        "outcome_permanent": "Pysyvä virhe",
        "possible_duplicate": "Yhteys katkesi viestin lähettämisen jälkeen, joten "
        "vastaanottaja voi saada viestin kahdesti.",
        "feedback": "Palautukset ja valitukset",
        "no_feedback": "Ei palautuksia eikä valituksia.",
        "fb_bounce": "Palautus",
        "fb_complaint": "Valitus",
        "fb_suppressed": "Estetty osoite",
        "fb_hard": "pysyvä",
        "fb_soft": "tilapäinen",
        "fb_suppressed_text": "Osoite on brändin {brand} estolistalla, joten sinne ei "
        "lähetetä valinnaisia viestejä.",
        "as_sent": "Viesti sellaisena kuin se lähetettiin",
        "as_queued": "Viesti sellaisena kuin se on jonossa (ei vielä lähetetty)",
        "body_unavailable": "Tallennettua viestiä ei voitu lukea.",
        "back_to_sent": "Takaisin lähetettyihin viesteihin",
        # --- domain setup
        "domain_setup": "Verkkotunnuksen asetukset",
        "domain_help": "Julkaise nämä tietueet verkkotunnuksesi DNS-palvelussa. Siihen asti "
        "viestisi lähtevät puolestasi alustan verkkotunnuksesta.",
        "record_dkim": "DKIM-avain {selector}",
        "record_spf": "SPF",
        "record_dmarc": "DMARC",
        "record_link": "Linkkien verkkotunnus",
        "why_dkim": "Tämän avulla vastaanottajat voivat varmistaa, että viesti todella tulee "
        "verkkotunnuksestasi.",
        "why_spf": "Sallii alustan palvelimien lähettää postia verkkotunnuksen {domain} "
        "nimissä. Jos nimellä on jo SPF-tietue, lisää siihen {include} äläkä julkaise "
        "toista tietuetta.",
        "why_dmarc": "Kertoo vastaanottajille, mitä tehdä viesteille, jotka eivät läpäise "
        "tarkistuksia. p=none vain seuraa; tiukenna käytäntöä, kun kaikki on kunnossa.",
        "why_link": "Viestiesi linkit osoittavat tähän nimeen.",
        "rec_type": "Tyyppi",
        "rec_name": "Nimi",
        "rec_value": "Arvo",
        "copy": "Kopioi",
        "copy_what": "Kopioi: {what}",
        "copied": "Kopioitu",
        "status": "Tila",
        "st_ok": "Kunnossa",
        "st_fail": "Puuttuu tai virheellinen",
        "st_unknown": "Ei voitu tarkistaa",
        "st_none": "Ei vielä tarkistettu",
        "found_value": "Nyt julkaistu",
        "check_now": "Tarkista nyt",
        "checked_at": "Tarkistettu viimeksi {time}.",
        "never_checked": "Ei vielä tarkistettu. DNS-muutosten näkyminen voi kestää "
        "muutaman tunnin.",
        "check_limited": "Liian monta tarkistusta. Yritä uudelleen {minutes} minuutin kuluttua.",
        "check_failed": "Tarkistusta ei voitu tehdä: {error}",
        "key_missing": "Alusta ei ole vielä luonut tätä avainta. Ota yhteyttä alustan tukeen.",
        "not_in_use": "ei vielä käytössä",
        "all_ok": "Kaikki tietueet ovat kunnossa.",
        "other_checks": "Muut tarkistukset",
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
        # --- navigation and accessibility
        "skip_to_message": "Hoppa till meddelandet",
        "skip_to_main": "Hoppa till huvudinnehållet",
        "nav_main": "Huvudmeny",
        "nav_events": "Meddelandetyper",
        "nav_pages": "Sidor med sökresultat",
        "preview_nav": "Förhandsgranskning",
        # --- sent mail
        "sent": "Skickade meddelanden",
        "sent_help": "E-post som skickats för {brand}, den senaste först. Sök på mottagarens "
        "hela adress, domänen som meddelandet gäller, meddelandetyp eller status.",
        "search": "Sök",
        "clear_search": "Rensa sökningen",
        "recipient": "Mottagare",
        "recipient_help": "Hela adressen, till exempel aino@example.fi",
        "domain": "Domän",
        "state": "Status",
        "any": "Alla",
        "sent_empty": "Inga meddelanden matchar sökningen.",
        "last_reply": "Senaste svar",
        "details": "Detaljer",
        "older": "Äldre meddelanden",
        "newest": "Nyaste meddelandena",
        "search_errors": "Kontrollera sökningen:",
        "bad_recipient": "Ange en hel e-postadress, till exempel aino@example.fi.",
        "bad_domain": "Det här är inte ett domännamn.",
        "bad_choice": "Välj ett av alternativen.",
        "state_queued": "I kö",
        "state_sending": "Skickas",
        "state_sent": "Skickat",
        "state_cancelled": "Avbrutet",
        "state_deferred": "Fördröjt, försöker igen",
        "state_failed": "Misslyckades",
        "state_held": "Väntar på DNS-verifiering",
        "state_suppressed": "Inte skickat (adressen spärrad)",
        "state_bounced": "Studsade",
        "message_n": "Meddelande {id}",
        "reason": "Orsak",
        "language": "Språk",
        "accepted_at": "Mottaget",
        "sent_at": "Skickat",
        "next_attempt": "Nästa försök",
        "attempts": "Leveransförsök",
        "no_attempts": "Inget leveransförsök ännu.",
        "server": "Server",
        "reply": "Svar",
        "outcome": "Resultat",
        "outcome_sent": "Servern tog emot meddelandet",
        "outcome_transient": "Tillfälligt fel",
        "outcome_permanent": "Permanent fel",
        "possible_duplicate": "Anslutningen bröts efter att meddelandet skickats, så "
        "mottagaren kan få det två gånger.",
        "feedback": "Studsar och klagomål",
        "no_feedback": "Inga studsar eller klagomål.",
        "fb_bounce": "Studs",
        "fb_complaint": "Klagomål",
        "fb_suppressed": "Spärrad adress",
        "fb_hard": "permanent",
        "fb_soft": "tillfällig",
        "fb_suppressed_text": "Adressen finns på spärrlistan för {brand}, så inga valfria "
        "meddelanden skickas dit.",
        "as_sent": "Meddelandet som det skickades",
        "as_queued": "Meddelandet som det ligger i kön (inte skickat ännu)",
        "body_unavailable": "Det sparade meddelandet kunde inte läsas.",
        "back_to_sent": "Tillbaka till skickade meddelanden",
        # --- domain setup
        "domain_setup": "Domäninställningar",
        "domain_help": "Publicera de här posterna i din domäns DNS. Tills de finns på plats "
        "skickas din e-post från plattformens domän för din räkning.",
        "record_dkim": "DKIM-nyckel {selector}",
        "record_spf": "SPF",
        "record_dmarc": "DMARC",
        "record_link": "Länkdomän",
        "why_dkim": "Låter mottagarna kontrollera att e-posten verkligen kommer från din domän.",
        "why_spf": "Tillåter plattformens servrar att skicka e-post för {domain}. Om namnet "
        "redan har en SPF-post, lägg till {include} i den i stället för att publicera en till.",
        "why_dmarc": "Talar om för mottagarna vad de ska göra med e-post som inte klarar "
        "kontrollerna. p=none övervakar bara; skärp policyn när allt fungerar.",
        "why_link": "Länkarna i din e-post pekar på det här namnet.",
        "rec_type": "Typ",
        "rec_name": "Namn",
        "rec_value": "Värde",
        "copy": "Kopiera",
        "copy_what": "Kopiera: {what}",
        "copied": "Kopierat",
        "status": "Status",
        "st_ok": "Klart",
        "st_fail": "Saknas eller fel",
        "st_unknown": "Kunde inte kontrolleras",
        "st_none": "Inte kontrollerad ännu",
        "found_value": "Publicerat nu",
        "check_now": "Kontrollera nu",
        "checked_at": "Senast kontrollerad {time}.",
        "never_checked": "Inte kontrollerad ännu. Det kan ta några timmar innan "
        "DNS-ändringar syns.",
        "check_limited": "För många kontroller. Försök igen om {minutes} min.",
        "check_failed": "Kontrollen kunde inte göras: {error}",
        "key_missing": "Plattformen har inte skapat den här nyckeln ännu. Kontakta "
        "plattformens support.",
        "not_in_use": "inte i bruk ännu",
        "all_ok": "Alla poster är på plats.",
        "other_checks": "Övriga kontroller",
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
