"""A throw-away single-node SLURM cluster for the tests: munged + slurmctld + slurmd on this machine.

Keys, sockets, state, spool, logs and configuration live under one temporary directory, and the
daemons run in the foreground as children of the test process, so a test session can start the
cluster, submit real ``sbatch`` jobs to it, read the controller's job records and stop it again.
Client commands find the cluster through ``SLURM_CONF`` in :attr:`SlurmCluster.env`; commands
inside jobs find it at /etc/slurm/slurm.conf, which the cluster installs while it runs (only where
no real SLURM configuration is there, and marked so that only its own copy is ever removed).

The configuration is what the Snakemake SLURM executor needs on a cluster without accounting:

- ``AccountingStorageType=accounting_storage/none``: there is no slurmdbd, so ``sacct`` cannot
  answer and the executor must query job states with ``squeue``;
- a large ``MinJobAge``: the controller keeps finished jobs in memory, so ``squeue --states=all``
  still reports ``COMPLETED`` when the executor polls, and the test can read every job's record;
- a generic resource ``gpu`` (``AutoDetect=off``, character devices standing in for GPUs): SLURM
  schedules ``--gpus=1`` requests without real devices, so the workflow's GPU request path runs;
- two partitions over the one node (``cpu``, the default, and ``gpu``), so a test can check that
  jobs are routed by partition.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
# Where SLURM commands look for their configuration when SLURM_CONF is not set. The executor's
# job step strips SLURM_* variables (SLURM_CONF included) before its nested `srun`, so inside a job
# the configuration must be found here, as on a real compute node; see SlurmCluster.start().
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
# One test cluster per machine at a time (two would fight over SYSTEM_CONF): pytest-xdist workers
# and concurrent test sessions queue on this lock.
LOCK_FILE = Path("/tmp/vlmprobe-slurm-test-cluster.lock")
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
MARKER = "# vlmprobe test cluster (tests/support/slurm_cluster.py): removed when the tests stop"
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "srun", "scancel")
# Where Debian puts the daemons; /usr/sbin is not always on a test runner's PATH.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_command(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (for ``pytest.skip``), or None if it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "a SLURM test cluster needs a POSIX system"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged for the test cluster needs root (run as root or in CI)"
    missing = [name for name in DAEMONS + CLIENTS if find_command(name) is None]
    if missing:
        return (
            f"SLURM/munge commands not found: {', '.join(missing)}; "
            "install them with `bash .ci/install-system-deps.sh` (Debian packages slurm-wlm, munge)"
        )
    if SYSTEM_CONF.exists() and MARKER not in SYSTEM_CONF.read_text(errors="replace"):
        return f"{SYSTEM_CONF} belongs to a real SLURM installation; the test cluster will not replace it"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_record(line: str) -> dict[str, str]:
    """Parse one ``scontrol show job --oneliner`` record (``Key=Value`` pairs separated by spaces).

    Values may contain spaces (``Command=``, ``Comment=``); a token without ``=`` or whose key is not
    CamelCase-like continues the previous value.
    """
    record: dict[str, str] = {}
    key = None
    for token in line.strip().split(" "):
        name, sep, value = token.partition("=")
        if sep and name and (name[0].isupper() or "/" in name or ":" in name):
            key = name
            record[key] = value
        elif key is not None:
            record[key] += " " + token
    return record


@dataclass
class SlurmCluster:
    """A single-node cluster rooted at ``root``; call :meth:`start`, then :meth:`stop`."""

    root: Path
    # What the node advertises. With SlurmdParameters=config_overrides SLURM believes the
    # configuration over the hardware, so a 2-core machine can run the workflow's 4-thread jobs.
    cpus: int = 4
    memory_mb: int = 16000
    # Two GPUs, so the two embedding jobs of the tiny study run side by side.
    gpus: int = 2
    partition: str = "cpu"
    gpu_partition: str = "gpu"
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    installed_system_conf: bool = False
    lock_handle: object = None

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """The calling environment plus what SLURM client commands need to find this cluster."""
        env = dict(os.environ)
        # Variables of an enclosing SLURM job (CI running inside a job) would confuse sbatch/srun.
        for name in list(env):
            if name.startswith(("SLURM_", "SBATCH_", "SRUN_")):
                del env[name]
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), *SBIN_DIRS])
        return env

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of each daemon's log, for failure messages."""
        parts = []
        for name in DAEMONS:
            path = self.root / "log" / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts)

    # -- configuration ----------------------------------------------------------------------------

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a key or socket directory that others may write to.
        (self.root / "munge").chmod(0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)

        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            "ClusterName=vlmprobe-test",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            # No cgroups in containers and sandboxes: track processes by parent pid, bind nothing.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/builtin",
            # cons_tres schedules cores, memory and --gpus requests.
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            # Keep finished jobs visible to squeue/scontrol for a day (see the module docstring).
            "MinJobAge=86400",
            "MailProg=/bin/true",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu" if self.gpus else "",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb}{gres} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            # The same node again as a second partition, so a run can route GPU jobs by partition.
            f"PartitionName={self.gpu_partition} Nodes={self.node} MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join([MARKER, *(line for line in lines if line)]) + "\n")
        # GPUs that SLURM counts and hands out without a real device: enough to schedule `--gpus=1`
        # and set CUDA_VISIBLE_DEVICES, which is all the request path needs. slurmd insists on one
        # device file per GPU (a count alone registers as 0 GPUs), so harmless character devices
        # stand in.
        gres_conf = ["AutoDetect=off"]
        if self.gpus:
            if self.gpus > len(FAKE_GPU_DEVICES):
                raise ValueError(f"at most {len(FAKE_GPU_DEVICES)} fake GPUs")
            files = ",".join(FAKE_GPU_DEVICES[: self.gpus])
            gres_conf.append(f"NodeName={self.node} Name=gpu File={files}")
        (self.root / "gres.conf").write_text("\n".join(gres_conf) + "\n")

    # -- daemons ----------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")
        self.processes[name] = subprocess.Popen(
            [find_command(name) or name, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            # Own process group, so a Ctrl-C in pytest does not hit the daemons before stop().
            start_new_session=True,
        )
        log.close()

    def _wait(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with status {process.returncode} while waiting for {what}\n"
                        + self.log_tail()
                    )
            if check():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n" + self.log_tail())

    def _run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def acquire_lock(self, timeout: float) -> None:
        handle = open(LOCK_FILE, "a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.lock_handle = handle
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise RuntimeError(f"another test cluster held {LOCK_FILE} for {timeout:.0f}s") from None
                time.sleep(1)

    def start(self, timeout: float = 60, lock_timeout: float = 600) -> None:
        """Write the configuration and start munged, slurmctld and slurmd; wait for an idle node."""
        self.acquire_lock(lock_timeout)
        self.write_config()
        # Commands inside jobs (the executor's nested srun) run without SLURM_CONF: give them the
        # configuration at the default path. Only a file of ours is ever replaced or removed.
        if SYSTEM_CONF.exists() and MARKER not in SYSTEM_CONF.read_text(errors="replace"):
            raise RuntimeError(f"{SYSTEM_CONF} belongs to a real SLURM installation")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.conf, SYSTEM_CONF)
        self.installed_system_conf = True
        munge = self.root / "munge"
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--key-file={munge / 'munge.key'}",
                f"--socket={self.munge_socket}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait("the munge socket", self.munge_socket.exists, timeout)
        # -D: stay in the foreground (a child we can stop); -i: ignore stale state files.
        self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)])
        self._wait(
            "slurmctld to answer", lambda: self._run("scontrol", "ping").stdout.count("UP") > 0, timeout
        )
        self._spawn("slurmd", ["-D", "-f", str(self.conf), "-N", self.node])
        self._wait("the node to become idle", self._node_idle, timeout)

    def _node_idle(self) -> bool:
        state = self._run("sinfo", "--noheader", "--format=%T", "--nodes", self.node).stdout.strip()
        return state == "idle"

    def stop(self) -> None:
        """Cancel any jobs still queued or running, then stop the daemons (slurmd first)."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            try:
                self._run("scancel", "--full", "--user", "root", timeout=10)
                self._wait_no_running_jobs(timeout=15)
            except (subprocess.TimeoutExpired, RuntimeError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self.installed_system_conf and SYSTEM_CONF.exists() and MARKER in SYSTEM_CONF.read_text(errors="replace"):
            SYSTEM_CONF.unlink()
        self.installed_system_conf = False
        if self.lock_handle is not None:
            self.lock_handle.close()  # releases the flock
            self.lock_handle = None

    def _wait_no_running_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = self._run("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING").stdout
            if not active.strip():
                return
            time.sleep(0.5)

    # -- job records ------------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, str]]:
        """The controller's record of every job it has seen (finished ones included, see MinJobAge)."""
        result = self._run("scontrol", "show", "job", "--oneliner")
        if result.returncode != 0:
            if "No jobs in the system" in result.stdout + result.stderr:
                return []
            raise RuntimeError(f"scontrol show job failed: {result.stderr.strip()}")
        return [parse_record(line) for line in result.stdout.splitlines() if line.startswith("JobId=")]
