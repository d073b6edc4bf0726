"""The local cluster launcher (``rocketmq_testing``) without starting a cluster: how it
stops servers, where it keeps its state, and that its pytest plugin loads anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rocketmq_testing import cluster as launcher


def _server(tmp_path: Path, role: str = "broker") -> launcher._Server:
    return launcher._Server("broker-a", role, 10911, tmp_path / "home", ["java"])


def test_a_server_is_killed_unless_it_still_writes_its_class_archive(tmp_path: Path) -> None:
    """A discarded cluster's servers are killed at once, but for one started to write
    its role's class archive at exit (none yet): that one must exit in order."""
    cds = tmp_path / "cds"
    server = _server(tmp_path)
    assert not launcher._writes_cds_archive(None, server)  # class archives off
    assert launcher._writes_cds_archive(cds, server)  # no archive yet: this run writes it
    cds.mkdir()
    (cds / "namesrv.jsa").write_bytes(b"x")
    assert launcher._writes_cds_archive(cds, server)  # another role's archive
    (cds / "broker.jsa").write_bytes(b"x")
    assert not launcher._writes_cds_archive(cds, server)


def test_the_state_file_is_the_same_from_any_directory(tmp_path: Path) -> None:
    assert launcher.DEFAULT_STATE_FILE.is_absolute()
    code = "from rocketmq_testing import cluster; print(cluster.DEFAULT_STATE_FILE)"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=where, capture_output=True, text=True, check=True
        ).stdout
        for where in (tmp_path, Path.home(), Path("/"))
    }
    assert seen == {f"{launcher.DEFAULT_STATE_FILE}\n"}


def test_down_without_a_state_file_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none" / "state.json"
    assert launcher.main(["down", "--state-file", str(missing)]) == 0
    assert str(missing) in capsys.readouterr().out
    assert launcher.main(["status", "--state-file", str(missing)]) == 1


def test_the_plugin_loads_where_fcntl_does_not_exist() -> None:
    """pytest loads the plugin wherever the package is installed: importing it must
    not need the POSIX-only fcntl (the launcher takes it when it locks its cache)."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import rocketmq_testing.pytest_plugin as plugin\n"
        "print(sorted(n for n in dir(plugin) if n.startswith('rocketmq_')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "['rocketmq_cluster', 'rocketmq_namesrv']"


@pytest.mark.parametrize(
    ("stat", "cmdline", "runs"),
    [
        (["S", "1"], b"java\0-Duser.home=/tmp/w\0NamesrvStartup\0", True),
        (["S", "1"], b"python\0other.py\0", False),  # the pid was reused by another program
        (["S", "1"], b"", True),  # exiting: its memory is gone, its sockets not yet closed
        (["S", "2"], b"", False),  # the pid was reused by a kernel thread
        (["Z", "1"], b"", False),  # exited: a zombie holds no socket
        (None, None, False),  # gone
    ],
)
def test_a_server_runs_until_it_is_a_zombie_or_gone(
    monkeypatch: pytest.MonkeyPatch, stat: list[str] | None, cmdline: bytes | None, runs: bool
) -> None:
    """The pid of a server read back from a state file (``rocketmq-cluster down``)."""
    monkeypatch.setattr(launcher, "_proc_stat", lambda pid: stat)
    monkeypatch.setattr(launcher, "_cmdline", lambda pid: cmdline)
    assert launcher._pid_runs(4242, "/tmp/w") is runs
