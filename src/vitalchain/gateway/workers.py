"""Ingest worker processes: checks 1, 2 and 4 of telemetry run beside the node's process.

Why processes: a data message costs the gateway its AEAD, one ECDSA verification and the
payload's parse, and under one GIL those ran one at a time whatever the cores (issue 16).
The node keeps everything that is state (the session map's authority, seq books, key budgets,
the chain's word on devices, the journal's commit, receipts, alarms, the sealer: the store is
the one truth), and each worker holds a copy of the live sessions, fed from the node's
:class:`~vitalchain.gateway.ingest.IngestCore` as they change, and answers what it is asked to
verify with a :class:`~vitalchain.gateway.ingest.Verified` or a refusal.

Order: a device's messages go to one worker (chosen by its MQTT topic, or the message's session
ID), over one pipe each way; a worker answers in the order it was asked and one thread per
worker settles the answers in that order, so a device's messages reach the seq book in the
order the transport delivered them.  Never spread by round robin: that reorders a device.

A worker that dies (kill -9, an OOM kill) is started again and asked again what it had not yet
answered, in order (verifying is idempotent: nothing was stored); a message asked twice of
workers that died on it is refused ``internal_error``.  A worker whose node dies reads the end
of its pipe and exits, so no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vitalchain.crypto.aead import Aead, Suite
from vitalchain.crypto.keys import PrivateKey, PublicKey
from vitalchain.edge.server import error_response, refusal_response
from vitalchain.errors import VitalchainError
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import (
    PREAUTH_BURST,
    PREAUTH_RATE_PER_S,
    ClientBudget,
    IngestCore,
    LiveSession,
    Unauthenticated,
    Verified,
    Verifier,
    sign_receipt,
)
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.startup import listen_socket
from vitalchain.gateway.telemetry_http import read_data_message
from vitalchain.wire.telemetry import HEADER_SIZE, Ack

__all__ = ["IngestWorkers", "default_worker_count"]

log = logging.getLogger(__name__)

# How long a worker may take to start (a fresh interpreter importing the package).
START_TIMEOUT_S = 60.0

# A session as a worker gets it: (id, device, group, patient, compressed key, AEAD key, suite,
# expires_at).  The AEAD key crosses a pipe between two processes of one user, never a socket.
_SessionRecord = tuple[bytes, str, int, str, bytes, bytes, int, int]


def default_worker_count() -> int:
    """The number of cores this process may run on: the default number of ingest workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _record(session: LiveSession) -> _SessionRecord:
    key, suite = session.aead.material()
    return (
        session.session_id,
        session.device,
        session.group_id,
        session.patient,
        session.public_key.compressed,
        key,
        int(suite),
        session.expires_at,
    )


def _live(record: _SessionRecord) -> LiveSession:
    sid, device, group_id, patient, public_key, key, suite, expires_at = record
    return LiveSession(
        sid, device, group_id, patient, PublicKey.from_bytes(public_key), Aead(key, Suite(suite)),
        expires_at,
    )  # fmt: skip


@dataclass
class _Asked:
    """One message a worker was asked to verify, until it answers."""

    data: bytes
    topic_device: str | None
    answer: Future[Verified]
    tries: int = 1


class _Worker:
    """One worker process, its pipe, what it has not answered yet and the thread reading it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        # Two locks, so that the thread reading the worker's answers never waits on a send:
        # a sender blocked on a full pipe while the reader waited for it deadlocked both ends.
        self.send_lock = threading.Lock()  # one writer on the pipe at a time
        self.asked_lock = threading.Lock()  # the map of what is asked
        self.asked: dict[int, _Asked] = {}  # request id -> message, in the order asked
        self.reader: threading.Thread | None = None
        self.restarts = 0
        self.http_served = 0  # messages verified off its HTTP port


class IngestWorkers:
    """``count`` worker processes verifying for ``core`` (attached by :meth:`start`)."""

    def __init__(
        self,
        core: IngestCore,
        count: int,
        *,
        max_message_bytes: int,
        max_readings: int,
        http: socket.socket | None = None,
        preauth: tuple[float, int] = (PREAUTH_RATE_PER_S, PREAUTH_BURST),
        master: PrivateKey | None = None,
    ) -> None:
        """``http``: the telemetry port held for the workers (gateway/startup.py,
        ``telemetry_socket``), each of which then serves ``POST /v1/telemetry`` on it with
        SO_REUSEPORT (the kernel spreads connections over them); closed by :meth:`close`.
        ``preauth``: each worker's per-client budget (rate/s, burst) for HTTP messages that
        fail before authenticating.  ``master``: the workers sign the receipts of what they
        took off HTTP with it (handed over their pipes: the node's own key, another process
        of the same user), so the node's commit thread does not; None: the node signs."""
        if count < 1:
            raise ValueError("at least one ingest worker")
        self._core = core
        self._http = http
        self._master = master
        address = http.getsockname()[:2] if http is not None else None
        self._config: dict[str, Any] = {
            "max_message_bytes": max_message_bytes,
            "max_readings": max_readings,
            "http": address,
            "preauth": preauth,
            "master": None if master is None else master.secret,
        }
        self.telemetry_url = (
            None if address is None else f"http://{_url_host(address[0])}:{address[1]}"
        )
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded node
        self._workers = [_Worker(i) for i in range(count)]
        self._ids = itertools.count(1)
        self._closing = threading.Event()
        self.answered = 0  # answers settled (verified or refused), every worker together
        # What the node answers a worker (HTTP acknowledgements, sessions it asked about),
        # sent by a thread of its own: never by the thread reading that worker (see _Worker),
        # nor by the store's commit thread.
        self._replies: queue.SimpleQueue[tuple[_Worker, tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._answerer = threading.Thread(
            target=self._send_replies, name="ingest-replies", daemon=True
        )

    @property
    def count(self) -> int:
        return len(self._workers)

    def pids(self) -> list[int]:
        """The workers' process IDs (status, tests, the benchmark's CPU accounting)."""
        return [w.process.pid for w in self._workers if w.process and w.process.pid]

    def http_served(self) -> list[int]:
        """Messages each worker verified off the telemetry port (how the kernel spread them)."""
        return [w.http_served for w in self._workers]

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self._workers)

    def start(self) -> None:
        """Start every worker with the core's sessions, then verify the core's telemetry."""
        self._core.on_session(self._push)
        self._answerer.start()
        try:
            for worker in self._workers:
                with worker.send_lock:
                    self._spawn(worker)
        except BaseException:
            self.close()
            raise
        self._core.attach_workers(self)

    def close(self) -> None:
        """Back to verifying in the node's process, then stop every worker."""
        self._core.attach_workers(None)
        self._closing.set()
        self._replies.put(None)
        for worker in self._workers:
            with worker.send_lock:
                if worker.conn is not None:
                    with contextlib.suppress(OSError, ValueError):
                        worker.conn.send_bytes(pickle.dumps(("q",)))
        for worker in self._workers:
            if worker.process is not None:
                worker.process.join(timeout=10)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(timeout=5)
            if worker.reader is not None and worker.reader is not threading.current_thread():
                worker.reader.join(timeout=10)
            if worker.conn is not None:
                worker.conn.close()
            for asked in worker.asked.values():
                if not asked.answer.done():
                    asked.answer.set_exception(
                        GatewayError("store_unavailable", "the gateway is stopping")
                    )
            worker.asked.clear()
        if self._http is not None:
            self._http.close()

    # -- the node's side -------------------------------------------------------------------------

    def verify(self, data: bytes, topic_device: str | None, order: object) -> Future[Verified]:
        """Ask the worker that ``order`` (a device's topic, or a session ID) maps to."""
        worker = self._workers[hash(order) % len(self._workers)]
        answer: Future[Verified] = Future()
        rid = next(self._ids)
        if self._closing.is_set():
            answer.set_exception(GatewayError("store_unavailable", "the gateway is stopping"))
            return answer
        with worker.asked_lock:
            worker.asked[rid] = _Asked(data, topic_device, answer)
        with worker.send_lock:  # a dead worker's replacement is asked again by _spawn
            if worker.conn is not None:
                self._send(worker, ("v", rid, data, topic_device))
        return answer

    def _push(self, session: LiveSession | None, session_id: bytes, value: int) -> None:
        """A session added (``value``: supersede) or ended early (``value``: expires_at)."""
        item = ("s", [_record(session)], value) if session is not None else ("e", session_id, value)
        for worker in self._workers:
            with worker.send_lock:
                if worker.conn is not None:
                    self._send(worker, item)

    def _send(self, worker: _Worker, item: tuple[Any, ...]) -> None:
        """Send under ``worker.send_lock``; a broken pipe is the reader's to mend."""
        assert worker.conn is not None
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    def _spawn(self, worker: _Worker) -> None:
        """Start ``worker``'s process (its send lock held), give it the core's sessions and
        ask it again, in order, whatever its previous process left unanswered."""
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(theirs, self._config),
            name=f"vitalchain-ingest-{worker.index}",
            daemon=True,
        )
        process.start()
        theirs.close()  # the child's end is the child's: its exit is our EOF
        if not ours.poll(START_TIMEOUT_S):
            process.kill()
            raise GatewayError("internal_error", "an ingest worker did not start")
        ours.recv_bytes()  # "ready"
        worker.process, worker.conn = process, ours
        records = [_record(s) for s in self._core.sessions()]
        for chunk in range(0, len(records), 1024):
            self._send(worker, ("s", records[chunk : chunk + 1024], 0))
        with worker.asked_lock:
            again = list(worker.asked.items())
        for rid, asked in again:
            self._send(worker, ("v", rid, asked.data, asked.topic_device))
        worker.reader = threading.Thread(
            target=self._read,
            args=(worker, ours),
            name=f"ingest-worker-{worker.index}",
            daemon=True,
        )
        worker.reader.start()

    def _read(self, worker: _Worker, conn: multiprocessing.connection.Connection) -> None:
        """Settle ``worker``'s answers in order; mend a dead worker."""
        while True:
            try:
                item = pickle.loads(conn.recv_bytes())  # noqa: S301 - our own child's pipe
            except (EOFError, OSError):
                break
            kind, rid = item[0], item[1]
            if kind == "h":  # a message the worker verified off its HTTP port
                worker.http_served += 1
                self._submit_http(worker, rid, item[2])
                continue
            if kind == "m":  # a refusal the worker made itself: counted as the node's
                self._core.metrics.refused(item[2])
                continue
            if kind == "k":  # a session the worker does not know (yet): the node's word
                live = self._core.live_session(item[2], int(time.time() * 1000))
                self._replies.put((worker, ("k", rid, None if live is None else _record(live))))
                continue
            with worker.asked_lock:
                asked = worker.asked.pop(rid, None)
            if asked is None:
                continue
            self.answered += 1  # one reader per worker: a racy sum, for tests and status
            if kind == "ok":
                asked.answer.set_result(item[2])
            else:
                _, _, code, message, unauthenticated = item
                error = (Unauthenticated if unauthenticated else GatewayError)(code, message)
                asked.answer.set_exception(error)
        if self._closing.is_set():
            return
        self._mend(worker)

    def _send_replies(self) -> None:
        while (reply := self._replies.get()) is not None:
            worker, item = reply
            with worker.send_lock:
                if worker.conn is not None:
                    self._send(worker, item)

    def _submit_http(self, worker: _Worker, rid: int, verified: Verified) -> None:
        """The rest of ingest for a message a worker verified off HTTP; its answer back."""

        def answer(done: Future[Ack]) -> None:
            error = done.exception()
            if error is None:
                ack = done.result()
                reply: tuple[Any, ...] = ("a", rid, ack.to_json(), ack.first_seq)
            else:
                code, message = "internal_error", "internal error"
                if isinstance(error, VitalchainError):
                    code, message = error.code, error.message
                reply = ("r", rid, code, message)
            self._replies.put((worker, reply))

        try:
            # The worker signs the receipt once this is committed: not this commit thread.
            acked = self._core.submit_verified(verified, sign=self._master is None)
        except VitalchainError as exc:
            failed: Future[Ack] = Future()
            failed.set_exception(exc)
            answer(failed)
        else:
            acked.add_done_callback(answer)

    def _mend(self, worker: _Worker) -> None:
        """``worker`` died: refuse what it died on twice, start it again, ask it again."""
        log.error("ingest worker %d stopped; starting it again", worker.index)
        with worker.send_lock:
            if worker.conn is not None:
                worker.conn.close()
            worker.conn = None
            if worker.process is not None:
                worker.process.join(timeout=5)
            with worker.asked_lock:
                failed = []
                for rid, asked in list(worker.asked.items()):
                    asked.tries += 1
                    if asked.tries > 2:
                        del worker.asked[rid]
                        failed.append(asked)
            for asked in failed:
                asked.answer.set_exception(
                    GatewayError("internal_error", "this message stopped an ingest worker")
                )
            worker.restarts += 1
            while not self._closing.is_set():
                try:
                    self._spawn(worker)
                    return
                except Exception as exc:  # retried: the node must not lose a worker
                    log.error("could not start ingest worker %d: %s", worker.index, exc)
                    time.sleep(1)


# -- the worker's side --------------------------------------------------------------------------


def _worker_main(conn: multiprocessing.connection.Connection, config: dict[str, Any]) -> None:
    """A worker process: verify what the node asks, with the sessions it is given, and, with a
    telemetry port, serve ``POST /v1/telemetry`` on it; until the node says stop or its end of
    the pipe closes."""
    # Signals are the node's to handle: Ctrl-C and a service manager's SIGTERM reach the whole
    # process group, and the node stops its workers itself, once nothing more reaches them.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    verifier = Verifier(
        lambda: int(time.time() * 1000),
        max_message_bytes=config["max_message_bytes"],
        max_readings=config["max_readings"],
    )
    link = _Link(conn)
    if config["http"] is None:
        conn.send_bytes(b"ready")
        _serve(link, verifier, None)
        return
    host, port = config["http"]
    sock = listen_socket(host, port, reuse_port=True)
    sock.listen(2048)
    server = _HttpServer(_telemetry_app(link, verifier, config), sock)
    reader = threading.Thread(target=_serve, args=(link, verifier, server), daemon=True)
    conn.send_bytes(b"ready")  # connections queue on the listening socket from here
    reader.start()
    server.serve()


class _Link:
    """The worker's end of its pipe: one writer at a time, and its questions to the node."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.waiting: dict[int, Future[Any]] = {}

    def send(self, item: tuple[Any, ...]) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.conn.send_bytes(data)

    def ask(self, kind: str, value: object) -> Future[Any]:
        """Ask the node (``h``: store this verified message; ``k``: this session?)."""
        answer: Future[Any] = Future()
        rid = next(self._ids)
        self.waiting[rid] = answer
        try:
            self.send((kind, rid, value))
        except (OSError, ValueError):
            self.waiting.pop(rid, None)
            answer.set_exception(GatewayError("store_unavailable", "the gateway is stopping"))
        return answer

    def settle(self, rid: int, result: object = None, error: BaseException | None = None) -> None:
        answer = self.waiting.pop(rid, None)
        if answer is None:
            return
        if error is None:
            answer.set_result(result)
        else:
            answer.set_exception(error)

    def fail_all(self) -> None:
        for rid in list(self.waiting):
            self.settle(rid, error=GatewayError("store_unavailable", "the gateway is stopping"))


def _serve(link: _Link, verifier: Verifier, server: _HttpServer | None) -> None:
    """The worker's pipe: what the node asks and tells, in order, until it ends."""
    loads = pickle.loads
    conn = link.conn
    try:
        while True:
            try:
                item = loads(conn.recv_bytes())  # the node's pipe, no one else's
            except (EOFError, OSError):
                return
            kind = item[0]
            if kind == "v":
                _, rid, data, topic_device = item
                try:
                    answer: tuple[Any, ...] = ("ok", rid, verifier.verify(data, topic_device))
                except GatewayError as exc:
                    answer = ("no", rid, exc.code, exc.message, isinstance(exc, Unauthenticated))
                except Exception as exc:  # a bug must not stop the worker
                    answer = ("no", rid, "internal_error", type(exc).__name__, False)
                try:
                    link.send(answer)
                except (EOFError, OSError):
                    return
            elif kind == "s":
                _add(verifier, item[1], bool(item[2]))
            elif kind == "e":
                verifier.end_session_at(item[1], item[2])
            elif kind == "a":
                link.settle(item[1], (item[2], item[3]))
            elif kind == "r":
                link.settle(item[1], error=GatewayError(item[2], item[3]))
            elif kind == "k":
                link.settle(item[1], item[2])
            elif kind == "q":
                return
    finally:
        link.fail_all()
        if server is not None:
            server.stop()


def _add(verifier: Verifier, records: Iterable[_SessionRecord], supersede: bool) -> None:
    for record in records:
        verifier.add_session(_live(record), supersede=supersede)


def _telemetry_app(link: _Link, verifier: Verifier, config: dict[str, Any]) -> ASGIApp:
    """``POST /v1/telemetry`` and nothing else: the body read as the node's app reads it,
    checks 1, 2 and 4 here, the rest by the node, whose acknowledgement is the answer.

    A bare ASGI callable, not a FastAPI app: FastAPI's routing, middleware and dependency
    solving cost about 200 µs a request on this machine, four times the ECDSA verification
    the worker is there for (docs/benchmarks.md, "Ingest workers").  Refusals are answered
    as the node's handler set answers them (edge/server.py ``refusal_response``)."""
    rate, burst = config["preauth"]
    clients = ClientBudget(RateLimiter(rate, burst, time.monotonic))
    master = None if config["master"] is None else PrivateKey(config["master"])
    not_found = GatewayError("not_found", "the ingest workers serve POST /v1/telemetry only")
    not_allowed = GatewayError("method_not_allowed", "POST a data message")

    async def verified(body: bytes) -> Verified:
        try:
            return verifier.verify(body)
        except Unauthenticated as exc:
            if exc.code != "unknown_session":
                raise
        # Not in this worker's copy (yet): a session the node added a moment ago may still be
        # on its way down the pipe.  The node's map is the authority.
        record = await asyncio.wrap_future(link.ask("k", body[4:HEADER_SIZE]))
        if record is not None:
            verifier.add_session(_live(record), supersede=False)
        return verifier.verify(body)

    async def telemetry(request: Request) -> Response:
        body, client = await read_data_message(request, clients, verifier.max_message_bytes)
        try:
            message = await verified(body)
        except GatewayError as exc:
            if isinstance(exc, Unauthenticated):
                clients.charge(client)
            with contextlib.suppress(OSError, ValueError):
                link.send(("m", 0, exc.code))
            raise
        ack, first_seq = await asyncio.wrap_future(link.ask("h", message))
        if master is not None and "receipt" not in ack:
            ack["receipt"] = sign_receipt(
                master,
                message.group_id,
                message.device,
                message.message_id,
                first_seq,
                ack["last_seq"],
                int(time.time() * 1000),  # after the node's commit: "stored" is true
            ).hex()
        return JSONResponse(ack)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        request = Request(scope, receive)
        try:
            if scope["path"] != "/v1/telemetry":
                raise not_found
            if scope["method"] != "POST":
                raise not_allowed
            response = await telemetry(request)
        except VitalchainError as exc:
            response = refusal_response(exc)
        except Exception:  # a bug: answered as the node's handlers answer one
            log.exception("the telemetry route failed")
            response = error_response(500, "internal_error", "internal error")
        await response(scope, receive, send)

    return app


class _HttpServer:
    """uvicorn on the held socket, without its signal handlers (the node's to handle)."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = Server(config)
        self._sock = sock

    def serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
