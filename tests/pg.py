"""A throw-away PostgreSQL server for the multi-worker tests (tests only).

Starts ``initdb`` + ``pg_ctl`` from the Debian ``postgresql`` package (``.ci/run`` installs it)
on a private Unix socket, as the ``postgres`` user when running as root, and stops and
deletes it afterwards. Skips cleanly when no server binaries are installed.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager

import pytest


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else (os.path.dirname(shutil.which("initdb")) if shutil.which("initdb") else None)


def _as_db_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server():
    """Yields a SQLAlchemy URL of a fresh, empty database; the server is gone after the block."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="samnas-pg-")
    os.chmod(root, 0o777)
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.mkdir(sock)
    os.chmod(sock, 0o777)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = lambda cmd: subprocess.run(_as_db_user(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "samnas", "--no-sync"])
        run([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "start",
             "-o", f"-k {sock} -c listen_addresses='' -p 5439 -c fsync=off"])
        try:
            run([f"{bindir}/createdb", "-h", sock, "-p", "5439", "-U", "samnas", "samnas"])
            yield f"postgresql+psycopg2://samnas@/samnas?host={sock}&port=5439"
        finally:
            run([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
