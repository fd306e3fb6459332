import CCurl
import Foundation

/// libcurl's multi interface, driven by one thread of its own: every request of every transfer of
/// one engine runs here, sharing a connection cache, and no libcurl call ever runs on Swift's
/// cooperative pool.
///
/// Callers hand requests over with ``perform(_:)`` (an `async` call bridged with a continuation);
/// the thread adds them, runs `curl_multi_perform`, completes what finished, and sleeps in
/// `curl_multi_poll` until a socket is ready or `curl_multi_wakeup` says a command is waiting.
/// Cancelling the calling task removes its request at once.
final class CurlMulti: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let lock = NSLock()
    // Guarded by `lock`: commands for the thread.
    private var commands: [Command] = []
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
        lock.withLock { commands.append(command) }
        curl_multi_wakeup(multi)
    }

    // MARK: The thread

    private func loop() {
        while true {
            let (pending, stop) = lock.withLock { () -> ([Command], Bool) in
                defer { commands.removeAll(keepingCapacity: true) }
                return (commands, stopping)
            }
            for command in pending { apply(command) }
            if stop && active.isEmpty { break }
            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            collectFinished()
            _ = curl_multi_poll(multi, nil, 0, 1000, nil)
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
