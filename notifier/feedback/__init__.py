"""Closing the loop: what comes back after a message was sent — bounces (DSNs),
auto-replies and complaints received by ``notifier inbound`` and matched by VERP — and
status webhooks to internal services (signing, guarded HTTP, the dispatcher that
workers run, the endpoint operations ops and the API share)."""
