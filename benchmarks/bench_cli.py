"""CLI start-up: what every user and every test pays before a command starts.

    .venv/bin/python benchmarks/bench_cli.py            # 15 runs each
    .venv/bin/python benchmarks/bench_cli.py --runs 5

Prints the median and best wall time of ``ibx --help``, three simple
commands on an existing data dir (``ledger checkpoint``, ``identity list``,
``policy list``), the two user commands among them over HTTPS against a
running exchange (``--exchange URL``, the way users run them from their own
machines), and ``ibx serve`` until ``/readyz`` answers over HTTPS, next to
``python -c pass`` and a bare Typer app with one command, measured in the
same run on the same interpreter. Goals (issue 10, idle machine): --help
under 0.3 s, simple commands under 0.5 s, serve ready under 2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PY = sys.executable
IBX = [PY, "-m", "exchange.cli"]
BARE_TYPER = """
import typer
app = typer.Typer()
@app.command()
def hello(name: str = "x") -> None:
    print(name)
app()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _time(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def _serve_ready(data_dir: Path, env: dict[str, str], runs: int) -> tuple[float, float]:
    bundle = data_dir / "ca-bundle.pem"
    samples = []
    for _ in range(runs):
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*IBX, "--data-dir", str(data_dir), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                if not bundle.exists():  # written when serve first creates its certificate
                    time.sleep(0.01)
                    continue
                try:
                    ready = httpx.get(
                        f"https://127.0.0.1:{port}/readyz", timeout=1, verify=str(bundle)
                    )
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.01)
                if time.perf_counter() - start > 60:
                    raise RuntimeError("serve did not become ready")
            samples.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return statistics.median(samples), min(samples)


def _wait_ready(port: int, bundle: Path) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if not bundle.exists():
            time.sleep(0.05)
            continue
        try:
            ready = httpx.get(f"https://127.0.0.1:{port}/readyz", timeout=1, verify=str(bundle))
            if ready.status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("serve did not become ready")


def _load() -> str:
    """The 1, 5 and 15-minute load averages (the goals are for an idle machine)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialised = subprocess.run(
            [*IBX, "--data-dir", str(data), "init", "--officer", "bench-officer",
             "--officer", "bench-officer-2"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = next(
            line.split("token ")[1].strip()
            for line in initialised.stdout.splitlines()
            if line.startswith("officer     bench-officer ")
        )
        subprocess.run(
            [*IBX, "--data-dir", str(data), "identity", "cert", "bench-officer",
             "--out", str(Path(tmp) / "certs")],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        subprocess.run(
            [*IBX, "--data-dir", str(data), "ledger", "checkpoint"],
            env=env,
            capture_output=True,
            check=True,
        )
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_TYPER)
        rows = [
            ("python -c pass (floor)", [PY, "-c", "pass"]),
            ("bare Typer app --help (peer)", [PY, str(bare), "--help"]),
            ("ibx --help", [*IBX, "--help"]),
            ("ibx ledger checkpoint", [*IBX, "--data-dir", str(data), "ledger", "checkpoint"]),
            ("ibx identity list", [*IBX, "--data-dir", str(data), "identity", "list"]),
            (
                "ibx policy list",
                [*IBX, "--data-dir", str(data), "policy", "list", "--token", token],
            ),
        ]
        print(
            f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, "
            f"{args.runs} runs each; seconds, median / best; load average {_load()} at start"
        )
        for name, argv in rows:
            median, best = _time(argv, env, args.runs)
            print(f"{name:<34} {median:6.3f} / {best:6.3f}")
        median, best = _serve_ready(data, env, max(3, args.runs // 3))
        print(f"{'ibx serve until /readyz answers':<34} {median:6.3f} / {best:6.3f}")
        certs = Path(tmp) / "certs"
        remote = [
            "--ca-bundle",
            str(data / "ca-bundle.pem"),
            "--client-cert",
            str(certs / "bench-officer.crt"),
            "--client-key",
            str(certs / "bench-officer.key"),
            "--token",
            token,
        ]
        port = free_port()
        server = subprocess.Popen(
            [*IBX, "--data-dir", str(data), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port, data / "ca-bundle.pem")
            url = ["--exchange", f"https://127.0.0.1:{port}"]
            for name, argv in (
                ("ibx policy list --exchange", [*IBX, "policy", "list", *url, *remote]),
                ("ibx ledger checkpoint --exchange", [*IBX, "ledger", "checkpoint", *url, *remote]),
            ):
                median, best = _time(argv, env, args.runs)
                print(f"{name:<34} {median:6.3f} / {best:6.3f}")
        finally:
            server.terminate()
            server.wait(timeout=15)
        print(f"# load average {_load()} at the end")


if __name__ == "__main__":
    main()
