import ArgumentParser
import Dispatch
import Foundation
import Logging
import SquallCore

/// `squallctl cp SOURCE DEST`: one transfer with the engine the Consumer uses, to debug a failing target
/// or to measure the engine alone.
struct CopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cp",
        abstract: "Copy one source to one destination with the transfer engine (as a Consumer would).",
        discussion: """
            SOURCE is http(s)://…, s3://bucket/key or a local path (file://… too); DEST is s3://bucket/key \
            or a local path. The copy streams in parts (a single PUT below --part-size), retries, verifies \
            the SHA-256, resumes an upload a killed run left behind, and is skipped when DEST already holds \
            the same bytes. Progress goes to standard error (a bar on a terminal, a line every \
            --progress-interval otherwise); the one-line summary goes to standard output.

            Exit status: \(CopyExitStatus.helpText)
            """
    )

    @Argument(help: "http(s)://…, s3://bucket/key, or a local path.")
    var source: String

    @Argument(help: "s3://bucket/key, or a local path.")
    var destination: String

    @Option(help: "Bytes per part: 5M to 5G, suffixes binary (8M = 8 MiB). Default 8M.")
    var partSize: String?

    @Option(help: "Parts in flight at once (1-64). Default 8.")
    var concurrency: Int?

    @Option(
        name: .customLong("sha256"),
        help: "SHA-256 (64 hex digits) the source must have; checked before the upload completes.")
    var sha256: String?

    @Option(help: "Attempts per request on a retryable error, the first included (1-100). Default 5.")
    var maxAttempts: Int?

    @Flag(help: "Fail rather than overwrite an existing DEST object (If-None-Match: *).")
    var noOverwrite = false

    @Option(help: "Seconds between progress lines when standard error is not a terminal. Default 5.")
    var progressInterval: Double?

    @Flag(name: .shortAndLong, help: "No progress output, only the summary or the error.")
    var quiet = false

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let terminalWidth = Terminal.width(of: STDERR_FILENO)
        let configuration: SquallConfiguration
        let invocation: CopyInvocation
        do {
            configuration = try common.resolve(
                environment: ProcessInfo.processInfo.environment, defaultNodeName: ServiceLauncher.defaultNodeName())
            let interval: Duration? =
                if let progressInterval {
                    progressInterval.isFinite && progressInterval > 0
                        ? .milliseconds(Int64(progressInterval * 1000)) : .zero
                } else {
                    terminalWidth == nil ? .seconds(5) : .milliseconds(250)
                }
            invocation = try CopyInvocation(
                source: source, destination: destination, partSize: partSize, concurrency: concurrency,
                sha256: sha256, maxAttempts: maxAttempts, allowPrivateSources: configuration.allowPrivateSources,
                createOnly: noOverwrite, progressInterval: interval)
            if case .file(let path) = invocation.request.source {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue
                else {
                    throw ConfigurationError(setting: "SOURCE", reason: "\(path): no such file")
                }
            }
        } catch {
            Self.printError("squallctl cp: \(error)")
            throw ExitCode(CopyExitStatus.usage.rawValue)
        }
        SquallLogHandler.bootstrap(format: configuration.logFormat, level: .warning)

        let engine = TransferEngine(
            s3: configuration.s3, options: invocation.options, logger: Logger(label: "squallctl.cp"))
        let printer = ProgressPrinter(
            view: CopyProgressView(terminalWidth: quiet ? nil : terminalWidth), quiet: quiet)
        let request = invocation.request
        let task = Task { () -> Result<TransferReport, TransferError> in
            do throws(TransferError) {
                return .success(try await engine.transfer(request, events: printer.show))
            } catch {
                return .failure(error)
            }
        }
        // Ctrl-C or a SIGTERM cancels the transfer, which aborts its multipart upload before we exit.
        let interrupts = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { task.cancel() }
            source.resume()
            return source
        }
        let result = await task.value
        interrupts.forEach { $0.cancel() }

        switch result {
        case .success(let report):
            printer.finish()
            print(CopyProgressView.summary(report, elapsed: printer.elapsed))
        case .failure(let error):
            printer.finish()
            Self.printError("squallctl cp: \(CopyProgressView.failure(error, elapsed: printer.elapsed))")
            throw ExitCode(CopyExitStatus(error).rawValue)
        }
    }

    static func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

/// Writes the engine's events to standard error from whichever thread the engine calls on.
private final class ProgressPrinter: @unchecked Sendable {
    private let view: CopyProgressView
    private let quiet: Bool
    private let started = ContinuousClock.now
    private let lock = NSLock()
    /// Whether a bar is drawn on the current terminal line (so the next full line starts on a new one).
    private var barShown = false

    init(view: CopyProgressView, quiet: Bool) {
        self.view = view
        self.quiet = quiet
    }

    var elapsed: Duration { ContinuousClock.now - started }

    func show(_ event: TransferEvent) {
        guard !quiet else { return }
        lock.lock()
        defer { lock.unlock() }
        switch event {
        case .progress(let progress):
            let line = view.render(progress, elapsed: elapsed)
            if view.terminalWidth != nil {
                write("\r" + line + "\u{1B}[K")
                barShown = true
            } else {
                write(line + "\n")
            }
        case .retrying(let reason, let attempt):
            write((barShown ? "\n" : "") + view.retryLine(reason: reason, attempt: attempt) + "\n")
            barShown = false
        }
    }

    /// Ends a drawn bar's line so the summary or the error starts on its own.
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if barShown { write("\n") }
        barShown = false
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// The terminal behind a file descriptor.
enum Terminal {
    /// Its width in columns, or nil when it is not a terminal (a pipe, a file, CI's log).
    static func width(of descriptor: Int32) -> Int? {
        guard isatty(descriptor) == 1 else { return nil }
        var size = winsize()
        if ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 {
            return Int(size.ws_col)
        }
        return 80
    }
}
