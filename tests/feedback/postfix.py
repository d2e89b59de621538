"""A real Postfix for the bounce tests: its own configuration and queue directory in
a temporary directory, listening on loopback only, routing by a transport map (so
no DNS): the test's recipients to a rejecting smtp-sink, the bounce domains to
``notifier inbound``. Started with ``postfix -c DIR start`` (root, as in CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.conftest_smtp import _missing, free_port

POSTFIX = shutil.which("postfix") or (
    "/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None
)

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.notifier.test
mydomain = notifier.test
myorigin = notifier.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = texthash:{dir}/conf/transport
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
smtputf8_enable = no
biff = no
smtp_dns_support_level = disabled
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """``with Postfix({"example.fi": 2600, …}) as mta:`` — ``mta.port`` takes mail."""

    def __init__(self, routes: Mapping[str, int]) -> None:
        if POSTFIX is None:
            _missing("postfix not installed (Debian package postfix)")
        if os.geteuid() != 0:
            _missing("postfix -c DIR start needs root (its daemons drop to mail_owner)")
        self.routes = dict(routes)
        self.port = free_port()
        # the daemons run as "postfix", who cannot enter pytest's 0700 tmp_path
        self.dir = Path(tempfile.mkdtemp(prefix="postfix-"))
        self.dir.chmod(0o755)

    @property
    def conf(self) -> Path:
        return self.dir / "conf"

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def __enter__(self) -> Postfix:
        for sub in ("conf", "queue", "data"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "data", "postfix")
        (self.conf / "main.cf").write_text(MAIN_CF.format(dir=self.dir))
        (self.conf / "master.cf").write_text(MASTER_CF.format(port=self.port))
        (self.conf / "transport").write_text(
            "".join(f"{domain} smtp:[127.0.0.1]:{port}\n" for domain, port in self.routes.items())
        )
        done = subprocess.run(
            [str(POSTFIX), "-c", str(self.conf), "start"], capture_output=True, text=True
        )
        if done.returncode != 0:
            self._remove()
            pytest.fail(f"postfix did not start: {done.stdout}{done.stderr}{self.log()}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(3) == b"220":
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        pytest.fail(f"postfix did not answer on 127.0.0.1:{self.port}: {self.log()}")

    def __exit__(self, *exc: object) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.conf), "abort"], capture_output=True)
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
