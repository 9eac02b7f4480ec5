"""Local anvil nodes for the configured networks: start, stop, status.

Each local network gets its own node, listening on the port of its rpc_url, with
its chain id, its state file, log and pid file under <data_dir>/networks/<name>/.
The state is dumped on a clean stop and every few seconds, so a restarted node
comes back with its blocks, contracts and balances. A network with `local = false`
is somebody else's node: nothing is started, only its status is read.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from andchain.chains.rpc import NodeUnreachable, Rpc, RpcError
from andchain.config import NetworkSettings
from andchain.devtools.processes import pid_alive
from andchain.errors import DomainError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
STATE_INTERVAL_S = 5


class NodeError(DomainError):
    code = "node_error"


def _project_roots() -> list[Path]:
    here = Path(__file__).resolve()
    return [Path.cwd(), *Path.cwd().parents, here.parents[3]]


def anvil_binary() -> Path:
    """The anvil executable: $ANDCHAIN_ANVIL, the npm package's native binary, or PATH."""
    explicit = os.environ.get("ANDCHAIN_ANVIL")
    if explicit:
        return Path(explicit)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = platform.system().lower()
    for root in _project_roots():
        native = root / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
        if native.exists():
            return native
        wrapper = root / "node_modules" / ".bin" / "anvil"
        if wrapper.exists():
            return wrapper
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise NodeError("anvil not found: run `make setup` (it installs the npm package @foundry-rs/anvil)")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class NodeStatus:
    name: str
    chain_id: int | None
    expected_chain_id: int
    block: int | None
    healthy: bool
    managed: bool
    pid: int | None
    detail: str


class LocalNode:
    def __init__(
        self,
        name: str,
        network: NetworkSettings,
        data_dir: Path,
        *,
        persist: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        # persist=False: no state file, for throwaway nodes (the periodic state dump
        # pauses the node, which would add noise to a benchmark).
        self.persist = persist
        self.name = name
        self.network = network
        self.dir = data_dir / "networks" / name
        self.pid_file = self.dir / "anvil.pid"
        self.log_file = self.dir / "anvil.log"
        self.state_file = self.dir / "state.json"
        self.cache_dir = self.dir / "cache"

    def _rpc(self, timeout_s: float = 2.0) -> Rpc:
        return Rpc(self.network.rpc_url, name=self.name, timeout_s=timeout_s, retries_max=0)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def command(self) -> list[str]:
        n = self.network
        cmd = [
            str(anvil_binary()),
            "--host",
            n.host,
            "--port",
            str(n.port),
            "--chain-id",
            str(n.chain_id),
            # anvil writes the states it offloads from memory here (by default under ~/.foundry, where the
            # states of every node ever stopped pile up): the node's own directory keeps them with it.
            "--cache-path",
            str(self.cache_dir),
            "--gas-limit",
            str(n.gas_limit),
            "--accounts",
            "3",
            "--silent",
        ]
        if n.block_time_s:
            cmd += ["--block-time", f"{n.block_time_s:g}"]
        if n.gas_policy == "zero":
            cmd += ["--gas-price", "0", "--block-base-fee-per-gas", "0"]
        if self.persist:
            cmd += ["--state", str(self.state_file), "--state-interval", str(STATE_INTERVAL_S)]
        return [*cmd, *self.extra_args]

    def start(self) -> str:
        """Start the node unless it already runs; wait until it answers with its chain id."""
        if not self.network.local:
            raise NodeError(f"network {self.name} is remote ({self.network.rpc_url_shown}); andchain does not start it")
        if self.pid() is not None:
            status = self.status()
            if status.healthy:
                return "already running"
            raise NodeError(f"network {self.name}: a node runs (pid {status.pid}) but is not healthy: {status.detail}")
        if port_in_use(self.network.host, self.network.port):
            raise NodeError(
                f"port {self.network.port} for network {self.name} is already in use by another process; "
                f"stop it or set networks.{self.name}.rpc_url to a free port"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        # States a node stopped earlier offloaded are no use to a new one (its state file is what it loads).
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        rpc = self._rpc(timeout_s=1.0)
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise NodeError(f"anvil for {self.name} exited with {process.returncode}:\n{self._log_tail()}")
                try:
                    chain_id = int(rpc.call("eth_chainId"), 16)
                except (NodeUnreachable, RpcError):
                    time.sleep(0.05)
                    continue
                if chain_id != self.network.chain_id:
                    self.stop()
                    raise NodeError(
                        f"node for {self.name} answered chain id {chain_id}, expected {self.network.chain_id}"
                    )
                return "started"
        finally:
            rpc.close()
        self.stop()
        raise NodeError(f"anvil for {self.name} did not answer within {START_TIMEOUT_S:.0f}s:\n{self._log_tail()}")

    def stop(self, *, kill: bool = False) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return "killed" if kill else "stopped"

    def status(self) -> NodeStatus:
        pid = self.pid() if self.network.local else None
        rpc = self._rpc()
        try:
            chain_id, block = rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
            if isinstance(chain_id, RpcError) or isinstance(block, RpcError):
                raise NodeUnreachable(str(chain_id if isinstance(chain_id, RpcError) else block))
            chain = int(chain_id, 16)
            healthy = chain == self.network.chain_id
            detail = "ok" if healthy else f"wrong chain id {chain}"
            return NodeStatus(
                self.name, chain, self.network.chain_id, int(block, 16), healthy, self.network.local, pid, detail
            )
        except NodeUnreachable as exc:
            return NodeStatus(
                self.name,
                None,
                self.network.chain_id,
                None,
                False,
                self.network.local,
                pid,
                # A local node andchain did not start is simply down; any other node says why it failed.
                "down" if pid is None and self.network.local else f"not answering: {exc.message}",
            )
        finally:
            rpc.close()

    def fund(self, addresses: list[str], *, floor_wei: int = 10**18, amount_wei: int = 100 * 10**18) -> None:
        """Development only: top up addresses with the node's own ether (anvil_setBalance)."""
        rpc = self._rpc(timeout_s=5.0)
        try:
            balances = rpc.batch([("eth_getBalance", [a, "latest"]) for a in addresses])
            low = [
                a for a, b in zip(addresses, balances, strict=True) if isinstance(b, RpcError) or int(b, 16) < floor_wei
            ]
            if low:
                rpc.batch([("anvil_setBalance", [a, hex(amount_wei)]) for a in low])
        finally:
            rpc.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
