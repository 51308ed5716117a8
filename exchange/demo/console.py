"""The story in a browser: where the console is, and who signs in with what.

At the end of ``make demo`` (:func:`exchange.demo.main`) the narrator prints
the console's URL and, for each duty, who to sign in as and their token;
administrators also present their client certificate, so next to each PEM
the demo writes a PKCS#12 file a browser imports (passphrase
:data:`P12_PASSPHRASE`, printed: a demo's throwaway deployment). On a
terminal the demo then keeps the exchange and the plants' agents running
until Ctrl-C; otherwise it stops them and says how to serve the world again:
``make console`` (``python -m exchange.demo console``) serves
``.ibx-demo/data`` on the same URL, starts the plants' agents, prints the
same lines and runs until Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from exchange.demo.cluster import PLANTS
from exchange.demo.processes import Actor, Background, Cli, DemoError, free_port, start_server
from exchange.demo.scene import AUDITOR, OFFICERS, SUBBRAIN
from exchange.demo.setup_acts import agent_argv

__all__ = ["P12_PASSPHRASE", "URL_FILE", "SignIn", "main", "sign_in_lines", "sign_ins"]

P12_PASSPHRASE: Final = "ibx-demo"  # noqa: S105 - printed on purpose: a throwaway deployment
"""The PKCS#12 files' passphrase (printed: the demo's deployment is a throwaway)."""
URL_FILE: Final = "console.url"
"""In the work dir: the URL the demo served, which ``make console`` serves again."""


@dataclass(frozen=True)
class SignIn:
    """Who signs in to which duty's pages, with what."""

    duty: str
    """How the reader knows the duty (``security officer``, ``enterprise``, ...)."""
    actor: Actor
    certificate: bool
    """Whether they present a client certificate too (administrators)."""

    @property
    def p12(self) -> Path:
        """The PKCS#12 bundle of their client certificate, next to the PEM."""
        return self.actor.home / f"{self.actor.name}.p12"


def sign_ins(work: Path) -> list[SignIn]:
    """Everyone of the story with console pages, officers first."""
    found = [
        SignIn("security officer", Actor(name, work / "officers" / name), True) for name in OFFICERS
    ]
    found.append(SignIn("auditor", Actor(AUDITOR, work / "auditor"), True))
    found += [
        SignIn("enterprise", Actor(plant.name, work / "plants" / plant.name), False)
        for plant in PLANTS
    ]
    found.append(SignIn("sub-brain", Actor(SUBBRAIN, work / "sub-brain"), False))
    return [s for s in found if s.actor.token_file.is_file()]


def write_p12(sign_in: SignIn) -> Path:
    """Bundle the administrator's certificate chain and key as PKCS#12 (mode 0600).

    Raises:
        DemoError: the PEM files are missing or unreadable.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    actor = sign_in.actor
    try:
        chain = x509.load_pem_x509_certificates(actor.client_cert.read_bytes())
        key = serialization.load_pem_private_key(actor.client_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise DemoError(f"no client certificate for {actor.name}: {exc}") from exc
    blob = pkcs12.serialize_key_and_certificates(
        actor.name.encode(),
        key,  # type: ignore[arg-type]  # an EC or RSA key, as ibx identity cert issues
        chain[0],
        chain[1:] or None,
        serialization.BestAvailableEncryption(P12_PASSPHRASE.encode()),
    )
    sign_in.p12.touch(mode=0o600)
    sign_in.p12.write_bytes(blob)
    return sign_in.p12


def sign_in_lines(work: Path, url: str, shown: Callable[[Path], str]) -> list[str]:
    """The closing lines: the console's URL, the CA to trust, and one line per actor with
    their token (administrators: their certificate's files too). Writes the PKCS#12 files
    and remembers the URL for ``make console``."""
    (work / URL_FILE).write_text(url + "\n", encoding="utf-8")
    lines = [
        f"  {'open':<22}{url}/console in a browser; it warns about the certificate unless it",
        f"  {'':<22}trusts the deployment CA {shown(work / 'ca-bundle.pem')} (or accept it for "
        "127.0.0.1)",
        f"  {'sign in with a token':<22}(登录 → 访问令牌 / Access token), one per duty:",
    ]
    for sign_in in sign_ins(work):
        token = sign_in.actor.token_file.read_text(encoding="utf-8").strip()
        lines.append(f"    {sign_in.duty:<17}{sign_in.actor.name:<20}{token}")
        if sign_in.certificate:
            p12 = write_p12(sign_in)
            lines.append(
                f"    {'':<37}+ client certificate {shown(sign_in.actor.client_cert)} (key "
                f"beside it); import {shown(p12)} into the browser, passphrase {P12_PASSPHRASE}"
            )
    lines.append(
        f"  {'importing':<22}Chromium: Settings → Privacy and security → Security → Manage "
        "certificates → Import; Firefox: Settings → Certificates → Your Certificates → Import"
    )
    return lines


def console_url(work: Path) -> str | None:
    """The URL the demo served (``make console`` serves it again), if it ran."""
    path = work / URL_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def start_agents(background: Background, cli: Cli, work: Path) -> int:
    """Start every plant's ``ibx agent`` on the served ``work`` dir; how many."""
    if cli.ca_bundle is None:
        raise DemoError("start the exchange first")
    started = 0
    for plant in PLANTS:
        home = work / "plants" / plant.name
        if not (home / "token").is_file():
            continue
        argv = agent_argv(
            plant, home, exchange=cli.exchange, ca_bundle=cli.ca_bundle,
            ledger_vkey=work / "ledger.vkey",
        )  # fmt: skip
        background.start(
            f"ibx agent {plant.name}", argv, env=cli.base_env(), log=home / "agent.log", cwd=home
        )
        started += 1
    return started


def wait_until_stopped(background: Background) -> None:
    """Until Ctrl-C or SIGTERM (``KeyboardInterrupt``), or a served process dies.

    Raises:
        KeyboardInterrupt: the user stopped it.
        DemoError: the exchange or an agent stopped by itself.
    """
    from exchange.demo.launcher import check_stop

    idle = threading.Event()
    while True:
        check_stop()
        dead = background.dead()
        if dead:
            raise DemoError(f"{', '.join(dead)} stopped")
        idle.wait(1.0)


def _stop(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    from exchange.demo.launcher import request_stop

    request_stop()
    raise KeyboardInterrupt


def main() -> int:
    """``make console``: serve ``./.ibx-demo`` again, with the plants' agents, until Ctrl-C."""
    work = Path(".ibx-demo").resolve()
    here = work.parent

    def shown(path: Path) -> str:
        return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)

    if not (work / "data").is_dir() or not (work / "ca-bundle.pem").is_file():
        print("console: no demo here: run make demo first", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    background = Background()
    cli = Cli(work, work / "data")
    port = _port_of(console_url(work))
    try:
        url = start_server(
            background, cli, port=port, edge_port=free_port(), log=work / "serve.log"
        )
        cli.exchange, cli.ca_bundle = url, work / "ca-bundle.pem"
        agents = start_agents(background, cli, work)
        print(f"ibx serve: {url} on {shown(work / 'data')}, {agents} plants' agents", flush=True)
        for line in sign_in_lines(work, url, shown):
            print(line, flush=True)
        print("Ctrl-C stops the exchange and the agents.", flush=True)
        wait_until_stopped(background)
    except KeyboardInterrupt:
        print("console: stopped", file=sys.stderr)
        return 0
    except DemoError as exc:
        print(f"console: {exc} (see {shown(work / 'serve.log')})", file=sys.stderr)
        return 1
    finally:
        background.stop_all()
    return 0


def _port_of(url: str | None) -> int:
    """The demo's port when it is free again, else any free one."""
    import socket

    if url and url.rsplit(":", 1)[-1].isdigit():
        port = int(url.rsplit(":", 1)[-1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return free_port()
            return port
    return free_port()
