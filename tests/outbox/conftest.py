"""The outbox contract tests' fixtures (``tests/test_outbox.py``) for the storage tests:
one database of each kind per test, keys and a fake clock."""

from __future__ import annotations

from tests import test_outbox as contract

db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box
