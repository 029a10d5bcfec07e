"""A real single-node Slurm for tests: munged, slurmctld and slurmd in a temporary directory.

Debian's ``slurm-wlm`` and ``munge`` packages; everything (key, sockets, state, logs,
slurm.conf) lives in the directory, the daemons listen on free loopback ports, and
``SLURM_CONF`` points the client commands (sbatch, squeue, scancel) at it. Runs as root
(slurmd starts jobs as their submitter); elsewhere :class:`SlurmMissing` says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install -y slurm-wlm munge"
DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmMissing(RuntimeError):
    """Slurm cannot run here; the message says why and what to do."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d, name)).exists()), None
    )
    if found is None:
        raise SlurmMissing(f"{name} is not installed; run: {INSTALL}")
    return found


class SlurmCluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *command: str, timeout: float = 60) -> str:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}\n{self.logs()}")
        return result.stdout

    def logs(self) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SlurmMissing("a private Slurm runs its daemons as root (slurmd starts jobs as their user)")
        munged, slurmctld, slurmd = (_binary(name) for name in DAEMONS)
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = d / "munge.socket"
        self._spawn(
            [munged, "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
             f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
             f"--seed-file={d / 'munge.seed'}"],
            "munged",
        )  # fmt: skip
        self._wait(lambda: socket_path.exists(), "munged's socket")
        node = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=omni-test",
                    f"SlurmctldHost={node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={socket_path}",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=30",
                    f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
                    f"PartitionName=omni Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._spawn([slurmctld, "-D", "-f", str(self.conf)], "slurmctld")
        self._spawn([slurmd, "-D", "-f", str(self.conf), "-N", node], "slurmd")
        self._wait(lambda: "idle" in self._sinfo(), "the node to be idle in sinfo")

    def _sinfo(self) -> str:
        try:
            return self.run("sinfo", "-h", "-o", "%t", timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return ""

    def _spawn(self, command: list[str], name: str) -> None:
        log = (self.directory / f"{name}.out").open("wb")
        self.processes.append(
            subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def _wait(self, condition: object, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():  # type: ignore[operator]
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited with {process.returncode}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {seconds:g} s for {what}\n{self.logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextmanager
def slurm_cluster(directory: Path) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
