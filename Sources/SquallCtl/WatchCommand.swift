import ArgumentParser
import Foundation
import SquallCore

/// `squallctl watch BATCH`: a live progress bar until the batch is complete.
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Show a batch's progress live until every job is settled.",
        discussion: """
            On a terminal: one progress bar redrawn in place (jobs settled/total, bytes, rate, ETA, \
            failures). Otherwise (a pipe, a log): one plain line every --every seconds and a last one \
            when the batch is complete. Exits 0 once complete, 64 for an unknown batch.
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "The batch name.")
    var batch: String

    @Option(name: .customLong("interval"), help: "Seconds between status polls, default 1.")
    var interval: Double = 1

    @Option(name: .customLong("every"), help: "Seconds between plain lines when not on a terminal, default 10.")
    var every: Double = 10

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval \(interval) must be above 0") }
        guard every >= 0 else { throw ValidationError("--every \(every) must be ≥ 0") }
    }

    func run() async throws {
        try await RepositoryAccess.run(common, command: "watch") { repository in
            let width = Self.terminalWidth()
            let view = BatchWatchView(terminalWidth: width)
            var lastPlain: ContinuousClock.Instant?
            var lastLine = ""
            _ = try await BatchFollowing.follow(batch, repository: repository, interval: interval, timeout: nil) {
                snapshot in
                let line = view.render(snapshot)
                if width != nil {
                    Self.write("\r" + line + "\u{1B}[K")
                    return
                }
                let now = ContinuousClock.now
                let due = lastPlain.map { now - $0 >= .milliseconds(Int64(every * 1000)) } ?? true
                if due || (snapshot.isComplete && line != lastLine) {
                    Self.write(line + "\n")
                    lastPlain = now
                    lastLine = line
                }
            }
            if width != nil { Self.write("\n") }
        }
    }

    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// The terminal's width when standard output is one, else nil (plain lines).
    static func terminalWidth() -> Int? {
        guard isatty(STDOUT_FILENO) == 1 else { return nil }
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }
}
