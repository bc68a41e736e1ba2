"""The outcome history (engine/outcomes.py): the first event of each recent command, by seq."""

from __future__ import annotations

import numpy as np
import pytest

from common.records import COMMAND_DTYPE, EVENT_DTYPE, CommandKind, EventKind
from engine.outcomes import OutcomeHistory


def firsts(*seqs: int) -> np.ndarray:
    events = np.zeros(len(seqs), dtype=EVENT_DTYPE)
    events["seq"] = seqs
    events["kind"] = EventKind.ACCEPTED
    events["account"] = [seq * 10 for seq in seqs]
    return events


def kinds(count: int) -> np.ndarray:
    return np.full(count, int(CommandKind.NEW), dtype=np.uint8)


def test_each_kept_seq_gives_its_own_event_and_command_kind():
    history = OutcomeHistory(8)
    history.record(firsts(1, 2, 5), np.array([1, 3, 2], dtype=np.uint8))
    kind, event = history.get(2)
    assert kind == 3 and event.dtype == EVENT_DTYPE and event.shape == (1,) and int(event["account"][0]) == 20
    assert history.get(5)[0] == 2
    assert history.get(3) is None and history.get(0) is None and history.get(-1) is None


def test_a_seq_older_than_the_last_size_commands_is_no_longer_kept():
    history = OutcomeHistory(4)
    history.record(firsts(1, 2, 3), kinds(3))
    history.record(firsts(4, 5, 6), kinds(3))
    assert history.get(1) is None and history.get(2) is None  # their slots hold 5 and 6 now
    assert [history.get(seq)[1]["seq"][0] for seq in (3, 4, 5, 6)] == [3, 4, 5, 6]


def test_more_commands_than_the_size_at_once_keeps_the_newest():
    history = OutcomeHistory(3)
    history.record(firsts(*range(1, 11)), kinds(10))
    assert [seq for seq in range(1, 11) if history.get(seq) is not None] == [8, 9, 10]


def test_export_and_restore_give_the_same_history():
    history = OutcomeHistory(5)
    history.record(firsts(*range(1, 8)), np.arange(1, 8, dtype=np.uint8))
    restored = OutcomeHistory(5)
    restored.record(firsts(100), kinds(1))  # replaced, not merged
    restored.restore(history.export())
    assert restored.export() == history.export()
    assert restored.get(100) is None and restored.get(7)[0] == 7


def test_a_history_holds_at_least_one_command():
    with pytest.raises(ValueError):
        OutcomeHistory(0)


def test_record_commands_keeps_each_commands_first_event_and_names_the_unplaced_news():
    # A batch of commands 7..10: 7 began in the chunk before (its events run on), 8 is a NEW accepted
    # (then traded), 9 a NEW rejected, 10 a cancel rejected.
    events = np.zeros(6, dtype=EVENT_DTYPE)
    events["seq"] = [7, 8, 8, 9, 10, 10]
    events["kind"] = [EventKind.TRADE, EventKind.ACCEPTED, EventKind.TRADE, EventKind.REJECTED,
                      EventKind.REJECTED, EventKind.BALANCE]
    events["account"] = [1, 2, 2, 3, 4, 4]
    command_kinds = np.array([CommandKind.NEW, CommandKind.NEW, CommandKind.NEW, CommandKind.CANCEL],
                             dtype=np.uint8)
    history = OutcomeHistory(16)
    unplaced = history.record_commands(events, 7, 7, command_kinds)
    assert unplaced == [3]  # the rejected NEW (seq 9): a NEW whose first event is not its acceptance
    assert history.get(7) is None  # began before: its first event is not in this chunk
    assert [int(history.get(seq)[1]["kind"][0]) for seq in (8, 9, 10)] == [
        EventKind.ACCEPTED, EventKind.REJECTED, EventKind.REJECTED]
    assert [history.get(seq)[0] for seq in (8, 9, 10)] == [CommandKind.NEW, CommandKind.NEW, CommandKind.CANCEL]
    # Columns as the service passes them: a strided view of the batch's command records.
    records = np.zeros(2, dtype=COMMAND_DTYPE)
    records["kind"] = [CommandKind.NEW, CommandKind.NEW]
    second = np.zeros(2, dtype=EVENT_DTYPE)
    second["seq"] = [11, 12]
    second["kind"] = [EventKind.ACCEPTED, EventKind.REJECTED]
    assert history.record_commands(second, 10, 11, records["kind"]) == [1]
    assert history.get(12)[0] == CommandKind.NEW
