import CCurl
import Foundation

/// libcurl's multi interface, driven by one thread of its own: every request of every transfer of
/// one engine runs here, sharing a connection cache, and no libcurl call ever runs on Swift's
/// cooperative pool.
///
/// Callers hand requests over with ``perform(_:)`` (an `async` call bridged with a continuation);
/// the thread adds them, completes what finished, fires the progress tickers that are due, and
/// sleeps in `epoll_wait` until a socket is ready, libcurl's timer is due or an eventfd says a
/// command is waiting. Cancelling the calling task removes its request at once.
///
/// libcurl is driven through its socket interface (`curl_multi_socket_action`): it says which
/// sockets to watch (``watch(_:_:known:)``) and when its timer is due, and each ready socket runs only the
/// transfers on it. `curl_multi_perform` would run every transfer on every wake, each checking its
/// socket with a `poll` of its own: with many requests waiting on a slow endpoint, that was most of
/// a Consumer's CPU (thousands of empty polls a second).
///
/// It is also a `TaskExecutor`: a task that prefers it (the Consumer's jobs) runs its Swift code
/// on this thread between libcurl's turns. A request that finishes then resumes its caller here,
/// with no hand-off to the cooperative pool and back, which for a small object was most of the
/// Consumer's context switches. Such code must not block: it shares the thread with every transfer.
final class CurlMulti: TaskExecutor, @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    /// The sockets libcurl asked to watch, and `wakeFD`.
    private let epoll: Int32
    /// An eventfd other threads bump when they leave a command or a job.
    private let wakeFD: Int32
    private let lock = NSLock()
    // Guarded by `lock`: commands and Swift jobs for the thread, and the thread's identity.
    private var commands: [Command] = []
    private var jobs: [UnownedJob] = []
    private var loopThread: pthread_t?
    private var tickers: [ObjectIdentifier: ProgressTicker] = [:]
    private var nextTick: ContinuousClock.Instant?
    private var stopping = false
    // Owned by the thread (libcurl calls its socket and timer callbacks from the thread's calls).
    private var active: [UnsafeMutableRawPointer: CurlRequest] = [:]
    /// When libcurl wants `curl_multi_socket_action(CURL_SOCKET_TIMEOUT)`; nil when it set no timer.
    private var curlDeadline: ContinuousClock.Instant?
    /// What `epoll_wait` filled in: ready descriptors and libcurl's `CURL_CSELECT_*` bits for each.
    private var readyFDs = [Int32](repeating: 0, count: 64)
    private var readyBits = [Int32](repeating: 0, count: 64)
    private let s3RequestLimit: Int
    /// S3 requests that hold a slot (running), and those waiting for one, oldest first.
    private var s3SlotsInUse = 0
    private var waitingForS3Slot: [CurlRequest] = []

    private enum Command {
        case add(CurlRequest)
        case cancel(CurlRequest)
        case resume(CurlRequest)
    }

    private static let globalInit: Void = {
        _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }()

    /// `s3RequestLimit`: S3 requests other than downloads in flight at once (0: no limit); the
    /// requests beyond it wait on this thread, unprepared, and start in turn (``usesS3Slot``).
    init(name: String = "squall.curl", s3RequestLimit: Int = 0) {
        self.s3RequestLimit = s3RequestLimit
        _ = Self.globalInit
        multi = curl_multi_init()
        epoll = squall_epoll_create()
        wakeFD = squall_eventfd_create()
        guard epoll >= 0, wakeFD >= 0, squall_epoll_add_reader(epoll, wakeFD) == 0 else {
            fatalError("cannot create the libcurl thread's epoll set: errno \(errno)")
        }
        // Connections to the same S3 endpoint are reused across requests and transfers.
        _ = squall_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, 64)
        // The engine lives as long as its process, and the thread holds it: the callbacks' pointer stays valid.
        let context = Unmanaged.passUnretained(self).toOpaque()
        _ = squall_multi_setopt_socket_function(multi, Self.socketCallback)
        _ = squall_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, context)
        _ = squall_multi_setopt_timer_function(multi, Self.timerCallback)
        _ = squall_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, context)
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
        squall_eventfd_signal(wakeFD)
    }

    private func submit(_ command: Command) {
        let onLoop = lock.withLock { () -> Bool in
            commands.append(command)
            return isLoopThread
        }
        if !onLoop { squall_eventfd_signal(wakeFD) }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let onLoop = lock.withLock { () -> Bool in
            jobs.append(job)
            return isLoopThread
        }
        if !onLoop { squall_eventfd_signal(wakeFD) }
    }

    /// Fires `ticker` from this thread when it is due, until ``unschedule(_:)``.
    func schedule(_ ticker: ProgressTicker) {
        let onLoop = lock.withLock { () -> Bool in
            tickers[ObjectIdentifier(ticker)] = ticker
            nextTick = min(nextTick ?? ticker.due, ticker.due)
            return isLoopThread
        }
        if !onLoop { squall_eventfd_signal(wakeFD) }
    }

    func unschedule(_ ticker: ProgressTicker) {
        lock.withLock { _ = tickers.removeValue(forKey: ObjectIdentifier(ticker)) }
    }

    /// Fires the tickers that are due; returns when the next one is.
    private func fireTickers() -> ContinuousClock.Instant? {
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
        return next
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
            // and other threads left, then libcurl's timer if it is due, then the sockets.
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
            if stop && active.isEmpty && waitingForS3Slot.isEmpty && !ranJobs { break }
            if let deadline = curlDeadline, deadline <= .now {
                curlDeadline = nil  // the call may set the next one
                act(on: squall_socket_timeout, bits: 0)
            }
            collectFinished()
            let nextTick = fireTickers()
            let waiting = lock.withLock { !jobs.isEmpty || !commands.isEmpty }
            let wakeAt = nextTick.map { tick in curlDeadline.map { min($0, tick) } ?? tick } ?? curlDeadline
            wait(milliseconds: waiting ? 0 : Self.milliseconds(until: wakeAt))
        }
        curl_multi_cleanup(multi)
        close(epoll)
        close(wakeFD)
    }

    /// Sleeps until a watched socket is ready, `wakeFD` is bumped or `milliseconds` pass, and lets
    /// libcurl act on each ready socket.
    private func wait(milliseconds: Int32) {
        let count = squall_epoll_wait(epoll, &readyFDs, &readyBits, Int32(readyFDs.count), milliseconds)
        for index in 0..<max(0, Int(count)) {
            if readyFDs[index] == wakeFD {
                squall_eventfd_drain(wakeFD)
            } else {
                act(on: readyFDs[index], bits: readyBits[index])
            }
        }
        collectFinished()
    }

    private func act(on socket: curl_socket_t, bits: Int32) {
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, socket, bits, &running)
    }

    /// How long the thread may sleep before `deadline`, in milliseconds (rounded up, at most a second).
    private static func milliseconds(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return 1000 }
        let wait = deadline - .now
        if wait <= .zero { return 0 }
        return Int32(
            min(1000, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000 + 1))
    }

    // MARK: libcurl's callbacks (on the thread, from within its calls)

    /// libcurl says which events of `socket` to wait for (`CURL_POLL_IN`, `_OUT`, `_INOUT`), or to stop
    /// (`_REMOVE`). `known`: the socket is in the epoll set already (libcurl keeps the mark assigned
    /// below until it removes the socket).
    private func watch(_ socket: curl_socket_t, _ what: Int32, known: Bool) {
        if squall_epoll_watch(epoll, socket, what, known ? 1 : 0) != 0 {
            // Not watched, its transfer would wait forever: libcurl's timer comes back to it soon.
            curlDeadline = .now + .milliseconds(10)
        } else if !known && what != CURL_POLL_REMOVE {
            _ = curl_multi_assign(multi, socket, UnsafeMutableRawPointer(bitPattern: 1))
        }
    }

    private static let socketCallback: curl_socket_callback = { _, socket, what, context, mark in
        guard let context else { return 0 }
        Unmanaged<CurlMulti>.fromOpaque(context).takeUnretainedValue().watch(socket, what, known: mark != nil)
        return 0
    }

    private static let timerCallback: curl_multi_timer_callback = { _, milliseconds, context in
        guard let context else { return 0 }
        let multi = Unmanaged<CurlMulti>.fromOpaque(context).takeUnretainedValue()
        multi.curlDeadline = milliseconds < 0 ? nil : .now + .milliseconds(milliseconds)
        return 0
    }

    private func apply(_ command: Command) {
        switch command {
        case .add(let request):
            guard !request.isFinished else { return }
            if usesS3Slot(request) && s3SlotsInUse >= s3RequestLimit {
                waitingForS3Slot.append(request)
                return
            }
            begin(request)
        case .cancel(let request):
            guard active.removeValue(forKey: request.easy) != nil else {
                waitingForS3Slot.removeAll { $0 === request }
                if !request.isFinished && !request.isPrepared {
                    request.finish(curlCode: Int(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "cancelled")
                }
                return
            }
            _ = curl_multi_remove_handle(multi, request.easy)
            request.finish(curlCode: Int(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "cancelled")
            releaseSlot(of: request)
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
            releaseSlot(of: request)
        }
    }

    private func begin(_ request: CurlRequest) {
        if let failure = request.prepare() {
            request.finish(curlCode: Int(CURLE_FAILED_INIT.rawValue), message: failure)
            return
        }
        if usesS3Slot(request) { s3SlotsInUse += 1 }
        active[request.easy] = request
        _ = curl_multi_add_handle(multi, request.easy)
    }

    /// A finished or cancelled request that held an S3 slot hands it to the oldest one waiting.
    private func releaseSlot(of request: CurlRequest) {
        guard usesS3Slot(request) else { return }
        s3SlotsInUse -= 1
        while s3SlotsInUse < s3RequestLimit && !waitingForS3Slot.isEmpty {
            let next = waitingForS3Slot.removeFirst()
            if !next.isFinished { begin(next) }
        }
    }

    /// Whether a request counts against the S3 request limit, when there is one: signed requests whose
    /// answer is kept (uploads, parts, HEADs, listings), not the ones streaming an object down. A
    /// download pauses while its parts wait to go up; were it to hold a slot, an S3-to-S3 copy could
    /// wait for itself.
    private func usesS3Slot(_ request: CurlRequest) -> Bool {
        guard s3RequestLimit > 0, request.request.signing != nil, case .keep = request.request.sink else {
            return false
        }
        return true
    }
}
