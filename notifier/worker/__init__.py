"""The delivery worker: claim, sign, send, record.

:mod:`notifier.worker.loop` runs the worker (claimer, senders, recorder, heartbeat);
:mod:`notifier.worker.job` walks one claimed message through the send steps.
"""
