"""The on-disk spool: order, bound, torn records, adoption of a dead process's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from servekit.events import Message
from servekit.events.spool import Spool, spool_folder


def _dead_pid() -> int:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        child.wait()
    return child.pid


def test_messages_come_back_in_order_as_bytes_of_their_json(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    first = Message("s", {"a": np.arange(3)}, "k", (("h", "v"),))
    assert spool.append([first, Message("t", b"raw")]) == 2
    assert len(spool) == 2
    assert spool.peek(10) == [
        Message("s", b'{"a":[0,1,2]}', "k", (("h", "v"),)),
        Message("t", b"raw"),
    ]
    spool.consume(1)
    assert spool.peek(10) == [Message("t", b"raw")]
    spool.consume(1)
    assert len(spool) == 0 and spool.nbytes == 0
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_beyond_max_bytes_nothing_more_is_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1000)
    written = spool.append([Message("s", {"pad": "x" * 80}) for _ in range(50)])
    assert 0 < written < 50
    assert spool.nbytes <= 1000
    assert len(spool.peek(100)) == written


def test_a_new_spool_adopts_a_dead_process_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    folder = spool_folder(tmp_path, "kafka://127.0.0.1:9092")
    dead = _dead_pid()
    old = Spool(folder, 1 << 20)
    old.pid = dead  # as if that process had written it
    old.append([Message("s", {"i": i}) for i in range(10)])
    old.peek(3)
    old.consume(3)
    old.close()
    with open(folder / f"{dead}.1.seg", "ab") as torn:  # a crash mid-record
        torn.write(b"\x05\x00\x00\x00\xff")
    new = Spool(folder, 1 << 20)
    assert new.adopt_orphans() == 7
    assert [m.value for m in new.peek(100)] == [b'{"i":%d}' % i for i in range(3, 10)]
    assert not (folder / f"{dead}.pos").exists()
    assert all(p.name.startswith(f"{os.getpid()}.") for p in folder.glob("*.seg"))


def test_a_live_process_keeps_its_spool(tmp_path: Path) -> None:
    live = Spool(tmp_path, 1 << 20)
    live.append([Message("s", {"i": 1})])
    other = Spool(tmp_path, 1 << 20)
    other.pid = os.getppid()  # another live process looking at the same folder
    assert other.adopt_orphans() == 0
    assert len(live.peek(10)) == 1
