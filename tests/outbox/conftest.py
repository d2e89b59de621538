"""The outbox contract tests' fixtures for these tests: one database of each kind per
test, keys and a fake clock (defined in ``tests/test_outbox.py``)."""

from __future__ import annotations

from tests import test_outbox as contract

db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box
