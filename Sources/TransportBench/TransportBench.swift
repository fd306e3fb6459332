import Foundation
import Logging
import SquallCore

/// Measures the transport for `bench/transport`: confirmed publishes per second (batched confirms,
/// and one confirm per message), and consume-and-ack per second, each with the client's own CPU time
/// per message (user + system, this process), which the broker's speed does not hide. Prints one JSON object.
/// With `BENCH_BROKER_PID` set, it also reports the broker's CPU per message in each phase, read from
/// `/proc` at the same instants as its own.
///
/// Usage: transport-bench AMQP_URL PREFIX MESSAGES BATCH PREFETCH ACK_EVERY SINGLE_MESSAGES
/// (ACK_EVERY 0: each delivery acked alone, from a task of its own)
@main
struct TransportBench {
    static func main() async throws {
        try await measure(CommandLine.arguments)
    }

    /// Off the main actor, as the services' loops run (in their service group's tasks): measured from
    /// `main`, every `await` on a delivery would hop to the main thread and back, which costs more than
    /// the message.
    nonisolated static func measure(_ arguments: [String]) async throws {
        guard arguments.count == 8, let messages = Int(arguments[3]), let batch = Int(arguments[4]),
            let prefetch = Int(arguments[5]), let ackEvery = Int(arguments[6]), let single = Int(arguments[7])
        else {
            FileHandle.standardError.write(
                Data("usage: transport-bench AMQP_URL PREFIX MESSAGES BATCH PREFETCH ACK_EVERY SINGLE\n".utf8))
            exit(2)
        }
        var logger = Logger(label: "squall.bench.transport")
        logger.logLevel = .warning
        let topology = Topology(prefix: arguments[2])
        let broker = Broker(
            configuration: Broker.Configuration(url: try AMQPURL(parsing: arguments[1]), topology: topology),
            logger: logger)
        try await broker.start()
        let queue = topology.jobs
        let body = Data((0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let brokerPID = ProcessInfo.processInfo.environment["BENCH_BROKER_PID"]

        // Batched confirms: publish `batch` messages, wait for every confirm, repeat.
        var clock = ContinuousClock.now
        var cpu = cpuSeconds()
        var brokerCPU = processCPUSeconds(brokerPID)
        var sent = 0
        while sent < messages {
            let count = min(batch, messages - sent)
            try await broker.publishBatch(
                Array(repeating: OutgoingMessage(body: body, destination: .queue(queue)), count: count))
            sent += count
        }
        let publishSeconds = seconds(since: clock)
        let publishCPU = cpuSeconds() - cpu
        let publishBrokerCPU = processCPUSeconds(brokerPID).flatMap { now in brokerCPU.map { now - $0 } }

        // Consume with prefetch, acking every `ackEvery` deliveries at once; with 0, every delivery alone
        // from a task of its own, as a Consumer acks its jobs.
        clock = .now
        cpu = cpuSeconds()
        brokerCPU = processCPUSeconds(brokerPID)
        var received = 0
        let deliveries = try await broker.consume(queue: queue, prefetch: prefetch)
        if ackEvery == 0 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for try await delivery in deliveries {
                    received += 1
                    group.addTask { try await delivery.ack() }
                    if received == messages { break }
                }
                try await group.waitForAll()
            }
        } else {
            for try await delivery in deliveries {
                received += 1
                if received % ackEvery == 0 || received == messages { try await delivery.ack(multiple: true) }
                if received == messages { break }
            }
        }
        let consumeSeconds = seconds(since: clock)
        let consumeCPU = cpuSeconds() - cpu
        let consumeBrokerCPU = processCPUSeconds(brokerPID).flatMap { now in brokerCPU.map { now - $0 } }
        deliveries.cancel()

        // One confirm per message: publish, wait, publish…
        clock = .now
        for _ in 0..<single {
            try await broker.publish(body, to: .queue(queue))
        }
        let singleSeconds = seconds(since: clock)

        await broker.shutdown()
        var result: [String: Double] = [
            "ack_frames": Double(broker.ackFramesSent),
            "messages": Double(messages),
            "publish_per_second": Double(messages) / publishSeconds,
            "consume_per_second": Double(messages) / consumeSeconds,
            "publish_cpu_us_per_message": publishCPU * 1e6 / Double(messages),
            "consume_cpu_us_per_message": consumeCPU * 1e6 / Double(messages),
            "single_messages": Double(single),
            "single_publish_per_second": Double(single) / singleSeconds,
        ]
        if let publishBrokerCPU, let consumeBrokerCPU {
            result["broker_publish_cpu_us_per_message"] = publishBrokerCPU * 1e6 / Double(messages)
            result["broker_consume_cpu_us_per_message"] = consumeBrokerCPU * 1e6 / Double(messages)
        }
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }

    /// User + system CPU seconds of this process so far (every thread: the connections' own included).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// User + system CPU seconds of another process so far (`/proc/PID/stat`), nil without a pid.
    static func processCPUSeconds(_ pid: String?) -> Double? {
        guard let pid, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return nil }
        // After the command's closing parenthesis: state is field 3, utime and stime fields 14 and 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let (seconds, attoseconds) = start.duration(to: .now).components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
