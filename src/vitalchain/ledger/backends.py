"""Where the contracts run: an in-process EVM, or any Ethereum JSON-RPC node.

Both backends hand the ledger a ``web3.Web3`` and differ only in what a test or a demo may
ask of the chain itself: who pays for gas, and whether time can be moved forward.
"""

from __future__ import annotations

import ast
import base64
import http.client
import json
import socket
import subprocess
import sys
import threading
import urllib.parse
from abc import ABC, abstractmethod
from multiprocessing.connection import Connection
from typing import Any

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.providers.base import BaseProvider
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint, RPCResponse

from vitalchain.crypto.keys import PrivateKey
from vitalchain.ledger.errors import ChainUnavailable, NotSupported

__all__ = ["ANVIL_DEV_KEY", "ChainBackend", "EmbeddedBackend", "JsonRpc", "RpcBackend", "RpcError"]

# anvil's first dev account (from its well-known test mnemonic); worthless outside a dev node.
ANVIL_DEV_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


class ChainBackend(ABC):
    kind: str
    w3: Web3
    funder: PrivateKey | None
    """A key with ether to fund new accounts; None on networks with free gas."""
    json_rpc: JsonRpc | None = None
    """Plain JSON-RPC over HTTP, for the outbox's hot path (None: go through web3)."""

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Mine a block ``seconds`` later than the latest (tests of expiry and staleness)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the chain's resources."""

    def ping(self, timeout: float) -> int:
        """The latest block number, within ``timeout`` seconds or :class:`ChainUnavailable`.

        For health probes: one short request, never the long timeout of ordinary calls, so a
        hung node is reported down in seconds.
        """
        return int(self.w3.eth.block_number)

    def revert_data(self, exc: Exception) -> bytes | None:
        """The revert payload if ``exc`` is a reverted call, else None (a real failure)."""
        if isinstance(exc, ContractCustomError | ContractLogicError):
            data = exc.data
            if isinstance(data, str) and data.startswith("0x"):
                return bytes.fromhex(data[2:])
            return data if isinstance(data, bytes) else b""
        return None


class EmbeddedBackend(ChainBackend):
    """eth-tester on py-evm: the default, and it needs no server.

    ``isolated=True`` runs the EVM in a child process (:class:`_ChildChain`), which is what a
    gateway node uses: executing a transaction is tens of milliseconds of pure-Python CPU, and
    in the gateway's own process it holds the GIL that ingest, the journal's commits and alert
    delivery need (docs/benchmarks.md, alert latency).  In-process (the default) needs no
    second process, which is what unit tests and the demo's several nodes on one chain want.
    """

    kind = "embedded"

    def __init__(self, *, isolated: bool = False) -> None:
        self._child: _ChildChain | None = None
        if isolated:
            self._child = _ChildChain()
            self._tester = None
            self.w3 = Web3(_ChildProvider(self._child))
            self.funder = PrivateKey(self._child.call("funder"))
            return
        from eth_tester import EthereumTester, PyEVMBackend

        self._tester = EthereumTester(backend=PyEVMBackend())
        self.w3 = Web3(_SerialTesterProvider(self._tester))
        self.funder = PrivateKey(self._tester.backend.account_keys[0].to_bytes())

    def advance_time(self, seconds: int) -> None:
        if self._child is not None:
            self._child.call("advance_time", seconds)
            return
        assert self._tester is not None
        _advance(self._tester, seconds)

    def close(self) -> None:
        if self._child is not None:
            self._child.close()

    def revert_data(self, exc: Exception) -> bytes | None:
        """eth-tester raises its own TransactionFailed; the payload is in its cause chain."""
        from eth_tester.exceptions import TransactionFailed

        if not isinstance(exc, TransactionFailed):
            return super().revert_data(exc)
        return _revert_payload(exc)


def _advance(tester: Any, seconds: int) -> None:
    latest = tester.get_block_by_number("latest")["timestamp"]
    tester.time_travel(int(latest) + seconds)


def _revert_payload(exc: BaseException) -> bytes:
    seen: BaseException | None = exc
    while seen is not None:
        for arg in seen.args:
            if isinstance(arg, bytes):
                return arg
            # eth_call keeps only the payload's repr: "execution reverted: b'...'"
            text = str(arg).removeprefix("execution reverted: ")
            if text[:2] in ("b'", 'b"'):
                value = ast.literal_eval(text)
                if isinstance(value, bytes):
                    return value
        seen = seen.__cause__ or seen.__context__
    return b""


def _serve_fd(fd: int) -> None:
    """The child process's entry point (see :class:`_ChildChain`)."""
    _serve_chain(Connection(fd))


def _serve_chain(conn: Connection) -> None:
    """The child's loop: one request at a time from the parent, until the pipe closes.

    A parent killed with SIGKILL closes its end too, so the child never outlives it.
    """
    from eth_tester import EthereumTester, PyEVMBackend
    from eth_tester.exceptions import TransactionFailed

    tester = EthereumTester(backend=PyEVMBackend())
    provider = EthereumTesterProvider(tester)
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "rpc":
                result: Any = provider.make_request(*args)
            elif op == "funder":
                result = tester.backend.account_keys[0].to_bytes()
            elif op == "advance_time":
                _advance(tester, *args)
                result = None
            else:
                raise ValueError(f"unknown operation {op!r}")
        except TransactionFailed as exc:
            # Its cause chain (where the payload may be) does not survive pickling: send the
            # payload itself, which revert_data finds in the first argument.
            conn.send(("revert", _revert_payload(exc), str(exc)))
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        else:
            conn.send(("ok", result, None))


class _ChildChain:
    """A py-evm chain in a child process, asked over a socket pair, one request at a time.

    A plain subprocess rather than multiprocessing's spawn: spawn re-imports the parent's
    ``__main__``, which breaks any script without an ``if __name__ == "__main__"`` guard.
    """

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        fd = child_end.fileno()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", f"from {__name__} import _serve_fd; _serve_fd({fd})"],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
        )
        child_end.close()
        self._conn = Connection(parent_end.detach())
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any) -> Any:
        from eth_tester.exceptions import TransactionFailed

        with self._lock:
            try:
                self._conn.send((op, args))
                status, value, message = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise ChainUnavailable("the embedded chain's process is gone") from exc
        if status == "revert":
            raise TransactionFailed(value, message)
        if status == "error":
            raise RuntimeError(f"{value}: {message}")  # the text keeps e.g. "cannot afford"
        return value

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester's provider, one request at a time: py-evm's state is not thread-safe, and a
    gateway asks the chain from several threads (ingest, sealer, alerts, the chain outbox)."""

    def __init__(self, tester: Any) -> None:
        super().__init__(tester)
        self._lock = threading.Lock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            return super().make_request(method, params)


class _ChildProvider(EthereumTesterProvider):
    """eth-tester's provider (with its request middleware) whose requests run in the child."""

    def __init__(self, child: _ChildChain) -> None:
        BaseProvider.__init__(self)  # not EthereumTesterProvider's: no chain in this process
        self._child = child

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        response: RPCResponse = self._child.call("rpc", method, params)
        return response


class _RpcProvider(HTTPProvider):
    """An HTTP provider whose transport failures all surface as one :class:`ChainUnavailable`.

    requests raises a dozen types for a node that is gone, refuses, resets or hangs (and web3
    passes them through); callers should not have to know any of them.
    """

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except (requests.RequestException, OSError) as exc:
            raise ChainUnavailable(
                f"the chain node does not answer ({type(exc).__name__})"
            ) from exc


class RpcError(Exception):
    """The node answered a JSON-RPC request with an error (a refusal, not an outage).

    ``str()`` is the node's own message, as web3's error carried it, so the callers that read
    its wording ("nonce too low", "insufficient funds") keep working.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def revert_data(self) -> bytes | None:
        """The revert payload if this is a reverted call (``execution reverted``), else None."""
        if "revert" not in self.message.lower():
            return None
        data = self.data
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        return b""


class JsonRpc:
    """JSON-RPC requests and batches over one kept-alive HTTP session, without web3.

    Why: web3's request path (middleware, request and result formatters, its retry wrapper)
    was about 60 % of the gateway's CPU for each outbox transaction to anvil (docs/benchmarks.md,
    outbox).  The outbox's few hot calls (send the raw transaction, the receipts, the base fee,
    the simulation) take plain hex in and out, so they need none of it.  Transport failures are
    :class:`ChainUnavailable`, the node's errors :class:`RpcError`.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json"}
        if parts.username is not None:  # http://user:pass@host, as requests would send it
            token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode())
            self._headers["Authorization"] = "Basic " + token.decode()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # one kept-alive connection, one request at a time
        self._id = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _post(self, body: Any) -> Any:
        """One HTTP exchange.  A kept-alive connection the node closed meanwhile is retried
        once on a new one (JSON-RPC over a fresh connection; the node never saw the first)."""
        data = json.dumps(body).encode()
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    conn.request("POST", self._path, data, self._headers)
                    response = conn.getresponse()
                    text = response.read()
                    status = response.status
                except (
                    http.client.RemoteDisconnected,
                    BrokenPipeError,
                    ConnectionResetError,
                ) as exc:
                    conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise ChainUnavailable(
                            f"the chain node does not answer ({type(exc).__name__})"
                        ) from exc
                    continue
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._conn = None
                    raise ChainUnavailable(
                        f"the chain node does not answer ({type(exc).__name__})"
                    ) from exc
                break
        if status != 200:
            raise ChainUnavailable(f"the chain node answered HTTP {status}")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ChainUnavailable("the chain node gave a malformed answer") from exc

    def _ids(self, count: int) -> int:
        with self._lock:
            first = self._id
            self._id += count
            return first

    @staticmethod
    def _result(answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise ChainUnavailable("the chain node gave a malformed answer")
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise RpcError(-32000, str(error))
            raise RpcError(int(error.get("code", -32000)), str(error.get("message", "")),
                           error.get("data"))  # fmt: skip
        return answer.get("result")

    def call(self, method: str, params: list[Any]) -> Any:
        """One request's result; the node's error raises :class:`RpcError`."""
        ident = self._ids(1)
        return self._result(
            self._post({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        )

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several requests in one HTTP round trip; each item its result or its
        :class:`RpcError` (returned, not raised: one refusal does not hide the others)."""
        if not calls:
            return []
        first = self._ids(len(calls))
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        answers = self._post(body)
        if not isinstance(answers, list):
            return [self._outcome(answers)] * len(calls)  # a node that refuses batches whole
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        return [self._outcome(by_id.get(first + i)) for i in range(len(calls))]

    def _outcome(self, answer: Any) -> Any:
        try:
            return self._result(answer)
        except RpcError as exc:
            return exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RpcBackend(ChainBackend):
    """Any JSON-RPC node: a Besu/geth proof-of-authority network in production, anvil in tests."""

    kind = "rpc"

    def __init__(self, url: str, funder: PrivateKey | None = None, timeout: float = 10) -> None:
        """``timeout`` bounds each JSON-RPC call (connect, and each wait for bytes): a hung node
        costs a caller that long, once.  web3 retries a timed-out call five times by default,
        which multiplied it; only a refused connection is retried now (quick, and safe)."""
        self.url = url
        # web3 asks for the chain id before every eth_call to validate it; it cannot change
        # under a running node, so that one answer is cached (half the round trips of a view).
        provider = _RpcProvider(
            url,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(requests.ConnectionError,), retries=3
            ),
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
        self.w3 = Web3(provider)
        self.json_rpc = JsonRpc(url, timeout)
        self.funder = funder
        self._ping_providers: dict[float, _RpcProvider] = {}

    def ping(self, timeout: float) -> int:
        """``eth_blockNumber`` on a provider of its own: ``timeout`` and no retry."""
        provider = self._ping_providers.get(timeout)
        if provider is None:
            provider = _RpcProvider(
                self.url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
            )
            self._ping_providers = {timeout: provider}  # one in use; replaced if it changes
        response = provider.make_request(RPCEndpoint("eth_blockNumber"), [])
        result = response.get("result")
        if not isinstance(result, str):
            raise ChainUnavailable("the chain node gave no block number")
        return int(result, 16)

    def advance_time(self, seconds: int) -> None:
        """Only dev nodes (anvil, hardhat) let time move; a real network refuses."""
        response = self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        if "error" in response:
            raise NotSupported("this node cannot advance time (not a dev node)")
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def close(self) -> None:
        if self.json_rpc is not None:
            self.json_rpc.close()
