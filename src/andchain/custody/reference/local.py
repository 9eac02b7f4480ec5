"""The reference custodian as a background process of this machine, started and stopped by
andchain like its local nodes (`andchain custodian start|stop|status`, `make run`, the demo).

It is told the tokens it holds by configuration (`custodian.tokens`); in development andchain adds
the USDC stand-ins it deployed on its local networks (`andchain stablecoin setup`), as an
operator would configure Circle's published addresses. Its webhooks go to the bank's API
(`custodian.webhook_url`, in development the API's own route by default). Its database, keys and
secrets stay in its own directory: the bank's side reads only the development API key and
webhook secret from there, as it would read them from its secret store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from andchain.chains.nodes import port_in_use
from andchain.context import Context
from andchain.custody.reference.runtime import directory_of, private_dir
from andchain.devtools.processes import pid_alive
from andchain.errors import DomainError
from andchain.tls import tls_context

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class CustodianProcessError(DomainError):
    code = "custodian_process"


def local_tokens(ctx: Context) -> dict[str, str]:
    """The tokens the local custodian holds: the configured ones, and the USDC stand-ins andchain
    deployed on its local networks (development)."""
    from andchain.chains.usdc import USDC

    tokens = dict(ctx.settings.custodian.tokens)
    if ctx.settings.environment != "development":
        return tokens
    for name, network in ctx.settings.networks.items():
        if not network.local or network.kind != "public" or not network.enabled or f"USDC@{name}" in tokens:
            continue
        address = ctx.chain(name).deployment(USDC, required=False)
        if address:
            tokens[f"USDC@{name}"] = address
    return tokens


class LocalCustodian:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.custodian
        self.directory = directory_of(ctx.settings)
        self.pid_file = self.directory / "serve.pid"
        self.log_file = self.directory / "custodian.log"
        # The tokens it was started with: a running custodian holds those only.
        self.tokens_file = self.directory / "serve.tokens.json"
        self._process: subprocess.Popen[bytes] | None = None  # when this process started it

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def healthy(self) -> bool:
        """Whether it answers its health check. A client is cheap to make: its TLS context is shared."""
        try:
            with httpx.Client(timeout=1.0, verify=tls_context()) as http:
                return http.get(f"{self.url}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ANDCHAIN_CUSTODIAN__TOKENS"] = json.dumps(local_tokens(self.ctx))
        if not self.settings.native_networks and self.ctx.settings.environment == "development":
            local = [
                n for n, cfg in self.ctx.settings.networks.items() if cfg.local and cfg.kind == "public" and cfg.enabled
            ]
            env["ANDCHAIN_CUSTODIAN__NATIVE_NETWORKS"] = json.dumps(sorted(local))
        if self.settings.webhook_url is None and self.ctx.settings.environment == "development":
            api = self.ctx.settings.api
            env["ANDCHAIN_CUSTODIAN__WEBHOOK_URL"] = f"http://{api.host}:{api.port}/v1/custody/webhooks/reference"
        return env

    def start(self) -> str:
        """Start it unless it runs with the tokens it should hold (started again when andchain has
        deployed a stand-in since); wait until it answers. "started", "restarted" or "already running"."""
        if self.pid() is not None:
            if self.healthy():
                try:
                    held = json.loads(self.tokens_file.read_text())
                except (OSError, ValueError):
                    held = None
                if held == local_tokens(self.ctx):
                    return "already running"
                self.stop()
                self._launch()
                return "restarted"
            raise CustodianProcessError(
                f"a custodian process runs (pid {self.pid()}) but {self.url}/health does not answer; "
                f"see {self.log_file}"
            )
        if port_in_use(self.settings.host, self.settings.port):
            raise CustodianProcessError(
                f"port {self.settings.port} for the reference custodian is already in use by another process; "
                "stop it or set custodian.port"
            )
        self._launch()
        return "started"

    def _launch(self) -> None:
        private_dir(self.directory)
        env = self.environment()
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "andchain.cli", "custodian", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        self.tokens_file.write_text(env["ANDCHAIN_CUSTODIAN__TOKENS"])
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise CustodianProcessError(
                    f"the reference custodian exited with {process.returncode}:\n{self._log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise CustodianProcessError(f"the reference custodian did not answer within {START_TIMEOUT_S:.0f}s")

    def stop(self) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        os.kill(pid, signal.SIGTERM)
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)  # our child: reaped, not left a zombie
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        else:
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._process = None
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def status(self) -> dict[str, object]:
        return {"url": self.url, "pid": self.pid(), "healthy": self.healthy(), "log": str(self.log_file)}

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
