import Testing

@testable import SquallCore

@Suite("squallctl watch and wait")
struct BatchWatchViewTests {
    static let midway = BatchSnapshot(
        batch: "demo", pending: 100, queued: 40, running: 10, done: 120, skipped: 20, failed: 8, cancelled: 2,
        bytesDone: 3 * 1024 * 1024 * 1024, bytesTotal: 6 * 1024 * 1024 * 1024, elapsed: .seconds(60))

    @Test("a terminal gets one bar line that fills its width exactly")
    func barLine() {
        let line = BatchWatchView(terminalWidth: 100).render(Self.midway)
        #expect(
            line
                == "demo [########---------]"
                + " 150/300 jobs  3.0 GiB/6.0 GiB  51.2 MiB/s  ETA 1m00s  8 failed  2 cancelled")
        #expect(line.count == 100)
    }

    @Test("a narrow terminal drops the bar, then truncates, never wrapping")
    func narrow() {
        let noBar = BatchWatchView(terminalWidth: 80).render(Self.midway)
        #expect(noBar == "150/300 jobs  3.0 GiB/6.0 GiB  51.2 MiB/s  ETA 1m00s  8 failed  2 cancelled")
        let cut = BatchWatchView(terminalWidth: 30).render(Self.midway)
        #expect(cut == "150/300 jobs  3.0 GiB/6.0 GiB…")
        #expect(cut.count == 30)
    }

    @Test("without a terminal each snapshot is one self-contained line")
    func plainLine() {
        #expect(
            BatchWatchView(terminalWidth: nil).render(Self.midway)
                == "demo: 150/300 settled (done 120, skipped 20, failed 8, cancelled 2), running 10, queued 40, "
                + "pending 100, 3.0 GiB/6.0 GiB, 51.2 MiB/s, ETA 1m00s, elapsed 1m00s")
    }

    @Test("before any time has passed, rate and ETA are unknown")
    func atStart() {
        let start = BatchSnapshot(batch: "b", pending: 300)
        #expect(
            BatchWatchView(terminalWidth: nil).render(start)
                == "b: 0/300 settled (done 0, skipped 0, failed 0, cancelled 0), running 0, queued 0, pending 300, "
                + "0 B, --/s, ETA --, elapsed 0s")
    }

    @Test("with an unknown byte total, the ETA comes from the job rate")
    func etaFromJobs() {
        let snapshot = BatchSnapshot(batch: "b", pending: 30, done: 10, bytesDone: 1536, elapsed: .seconds(100))
        #expect(
            BatchWatchView(terminalWidth: 70).render(snapshot)
                == "b [####-------------]" + " 10/40 jobs  1.5 KiB  15 B/s  ETA 5m00s  0 failed")
    }

    @Test("a complete batch shows a full bar and no time left")
    func complete() {
        let snapshot = BatchSnapshot(
            batch: "b", done: 5, bytesDone: 5_000_000, bytesTotal: 5_000_000, elapsed: .milliseconds(7200))
        #expect(
            BatchWatchView(terminalWidth: 80).render(snapshot)
                == "b [###################]" + " 5/5 jobs  4.8 MiB/4.8 MiB  678.2 KiB/s  ETA 0s  0 failed")
    }

    @Test("durations read as seconds, minutes or hours")
    func durations() {
        #expect(BatchWatchView.duration(seconds: 0.2) == "1s")
        #expect(BatchWatchView.duration(seconds: 59) == "59s")
        #expect(BatchWatchView.duration(seconds: 187) == "3m07s")
        #expect(BatchWatchView.duration(seconds: 7500) == "2h05m")
        #expect(BatchWatchView.bytes(1023) == "1023 B")
        #expect(BatchWatchView.bytes(1024 * 1024 * 1024 * 1024 * 3 / 2) == "1.5 TiB")
    }

    // MARK: wait

    @Test("wait exits 0 when every job is done or skipped")
    func waitSucceeded() {
        let verdict = WaitVerdict(BatchSnapshot(batch: "b", done: 3, skipped: 2), timeoutPassed: false)
        #expect(verdict == .succeeded)
        #expect(verdict.exitCode == 0)
    }

    @Test("wait exits 1 when the batch is complete and any job failed or was cancelled")
    func waitFailed() {
        #expect(WaitVerdict(BatchSnapshot(batch: "b", done: 3, failed: 1), timeoutPassed: false).exitCode == 1)
        #expect(WaitVerdict(BatchSnapshot(batch: "b", done: 3, cancelled: 1), timeoutPassed: true).exitCode == 1)
    }

    @Test("wait keeps waiting after a first failure until the batch is complete")
    func waitAfterFailure() {
        let verdict = WaitVerdict(BatchSnapshot(batch: "b", running: 1, failed: 1), timeoutPassed: false)
        #expect(verdict == .keepWaiting)
        #expect(verdict.exitCode == nil)
    }

    @Test("wait exits 2 on timeout while jobs are unsettled")
    func waitTimedOut() {
        let verdict = WaitVerdict(BatchSnapshot(batch: "b", queued: 1, done: 9), timeoutPassed: true)
        #expect(verdict == .timedOut)
        #expect(verdict.exitCode == 2)
    }
}
