"""``vitalchain demo --serve``: the demo's world stays up with a provider's and a patient's
portal until SIGTERM (or Ctrl-C), then everything stops and the report is written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.demo import REDUCED

LINK = re.compile(r"(provider|patient):\s+(http://127\.0\.0\.1:\d+/\?token=\S+)")


def test_demo_serve_keeps_the_portals_up_until_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "vitalchain", "demo", *REDUCED, "--no-mqtt", "--serve"]
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    links: dict[str, str] = {}
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 300
        while len(links) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            for who, url in LINK.findall(line):
                links[who] = url
        assert set(links) == {"provider", "patient"}, "".join(output)
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            landing = browser.get(links["patient"])  # the token signs in, then /me
            assert landing.status_code == 200
            assert landing.url.path == "/me"
            assert "My devices" in landing.text
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            landing = browser.get(links["provider"])
            assert landing.status_code == 200
            assert landing.url.path == "/inbox"
        time.sleep(1)
        assert process.poll() is None, "the world keeps running until told to stop"
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
        output.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(output)
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "report.md").is_file()
    with httpx.Client(timeout=2) as late:
        port = int(links["patient"].split(":")[2].split("/")[0])
        try:
            late.get(f"http://127.0.0.1:{port}/login")
            raise AssertionError("the portal still answers after the demo stopped")
        except httpx.ConnectError:
            pass
