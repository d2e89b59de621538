"""Closing the loop: status webhooks to internal services (signing, guarded HTTP, the
dispatcher that workers run) and the endpoint operations ops and the API share."""
