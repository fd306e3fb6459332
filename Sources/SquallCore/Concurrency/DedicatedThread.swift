import Foundation

/// One operating-system thread with a serial queue of work, for C libraries whose calls block.
///
/// libpq, rabbitmq-c and libcurl block the calling thread. Swift's cooperative pool has one
/// thread per core, so a blocking call there stalls unrelated tasks. A `DedicatedThread` is a
/// `SerialExecutor`: an actor that returns it as its `unownedExecutor` runs every method on this
/// thread, and ``run(_:)`` bridges a blocking closure to `async` code with a continuation.
public final class DedicatedThread: SerialExecutor, @unchecked Sendable {
    private enum Work {
        case job(UnownedJob)
        case closure(() -> Void)
    }

    /// The thread's name, as `ps -T` and debuggers show it.
    public let name: String
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var stopping = false
    private var thread: Thread?

    /// Starts the thread at once; it lives until ``shutdown()``.
    public init(name: String) {
        self.name = name
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        self.thread = thread
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Whether the caller is running on this thread.
    public var isCurrent: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread === Thread.current
    }

    /// Runs `body` on this thread and returns its result to the awaiting task.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit(.closure { continuation.resume(with: Result { try body() }) })
        }
    }

    /// Lets the thread finish what is queued, then end. Work submitted afterwards is dropped.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func submit(_ work: Work) {
        condition.lock()
        queue.append(work)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping {
                condition.wait()
            }
            if queue.isEmpty && stopping {
                thread = nil
                condition.unlock()
                return
            }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            condition.unlock()
            for work in batch {
                switch work {
                case .job(let job): job.runSynchronously(on: asUnownedSerialExecutor())
                case .closure(let body): body()
                }
            }
        }
    }
}
