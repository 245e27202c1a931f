"""Jobs the tests schedule. Each run appends a line to the file in ONCEJOB_TEST_RECORD."""

from __future__ import annotations

import asyncio
import os
import time

from django_oncejob import current_occurrence


def record(*args: object, **kwargs: object) -> str:
    occurrence = current_occurrence()
    assert occurrence is not None
    line = f"{occurrence.job} {occurrence.scheduled_for.isoformat()} {os.getpid()}\n"
    # One write() of a short line with O_APPEND is atomic between processes.
    fd = os.open(os.environ["ONCEJOB_TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return line


def stamp_then_sleep(seconds: float) -> str:
    """Record the run, and when it really started, in ``<ONCEJOB_TEST_RECORD>.starts``."""
    occurrence = current_occurrence()
    assert occurrence is not None
    line = f"{occurrence.job} {occurrence.scheduled_for.isoformat()} {time.time()}\n"
    fd = os.open(
        os.environ["ONCEJOB_TEST_RECORD"] + ".starts", os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    time.sleep(seconds)
    return record()


def sleep_then_record(seconds: float) -> str:
    time.sleep(seconds)
    return record()


async def async_record() -> str:
    await asyncio.sleep(0.01)
    return record()


def fail() -> None:
    raise RuntimeError("the job broke")


not_callable = 42


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no words for it")


def fail_with(kind: str) -> None:
    """Fail with an error text no database stores as it is, or none at all."""
    if kind == "nul":
        raise RuntimeError("before\x00after")
    if kind == "surrogate":
        raise RuntimeError("lone \udcff surrogate")
    if kind == "unprintable":
        raise Unprintable()
    if kind == "interrupt":
        raise KeyboardInterrupt()
    raise ValueError(kind)


async def async_orm_record() -> str:
    """An ``async def`` job whose ORM call goes through sync_to_async, as Django's do."""
    from django_oncejob.models import Run

    await Run.objects.filter(job="nothing").acount()
    return record()


def fail_first_two() -> str:
    """Records each attempt, as ``job scheduled attempt pid``; fails attempts 1 and 2."""
    occurrence = current_occurrence()
    assert occurrence is not None
    line = f"{occurrence.job} {occurrence.scheduled_for.isoformat()} {occurrence.attempt} "
    _append(os.environ["ONCEJOB_TEST_RECORD"] + ".attempts", f"{line}{os.getpid()}\n")
    if occurrence.attempt < 3:
        raise RuntimeError(f"attempt {occurrence.attempt} fails")
    return record()


def span(seconds: float) -> str:
    """Records when the run starts and ends, as ``job scheduled start end pid``."""
    occurrence = current_occurrence()
    assert occurrence is not None
    start = time.time()
    time.sleep(seconds)
    line = f"{occurrence.job} {occurrence.scheduled_for.isoformat()} {start} {time.time()}"
    _append(os.environ["ONCEJOB_TEST_RECORD"] + ".spans", f"{line} {os.getpid()}\n")
    return record()


async def async_sleep_then_record(seconds: float) -> str:
    """Sleeps; records ``cancelled`` in ``<record>.cancelled`` if it is cancelled meanwhile."""
    occurrence = current_occurrence()
    assert occurrence is not None
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _append(os.environ["ONCEJOB_TEST_RECORD"] + ".cancelled", f"{occurrence.job}\n")
        raise
    return record()


def _append(path: str, line: str) -> None:
    # One write() of a short line with O_APPEND is atomic between processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
