"""curation.atomic.locked: one holder at a time, across open files (as across processes)."""

import threading
import time

from curation.atomic import locked


def test_locked_lets_one_holder_in_at_a_time(tmp_path):
    lock, events = tmp_path / "audit.json.lock", []

    def hold(name: int) -> None:
        with locked(lock):  # each holder opens the file itself, as another process would
            events.append(("in", name))
            time.sleep(0.1)  # room for another holder to get in, if the lock let it
            events.append(("out", name))

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(events) == 6
    assert all(events[i] == ("in", events[i][1]) and events[i + 1] == ("out", events[i][1])
               for i in range(0, 6, 2))  # fmt: skip
