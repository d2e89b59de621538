"""Brand override templates render in worker processes, killed at a hard deadline.

The sandbox's guards (:mod:`.sandbox`, :mod:`.bounds`) refuse the known ways to make
a template expensive before the work. What they miss must still not cost anyone else:
one long computation in C (a huge power, a giant string operation) holds the GIL, so
in-process it would stall the event loop and every other brand's mail, and no check
between template steps can interrupt it. A worker process can be killed at the
deadline, and the kernel caps its memory (``RLIMIT_AS``) and CPU (``RLIMIT_CPU``, a
backstop should the parent be gone). So :class:`Pool` keeps a few such workers,
reused across renders (each keeps its compiled templates); a worker that is killed,
dies or runs out of memory is replaced by a new one on the next render.

Protocol, over the worker's stdin and stdout: length-prefixed frames. Requests are
pickles (the parent is trusted); replies are JSON only, so that a template that
escaped the sandbox cannot get code into the parent through ``pickle``. A worker
exits when its parent does: an idle one reads the end of its input; a busy one is
ended by its CPU limit. (Not ``PR_SET_PDEATHSIG``: it fires when the *thread* that
started the worker exits, and the API starts workers from threads that come and go.)
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from ... import errors
from .bounds import MAX_RENDER_SECONDS, over

#: worker processes per pool (one pool per process, started on first use)
POOL_SIZE = 2
#: a render is killed this long after it was sent, whatever it is doing; the
#: in-sandbox deadline (MAX_RENDER_SECONDS, checked between steps) comes first
KILL_AFTER_SECONDS = MAX_RENDER_SECONDS + 1.0
#: address space a worker may add to what it uses once started (RLIMIT_AS)
MEMORY_BYTES = 512 * 1024 * 1024
#: CPU seconds one render may use (RLIMIT_CPU, soft: SIGXCPU ends the worker)
CPU_SECONDS = int(KILL_AFTER_SECONDS) + 2
#: a new worker has this long to import and report ready
START_SECONDS = 60.0

_HEADER = struct.Struct(">I")
_NOT_FOUND = "TemplateNotFound"
#: imported by a new worker before its memory limit is set (so it counts as baseline)
_WARM_MODULE = "notifier.compose.render.engine"


class _Stopped(Exception):
    """The worker was killed at the deadline, or died: which limit, and the detail."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(limit, detail)
        self.limit = limit
        self.detail = detail


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return _read_exact(fd, size, deadline)


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


class _Worker:
    """One worker process, as the parent sees it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from notifier.compose.render.isolated import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout = self.proc.stdout.fileno()
        try:
            init = {
                "path": sys.path,
                "memory": MEMORY_BYTES,
                "warm": _WARM_MODULE,
            }
            _write_frame(self.stdin, pickle.dumps(init))
            ready = json.loads(_read_frame(self.stdout, time.monotonic() + START_SECONDS))
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            self.kill()
            raise errors.RenderError(f"the template worker did not start ({exc!r})") from exc
        self.pid: int = ready["pid"]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: bytes, timeout: float) -> Any:
        try:
            _write_frame(self.stdin, request)
            reply = _read_frame(self.stdout, time.monotonic() + timeout)
        except TimeoutError:
            self.kill()
            raise _Stopped("time", f"{timeout:g} s; the render was stopped") from None
        except (OSError, EOFError):
            try:
                self.proc.wait(1.0)  # it is gone, or going: its exit status says why
            except subprocess.TimeoutExpired:
                pass
            self.kill()
            raise self._death() from None
        answer = json.loads(reply)
        if answer.get("exit"):  # it ran out of memory: it exits, a new one takes over
            self.close()
        return answer

    def _death(self) -> _Stopped:
        code = self.proc.returncode
        if code == -signal.SIGXCPU:
            return _Stopped("CPU", f"{CPU_SECONDS} s; the render was stopped")
        if code == -signal.SIGKILL:  # the kernel's OOM killer, or someone's kill -9
            return _Stopped("memory", f"{MEMORY_BYTES // 2**20} MiB, or the worker was killed")
        return _Stopped("resource", f"the template worker exited with {code}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stdin.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit (end of input), kill it if it does not."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class Pool:
    """A few worker processes that run one render each at a time; callers wait (in
    their own thread, the GIL released) while all are busy."""

    def __init__(self, size: int = POOL_SIZE, kill_after: float = KILL_AFTER_SECONDS) -> None:
        self.size = size
        self.kill_after = kill_after
        self._idle: list[_Worker] = []
        self._live = 0
        self._closed = False
        self._cond = threading.Condition()

    def run(self, fn: Callable[..., Any], *args: Any, where: str = "template") -> Any:
        """``fn(*args)`` in a worker: what it returns (JSON), or the error it raised as
        a :class:`~notifier.errors.RenderError` (or ``TemplateNotFound``). A render
        over the time or memory limit is stopped, its worker replaced, and the error
        names ``where`` (the file the caller blames)."""
        request = pickle.dumps((fn, args))
        worker = self._acquire()
        try:
            reply = worker.run(request, self.kill_after)
        except _Stopped as exc:
            raise errors.RenderError(f"{where}: {over(exc.limit, exc.detail)}") from None
        finally:
            self._release(worker)
        if "error" in reply:
            cls = errors.TemplateNotFound if reply["error"] == _NOT_FOUND else errors.RenderError
            raise cls(reply["message"])
        return reply["ok"]

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._idle]

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise errors.RenderError("the template workers are shut down")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    self._live -= 1  # killed while idle (OOM killer, an operator)
                    worker.kill()
                if self._live < self.size:
                    self._live += 1
                    break
                self._cond.wait()
        try:
            return _Worker()
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if worker.alive and not self._closed:
                self._idle.append(worker)
            else:
                self._live -= 1
                worker.kill()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()


_POOL: tuple[int, Pool] | None = None
_POOL_LOCK = threading.Lock()


def pool() -> Pool:
    """This process's pool (a forked child gets its own, not its parent's workers)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), Pool())
        return _POOL[1]


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL[0] == os.getpid():
        _POOL[1].close()


# --- in the worker process ---------------------------------------------------------------


def _limit_memory(extra: int) -> None:
    import resource

    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return  # not Linux: the parent's kill at the deadline still holds
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def _limit_cpu() -> None:
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime) + CPU_SECONDS
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _reply(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[dict[str, Any], bool]:
    """The JSON reply to one request, and whether the worker must exit after it."""
    try:
        return {"ok": fn(*args)}, False
    except MemoryError:
        message = f"over the memory limit ({MEMORY_BYTES // 2**20} MiB)"
        return {"error": "RenderError", "message": message}, True
    except errors.NotifierError as exc:
        kind = _NOT_FOUND if isinstance(exc, errors.TemplateNotFound) else "RenderError"
        return {"error": kind, "message": str(exc)}, False
    except Exception as exc:  # a bug, not the template: still this render's error alone
        return {"error": "RenderError", "message": f"{type(exc).__name__}: {exc}"}, False


def main() -> None:
    """The worker: read requests until the parent closes our input."""
    # the protocol owns fds 0 and 1; a stray print goes to stderr, not into a frame
    proto_in, proto_out = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    out = os.fdopen(proto_out, "wb")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent decides
    try:
        init = pickle.loads(_read_frame(proto_in))
    except EOFError:
        return
    sys.path[:] = init["path"]
    importlib.import_module(init["warm"])

    _limit_memory(init["memory"])
    _write_frame(out, json.dumps({"pid": os.getpid()}).encode())
    while True:
        try:
            fn, args = pickle.loads(_read_frame(proto_in))
        except EOFError:
            return
        _limit_cpu()
        reply, stop = _reply(fn, args)
        if stop:
            reply["exit"] = True
        _write_frame(out, json.dumps(reply).encode())
        if stop:
            return
