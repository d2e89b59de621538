"""The outbox contract fixtures (one database of each kind per test, keys, a clock)."""

from __future__ import annotations

from tests import test_outbox as contract

db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box
