/// What `squallctl cp` prints while and after it copies: a redrawn bar on a terminal, plain periodic
/// lines in a log, and one summary line at the end.
///
/// Like ``BatchWatchView`` (whose byte and duration formats it shares), the caller writes
/// `"\r" + line + "\u{1B}[K"` on a terminal so the bar redraws in place, and one line per event
/// otherwise, because a carriage return in CI logs or `kubectl logs` makes a mess.
public struct CopyProgressView: Sendable {
    /// The terminal's width in columns, or nil when output is not a terminal.
    public var terminalWidth: Int?

    public init(terminalWidth: Int?) {
        self.terminalWidth = terminalWidth
    }

    /// One progress line: `elapsed` is the time since the copy started.
    public func render(_ progress: TransferProgress, elapsed: Duration) -> String {
        guard let width = terminalWidth else { return plainLine(progress, elapsed: elapsed) }
        return barLine(progress, elapsed: elapsed, width: max(width, 1))
    }

    /// A request failed and will be tried again: said on its own line, so a flaky source is visible.
    public func retryLine(reason: String, attempt: Int) -> String {
        "retrying after \(reason) (attempt \(attempt))"
    }

    /// The line printed on success: outcome, exact and readable size, time, rate, SHA-256, bytes fetched.
    ///
    /// `done: 104857600 bytes (100.0 MiB) in 2.51s, 39.8 MiB/s, sha256 9f86…, fetched 104857600 bytes`
    public static func summary(_ report: TransferReport, elapsed: Duration) -> String {
        let seconds = BatchWatchView.seconds(elapsed)
        var parts = ["\(report.outcome.rawValue): \(report.bytes) bytes (\(BatchWatchView.bytes(report.bytes)))"]
        parts[0] += " in \(elapsedText(seconds: seconds))"
        if report.outcome == .done {
            parts.append(rateText(bytes: report.bytesFetched, seconds: seconds))
        }
        parts.append("sha256 \(report.sha256)")
        parts.append("fetched \(report.bytesFetched) bytes")
        if let etag = report.etag { parts.append("etag \(etag)") }
        return parts.joined(separator: ", ")
    }

    /// The line printed on failure: the stable code first, for grep, then the operator's message.
    public static func failure(_ error: TransferError, elapsed: Duration) -> String {
        "failed after \(elapsedText(seconds: BatchWatchView.seconds(elapsed))): \(error.code): \(error.message)"
    }

    private func barLine(_ p: TransferProgress, elapsed: Duration, width: Int) -> String {
        var stats = "  \(Self.sizeText(p))  \(Self.rateText(bytesPerSecond: p.bytesPerSecond))"
        if p.bytesTotal != nil {
            stats += "  ETA \(Self.etaText(p))"
        } else {
            stats += "  \(BatchWatchView.duration(seconds: BatchWatchView.seconds(elapsed)))"
        }
        guard let total = p.bytesTotal else {
            // No total, no bar: the size and rate still move.
            let line = String(stats.dropFirst(2))
            return line.count <= width ? line : String(line.prefix(width - 1)) + "…"
        }
        let percent = Self.percent(done: p.bytesDone, total: total)
        let percentText = String(repeating: " ", count: max(0, 4 - "\(percent)%".count)) + "\(percent)%"
        let barWidth = width - percentText.count - stats.count - 3
        if barWidth >= 10 {
            let filled =
                total <= 0 ? barWidth : Int(Double(barWidth) * min(1, Double(p.bytesDone) / Double(total)))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled)
            return "[" + bar + "] " + percentText + stats
        }
        let line = percentText + stats
        return line.count <= width ? line : String(line.prefix(width - 1)) + "…"
    }

    private func plainLine(_ p: TransferProgress, elapsed: Duration) -> String {
        var parts = ["copied \(Self.sizeText(p))"]
        if let total = p.bytesTotal {
            parts[0] += " (\(Self.percent(done: p.bytesDone, total: total))%)"
        }
        parts.append(Self.rateText(bytesPerSecond: p.bytesPerSecond))
        if p.bytesTotal != nil { parts.append("ETA \(Self.etaText(p))") }
        parts.append("elapsed \(BatchWatchView.duration(seconds: BatchWatchView.seconds(elapsed)))")
        return parts.joined(separator: ", ")
    }

    private static func sizeText(_ p: TransferProgress) -> String {
        guard let total = p.bytesTotal else { return BatchWatchView.bytes(p.bytesDone) }
        return "\(BatchWatchView.bytes(p.bytesDone))/\(BatchWatchView.bytes(total))"
    }

    /// Whole percent, rounded down so 100% means finished.
    static func percent(done: Int64, total: Int64) -> Int {
        guard total > 0 else { return 100 }
        return Int(min(100, max(0, done * 100 / total)))
    }

    static func rateText(bytesPerSecond: Double) -> String {
        guard bytesPerSecond.isFinite, bytesPerSecond > 0 else { return "--/s" }
        return "\(BatchWatchView.bytes(Int64(bytesPerSecond)))/s"
    }

    static func rateText(bytes: Int64, seconds: Double) -> String {
        guard seconds > 0 else { return "--/s" }
        return rateText(bytesPerSecond: Double(bytes) / seconds)
    }

    private static func etaText(_ p: TransferProgress) -> String {
        guard let total = p.bytesTotal else { return "--" }
        if p.bytesDone >= total { return "0s" }
        guard p.bytesPerSecond.isFinite, p.bytesPerSecond > 0 else { return "--" }
        return BatchWatchView.duration(seconds: Double(total - p.bytesDone) / p.bytesPerSecond)
    }

    /// `0.42s`, `5.13s`, `42.0s`, then ``BatchWatchView``'s `3m07s`: a single copy is often short, and
    /// its time is what an operator compares.
    static func elapsedText(seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--" }
        if seconds < 10 {
            let hundredths = Int((seconds * 100).rounded())
            return "\(hundredths / 100).\(twoDigits(hundredths % 100))s"
        }
        if seconds < 60 {
            let tenths = Int((seconds * 10).rounded())
            return "\(tenths / 10).\(tenths % 10)s"
        }
        return BatchWatchView.duration(seconds: seconds)
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}
