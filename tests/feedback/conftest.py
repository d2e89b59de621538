"""The outbox contract fixtures (one database of each kind per test, keys, a clock) and
the API's (an app on a temporary database, tokens)."""

from __future__ import annotations

from tests import test_outbox as contract
from tests.api import conftest as api

db_url = contract.db_url
key_dir = contract.key_dir
clock = contract.clock
box_settings = contract.box_settings
make_box = contract.make_box
box = contract.box
client = api.client
tokens = api.tokens
