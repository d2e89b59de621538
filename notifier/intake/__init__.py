"""Turning raw events into prepared messages, in this process or on every core."""
