"""A write of several batches stores them from a thread beside the reading (``engine/batches.py``):
in order, each once; an error in that thread reaches the caller and stops it; the caller's error
(a bad line, Ctrl-C) waits for the batch being stored and then nothing more is stored; a write of
one batch starts no thread."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from vcli.engine.batches import BatchWriter


def recorder(fail_at: int | None = None):
    stored: list[tuple[list[int], str]] = []

    def store(batch: list[int]) -> int:
        if fail_at is not None and batch[0] == fail_at:
            raise OSError(28, "No space left on device")
        stored.append((batch, threading.current_thread().name))
        return len(batch)

    return stored, store


def test_batches_are_stored_in_order_each_once_beside_the_caller():
    stored, store = recorder()
    writer = BatchWriter(store)
    for start in range(0, 100, 10):
        writer.put(list(range(start, start + 10)))
    assert writer.finish() == 100
    writer.close()
    assert [b for b, _ in stored] == [list(range(s, s + 10)) for s in range(0, 100, 10)]
    assert {name for _, name in stored} == {"vcli-writer"}
    assert writer.thread is None


def test_one_batch_is_stored_by_the_caller_without_a_thread():
    stored, store = recorder()
    writer = BatchWriter(store)
    writer.put([1, 2, 3])
    assert writer.finish() == 3
    assert stored == [([1, 2, 3], threading.current_thread().name)]


def test_an_error_in_the_writer_thread_reaches_the_caller_and_nothing_after_it_is_stored():
    stored, store = recorder(fail_at=30)
    writer = BatchWriter(store)
    with pytest.raises(OSError, match="No space left"):
        for start in range(0, 100, 10):
            writer.put(list(range(start, start + 10)))
        writer.finish()
    writer.close()
    assert [b[0] for b, _ in stored] == [0, 10, 20]
    assert writer.thread is None


def storing_held(release: threading.Event) -> tuple[BatchWriter, threading.Thread, list[int]]:
    """A writer whose thread is storing batch [0] until ``release``, with a caller handing [1]
    over meanwhile (it waits for [0] to be stored): (writer, that caller, the batches stored)."""
    started = threading.Event()
    stored: list[int] = []

    def store(batch: list[int]) -> int:
        started.set()
        assert release.wait(30)
        stored.append(batch[0])
        return len(batch)

    writer = BatchWriter(store)
    writer.put([0])
    caller = threading.Thread(target=writer.put, args=([1],))  # starts the thread, storing [0]; hands
    caller.start()                                              # [1] over once [0] is stored
    assert started.wait(30)
    return writer, caller, stored


def test_the_callers_error_stops_the_writer_after_the_batch_being_stored():
    release = threading.Event()
    writer, caller, stored = storing_held(release)
    closing = threading.Thread(target=writer.close)  # as after a bad line or Ctrl-C
    closing.start()
    deadline = time.monotonic() + 30
    while writer.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    closing.join(30)
    caller.join(30)
    assert not closing.is_alive() and not caller.is_alive() and writer.thread is None
    assert stored == [0]  # the batch being stored finished; nothing after it was stored


def test_a_batch_is_handed_over_once_the_one_before_is_stored():
    """The thread holds one batch and the caller reads one: two in memory, not more."""
    in_store = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def store(batch: list[int]) -> int:
        order.append(f"store {batch[0]}")
        in_store.set()
        assert release.wait(30)
        return len(batch)

    writer = BatchWriter(store)
    writer.put([0])
    caller = threading.Thread(target=lambda: (writer.put([1]), order.append("handed 1")))
    caller.start()
    assert in_store.wait(30)
    time.sleep(0.2)
    assert order == ["store 0"]  # [1] waits in the caller's hands while [0] is stored
    release.set()
    caller.join(30)
    assert writer.finish() == 2
    assert order[0] == "store 0" and sorted(order[1:]) == ["handed 1", "store 1"]


def test_ctrl_c_while_closing_arrives_once_the_writer_thread_is_joined():
    """Ctrl-C (twice) while the caller waits for the batch being stored: the KeyboardInterrupt
    reaches the caller only once the thread has ended, so the transaction never ends under it."""
    release = threading.Event()
    writer, caller, stored = storing_held(release)

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while writer.error is None and time.monotonic() < deadline:  # (close has begun)
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        release.set()

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        writer.close()
        time.sleep(5)  # (a held-back SIGINT is raised here at the latest, on a busy machine too)
    interrupter.join(30)
    caller.join(30)
    assert writer.thread is None and stored == [0]
