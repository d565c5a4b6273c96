"""A stand-in controller for the leadership tests: stands by until it leads the database,
then writes a ``Tick`` event every 0.1 s through a fenced database, as the controller writes
everything. Prints ``standby``, ``leading TERM`` and ``deposed``; exits 3 once deposed.

    python -m tests.integration.leader_proc URL NAME LEASE_S
"""

from __future__ import annotations

import sys
import threading
import time

from baige.control.leadership import Deposed, Leadership
from baige.store.db import Database
from baige.store.tables import EventRow


def main() -> int:
    url, name, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    leadership = Leadership(url, lease_s=lease, name=name)
    term = leadership.wait(threading.Event(), on_standby=lambda who: print("standby", flush=True))
    print(f"leading {term}", flush=True)
    db = Database(url, migrate=False, idle_in_transaction_s=lease)
    db.fence = leadership.fence
    while True:
        try:
            with db.session() as session:
                session.add(
                    EventRow(ts=time.time(), object_kind="test", object_id=name, type="Tick")
                )
        except Deposed as err:
            print(f"deposed: {err}", flush=True)
            return 3
        except Exception as err:  # the database is away: try again, as the controller does
            print(f"retrying: {type(err).__name__}", flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
