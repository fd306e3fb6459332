/// What `squallctl watch` prints: one redrawn progress-bar line on a terminal, plain periodic lines otherwise.
///
/// On a terminal the caller writes `"\r" + line + "\u{1B}[K"` so the line redraws in place; in a
/// log (CI, `kubectl logs`) each snapshot is one self-contained line, because a carriage return
/// there makes a mess. Rates and the ETA are averages over the whole watch: steadier than
/// instantaneous ones, and computable from one snapshot.
public struct BatchWatchView: Sendable {
    /// The terminal's width in columns, or nil when output is not a terminal.
    public var terminalWidth: Int?

    public init(terminalWidth: Int?) {
        self.terminalWidth = terminalWidth
    }

    public func render(_ snapshot: BatchSnapshot) -> String {
        guard let width = terminalWidth else { return plainLine(snapshot) }
        return barLine(snapshot, width: max(width, 1))
    }

    private func barLine(_ s: BatchSnapshot, width: Int) -> String {
        var stats =
            " \(s.settled)/\(s.total) jobs  \(bytesText(s))  \(rateText(s))  ETA \(etaText(s))  \(s.failed) failed"
        if s.cancelled > 0 { stats += "  \(s.cancelled) cancelled" }
        let prefix = "\(s.batch) "
        let barWidth = width - prefix.count - stats.count - 2
        if barWidth >= 10 {
            let filled = s.total == 0 ? barWidth : barWidth * s.settled / s.total
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled)
            return prefix + "[" + bar + "]" + stats
        }
        let line = String(stats.dropFirst())
        return line.count <= width ? line : String(line.prefix(width - 1)) + "…"
    }

    private func plainLine(_ s: BatchSnapshot) -> String {
        var parts = [
            "\(s.batch): \(s.settled)/\(s.total) settled (done \(s.done), skipped \(s.skipped), failed \(s.failed), cancelled \(s.cancelled))",
            "running \(s.running)", "queued \(s.queued)", "pending \(s.pending)",
        ]
        parts.append(bytesText(s))
        parts.append(rateText(s))
        parts.append("ETA \(etaText(s))")
        parts.append("elapsed \(Self.duration(seconds: Self.seconds(s.elapsed)))")
        return parts.joined(separator: ", ")
    }

    private func bytesText(_ s: BatchSnapshot) -> String {
        guard let total = s.bytesTotal else { return Self.bytes(s.bytesDone) }
        return "\(Self.bytes(s.bytesDone))/\(Self.bytes(total))"
    }

    private func rateText(_ s: BatchSnapshot) -> String {
        let seconds = Self.seconds(s.elapsed)
        guard seconds > 0 else { return "--/s" }
        return "\(Self.bytes(Int64(Double(s.bytesDone) / seconds)))/s"
    }

    private func etaText(_ s: BatchSnapshot) -> String {
        if s.isComplete { return "0s" }
        let seconds = Self.seconds(s.elapsed)
        guard seconds > 0 else { return "--" }
        if let total = s.bytesTotal, total > 0, s.bytesDone > 0 {
            let remaining = Double(max(total - s.bytesDone, 0)) / (Double(s.bytesDone) / seconds)
            return Self.duration(seconds: remaining)
        }
        guard s.settled > 0 else { return "--" }
        return Self.duration(seconds: Double(s.total - s.settled) * seconds / Double(s.settled))
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Binary units, one decimal above bytes: `512 B`, `1.5 KiB`, `3.2 GiB`.
    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(count) B" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// `45s`, `3m07s`, `2h05m`: short enough for a status line, precise enough to plan by.
    static func duration(seconds: Double) -> String {
        let total = Int(seconds.rounded(.up))
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m" + twoDigits(total % 60) + "s" }
        return "\(total / 3600)h" + twoDigits(total % 3600 / 60) + "m"
    }

    private static func twoDigits(_ value: Int) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }
}
