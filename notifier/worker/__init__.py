"""The delivery worker: claim, sign, send, record (see :mod:`notifier.worker.loop`)."""
