"""Fuzz every HTTP operation of a node with schemathesis: no 5xx, responses as documented.

    .venv/bin/python benchmarks/fuzz.py [--examples N] [--seed S] [--json FILE]

A whole node (API Edge, store access API, alert API) on the embedded chain, in this process,
served through its ASGI app.  For each operation in its OpenAPI, ``--examples`` generated
requests (default 1,000): schema-valid and schema-invalid ones (schemathesis's positive and
negative modes), some enrolments and revocations with the admin token so the authorised paths
run too.  Hypothesis stops early on an operation whose inputs run out (``GET /v1/health`` has
one), so "cases" is what really ran.

Printed per operation: cases, 5xx responses, responses that fail a schemathesis check (status
code, content type, headers or body not as documented; ``positive_data_acceptance`` is left out,
since a schema cannot say that a key is on the curve or that a ciphertext decrypts), and the
statuses seen.  Exit status 1 if any response was a 5xx.  ``--json`` also writes the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from vitalchain.crypto import PrivateKey
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.node import running_gateway
from vitalchain.sealing.sealer import SealingPolicy

TOKEN = "fuzz-admin-token-0123456789"
ADMIN_ROUTES = ("/v1/enrolments", "/v1/devices/{device}/revocation")


@dataclass
class Result:
    operation: str
    cases: int = 0
    server_errors: int = 0
    nonconforming: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first few problems, for a reader


def strategy(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Positive and negative cases; an operation with nothing to make invalid has only the first."""
    modes = [operation.as_strategy(schemathesis.GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # schemathesis may refuse to negate an operation
        modes.append(operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
    return st.one_of(*modes)


def fuzz_operation(operation: schemathesis.APIOperation, examples: int, at: int) -> Result:
    result = Result(operation.label)
    statuses: Counter[int] = Counter()

    @seed(at)
    @given(case=strategy(operation))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],  # count, never shrink: every case is run once
    )
    def run(case: schemathesis.Case) -> None:
        if case.path in ADMIN_ROUTES and zlib.crc32(repr(case.body).encode()) % 2 == 0:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
        response = case.call()
        result.cases += 1
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            result.server_errors += 1
            note(f"{case.method} {case.formatted_path}: {response.status_code} {response.text}")
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except (FailureGroup, Exception) as exc:  # any failed check is counted, not raised
            result.nonconforming += 1
            failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            titles = ", ".join(getattr(f, "title", type(f).__name__) for f in failures)
            note(f"{titles} (status {response.status_code})")

    def note(problem: str) -> None:
        if len(result.examples) < 3 and problem[:200] not in result.examples:
            result.examples.append(problem[:200])

    started = time.perf_counter()
    run()
    result.seconds = time.perf_counter() - started
    result.statuses = dict(sorted(statuses.items()))
    return result


def fuzz(examples: int, at: int) -> list[Result]:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(EmbeddedBackend(), admin)
    with tempfile.TemporaryDirectory() as tmp:
        node_settings = GatewaySettings(
            data_dir=Path(tmp) / "node",
            admin_token=SecretStr(TOKEN),
            mqtt=False,
            rate_per_s=1e6,
            rate_burst=10**6,
            preauth_rate_per_s=1e6,  # the fuzzer is one client: do not measure the limit
            preauth_burst=10**6,
            telemetry_preauth_rate_per_s=1e6,
            telemetry_preauth_burst=10**6,
        )
        with running_gateway(
            node_settings, ledger=ledger, sealing=SealingPolicy(), background=False
        ) as running:
            schema = schemathesis.openapi.from_asgi("/openapi.json", running.app())
            operations = [r.ok() for r in schema.get_all_operations()]
            results = []
            for operation in operations:
                result = fuzz_operation(operation, examples, at)
                results.append(result)
                print(
                    f"{result.operation:<52} {result.cases:>6} {result.server_errors:>5} "
                    f"{result.nonconforming:>6}  {result.statuses}",
                    flush=True,
                )
                for problem in result.examples:
                    print(f"    {problem}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="cases per operation")
    parser.add_argument("--seed", type=int, default=12, help="hypothesis seed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--write", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # refusals are the point; keep the table clean
    print(f"{'operation':<52} {'cases':>6} {'5xx':>5} {'checks':>6}  statuses")
    started = time.perf_counter()
    results = fuzz(args.examples, args.seed)
    total = sum(r.cases for r in results)
    errors = sum(r.server_errors for r in results)
    failing = sum(r.nonconforming for r in results)
    print(
        f"{len(results)} operations, {total} cases, {errors} responses 5xx, "
        f"{failing} failing a check, in {time.perf_counter() - started:.0f} s"
    )
    if args.write:
        from report import write_section  # beside this script

        rows = [
            f"`.venv/bin/python benchmarks/fuzz.py --examples {args.examples} --seed {args.seed}"
            " --write`",
            "",
            "| operation | cases | 5xx | failing a check | statuses |",
            "|---|---|---|---|---|",
        ]
        rows += [
            f"| `{r.operation}` | {r.cases} | {r.server_errors} | {r.nonconforming} | "
            + ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
            + " |"
            for r in results
        ]
        rows += ["", f"{len(results)} operations, {total} cases, {errors} responses 5xx, "
                 f"{failing} failing a check."]  # fmt: skip
        write_section("fuzz", "\n".join(rows))
    if args.json:
        payload: dict[str, Any] = {
            "examples_per_operation": args.examples,
            "seed": args.seed,
            "operations": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
