"""Render + link rewrite + MIME per message: this pipeline vs a naive path, same run.

The naive path is what one writes first: a fresh ``jinja2`` Environment and template
compile per message, ``email.message.EmailMessage`` with the default policy, and
``str.replace`` rewriting. Usage: ``python bench/render.py [--n 2000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from email.message import EmailMessage
from email.policy import default as default_policy

import jinja2

from notifier import events as catalog
from notifier.compose.pipeline import Pipeline
from notifier.config import Settings

EVENTS = [
    "domain.renewal_reminder",
    "domain.expired",
    "transfer.auth_code",
    "whois.data_reminder",
    "domain.nameservers_changed",
]


def ours(pipeline: Pipeline, evs: list, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        pipeline.compose(evs[i % len(evs)])
    return (time.perf_counter() - start) / n * 1000


def naive(pipeline: Pipeline, evs: list, n: int, cache_env: bool = False) -> float:
    """``cache_env=False``: a fresh Environment (the template chain compiled) per
    message — the naive path. ``cache_env=True``: environments kept, so only
    EmailMessage and str.replace differ from ours — printed for reference."""
    from notifier.compose.render.helpers import (
        FILTERS,
        MODE_HELPERS,
        Memo,
        g_plural,
        html_paragraphs,
        text_paragraphs,
    )
    from notifier.i18n import formatter

    settings = pipeline.settings
    tdir = str(settings.templates_dir)
    envs: dict[str, jinja2.Environment] = {}
    start = time.perf_counter()
    for i in range(n):
        ev = evs[i % len(evs)]
        brand = pipeline.brands.get(ev.brand_id)
        lang = brand.choose_language(ev.recipient.language)
        parts = {}
        for mode in ("text", "html"):
            env = envs.get(mode) if cache_env else None
            if env is None:
                env = envs[mode] = jinja2.Environment(
                    loader=jinja2.FileSystemLoader(tdir),
                    autoescape=(mode == "html"),
                    undefined=jinja2.StrictUndefined,
                    trim_blocks=True,
                    lstrip_blocks=True,
                )
                env.filters.update(FILTERS)
                env.filters["paragraphs"] = html_paragraphs if mode == "html" else text_paragraphs
                env.globals.update(MODE_HELPERS[mode])
                env.globals["plural"] = g_plural
                env.globals["subject_end"] = ""
            data = ev.data
            vars_ = {k: getattr(data, k) for k in type(data).model_fields}
            vars_.update(
                data=data,
                event=ev.name,
                brand=brand,
                account=brand,
                recipient=ev.recipient,
                lang=lang,
                mandatory=ev.spec.mandatory,
                unsubscribe_url=None,
                layout=f"{lang}/layout.jinja",
                base=f"_shared/layout.{mode}.jinja",
                subject=parts.get("subject", ""),
                _memo=Memo(formatter(lang, brand.timezone)),
            )
            tmpl = env.get_template(f"{lang}/{ev.name}.jinja")
            parts[mode] = tmpl.render(vars_)
            if mode == "text":
                parts["subject"] = " ".join(
                    "".join(tmpl.blocks["subject"](tmpl.new_context(vars_))).split()
                )
        for host in settings.platform_hosts:
            for key in ("text", "html"):
                parts[key] = parts[key].replace(f"https://{host}", f"https://{brand.link_host}")
        msg = EmailMessage(policy=default_policy)
        msg["From"] = f"{brand.display_name} <{brand.from_address}>"
        msg["To"] = f"{ev.recipient.name} <{ev.recipient.email}>"
        msg["Subject"] = parts["subject"]
        msg["Message-ID"] = f"<bench{i}@{brand.mail_domain}>"
        msg.set_content(parts["text"])
        msg.add_alternative(parts["html"], subtype="html")
        msg.as_bytes()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="messages per measurement")
    ap.add_argument("--naive-n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    pipeline = Pipeline(Settings.load())
    evs = [
        pipeline.sample(name, brand, lang)
        for name in EVENTS
        for brand in ("acme", "kustwebb")
        for lang in ("fi", "sv", "en")
    ]
    assert all(name in catalog.CATALOG for name in EVENTS)
    ours(pipeline, evs, 200)  # warm caches: templates compile once
    naive(pipeline, evs, 20)
    o = statistics.median(ours(pipeline, evs, args.n) for _ in range(args.rounds))
    n = statistics.median(naive(pipeline, evs, args.naive_n) for _ in range(args.rounds))
    c = statistics.median(naive(pipeline, evs, args.naive_n, True) for _ in range(args.rounds))
    result = {
        "ours_ms_per_msg": round(o, 4),
        "naive_ms_per_msg": round(n, 4),
        "ratio": round(n / o, 2),
        "naive_cached_env_ms_per_msg": round(c, 4),
        "ratio_vs_cached_env": round(c / o, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"ours:  {o:.4f} ms/msg (render + rewrite + MIME)")
        print(f"naive: {n:.4f} ms/msg (fresh jinja2 + EmailMessage + str.replace)")
        print(f"ratio: {n / o:.1f}x")
        print(f"naive with environments kept: {c:.4f} ms/msg (ratio {c / o:.1f}x)")


if __name__ == "__main__":
    main()
