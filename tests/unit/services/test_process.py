"""The one start / wait / stop mechanism, on a real child process (python's http.server).

Each case is a promise the supervisors of mosquitto, PostgreSQL and anvil rely on: nothing is
left running after a stop, a failed start or the death of the starting process, and every
failure is a typed error with a code rather than a traceback from mirakuru.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from vitalchain.services.ports import LOOPBACK, accepts, free_port, port_free
from vitalchain.services.process import (
    LocalProcess,
    PortInUse,
    ServiceError,
    StartStop,
    retry_port,
)


def _server(port: int, **kwargs: object) -> LocalProcess:
    return LocalProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", LOOPBACK],
        port,
        name="http.server",
        **kwargs,  # type: ignore[arg-type]
    )


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0): ask /proc whether it is one
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by a plain listening socket of this process."""
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    s.listen()
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_free_port_is_free_and_a_listener_makes_it_busy(listener: int) -> None:
    port = free_port()
    assert port_free(port)
    assert not accepts(port)
    assert not port_free(listener)
    assert accepts(listener)


def test_a_started_server_serves_and_a_stop_leaves_nothing() -> None:
    port = free_port()
    server = _server(port).start()
    pid = server.pid
    assert pid is not None
    assert accepts(port)
    server.stop()
    assert server.pid is None
    assert _gone(pid)
    assert not accepts(port)


def test_a_taken_port_is_port_in_use_and_nothing_is_started(listener: int) -> None:
    server = _server(listener)
    with pytest.raises(PortInUse) as err:
        server.start()
    assert err.value.code == "port_in_use"
    assert server.pid is None


def test_a_missing_program_is_a_service_error_with_a_code() -> None:
    server = LocalProcess(["/nonexistent/vitalchain-no-such-server"], free_port(), name="ghost")
    with pytest.raises(ServiceError) as err:
        server.start()
    assert err.value.code == "service_failed"
    assert "ghost not found" in err.value.message


def test_a_program_that_exits_is_reported_with_its_exit_code() -> None:
    server = LocalProcess(
        [sys.executable, "-c", "raise SystemExit(3)"], free_port(), name="quitter"
    )
    with pytest.raises(ServiceError, match="quitter exited with code 3"):
        server.start()
    assert server.pid is None


def test_a_program_that_never_listens_times_out_and_is_stopped() -> None:
    server = LocalProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        free_port(),
        name="sleeper",
        start_timeout=0.5,
    )
    with pytest.raises(ServiceError, match="sleeper not listening"):
        server.start()
    assert server.pid is None  # mirakuru stopped it: nothing sleeps on for a minute


def test_the_child_dies_with_the_process_that_started_it() -> None:
    """kill -9 of the parent: PR_SET_PDEATHSIG still stops the server."""
    port = free_port()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from vitalchain.services.process import LocalProcess
                server = LocalProcess(
                    [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                    {port}, name="http.server", kill_at_exit=False,
                ).start()
                print(server.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert accepts(port)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _gone(child), "the server outlived the process that started it"
    finally:
        parent.kill()
        parent.wait(timeout=10)


def test_retry_port_moves_a_picked_port_but_not_a_fixed_one() -> None:
    tried: list[int] = []

    def start(port: int) -> int:
        tried.append(port)
        if len(tried) == 1:
            raise PortInUse("taken")
        return port

    assert retry_port(start, 1, fixed=False) == tried[-1] != 1

    fixed: list[int] = []

    def always_taken(port: int) -> int:
        fixed.append(port)
        raise PortInUse("taken")

    with pytest.raises(PortInUse):
        retry_port(always_taken, 7, fixed=True, grace_s=0.3)
    assert len(fixed) >= 2
    assert set(fixed) == {7}


def test_start_stop_stops_however_the_block_ends() -> None:
    """The supervisors' ``with``: started on entry, stopped on a clean exit and on an error."""
    calls: list[str] = []

    class Service(StartStop):
        def start(self) -> None:
            calls.append("start")

        def stop(self) -> None:
            calls.append("stop")

    with Service() as service:
        assert isinstance(service, Service)
    with pytest.raises(RuntimeError), Service():
        raise RuntimeError("inside")
    assert calls == ["start", "stop", "start", "stop"]
