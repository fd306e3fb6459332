import Foundation
import Logging
import SquallCore
import Testing

@testable import SquallTestSupport

/// `squall-consumer` moving real bytes (from the Python source fixture to local files): results,
/// cancels of running transfers, and SIGTERM with transfers in flight.
@Suite(
    "Consumer process: transfers",
    .enabled(if: ConsumerHarness.enabled, "skipped: SQUALL_AMQP_URL not set (run scripts/services up)"))
struct ConsumerTransferEndToEndTests {
    @Test("a good source is done with its size and SHA-256 and the file is byte-exact; a 404 fails with http_404")
    func doneAndNotFound() async throws {
        let harness = try await ConsumerHarness()
        let source = try SourceServer()
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let consumer = try await harness.startConsumer()
        do {
            let good = folder.appendingPathComponent("good.bin").path
            try await harness.publish([
                harness.job(1, source: source.generated(size: 300_000, seed: 5), destination: good),
                harness.job(2, source: source.missing("nothing-here"), destination: folder.path + "/missing.bin"),
            ])
            try await harness.eventually("two results") { harness.resultPackets.count == 2 }
            let results = Dictionary(uniqueKeysWithValues: harness.resultPackets.map { ($0.jobID, $0) })
            let written = try Data(contentsOf: URL(fileURLWithPath: good))
            let digest = try sha256sum(good)
            #expect(results[1]?.outcome == .done)
            #expect(results[1]?.bytes == 300_000)
            #expect(written.count == 300_000)
            #expect(results[1]?.sha256 == digest)
            #expect(results[2]?.outcome == .failed)
            #expect(results[2]?.errorCode == "http_404")
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(try await harness.jobsReady() == 0)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        source.stop()
        await harness.close()
    }

    @Test("a cancel order aborts a running transfer within seconds: one cancelled result, the job acked")
    func cancelRunning() async throws {
        let harness = try await ConsumerHarness()
        let source = try SourceServer()
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let consumer = try await harness.startConsumer()
        do {
            // About 100 s at 20 kB/s: it is running when the cancel comes, and far from done.
            try await harness.publish([
                harness.job(
                    1, batch: 9, source: source.generated(size: 2_000_000, seed: 1, bytesPerSecond: 20_000),
                    destination: folder.path + "/slow.bin")
            ])
            try await harness.eventually("the transfer moving") {
                harness.progressPackets.contains { $0.jobID == 1 && $0.phase == .transferring }
            }
            let cancelled = ContinuousClock.now
            try await harness.cancel(.cancelBatch(batchID: 9))
            try await harness.eventually("a result", timeout: .seconds(10)) { !harness.resultPackets.isEmpty }
            #expect(ContinuousClock.now - cancelled < .seconds(5))
            #expect(harness.resultPackets.map(\.outcome) == [.cancelled])
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(10)) == 0)
            #expect(try await harness.jobsReady() == 0)
            #expect(harness.resultPackets.count == 1)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        source.stop()
        await harness.close()
    }

    @Test("SIGTERM: the running transfer finishes and is acked, jobs not taken stay queued, exit 0 in the grace period")
    func sigtermFinishesRunning() async throws {
        let harness = try await ConsumerHarness()
        let source = try SourceServer()
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let consumer = try await harness.startConsumer([
            "SQUALL_CONSUMER_CONCURRENCY": "1", "SQUALL_GRACE_PERIOD": "20",
        ])
        do {
            // About 3 s each at 100 kB/s.
            try await harness.publish(
                (1...3).map {
                    harness.job(
                        $0, source: source.generated(size: 300_000, seed: Int($0), bytesPerSecond: 100_000),
                        destination: folder.path + "/\($0).bin")
                })
            try await harness.eventually("job 1 moving") {
                harness.progressPackets.contains { $0.jobID == 1 && $0.phase == .transferring }
            }
            let signalled = ContinuousClock.now
            consumer.signal(SIGTERM)
            let status = try await consumer.waitForExit(timeout: .seconds(25))
            #expect(status == 0)
            #expect(ContinuousClock.now - signalled < .seconds(20))
            // Confirmed by the broker before the Consumer acked and exited; the harness's own consumer
            // of the results queue may hear of it a moment later.
            try await harness.eventually("job 1's result", timeout: .seconds(10)) { !harness.resultPackets.isEmpty }
            #expect(harness.resultPackets.map(\.jobID) == [1])
            #expect(harness.resultPackets.first?.outcome == .done)
            #expect(!harness.progressPackets.contains { $0.jobID != 1 }, "a job started after SIGTERM")
            #expect(try await harness.jobsReady() == 2)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        source.stop()
        await harness.close()
    }

    @Test("SIGTERM with a transfer longer than the grace period: it is aborted and requeued, exit 0 in time")
    func sigtermAbortsPastGrace() async throws {
        let harness = try await ConsumerHarness()
        let source = try SourceServer()
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let consumer = try await harness.startConsumer(["SQUALL_GRACE_PERIOD": "5"])
        do {
            try await harness.publish([
                harness.job(
                    1, source: source.generated(size: 2_000_000, seed: 3, bytesPerSecond: 20_000),
                    destination: folder.path + "/slow.bin")
            ])
            try await harness.eventually("the transfer moving") {
                harness.progressPackets.contains { $0.jobID == 1 && $0.phase == .transferring }
            }
            let signalled = ContinuousClock.now
            consumer.signal(SIGTERM)
            #expect(try await consumer.waitForExit(timeout: .seconds(15)) == 0)
            #expect(ContinuousClock.now - signalled < .seconds(5.5))
            #expect(harness.resultPackets.isEmpty, "an aborted job has no result: its next delivery owns it")
            #expect(try await harness.jobsReady() == 1)
        } catch {
            Issue.record("consumer output:\n\(consumer.output)")
            await harness.close()
            throw error
        }
        source.stop()
        await harness.close()
    }
}

/// The file's SHA-256 as coreutils computes it (independently of the engine's own hashing).
func sha256sum(_ path: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    process.arguments = [path]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
