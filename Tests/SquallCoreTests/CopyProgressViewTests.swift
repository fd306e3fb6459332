import Testing

@testable import SquallCore

@Suite("squallctl cp: progress and summary lines")
struct CopyProgressViewTests {
    static let midway = TransferProgress(
        bytesDone: 300 << 20, bytesTotal: 1 << 30, bytesPerSecond: Double(50 << 20))

    @Test("a terminal gets one bar line that fills its width exactly")
    func barLine() {
        let line = CopyProgressView(terminalWidth: 80).render(Self.midway, elapsed: .seconds(6))
        #expect(line == "[#########------------------------]  29%  300.0 MiB/1.0 GiB  50.0 MiB/s  ETA 15s")
        #expect(line.count == 80)
    }

    @Test("a narrow terminal drops the bar, then truncates, never wrapping")
    func narrow() {
        #expect(
            CopyProgressView(terminalWidth: 50).render(Self.midway, elapsed: .seconds(6))
                == " 29%  300.0 MiB/1.0 GiB  50.0 MiB/s  ETA 15s")
        let cut = CopyProgressView(terminalWidth: 20).render(Self.midway, elapsed: .seconds(6))
        #expect(cut == " 29%  300.0 MiB/1.0…")
        #expect(cut.count == 20)
    }

    @Test("without a terminal each event is one self-contained line")
    func plainLine() {
        #expect(
            CopyProgressView(terminalWidth: nil).render(Self.midway, elapsed: .seconds(6))
                == "copied 300.0 MiB/1.0 GiB (29%), 50.0 MiB/s, ETA 15s, elapsed 6s")
    }

    @Test("a source of unknown length shows bytes, rate and elapsed time, no bar and no ETA")
    func unknownLength() {
        let progress = TransferProgress(bytesDone: 3 << 20, bytesTotal: nil, bytesPerSecond: Double(1 << 20))
        #expect(
            CopyProgressView(terminalWidth: 80).render(progress, elapsed: .seconds(3)) == "3.0 MiB  1.0 MiB/s  3s")
        #expect(
            CopyProgressView(terminalWidth: nil).render(progress, elapsed: .seconds(3))
                == "copied 3.0 MiB, 1.0 MiB/s, elapsed 3s")
    }

    @Test("before any bytes have moved, rate and ETA are unknown")
    func atStart() {
        let progress = TransferProgress(bytesDone: 0, bytesTotal: 10 << 20, bytesPerSecond: 0)
        #expect(
            CopyProgressView(terminalWidth: nil).render(progress, elapsed: .zero)
                == "copied 0 B/10.0 MiB (0%), --/s, ETA --, elapsed 0s")
    }

    @Test("a finished transfer shows a full bar and 100%")
    func finished() {
        let progress = TransferProgress(bytesDone: 10 << 20, bytesTotal: 10 << 20, bytesPerSecond: Double(5 << 20))
        let line = CopyProgressView(terminalWidth: 60).render(progress, elapsed: .seconds(2))
        #expect(line == "[###############] 100%  10.0 MiB/10.0 MiB  5.0 MiB/s  ETA 0s")
    }

    @Test("the summary of a copy gives exact bytes, time, rate, SHA-256, bytes fetched and ETag")
    func doneSummary() {
        let report = TransferReport(
            outcome: .done, bytes: 104_857_600, etag: "\"abc-13\"", sha256: String(repeating: "f", count: 64),
            bytesFetched: 104_857_600)
        #expect(
            CopyProgressView.summary(report, elapsed: .milliseconds(2500))
                == "done: 104857600 bytes (100.0 MiB) in 2.50s, 40.0 MiB/s, sha256 \(String(repeating: "f", count: 64)), "
                + "fetched 104857600 bytes, etag \"abc-13\"")
    }

    @Test("the summary of a skip says nothing was fetched and gives no rate")
    func skippedSummary() {
        let report = TransferReport(
            outcome: .skipped, bytes: 2048, etag: nil, sha256: String(repeating: "0", count: 64), bytesFetched: 0)
        #expect(
            CopyProgressView.summary(report, elapsed: .milliseconds(40))
                == "skipped: 2048 bytes (2.0 KiB) in 0.04s, sha256 \(String(repeating: "0", count: 64)), fetched 0 bytes"
        )
    }

    @Test("a failure line leads with the stable code, then the message")
    func failure() {
        let error = TransferError(code: "http_404", message: "http://h/x: 404 Not Found", isPermanent: true)
        #expect(
            CopyProgressView.failure(error, elapsed: .seconds(75))
                == "failed after 1m15s: http_404: http://h/x: 404 Not Found")
    }

    @Test(
        "elapsed times keep hundredths under 10 s and tenths under a minute",
        arguments: [(0.421, "0.42s"), (5.126, "5.13s"), (42.04, "42.0s"), (187.0, "3m07s")])
    func elapsed(seconds: Double, text: String) {
        #expect(CopyProgressView.elapsedText(seconds: seconds) == text)
    }

    @Test("a retry is announced with its reason and attempt")
    func retry() {
        #expect(
            CopyProgressView(terminalWidth: nil).retryLine(reason: "http_503", attempt: 2)
                == "retrying after http_503 (attempt 2)")
    }
}
