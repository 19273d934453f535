"""The soak's judgements on made-up histories: each check must be able to fail.
Run: target/chaos-venv/bin/python -m unittest discover -s bench/chaos (bench/chaos/run does)."""

from __future__ import annotations

import unittest

import checks
import spool
from client import Call
from faults import Fault
from model import (
    CounterRecord,
    DeadId,
    DeadRead,
    Enqueue,
    Grant,
    Observations,
    Processing,
    RecordQuery,
    RecordRegister,
    Register,
    RegisterRead,
    Verdict,
    Window,
    Write,
    judge,
    merge,
    partitioned,
)


def call(status: int | None, start: float = 0.0, end: float = 0.1, inst: int = 0, op: str = "op") -> Call:
    return Call("test", op, inst, start, end, status, None if status is not None else "timeout")


def w(value: int | None, status: int | None) -> Write:
    return Write(value, call(status))


class JudgeTest(unittest.TestCase):
    def test_the_last_acknowledged_value_is_ok(self) -> None:
        writes = [w(1, 200), w(2, 200)]
        self.assertEqual(judge(writes, 2).verdict, Verdict.OK)
        self.assertEqual(judge([], None).verdict, Verdict.OK)

    def test_an_older_acknowledged_value_is_stale(self) -> None:
        self.assertEqual(judge([w(1, 200), w(2, 200)], 1).verdict, Verdict.STALE)

    def test_nothing_after_an_acknowledged_put_is_missing(self) -> None:
        self.assertEqual(judge([w(1, 200)], None).verdict, Verdict.MISSING)

    def test_a_value_after_an_acknowledged_delete_is_resurrected(self) -> None:
        self.assertEqual(judge([w(1, 200), w(None, 200)], 1).verdict, Verdict.RESURRECTED)
        self.assertEqual(judge([w(1, 200), w(None, 200)], None).verdict, Verdict.OK)

    def test_writes_of_unknown_outcome_after_the_last_ack_may_show(self) -> None:
        writes = [w(1, 200), w(None, 200), w(2, 503), w(None, None)]
        for value in (None, 2):
            self.assertEqual(judge(writes, value).verdict, Verdict.OK)

    def test_an_unknown_write_before_the_last_ack_showing_is_late(self) -> None:
        self.assertEqual(judge([w(1, 503), w(None, 200)], 1).verdict, Verdict.LATE)
        self.assertEqual(judge([w(1, None), w(2, 200)], 1).verdict, Verdict.LATE)

    def test_refused_and_unwritten_values(self) -> None:
        self.assertEqual(judge([w(1, 200), w(2, 404)], 2).verdict, Verdict.REFUSED_APPLIED)
        self.assertEqual(judge([w(1, 200)], 7).verdict, Verdict.PHANTOM)

    def test_a_read_only_sees_the_writes_answered_before_it(self) -> None:
        register = Register("k", [w(1, 200), w(2, 200)])
        read = RegisterRead("cache", register, 1, 1, call(200))
        self.assertEqual(read.judgement().verdict, Verdict.OK)


class PartitionTest(unittest.TestCase):
    episodes = merge([Window(10, 12), Window(11, 14), Window(20, 22)])

    def test_windows_merge(self) -> None:
        self.assertEqual([(e.start, e.end) for e in self.episodes], [(10, 14), (20, 22)])

    def test_only_the_other_server_in_the_same_episode_is_excused(self) -> None:
        write, read = call(200, 11, 11.1, inst=0), call(200, 13, 13.1, inst=1)
        self.assertTrue(partitioned(self.episodes, write, read))
        self.assertFalse(partitioned(self.episodes, write, call(200, 13, 13.1, inst=0)))
        self.assertFalse(partitioned(self.episodes, write, call(200, 15, 15.1, inst=1)))
        self.assertFalse(partitioned(self.episodes, call(200, 9, 9.1), read))

    def test_ended_sessions_read_at_the_end_are_never_excused(self) -> None:
        dead = DeadId("s", "delete", call(200, 11, 11.1, inst=0))
        obs = Observations(dead_reads=[DeadRead(dead, call(200, 12, 12.1, inst=1)),
                                       DeadRead(dead, call(200, 30, 30.1, inst=1), final=True),
                                       DeadRead(dead, call(404, 31, 31.1, inst=1), final=True)])
        self.assertEqual(len(checks.revived(obs, self.episodes, explained=True)), 1)
        self.assertEqual(len(checks.revived(obs, self.episodes, explained=False)), 1)


def grant(fence: int, granted: float, released: float | None, name: str = "l") -> Grant:
    g = Grant(name, fence, call(200, granted - 0.01, granted), 2.0, granted + 5.0)
    g.release_sent = released
    return g


class FigureTest(unittest.TestCase):
    def test_lost_counts_fields_once_and_resurrections_per_read(self) -> None:
        field = Register("u1/f1", [w(1, 200), w(2, 200)])
        stale = [RegisterRead("session", field, 2, 1, call(200, 30, 30.1, inst=i), final=True) for i in (0, 1)]
        dead = DeadId("s", "delete", call(200, 1, 1.1))
        revived = [DeadRead(dead, call(200, 5, 5.1)), DeadRead(dead, call(200, 30, 30.1), final=True)]
        found = checks.Findings(stale, [], ["j9"], revived, [], [], [], [], [], [], [])
        figures = {f.name: f.value for f in checks.required(found, checks.Timeline([], [], []), 0, 0)}
        self.assertEqual(figures["lost"], 2)  # one field (read stale on both servers) and one job
        self.assertEqual(figures["resurrected"], 2)


class LockTest(unittest.TestCase):
    def test_overlapping_holds_are_double_grants(self) -> None:
        self.assertEqual(len(checks.double_grants([grant(1, 1.0, 1.5), grant(2, 1.4, 1.6)])), 1)
        self.assertEqual(len(checks.double_grants([grant(1, 1.0, 1.5), grant(2, 1.5, 1.6)])), 0)
        self.assertEqual(len(checks.double_grants([grant(1, 1.0, 1.5), grant(2, 1.4, 1.6, "m")])), 0)

    def test_a_hold_ends_when_its_lease_does(self) -> None:
        # Asked for at 0.99 s with a 2 s lease: held until 2.99 s at the latest.
        self.assertEqual(len(checks.double_grants([grant(1, 1.0, None), grant(2, 3.0, 3.1)])), 0)
        self.assertEqual(len(checks.double_grants([grant(1, 1.0, None), grant(2, 2.9, 3.1)])), 1)

    def test_fences_must_increase_in_grant_order(self) -> None:
        self.assertEqual(len(checks.fence_inversions([grant(5, 1.0, 1.1), grant(5, 2.0, 2.1)])), 1)
        self.assertEqual(len(checks.fence_inversions([grant(5, 1.0, 1.1), grant(4, 2.0, 2.1)])), 1)
        self.assertEqual(len(checks.fence_inversions([grant(5, 1.0, 1.1), grant(6, 2.0, 2.1)])), 0)


class JobTest(unittest.TestCase):
    def processing(self, job: str, fetched: float, ack_status: int, outcome: str = "completed") -> Processing:
        return Processing(job, call(200, fetched - 0.01, fetched), 3.0, call(ack_status, fetched + 0.1, fetched + 0.2),
                          outcome)

    def test_duplicates_are_explained_by_a_failed_ack_or_an_outage(self) -> None:
        obs = Observations(processings=[
            self.processing("j1", 1.0, 200), self.processing("j1", 5.0, 200),  # unexplained
            self.processing("j2", 1.0, 503, "?"), self.processing("j2", 5.0, 200),  # ack failed
            self.processing("j3", 20.0, 200), self.processing("j3", 25.0, 200),  # lease in an outage
        ])
        episodes = [Window(21.0, 22.0)]
        self.assertEqual([r[0].job_id for r in checks.duplicates(obs, episodes, explained=False)], ["j1"])
        self.assertEqual(sorted(r[0].job_id for r in checks.duplicates(obs, episodes, explained=True)), ["j2", "j3"])

    def test_a_delayed_job_leased_before_its_delay_passed_ran_early(self) -> None:
        obs = Observations(
            enqueues=[Enqueue("j1", call(503, 10.0, 10.2), 2.0), Enqueue("j1", call(201, 10.5, 10.6), 2.0),
                      Enqueue("j2", call(201, 10.0, 10.1))],
            processings=[Processing("j1", call(200, 11.0, 11.9), 3.0), Processing("j1", call(200, 11.5, 12.1), 3.0),
                         Processing("j2", call(200, 10.1, 10.2), 3.0)])
        # The first attempt (sent at 10.0) may have been taken: j1 may run from 12.0 on; j2 has no delay.
        self.assertEqual([p.fetch.end for p in checks.early_jobs(obs)], [11.9])

    def test_an_acknowledged_job_never_processed_is_lost(self) -> None:
        obs = Observations(enqueues=[Enqueue("j1", call(201)), Enqueue("j2", call(201)), Enqueue("j3", call(503))],
                           processings=[self.processing("j1", 1.0, 200)])
        self.assertEqual(checks.lost_jobs(obs), ["j2"])


def record(name: str, *writes: tuple[str, int | None, float, int]) -> RecordRegister:
    """A record id's history: (op, HTTP status or None for a time-out, time sent, server)."""
    register = RecordRegister(name)
    for op, status, start, inst in writes:
        if op == "delete":
            register.writes.append(Write(None, call(status, start, start + 0.1, inst), "delete"))
            continue
        seq = register.next_value()
        register.carried[seq] = ({"kind": "a", "n": seq * 10, "v": seq, "at": seq} if op == "put"
                                 else {"n": seq * 10 + 1, "at": seq})
        register.writes.append(Write(seq, call(status, start, start + 0.1, inst), op))
    return register


def final(register: RecordRegister, data: dict[str, object] | None, inst: int = 0) -> RegisterRead:
    at = data.get("at") if data is not None else None
    value = None if data is None else at if isinstance(at, int) else -1
    return RegisterRead("record", register, len(register.writes), value, call(200, 100, 100.1, inst), True, data)


def record_findings(obs: Observations, episodes: list[Window] | None = None) -> checks.Findings:
    return checks.findings(obs, [], checks.Timeline([], episodes or [], []))


class RecordTest(unittest.TestCase):
    def test_a_record_without_its_last_acknowledged_put_is_lost(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("put", 200, 2, 1))
        for data in (None, {"kind": "a", "n": 10, "v": 1, "at": 1}):
            self.assertEqual(len(record_findings(Observations(reads=[final(r, data)])).lost_records), 1)
        f = record_findings(Observations(reads=[final(r, {"kind": "a", "n": 20, "v": 2, "at": 2})]))
        self.assertEqual((len(f.lost_records), len(f.torn_records), len(f.phantoms)), (0, 0, 0))

    def test_a_later_write_of_unknown_outcome_may_show_or_be_missing(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("put", 503, 2, 1), ("delete", None, 3, 0))
        for data in (None, {"kind": "a", "n": 20, "v": 2, "at": 2}, {"kind": "a", "n": 10, "v": 1, "at": 1}):
            self.assertEqual(record_findings(Observations(reads=[final(r, data)])).lost_records, [])

    def test_a_delete_of_unknown_outcome_before_the_last_put_may_land_late(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("delete", 503, 2, 1), ("put", 200, 3, 0))
        read = final(r, None)
        self.assertEqual(record_findings(Observations(reads=[read])).lost_records, [])
        self.assertEqual(read.judgement().verdict, Verdict.LATE)

    def test_a_patch_over_a_put_and_the_patch_lost(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("patch", 200, 2, 1))
        patched = {"kind": "a", "n": 21, "v": 1, "at": 2}
        self.assertEqual(record_findings(Observations(reads=[final(r, patched)])).lost_records, [])
        unpatched = {"kind": "a", "n": 10, "v": 1, "at": 1}
        self.assertEqual(len(record_findings(Observations(reads=[final(r, unpatched)])).lost_records), 1)

    def test_a_patch_refused_showing_is_refused_applied(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("patch", 404, 2, 1))
        f = record_findings(Observations(reads=[final(r, {"kind": "a", "n": 21, "v": 1, "at": 2})]))
        self.assertEqual(len(f.refused_applied), 1)

    def test_deleted_records_must_not_come_back(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("delete", 204, 2, 1))
        f = record_findings(Observations(reads=[final(r, {"kind": "a", "n": 10, "v": 1, "at": 1}, inst=1)]))
        self.assertEqual(len(f.revived_records), 1)
        self.assertEqual(record_findings(Observations(reads=[final(r, None)])).revived_records, [])

    def test_a_put_after_a_delete_on_the_other_server_in_the_same_outage_is_kept(self) -> None:
        # By stamp the put is later: the delete must not win, and the record must be there.
        r = record("w0-0", ("put", 200, 1, 0), ("delete", 204, 11, 0), ("put", 200, 12, 1))
        episodes = [Window(10, 20)]
        f = record_findings(Observations(reads=[final(r, {"kind": "a", "n": 20, "v": 2, "at": 2})]), episodes)
        self.assertEqual((f.lost_records, f.revived_records), ([], []))
        self.assertEqual(len(record_findings(Observations(reads=[final(r, None)]), episodes).lost_records), 1)

    def test_an_outage_patch_after_the_other_servers_delete_may_be_dropped(self) -> None:
        # A patched its outage copy after B deleted the record in the same outage: by stamp the
        # delete is first, and the patch of a deleted record is dropped.
        r = record("w0-0", ("put", 200, 11, 0), ("delete", 204, 12, 1), ("patch", 200, 13, 0))
        obs = Observations(reads=[final(r, None)], records=[r])
        self.assertEqual(record_findings(obs, [Window(10, 20)]).lost_records, [])
        self.assertTrue(r.writes[2].conditional)
        # Outside an outage, or with the delete on the same server, the patch must hold.
        self.assertEqual(len(record_findings(obs, [Window(30, 40)]).lost_records), 1)
        same = record("w0-1", ("put", 200, 11, 0), ("delete", 204, 12, 0), ("patch", 200, 13, 0))
        obs = Observations(reads=[final(same, None)], records=[same])
        self.assertEqual(len(record_findings(obs, [Window(10, 20)]).lost_records), 1)

    def test_fields_of_different_writes_are_torn(self) -> None:
        r = record("w0-0", ("put", 200, 1, 0), ("put", 200, 2, 0), ("patch", 200, 3, 1))
        ok = {"kind": "a", "n": 31, "v": 2, "at": 3}
        self.assertEqual(record_findings(Observations(reads=[final(r, ok)])).torn_records, [])
        for torn in ({"kind": "a", "n": 20, "v": 2, "at": 3}, {"kind": "b", "n": 31, "v": 2, "at": 3},
                     {"kind": "a", "n": 31, "v": 3, "at": 3}, {"kind": "a", "n": 31, "v": 2, "at": 3, "x": 1}):
            self.assertEqual(len(record_findings(Observations(reads=[final(r, torn)])).torn_records), 1, torn)
        figures = {f.name: f.value for f in checks.required(
            record_findings(Observations(reads=[final(r, {"kind": "b", "n": 31, "v": 2, "at": 3})])),
            checks.Timeline([], [], []), 0, 0)}
        self.assertEqual(figures["phantom values"], 1)

    def test_counters_lie_between_acknowledged_and_acknowledged_plus_unknown(self) -> None:
        c = CounterRecord("cnt0-0", [call(200), call(200), call(503), call(None), call(404)])
        for value, off in ((None, True), (1, True), (2, False), (4, False), (5, True)):
            c.final = {1: value}
            self.assertEqual(len(checks.counters_off(Observations(counters={c.rid: c}))), int(off), value)

    def test_index_queries_must_equal_the_scan(self) -> None:
        scan = RecordQuery(0, "scan", {}, ["r1", "r2", "r3", "c"], {
            "r1": {"kind": "a", "n": 5}, "r2": {"kind": "b", "n": 300}, "r3": {"kind": "a", "n": 950}, "c": {"c": 3}},
            complete=True)
        good = [RecordQuery(0, "kind a", {"where": {"kind": "a"}}, ["r1", "r3"], complete=True),
                RecordQuery(0, "mid", {"range": {"field": "n", "min": 199.5, "max": 600.5}}, ["r2"], complete=True),
                RecordQuery(0, "top", {"range": {"field": "n", "min": 899.5}}, ["r3"], complete=True)]
        obs = Observations(record_scans={0: scan}, record_queries=good, record_present={0: {"r1", "r2", "r3", "c"}})
        self.assertEqual(checks.index_mismatches(obs), [])
        obs.record_queries = [RecordQuery(0, "kind a", {"where": {"kind": "a"}}, ["r1"], complete=True),
                              RecordQuery(0, "kind b", {"where": {"kind": "b"}}, ["r2", "r1"], complete=True),
                              RecordQuery(0, "low", {"range": {"field": "n", "max": 49.5}}, ["r1", "r1"],
                                          complete=True),
                              RecordQuery(0, "kind c", {"where": {"kind": "c"}}, ["r1"], complete=False)]
        found = checks.index_mismatches(obs)
        self.assertEqual([(m.query.label, m.missing, m.extra, m.repeated) for m in found],
                         [("kind a", ["r3"], [], []), ("kind b", [], ["r1"], []), ("low", [], [], ["r1"])])

    def test_the_scan_must_list_what_reads_by_id_find(self) -> None:
        scan = RecordQuery(1, "scan", {}, ["r1", "zz"], {"r1": {}, "zz": {}}, complete=True)
        obs = Observations(record_scans={1: scan}, record_present={1: {"r1", "r2"}})
        found = checks.index_mismatches(obs)
        self.assertEqual([(m.missing, m.extra) for m in found], [(["r2"], ["zz"])])
        obs.record_get_failed.add(1)
        self.assertEqual(checks.index_mismatches(obs), [])


class SpoolTest(unittest.TestCase):
    def test_the_window_runs_until_5_s_after_the_server_was_back_cut_by_the_next_fault(self) -> None:
        first = Fault("kill", 3.0, 6.0, back=[6.5, 7.0])
        self.assertEqual(spool.recovery_window(first, 1, [first], 100.0), Window(6.0, 12.0))
        later = Fault("stop", 11.0, 13.0)
        self.assertEqual(spool.recovery_window(first, 1, [first, later], 100.0), Window(6.0, 11.0))
        self.assertEqual(spool.recovery_window(Fault("kill", 3.0, 6.0, back=[None, None]), 0, [], 50.0),
                         Window(6.0, 50.0))

    def test_only_counted_requests_to_the_spool_server_in_the_window(self) -> None:
        def c(cap: str, op: str, inst: int, start: float, seconds: float) -> Call:
            return Call(cap, op, inst, start, start + seconds, 200)

        calls = [c("session", "get", 1, 7.0, 0.01), c("cache", "put", 1, 8.0, 0.02),
                 c("session", "get", 0, 7.0, 0.5),  # the other server
                 c("session", "get", 1, 5.0, 0.5), c("session", "get", 1, 13.0, 0.5),  # outside
                 c("job", "fetch", 1, 7.0, 1.0), c("lock", "acquire", 1, 7.0, 0.2),  # wait by request
                 c("lock", "release", 1, 7.0, 0.03), c("spool", "stats_drain", 1, 7.0, 0.5)]
        rows = spool.recovery_latency(calls, 1, Window(6.0, 12.0))
        self.assertEqual([round(v, 3) for v in sorted(rows["all"])], [0.01, 0.02, 0.03])
        self.assertEqual([round(v, 3) for v in rows["lock"]], [0.03])
        self.assertEqual(rows["job"], [])


if __name__ == "__main__":
    unittest.main()
