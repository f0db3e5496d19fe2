"""Opening the shared SQLite files while another process holds them."""

from __future__ import annotations

import sqlite3
import threading

from tandem.blocks.sqlite_files import connect_wal


def test_switching_to_wal_waits_for_a_writer_that_holds_the_file(tmp_path):
    path = str(tmp_path / "shared.db")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # what another process switching to WAL looks like
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        conn = connect_wal(path, busy_timeout=5.0)
    finally:
        release.join()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    holder.close()
