"""Dev helper: render every event in one language for every brand; report errors and leaks.

usage: .venv/bin/python scripts/check_lang.py LANG [EVENT ...]
"""
import sys

from notifier import events
from notifier.brands import BrandRegistry
from notifier.render import Renderer, sample_event
from notifier.settings import Settings

lang = sys.argv[1]
names = sys.argv[2:] or list(events.CATALOG)
s = Settings.load()
brands = BrandRegistry(s.brands_dir, s.platform_brand)
r = Renderer(s.templates_dir, brands)
bad = 0
for name in names:
    for brand in brands.all():
        try:
            m = r.render(sample_event(name, brand.id, lang), unsubscribe_url="https://x.example/u/1")
        except Exception as exc:  # noqa: BLE001
            bad += 1
            print(f"FAIL {brand.id} {lang} {name}: {type(exc).__name__}: {exc}")
            continue
        if m.language != lang:
            continue
        if m.brand_id != s.platform_brand:
            blob = (m.subject + m.text + m.html).lower()
            for word in ("nordname",):
                # links are rewritten later in the pipeline; only flag non-URL mentions
                import re
                if re.search(r"(?<![/.])nordname(?!\.com/|\.com\?|\.com\")", blob.replace("https://manage.nordname.com", "").replace("https://nordname.com", "").replace("https://www.nordname.com", "")):
                    bad += 1
                    print(f"LEAK {brand.id} {lang} {name}: platform name in reseller mail")
print(f"{len(names)} events checked, {bad} problems")
