import CCurl
import Foundation

/// libcurl's multi interface, driven by one thread of its own: every request of every transfer of
/// one engine runs here, sharing a connection cache, and no libcurl call ever runs on Swift's
/// cooperative pool.
///
/// Callers hand requests over with ``perform(_:)`` (an `async` call bridged with a continuation);
/// the thread adds them, runs `curl_multi_perform`, completes what finished, fires the progress
/// tickers that are due, and sleeps in `curl_multi_poll` until a socket is ready or
/// `curl_multi_wakeup` says a command is waiting. Cancelling the calling task removes its request
/// at once.
///
/// It is also a `TaskExecutor`: a task that prefers it (the Consumer's jobs) runs its Swift code
/// on this thread between libcurl's turns. A request that finishes then resumes its caller here,
/// with no hand-off to the cooperative pool and back, which for a small object was most of the
/// Consumer's context switches. Such code must not block: it shares the thread with every transfer.
final class CurlMulti: TaskExecutor, @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let lock = NSLock()
    // Guarded by `lock`: commands and Swift jobs for the thread, and the thread's identity.
    private var commands: [Command] = []
    private var jobs: [UnownedJob] = []
    private var loopThread: pthread_t?
    private var tickers: [ObjectIdentifier: ProgressTicker] = [:]
    private var nextTick: ContinuousClock.Instant?
    private var stopping = false
    // Owned by the thread.
    private var active: [UnsafeMutableRawPointer: CurlRequest] = [:]

    private enum Command {
        case add(CurlRequest)
        case cancel(CurlRequest)
        case resume(CurlRequest)
    }

    private static let globalInit: Void = {
        _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }()

    init(name: String = "squall.curl") {
        _ = Self.globalInit
        multi = curl_multi_init()
        // Connections to the same S3 endpoint are reused across requests and transfers.
        _ = squall_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, 64)
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Runs `request` to its end. Never throws: failures are described by the response.
    func perform(_ request: HTTPCall) async -> HTTPReply {
        let curlRequest = CurlRequest(request)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                curlRequest.completion = { continuation.resume(returning: $0) }
                submit(.add(curlRequest))
            }
        } onCancel: {
            submit(.cancel(curlRequest))
        }
    }

    /// Starts `request` and returns a handle to resume it after its stream paused it.
    func start(_ request: HTTPCall, completion: @escaping @Sendable (HTTPReply) -> Void) -> CurlRequest {
        let curlRequest = CurlRequest(request)
        curlRequest.completion = completion
        submit(.add(curlRequest))
        return curlRequest
    }

    /// Un-pauses a request whose stream answered `.pause`.
    func resume(_ request: CurlRequest) { submit(.resume(request)) }

    /// Stops a request; its completion runs with libcurl's "aborted" result.
    func cancel(_ request: CurlRequest) { submit(.cancel(request)) }

    /// Ends the thread once the requests in flight are done (the engine lives as long as its process).
    func shutdown() {
        lock.withLock { stopping = true }
        curl_multi_wakeup(multi)
    }

    private func submit(_ command: Command) {
        let onLoop = lock.withLock { () -> Bool in
            commands.append(command)
            return isLoopThread
        }
        if !onLoop { curl_multi_wakeup(multi) }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let onLoop = lock.withLock { () -> Bool in
            jobs.append(job)
            return isLoopThread
        }
        if !onLoop { curl_multi_wakeup(multi) }
    }

    /// Fires `ticker` from this thread when it is due, until ``unschedule(_:)``.
    func schedule(_ ticker: ProgressTicker) {
        let onLoop = lock.withLock { () -> Bool in
            tickers[ObjectIdentifier(ticker)] = ticker
            nextTick = min(nextTick ?? ticker.due, ticker.due)
            return isLoopThread
        }
        if !onLoop { curl_multi_wakeup(multi) }
    }

    func unschedule(_ ticker: ProgressTicker) {
        lock.withLock { _ = tickers.removeValue(forKey: ObjectIdentifier(ticker)) }
    }

    /// Fires the tickers that are due; returns how long the thread may sleep before the next one.
    private func fireTickers() -> Int32 {
        let now = ContinuousClock.now
        // Nothing due: one look under the lock. Past the earliest due time: fire what is due and
        // work the next one out again (the ticker that set it may be gone).
        let (due, upcoming) = lock.withLock { () -> ([ProgressTicker]?, ContinuousClock.Instant?) in
            guard let nextTick, nextTick <= now else { return (nil, nextTick) }
            return (tickers.values.filter { $0.due <= now }, nil)
        }
        var next = upcoming
        if let due {
            for ticker in due { ticker.fire(at: now) }
            next = lock.withLock { () -> ContinuousClock.Instant? in
                nextTick = tickers.values.lazy.map(\.due).min()
                return nextTick
            }
        }
        guard let next else { return 1000 }
        let wait = next - now
        if wait <= .zero { return 0 }
        return Int32(
            min(1000, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000 + 1))
    }

    /// Called with `lock` held.
    private var isLoopThread: Bool {
        guard let loopThread else { return false }
        return pthread_equal(loopThread, pthread_self()) != 0
    }

    // MARK: The thread

    private func loop() {
        lock.withLock { loopThread = pthread_self() }
        while true {
            // Swift jobs first, until none is left (a job's awaits enqueue the next ones) or for a
            // bounded number of rounds (libcurl's sockets wait meanwhile), then the commands they
            // and other threads left, then one turn of libcurl.
            var ranJobs = false
            for _ in 0..<64 {
                let ready = lock.withLock { () -> [UnownedJob] in
                    defer { jobs.removeAll(keepingCapacity: true) }
                    return jobs
                }
                if ready.isEmpty { break }
                ranJobs = true
                for job in ready { job.runSynchronously(on: asUnownedTaskExecutor()) }
            }
            let (pending, stop) = lock.withLock { () -> ([Command], Bool) in
                defer { commands.removeAll(keepingCapacity: true) }
                return (commands, stopping)
            }
            for command in pending { apply(command) }
            if stop && active.isEmpty && !ranJobs { break }
            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            collectFinished()
            let timeout = fireTickers()
            let waiting = lock.withLock { !jobs.isEmpty || !commands.isEmpty }
            if !waiting { _ = curl_multi_poll(multi, nil, 0, timeout, nil) }
        }
        curl_multi_cleanup(multi)
    }

    private func apply(_ command: Command) {
        switch command {
        case .add(let request):
            guard !request.isFinished else { return }
            if let failure = request.prepare() {
                request.finish(curlCode: Int(CURLE_FAILED_INIT.rawValue), message: failure)
                return
            }
            active[request.easy] = request
            _ = curl_multi_add_handle(multi, request.easy)
        case .cancel(let request):
            guard active.removeValue(forKey: request.easy) != nil else {
                if !request.isFinished && !request.isPrepared {
                    request.finish(curlCode: Int(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "cancelled")
                }
                return
            }
            _ = curl_multi_remove_handle(multi, request.easy)
            request.finish(curlCode: Int(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "cancelled")
        case .resume(let request):
            guard active[request.easy] != nil else { return }
            _ = curl_easy_pause(request.easy, 0)  // CURLPAUSE_CONT
        }
    }

    private func collectFinished() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            _ = curl_multi_remove_handle(multi, easy)
            guard let request = active.removeValue(forKey: easy) else { continue }
            request.finish(curlCode: Int(code.rawValue), message: nil)
        }
    }
}
