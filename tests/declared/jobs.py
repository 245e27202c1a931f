"""Jobs declared next to their code, as a project's app would."""

from __future__ import annotations

import django_oncejob as oncejob
from tests.jobs import record


@oncejob.job("declared-tick", cron={"second": "*"}, description="Declared with @job.")
def tick() -> str:
    return record()


@oncejob.job(interval={"seconds": 2}, retries=1)
def every_two_seconds() -> str:
    return record()
