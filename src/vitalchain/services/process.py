"""Start a local server, wait until it serves its port, stop it with nothing left behind.

The one mechanism under the anvil and mosquitto supervisors (and the port retry under
PostgreSQL's ``pg_ctl``), on mirakuru's :class:`~mirakuru.TCPExecutor`, which starts the
program, polls until the port accepts (or the program exits, or the time is up) and marks
every descendant so an exit of ours can still find them. On top of mirakuru:

- the child dies with us: ``PR_SET_PDEATHSIG`` is set in the child before exec, so a kill -9
  of the parent, a crash or a SIGTERM still stops the server (the signal is bound to the
  *thread* that started it, which is why the mosquitto supervisor spawns from its own);
- it runs in a session and process group of its own, so a terminal's Ctrl-C reaches only us
  and we stop it in order; stopping continues a stopped group, sends the stop signal, waits,
  then SIGKILLs the whole group and waits until none of it is left;
- failures are our errors with a code and the program's own words (its log tail): the
  program missing, exited, not listening in time, or its port taken (:class:`PortInUse`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Final, Self, TypeVar

from mirakuru import TCPExecutor
from mirakuru.base import ENV_UUID
from mirakuru.exceptions import AlreadyRunning, ProcessExitedWithError, TimeoutExpired

from vitalchain.errors import VitalchainError
from vitalchain.services.ports import LOOPBACK, free_port

__all__ = [
    "PR_SET_PDEATHSIG",
    "LocalProcess",
    "PortInUse",
    "ServiceError",
    "StartStop",
    "die_with_parent",
    "retry_port",
]

T = TypeVar("T")

PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
PORT_CLASH: Final = "Address already in use"  # how mosquitto, postgres and anvil all say it


class ServiceError(VitalchainError):
    """A local service could not be started or stopped; the message says why, in its words."""

    code = "service_failed"


class PortInUse(ServiceError):
    """Another process holds the port a service was to listen on."""

    code = "port_in_use"


class StartStop:
    """``with service:`` starts it and stops it however the block ends: the context-manager
    half of the supervisors whose ``start`` and ``stop`` are their own (mosquitto's supervisor
    thread, ``pg_ctl``, anvil brought back on its port), written once here.

    :class:`LocalProcess` needs none: mirakuru's executor is already a context manager.
    """

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def die_with_parent(death_signal: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to send ``death_signal`` to the child when the thread
    that started it dies; ``None`` where there is no prctl (the child then only stops on a
    clean exit).

    prctl is looked up here, in the parent, so that the child runs one foreign call and a
    getppid between fork and exec: nothing that could wait for a lock another thread held.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sig = int(death_signal)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


def retry_port(
    start: Callable[[int], T],
    port: int,
    *,
    fixed: bool,
    grace_s: float = 0.0,
    attempts: int = 3,
) -> T:
    """``start(port)``, again when it raises :class:`PortInUse`.

    A port we picked can be taken between picking and binding: pick another, ``attempts``
    times in all. A ``fixed`` port (given, or one that clients were told) never moves: try it
    again for ``grace_s`` seconds, since its previous owner may still be exiting.
    """
    deadline = time.monotonic() + grace_s
    for attempt in itertools.count(1):
        try:
            return start(port)
        except PortInUse:
            if fixed and time.monotonic() > deadline:
                raise
            if not fixed and attempt >= attempts:
                raise
            if fixed:
                time.sleep(0.2)
            else:
                port = free_port()
    raise AssertionError("unreachable")  # pragma: no cover


class LocalProcess(TCPExecutor):
    """One server process on ``host:port`` (loopback by default), started and stopped as the
    module docstring says.

    ``ready`` is a check beyond "the port accepts" (mosquitto's "running" log line: the port
    alone could be another process's); ``log_tail`` gives the program's last words for error
    messages. Errors are ``error(message, code=code)``; a taken port is :class:`PortInUse`.
    ``group_stop=False`` sends the stop signal to the program alone, not its group: npm's anvil
    launcher forwards it, and a second SIGTERM would cut the node's state dump short.
    ``death_signal`` is what the child gets when the starting thread dies (None: nothing).
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        *,
        name: str,
        error: type[VitalchainError] = ServiceError,
        code: str = ServiceError.code,
        host: str = LOOPBACK,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        ready: Callable[[], bool] | None = None,
        log_tail: Callable[[], str] | None = None,
        stdout: int | IO[Any] = subprocess.DEVNULL,
        stderr: int | IO[Any] = subprocess.DEVNULL,
        death_signal: int | None = signal.SIGTERM,
        stop_signal: int = signal.SIGTERM,
        group_stop: bool = True,
        kill_at_exit: bool = True,
        cwd: str | None = None,
    ) -> None:
        super().__init__(
            list(command),
            host=host,
            port=port,
            timeout=start_timeout,
            sleep=0.02,
            stop_signal=stop_signal,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
        )
        self.name = name
        self._error = error
        self._code = code
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._ready = ready
        self._log_tail = log_tail or (lambda: "")
        self._death_signal = death_signal
        self._group_stop = group_stop
        self._kill_at_exit = kill_at_exit
        self._preexec: Callable[[], None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The exit code once the program has exited, else None (also None before start)."""
        return self.process.poll() if self.process is not None else None

    def start(self) -> Self:
        """Start and return once the port accepts and ``ready`` holds; raise and leave nothing
        running otherwise."""
        # Made here, in the starting thread: the death signal is bound to it.
        self._preexec = die_with_parent(self._death_signal) if self._death_signal else None
        where = f"{self.host}:{self.port}"
        try:
            return super().start()
        except AlreadyRunning:
            raise PortInUse(f"{where} is in use by another process ({PORT_CLASH})") from None
        except ProcessExitedWithError as exc:
            tail = self._log_tail()
            message = f"{self.name} exited with code {exc.exit_code}"
            message += f": {tail}" if tail else ""
            if PORT_CLASH in tail:
                raise PortInUse(message) from None
            raise self._error(message, code=self._code) from None
        except TimeoutExpired:
            tail = self._log_tail()
            raise self._error(
                f"{self.name} not listening on {where} after {self._start_timeout}s"
                + (f": {tail}" if tail else ""),
                code=self._code,
            ) from None
        except FileNotFoundError as exc:
            raise self._error(f"{self.name} not found: {exc}", code=self._code) from None
        except BaseException:  # interrupted while waiting (Ctrl-C): leave nothing running
            self.kill()
            raise

    def check_subprocess(self) -> bool:
        """mirakuru allows an exit 0 (a daemonising parent); a server of ours that exits at all
        has failed."""
        code = self.poll()
        if self.process is not None and code is not None:
            self._kill_all_kids(self._kill_signal)
            self._clear_process()
            raise ProcessExitedWithError(self, code)
        return super().check_subprocess()

    def after_start_check(self) -> bool:
        return (self._ready is None or self._ready()) and super().after_start_check()

    def signal_group(self, sig: int) -> None:
        """``sig`` to the program and everything it started (SIGSTOP: a server that hangs)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, stop_signal: int | None = None, expected_returncode: int | None = None) -> Self:
        """The stop signal (after SIGCONT, so a stopped group can act on it), a wait of
        ``stop_timeout``, then SIGKILL to the group; returns once none of the group is left.
        Any exit code is accepted: stopping is not the place to judge how it ended."""
        proc = self.process
        if proc is None:
            return self
        sig = self._stop_signal if stop_signal is None else stop_signal
        self.signal_group(signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            if self._group_stop:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            proc.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            proc.wait(timeout=self._stop_timeout)
        deadline = time.monotonic() + self._stop_timeout
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                self.signal_group(signal.SIGKILL)
                break
            time.sleep(0.02)
        self._kill_all_kids(signal.SIGKILL)  # any that left the group but carry our marker
        self._clear_process()
        return self

    @property
    def envvars(self) -> dict[str, str]:
        """mirakuru marks the child's environment so that, at our interpreter's exit, it can
        SIGKILL whatever is left; ``kill_at_exit=False`` leaves the mark off (the death
        signal then ends it, as the program chose)."""
        env = super().envvars
        if not self._kill_at_exit:
            env.pop(ENV_UUID, None)
        return env

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs = super()._popen_kwargs
        # mirakuru's own preexec is os.setsid; start_new_session does that in C, before ours.
        kwargs["preexec_fn"] = self._preexec
        kwargs["start_new_session"] = True
        return kwargs


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member switched user (postgres as root): still there
        return True
    return True
