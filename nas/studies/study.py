"""Optuna studies: names and storage (the samplers are the search's: ``nas.search.samplers``).

One study per (search space, device, latency budget), named ``<space>@<device>@<budget>ms``
(``@everything`` appended for segment-everything policy studies). Storage defaults to
SQLite at ``results/studies.db``; any Optuna RDB URL (PostgreSQL, MySQL) works, so several
workers on several machines can share one study.
"""
from __future__ import annotations

import re
from pathlib import Path

import optuna

from infra.errors import UserError
from infra.wording import plural
from infra.fileio import results_dir, results_origin

_SLUG = re.compile(r"^[A-Za-z0-9_.+-]+(@[A-Za-z0-9_.+-]+)?$")


def default_storage(results=None, create: bool = False) -> str:
    """``sqlite:///<results>/studies.db`` (``results``: the folder the CLI chose; default ``./results``).

    ``create`` makes the results folder (for commands that write a study); readers leave it alone.
    """
    path = results_dir(results) / "studies.db"
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (None for in-memory or other databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def missing_store_message(url: str | None, results=None) -> str | None:
    """For a reader: why ``url`` (default: the studies.db of the results folder ``results``) holds no
    studies, or None."""
    path = _sqlite_file(url or default_storage(results))
    if path is None or path.is_file():
        return None
    where = f"--storage {url}" if url else f"the results folder {results_origin(results)}"
    return f"no study database at {path.resolve()} (looked in {where}): run `samnas search` first"


def format_budget(budget_ms: float) -> str:
    """``250.0`` -> ``'250'``, ``12.5`` -> ``'12.5'``."""
    return f"{budget_ms:g}"


def study_name(space: str, device: str, budget_ms: float, suffix: str | None = None) -> str:
    """``<space>@<device>@<budget>ms`` (device may itself hold ``@host-tag``), plus ``@suffix``."""
    if not _SLUG.match(device):
        raise UserError(f"device {device!r}: expected a slug such as cpu-torch or cpu-torch@myhost")
    if budget_ms <= 0:
        raise UserError(f"--budget-ms must be positive, got {budget_ms}")
    name = f"{space}@{device}@{format_budget(budget_ms)}ms"
    return f"{name}@{suffix}" if suffix else name


def parse_study_name(name: str) -> dict:
    """Inverse of :func:`study_name`: ``{"space", "device", "budget_ms", "suffix"}``."""
    parts = name.split("@")
    budget_at = next((i for i, p in enumerate(parts) if re.fullmatch(r"[0-9.]+ms", p)), None)
    if budget_at is None or budget_at < 2:
        raise UserError(f"study {name!r}: expected <space>@<device>@<budget>ms")
    return {
        "space": parts[0],
        "device": "@".join(parts[1:budget_at]),
        "budget_ms": float(parts[budget_at][:-2]),
        "suffix": "@".join(parts[budget_at + 1:]) or None,
    }


def open_storage(url: str | None, attempts: int = 6, create: bool = True,
                 results=None) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so trials of a killed worker are marked failed, not left running.

    ``url`` None: the studies.db of the results folder ``results`` (:func:`default_storage`).

    ``create=False`` (read-only commands) refuses, with a one-line UserError that says where it
    looked, to open a SQLite file that does not exist, instead of creating an empty one.

    Workers started together on a fresh database race to create Optuna's tables; the loser
    sees a unique-key or "already exists" error, so those are retried after a short random
    pause (``attempts`` tries in all). Other errors (bad URL, server down, no driver) are not.
    """
    import random
    import time
    import warnings

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    if not create and (missing := missing_store_message(url, results)):
        raise UserError(missing)
    url = url or default_storage(results, create=create)
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # Optuna 5 flags heartbeats "experimental" on every open: noise to users
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=30,
                    grace_period=90,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                )
        except (IntegrityError, ProgrammingError) as exc:
            if attempt + 1 == attempts:
                raise UserError(f"--storage {url}: cannot create Optuna's tables "
                                f"({str(exc).splitlines()[0][:200]})") from None
            time.sleep(0.2 + random.random())
        except Exception as exc:  # bad URL, unreachable server, missing driver
            raise UserError(f"--storage {url}: cannot open ({str(exc).splitlines()[0][:200]})") from None
    raise AssertionError("unreachable")


def predictor_line(facts: dict | None) -> str:
    """``latency predictor (cpu-torch): CV MAPE 4.5%, 95% of held-out subnets within +-10%, 1 thread``."""
    if not facts:
        return "latency predictor: unknown (study made before samnas recorded it)"
    threads = facts.get("threads")
    return (f"latency predictor ({facts['device']}): CV MAPE {facts['cv_mape_pct']:.1f}%, "
            f"{facts['within_10_pct']:.0f}% of held-out subnets within +-10%, profiled with "
            f"{plural(threads, 'thread')}")
