import Foundation
@_spi(Benchmark) import SquallCore

/// Measures the job repository at a million jobs on a real PostgreSQL and prints a Markdown table.
///
/// Run by `bench/repository`, which writes the table into docs/benchmarks.md. Everything happens
/// in a database of its own, dropped at the end.
@main
struct RepositoryBench {
    /// One line of the table: what was measured, against which target, and by how much it was met.
    struct Row {
        var measure: String
        var target: String
        var measured: String
        /// Measured ÷ target for rates, target ÷ measured for times: below 1 is a missed target.
        var ratio: Double?

        init(measure: String, target: String, measured: String, ratio: Double?) {
            self.measure = measure
            self.target = target
            self.measured = measured
            self.ratio = ratio
        }

        /// A rate that must reach `atLeast`.
        init(measure: String, rate: Double, unit: String, atLeast: Double) {
            self.init(
                measure: measure, target: "≥ \(RepositoryBench.formatted(atLeast)) \(unit)",
                measured: "\(RepositoryBench.formatted(rate)) \(unit)",
                ratio: rate / atLeast)
        }
    }

    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let text = environment["SQUALL_DATABASE_URL"], !text.isEmpty else {
            FileHandle.standardError.write(Data("repository bench: SQUALL_DATABASE_URL is not set\n".utf8))
            exit(64)
        }
        let jobCount = Int(environment["BENCH_JOBS"] ?? "") ?? 1_000_000
        let server = try DatabaseURL(parsing: text)
        let name = DatabaseAdministration.randomName(prefix: "squall_bench_")
        let url = try await DatabaseAdministration.createDatabase(named: name, on: server)
        do {
            let rows = try await run(url: url, jobCount: jobCount)
            try await DatabaseAdministration.dropDatabase(named: name, on: server)
            print(table(rows, jobCount: jobCount))
        } catch {
            try? await DatabaseAdministration.dropDatabase(named: name, on: server)
            FileHandle.standardError.write(Data("repository bench: \(error)\n".utf8))
            exit(1)
        }
    }

    static func log(_ text: String) {
        FileHandle.standardError.write(Data("repository bench: \(text)\n".utf8))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func rate(_ count: Int, _ duration: Duration) -> Double { Double(count) / seconds(duration) }

    static func formatted(_ value: Double) -> String {
        let rounded = Int(value.rounded())
        var text = String(rounded)
        var index = text.count - 3
        while index > 0 {
            text.insert(",", at: text.index(text.startIndex, offsetBy: index))
            index -= 3
        }
        return text
    }

    static func run(url: DatabaseURL, jobCount: Int) async throws -> [Row] {
        let clock = ContinuousClock()
        let repository = JobRepository(url: url, actor: "bench")
        try await repository.migrate()
        var rows: [Row] = []

        // Submit: a CSV manifest file streamed through the parser into COPY.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("squall-bench-\(getpid()).csv").path
        FileManager.default.createFile(atPath: path, contents: nil)
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var chunk = "source,destination,priority\n"
        for index in 0..<jobCount {
            chunk += "https://example.com/data/\(index).bin,s3://bench-bucket/out/\(index).bin,\(index % 5)\n"
            if chunk.utf8.count > 1 << 20 {
                file.write(Data(chunk.utf8))
                chunk = ""
            }
        }
        file.write(Data(chunk.utf8))
        try file.close()
        defer { try? FileManager.default.removeItem(atPath: path) }
        log("submitting \(jobCount) jobs")
        var submitted: SubmittedBatch?
        let submitTime = try await clock.measure {
            submitted = try await repository.submit(batchName: "bench", manifest: .file(path: path))
        }
        precondition(submitted?.jobCount == Int64(jobCount))
        rows.append(
            Row(
                measure: "submit \(formatted(Double(jobCount))) jobs (CSV file → parse/validate → COPY)",
                target: "< 30 s",
                measured: String(
                    format: "%.1f s (%@ jobs/s)", seconds(submitTime), formatted(rate(jobCount, submitTime))),
                ratio: 30 / seconds(submitTime)))

        // Status at a million jobs.
        rows.append(try await statusRow(repository, label: "after submit", jobCount: jobCount, clock: clock))

        // Claim, one claimer.
        let claimSize = 1000
        let singleTarget = min(200_000, jobCount / 5)
        var claimed: [JobMessage] = []
        let singleTime = try await clock.measure {
            while claimed.count < singleTarget {
                claimed += try await repository.claim(limit: claimSize, lease: .seconds(3600))
            }
        }
        let singleRate = rate(claimed.count, singleTime)
        rows.append(
            Row(
                measure: "claim, 1 claimer (\(claimSize) per claim, \(formatted(Double(claimed.count))) jobs)",
                rate: singleRate, unit: "jobs/s", atLeast: 20_000))

        // Claim, four claimers on four connections.
        let fourTarget = min(400_000, jobCount * 2 / 5)
        let claimers = (0..<4).map { JobRepository(url: url, actor: "bench-\($0)") }
        let start = clock.now
        let fourClaimed = try await withThrowingTaskGroup(of: Int.self) { group in
            for claimer in claimers {
                group.addTask {
                    var count = 0
                    while count < fourTarget / 4 {
                        let jobs = try await claimer.claim(limit: claimSize, lease: .seconds(3600))
                        if jobs.isEmpty { break }
                        count += jobs.count
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let fourTime = clock.now - start
        for claimer in claimers { await claimer.close() }
        let fourRate = rate(fourClaimed, fourTime)
        rows.append(
            Row(
                measure: "claim, 4 claimers (\(claimSize) per claim, \(formatted(Double(fourClaimed))) jobs)",
                rate: fourRate, unit: "jobs/s", atLeast: 20_000))

        // Progress, batched: first packet of each job (queued → running, audit event), then a second.
        let batchSize = 1000
        let progressJobs = Array(claimed.prefix(100_000))
        func progress(_ jobs: ArraySlice<JobMessage>, at ms: Int64) -> [ProgressPacket] {
            jobs.map {
                ProgressPacket(
                    jobID: $0.jobID, attempt: $0.attempt, node: "bench-consumer",
                    timestamp: Timestamp(milliseconds: ms),
                    bytesDone: ms * 1000, bytesTotal: 10_000_000, bytesPerSecond: 1e6, phase: .transferring)
            }
        }
        var applied = 0
        let progressTime = try await clock.measure {
            for round in Int64(1)...2 {
                for start in stride(from: 0, to: progressJobs.count, by: batchSize) {
                    let slice = progressJobs[start..<min(start + batchSize, progressJobs.count)]
                    applied += try await repository.applyProgress(progress(slice, at: round), lease: .seconds(3600))
                }
            }
        }
        precondition(applied == progressJobs.count * 2, "applied \(applied)")
        let progressRate = rate(applied, progressTime)
        rows.append(
            Row(
                measure:
                    "progress, batched (\(batchSize) per transaction, one UPDATE … FROM unnest, \(formatted(Double(applied))) packets)",
                rate: progressRate, unit: "packets/s", atLeast: 20_000))

        // Progress, one UPDATE per packet in autocommit: the naive path, for the ratio.
        // Two disjoint sets of jobs, so each path applies a packet that is newer than the row's.
        let naiveJobs = progressJobs.prefix(min(10_000, progressJobs.count / 2))
        var naiveApplied = 0
        let naiveTime = try await clock.measure {
            naiveApplied = try await repository.applyProgressOneByOne(progress(naiveJobs, at: 3), lease: .seconds(3600))
        }
        precondition(naiveApplied == naiveJobs.count, "applied \(naiveApplied)")
        let naiveRate = rate(naiveApplied, naiveTime)
        let ratio = progressRate / naiveRate

        // The same one-UPDATE-per-packet statements, still one transaction each, in pipeline mode.
        let pipelinedJobs = progressJobs.dropFirst(naiveJobs.count).prefix(naiveJobs.count)
        var pipelinedApplied = 0
        let pipelinedTime = try await clock.measure {
            pipelinedApplied = try await repository.applyProgressOneByOnePipelined(
                progress(pipelinedJobs, at: 3), lease: .seconds(3600))
        }
        precondition(pipelinedApplied == pipelinedJobs.count, "applied \(pipelinedApplied)")
        let pipelinedRate = rate(pipelinedApplied, pipelinedTime)
        rows.append(
            Row(
                measure: "progress, one UPDATE per packet in autocommit (\(formatted(Double(naiveApplied))) packets)",
                target: "(baseline)", measured: "\(formatted(naiveRate)) packets/s", ratio: nil))
        rows.append(
            Row(
                measure:
                    "progress, one UPDATE per packet in autocommit, libpq pipeline mode (\(formatted(Double(pipelinedApplied))) packets)",
                target: "(for comparison)", measured: "\(formatted(pipelinedRate)) packets/s", ratio: nil))
        rows.append(
            Row(
                measure: "progress, batched ÷ one UPDATE per packet", target: "≥ 10×",
                measured: String(format: "%.1f×", ratio), ratio: ratio / 10))

        // Results, batched.
        let resultJobs = Array(claimed.prefix(100_000))
        var settled = 0
        let resultTime = try await clock.measure {
            for start in stride(from: 0, to: resultJobs.count, by: batchSize) {
                let packets = resultJobs[start..<min(start + batchSize, resultJobs.count)].map {
                    ResultPacket(
                        jobID: $0.jobID, attempt: $0.attempt, node: "bench-consumer",
                        timestamp: Timestamp(milliseconds: 10), outcome: $0.jobID % 10 == 0 ? .skipped : .done,
                        bytes: 10_000_000, etag: "\"e\($0.jobID)\"", sha256: String(repeating: "0", count: 64),
                        durationMilliseconds: 1000)
                }
                settled += try await repository.applyResults(packets).settled.count
            }
        }
        precondition(settled == resultJobs.count, "settled \(settled)")
        let resultRate = rate(settled, resultTime)
        rows.append(
            Row(
                measure:
                    "results, batched (\(batchSize) per transaction, audit events, \(formatted(Double(settled))) results)",
                rate: resultRate, unit: "results/s", atLeast: 10_000))

        rows.append(
            try await statusRow(repository, label: "after claims and applies", jobCount: jobCount, clock: clock))
        await repository.close()
        return rows
    }

    static func statusRow(
        _ repository: JobRepository, label: String, jobCount: Int, clock: ContinuousClock
    ) async throws -> Row {
        _ = try await repository.status(batch: "bench")
        var samples: [Duration] = []
        for _ in 0..<21 {
            samples.append(try await clock.measure { _ = try await repository.status(batch: "bench") })
        }
        samples.sort()
        let median = seconds(samples[samples.count / 2]) * 1000
        let worst = seconds(samples.last!) * 1000
        return Row(
            measure: "status of the \(formatted(Double(jobCount)))-job batch, \(label) (median of 21)",
            target: "< 100 ms", measured: String(format: "%.1f ms (max %.1f ms)", median, worst),
            ratio: 100 / median)
    }

    static func table(_ rows: [Row], jobCount: Int) -> String {
        var lines = [
            "| measure | target | measured | ratio | |",
            "|---|---|---|---|---|",
        ]
        for row in rows {
            let ratio = row.ratio.map { String(format: "%.2f", $0) } ?? "—"
            let verdict = row.ratio.map { $0 >= 1 ? "met" : "**missed**" } ?? ""
            lines.append("| \(row.measure) | \(row.target) | \(row.measured) | \(ratio) | \(verdict) |")
        }
        return lines.joined(separator: "\n")
    }
}
