import CChecksum
import Foundation
import SquallCore
import Synchronization
import Testing

@testable import SquallTestSupport

private let MiB = TransferRig.mebibyte

/// The transfer engine against the S3 emulator, the HTTP source fixture and the S3 fault proxy,
/// through its public API only (issue #5). Every stored object is read back in full and its SHA-256
/// compared with the fixture's: moto checks neither signatures nor checksums.
@Suite("Transfer engine: shapes, byte-exact results", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct TransferEngineTests {
    @Test("an object smaller than one part goes as a single PUT, byte-exact, with its SHA-256 reported")
    func smallObjectIsOnePut() async throws {
        try await TransferRig.with("single", proxy: true) { rig in
            let size = 3 * MiB + 17
            let (report, _) = try await rig.copy(rig.http(size: size, seed: 1), to: "small.bin")
            let expected = try await rig.source.sha256(size: size, seed: 1)
            #expect(report.outcome == .done)
            #expect(report.bytes == Int64(size))
            #expect(report.sha256 == expected)
            #expect(report.bytesFetched == Int64(size))
            try await rig.expectStored("small.bin", size: size, seed: 1)

            let log = try await rig.proxyLog("small.bin")
            #expect(log.filter(\.isSinglePut).count == 1, "\(log.map { "\($0.method) ?\($0.query)" })")
            #expect(!log.contains { $0.isCreateUpload || $0.isUploadPart })
            // One PUT is the whole object: SigV4 signs its SHA-256, and S3 checks its CRC32C.
            let put = try #require(log.first { $0.isSinglePut })
            let bytes = try await rig.sourceBytes(size: size, seed: 1)
            #expect(put.amz["x-amz-content-sha256"] == expected)
            #expect(put.amz["x-amz-checksum-crc32c"] == crc32cBase64(bytes[...]))
        }
    }

    @Test("a small object's PUT carries its body with its head: no Expect: 100-continue, S3's default type")
    func smallBodyGoesWithItsHead() async throws {
        try await TransferRig.with("inline", proxy: true) { rig in
            // Up to 64 KiB - 1 the body rides in the request's first write; from 64 KiB it streams after
            // the head, announced by `Expect: 100-continue` (which libcurl does not wait for).
            for (index, size) in [0, 4096, 65_535, 65_536].enumerated() {
                let key = "inline-\(size).bin"
                let (report, _) = try await rig.copy(rig.http(size: size, seed: 60 + index), to: key)
                #expect(report.outcome == .done)
                try await rig.expectStored(key, size: size, seed: 60 + index)
                let put = try #require(try await rig.proxyLog(key).first { $0.isSinglePut }, "\(size) bytes")
                #expect(put.requestBytes == size)
                let inline = size < 65_536
                #expect(put.expect == (inline ? nil : "100-continue"), "\(size) bytes")
                #expect(put.contentType == (inline ? "binary/octet-stream" : nil), "\(size) bytes")
            }
        }
    }

    @Test("a larger object goes as a multipart upload of part-size parts, byte-exact")
    func largeObjectIsMultipart() async throws {
        try await TransferRig.with("multipart", proxy: true) { rig in
            let size = 23 * MiB + 12345  // five parts, the last one short
            let (report, _) = try await rig.copy(rig.http(size: size, seed: 2), to: "dir/large.bin")
            #expect(report.outcome == .done)
            #expect(report.bytes == Int64(size))
            #expect(report.sha256 == (try await rig.source.sha256(size: size, seed: 2)))
            try await rig.expectStored("dir/large.bin", size: size, seed: 2)

            let log = try await rig.proxyLog("dir/large.bin")
            let parts = log.filter(\.isUploadPart)
            #expect(log.filter(\.isCreateUpload).count == 1)
            #expect(Set(parts.compactMap(\.partNumber)) == Set(1...5))
            #expect(parts.filter { $0.status == .code(200) }.map(\.requestBytes).reduce(0, +) == size)
            #expect(log.filter(\.isComplete).count == 1)
            #expect(try await rig.bucket.incompleteUploads().isEmpty)

            // Each part carries the CRC32C of its own bytes, which S3 verifies; the body is not signed.
            #expect(log.first(where: \.isCreateUpload)?.amz["x-amz-checksum-algorithm"] == "CRC32C")
            let bytes = try await rig.sourceBytes(size: size, seed: 2)
            let partSize = TransferRig.options.partSize
            for part in parts {
                let number = try #require(part.partNumber)
                let slice = bytes[(number - 1) * partSize..<min(number * partSize, size)]
                #expect(part.amz["x-amz-checksum-crc32c"] == crc32cBase64(slice), "part \(number)")
                #expect(part.amz["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", "part \(number)")
            }
        }
    }

    @Test("many transfers in flight at once on one engine, each on a slow source, all end byte-exact")
    func manyTransfersShareOneEngine() async throws {
        try await TransferRig.with("many") { rig in
            let engine = try rig.engine()
            let count = 96
            let size = 24 * 1024
            // About a third of a second each at this rate: the requests overlap on the engine's one thread.
            let reports = try await withThrowingTaskGroup(of: (Int, TransferReport).self) { group in
                for index in 0..<count {
                    let request = TransferRequest(
                        source: rig.http(size: size, seed: 1000 + index, ["slow_bps": "65536"]),
                        destination: rig.bucket.location("many/\(index).bin"))
                    group.addTask { (index, try await engine.transfer(request) { _ in }) }
                }
                return try await group.reduce(into: [Int: TransferReport]()) { $0[$1.0] = $1.1 }
            }
            #expect(reports.count == count)
            #expect(reports.values.allSatisfy { $0.outcome == .done && $0.bytes == Int64(size) })
            for index in 0..<count {
                try await rig.expectStored("many/\(index).bin", size: size, seed: 1000 + index)
            }
        }
    }

    @Test("a limit on S3 requests makes uploads take turns, none timing out while it waits for its turn")
    func s3RequestsAreLimited() async throws {
        try await TransferRig.with("s3-limit", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            let size = 16 * 1024
            // Each PUT stalls a quarter of a second at the proxy: six in turn take longer than the connect timeout.
            try await proxy.program(
                fault: ProxyFault(match: ProxyFault.Match(method: "PUT"), action: .stall, times: 12, seconds: 0.25))
            func runSix(_ engine: TransferEngine, seed: Int) async throws -> [TransferReport] {
                try await withThrowingTaskGroup(of: TransferReport.self) { group in
                    for index in 0..<6 {
                        let request = rig.unasked(
                            rig.http(size: size, seed: seed + index), to: "limit/\(seed + index).bin")
                        group.addTask { try await engine.transfer(request) { _ in } }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            var limited = TransferRig.options
            limited.maxS3Requests = 1
            limited.connectTimeout = .seconds(1)
            try await proxy.reset()
            let reports = try await runSix(try rig.engine(limited), seed: 1200)
            #expect(reports.count == 6 && reports.allSatisfy { $0.outcome == .done && $0.bytes == Int64(size) })
            let stats = try await proxy.stats()
            #expect(stats.methods["PUT"]?.requests == 6)
            #expect(stats.maxInFlight == 1, "with a limit of one, S3 saw one request at a time")
            for index in 0..<6 {
                try await rig.expectStored("limit/\(1200 + index).bin", size: size, seed: 1200 + index)
            }

            // The same six without a limit overlap at S3.
            try await proxy.reset()
            _ = try await runSix(try rig.engine(), seed: 1210)
            #expect(try await proxy.stats().maxInFlight > 1)
        }
    }

    @Test(
        "an S3-to-S3 multipart copy on one endpoint completes at a limit of one S3 request: the download holds no slot",
        .timeLimit(.minutes(1)))
    func s3LimitLeavesDownloadsOut() async throws {
        try await TransferRig.with("s3-limit-copy") { rig in
            // Six parts of 5 MiB, more than the four in flight: the download must pause for uploads.
            let size = 30 * MiB + 3
            _ = try await rig.copy(rig.http(size: size, seed: 1220), to: "limit/original.bin")
            var limited = TransferRig.options
            limited.maxS3Requests = 1
            let (report, _) = try await rig.copy(
                rig.bucket.location("limit/original.bin"), to: "limit/copy.bin", options: limited)
            #expect(report.outcome == .done)
            try await rig.expectStored("limit/copy.bin", size: size, seed: 1220)
        }
    }

    @Test("an object of exactly one part and an empty object are stored exactly")
    func edgeSizes() async throws {
        try await TransferRig.with("edges") { rig in
            _ = try await rig.copy(rig.http(size: 5 * MiB, seed: 3), to: "one-part.bin")
            try await rig.expectStored("one-part.bin", size: 5 * MiB, seed: 3)
            let (empty, _) = try await rig.copy(rig.http(size: 0, seed: 3), to: "empty.bin")
            #expect(empty.bytes == 0)
            #expect(empty.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            try await rig.expectStored("empty.bin", size: 0, seed: 3)
        }
    }

    @Test("a source without a length (chunked) is streamed in parts and stored exactly, large or small")
    func unknownLength() async throws {
        try await TransferRig.with("chunked") { rig in
            let size = 17 * MiB + 3
            let (report, _) = try await rig.copy(rig.http(size: size, seed: 4, chunked: true), to: "chunked.bin")
            #expect(report.bytes == Int64(size))
            try await rig.expectStored("chunked.bin", size: size, seed: 4)

            _ = try await rig.copy(rig.http(size: 100_000, seed: 4, chunked: true), to: "chunked-small.bin")
            try await rig.expectStored("chunked-small.bin", size: 100_000, seed: 4)
        }
    }

    @Test("the whole object's SHA-256 is stored with it: metadata of a single PUT, a tag of a multipart object")
    func sha256Metadata() async throws {
        try await TransferRig.with("metadata") { rig in
            let (single, _) = try await rig.copy(rig.http(size: 2 * MiB, seed: 5), to: "single.bin")
            let headers = try #require(try await rig.bucket.head("single.bin"))
            #expect(headers["x-amz-meta-squall-sha256"] == single.sha256, "metadata \(headers)")

            let (multi, _) = try await rig.copy(rig.http(size: 11 * MiB, seed: 5), to: "multi.bin")
            let multiHeaders = try #require(try await rig.bucket.head("multi.bin"))
            #expect(multiHeaders["x-amz-tagging-count"] == "2", "headers \(multiHeaders)")
            let engine = try rig.engine(TransferRig.options)
            let merged = try #require(try await engine.headObject(bucket: rig.bucket.name, key: "multi.bin"))
            #expect(merged.metadata["squall-sha256"] == multi.sha256)
        }
    }

    @Test("local files and S3 objects work as sources, and local files as destinations")
    func localAndS3Locations() async throws {
        try await TransferRig.with("locations") { rig in
            let size = 7 * MiB + 5
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("squall-cp-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let expected = try await rig.source.sha256(size: size, seed: 6)

            // http → local file
            let downloaded = folder.appendingPathComponent("downloaded.bin").path
            let (result, _) = try await rig.run(
                TransferRequest(source: rig.http(size: size, seed: 6), destination: .file(path: downloaded)))
            #expect(try result.get().sha256 == expected)
            #expect(try LocalFile.sha256(downloaded) == expected)

            // local file → S3
            _ = try await rig.copy(.file(path: downloaded), to: "from-file.bin")
            try await rig.expectStored("from-file.bin", size: size, seed: 6)

            // S3 → S3
            _ = try await rig.copy(rig.bucket.location("from-file.bin"), to: "from-s3.bin")
            try await rig.expectStored("from-s3.bin", size: size, seed: 6)

            // S3 → local file
            let back = folder.appendingPathComponent("back.bin").path
            let (backResult, _) = try await rig.run(
                TransferRequest(source: rig.bucket.location("from-s3.bin"), destination: .file(path: back)))
            #expect(try backResult.get().bytes == Int64(size))
            #expect(try LocalFile.sha256(back) == expected)
        }
    }

    @Test("progress comes at a bounded rate, never goes backwards, and ends at the object's size")
    func progressIsBounded() async throws {
        try await TransferRig.with("progress") { rig in
            let size = 16 * MiB
            var options = TransferRig.options
            options.progressInterval = .milliseconds(250)
            let started = ContinuousClock.now
            let (_, events) = try await rig.copy(
                rig.http(size: size, seed: 7, ["slow_bps": "\(8 * MiB)"]), to: "progress.bin", options: options)
            let elapsed = ContinuousClock.now - started
            let progress = events.progress
            #expect(progress.count >= 3, "a 2 s transfer with a 250 ms interval reported \(progress.count) times")
            #expect(Double(progress.count) <= elapsed / .milliseconds(250) + 2)
            let done = progress.map(\.progress.bytesDone)
            #expect(done == done.sorted())
            #expect(progress.allSatisfy { $0.progress.bytesTotal == Int64(size) })
            #expect(done.last.map { $0 <= Int64(size) } ?? false)
            // The last event may come at once when the transfer ends; the others keep the interval.
            let throttled = progress.dropLast()
            for pair in zip(throttled, throttled.dropFirst()) {
                #expect(
                    pair.1.at - pair.0.at >= .milliseconds(200), "two progress events \(pair.1.at - pair.0.at) apart")
            }
        }
    }

    @Test("a task that prefers the engine's executor runs on its libcurl thread, where progress comes from")
    func preferringTasksRunOnTheEngineThread() async throws {
        try await TransferRig.with("executor") { rig in
            var options = TransferRig.options
            options.progressInterval = .milliseconds(100)
            let engine = try rig.engine(options)
            let eventThreads = Mutex<Set<UInt>>([])
            let request = TransferRequest(
                source: rig.http(size: 4 * MiB, seed: 12, ["slow_bps": "\(8 * MiB)"]),
                destination: rig.bucket.location("executor.bin"))
            let (before, after) = try await withTaskExecutorPreference(engine.taskExecutor) {
                let before = UInt(pthread_self())
                _ = try await engine.transfer(request) { event in
                    if case .progress = event { eventThreads.withLock { _ = $0.insert(UInt(pthread_self())) } }
                }
                return (before, UInt(pthread_self()))
            }
            let threads = eventThreads.withLock { $0 }
            #expect(threads.count == 1, "progress came from \(threads.count) threads")
            #expect(threads == [before], "the task started on another thread than the engine's")
            #expect(threads == [after], "the task came back from the transfer on another thread")
            try await rig.expectStored("executor.bin", size: 4 * MiB, seed: 12)
        }
    }
}

@Suite("Transfer engine: retries, resume and giving up", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct TransferEngineRetryTests {
    @Test("a download reset mid-body resumes with a Range request where it stopped, and the object is exact")
    func downloadResumesAfterReset() async throws {
        try await TransferRig.with("resume") { rig in
            let size = 20 * MiB
            let (_, events) = try await rig.copy(
                rig.http(size: size, seed: 10, ["reset_at": "3000000"]), to: "resumed.bin")
            try await rig.expectStored("resumed.bin", size: size, seed: 10)
            let stats = try await rig.source.stats()
            let path = try #require(stats.paths["/gen/\(size)/10"])
            // The engine's HEAD meets the fault too (it counts per method): at least the GET's reset fired.
            #expect(path.faults >= 1, "the reset never fired")
            #expect(!events.retries.isEmpty)
            // A restart from zero costs size + 3,000,000 bytes; a resume less.
            #expect(path.bytes < size + 3_000_000, "served \(path.bytes) bytes for a \(size)-byte object")
            #expect(
                path.ranges.contains { $0.hasPrefix("bytes=") && !$0.hasPrefix("bytes=0-") },
                "ranges asked: \(path.ranges)")
        }
    }

    @Test("a reset download from a source without Range support restarts and is still exact")
    func downloadRestartsWithoutRange() async throws {
        try await TransferRig.with("restart") { rig in
            let size = 12 * MiB
            _ = try await rig.copy(
                rig.http(size: size, seed: 11, ["reset_at": "3000000", "norange": "1"]), to: "restarted.bin")
            try await rig.expectStored("restarted.bin", size: size, seed: 11)
        }
    }

    @Test("a short body and a Content-Length larger than the body are retried and end exact")
    func shortBodies() async throws {
        try await TransferRig.with("short") { rig in
            let size = 8 * MiB
            _ = try await rig.copy(rig.http(size: size, seed: 12, ["truncate_at": "1000000"]), to: "truncated.bin")
            try await rig.expectStored("truncated.bin", size: size, seed: 12)
            _ = try await rig.copy(
                rig.http(size: size, seed: 13, ["wrong_length": "\(size + 1000)"]), to: "wrong-length.bin")
            try await rig.expectStored("wrong-length.bin", size: size, seed: 13)
        }
    }

    @Test("a stalled download is noticed by the low-speed limit, retried, and the object is exact")
    func stalledDownload() async throws {
        try await TransferRig.with("stall") { rig in
            var options = TransferRig.options
            options.lowSpeedLimit = 100_000
            options.lowSpeedTime = .seconds(2)
            let size = 8 * MiB
            let started = ContinuousClock.now
            // At byte 0 of the body, so socket buffers cannot hide the stall from libcurl's speed check.
            let (_, events) = try await rig.copy(
                rig.http(size: size, seed: 24, ["stall_at": "0", "stall_s": "30"]), to: "stalled.bin", options: options)
            #expect(ContinuousClock.now - started < .seconds(25), "the 30 s stall was waited out")
            #expect(!events.retries.isEmpty)
            try await rig.expectStored("stalled.bin", size: size, seed: 24)
        }
    }

    @Test("an S3 source whose GET is reset mid-response is resumed or restarted, and the copy is exact")
    func s3SourceResetMidResponse() async throws {
        try await TransferRig.with("s3src", proxy: true) { rig in
            let size = 12 * MiB
            _ = try await rig.copy(rig.http(size: size, seed: 25), to: "original.bin")
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "GET", path: "/\(rig.bucket.name)/original.bin"), action: .resetMidResponse,
                    times: 1, bytes: 3_000_000))
            _ = try await rig.copy(rig.bucket.location("original.bin"), to: "copy.bin")
            try await rig.expectStored("copy.bin", size: size, seed: 25)
            #expect(try await proxy.stats().faultsFired == 1)
        }
    }

    @Test("a source answering 503 twice is retried and the third attempt succeeds")
    func source503ThenSuccess() async throws {
        try await TransferRig.with("src503") { rig in
            let size = 6 * MiB
            let (_, events) = try await rig.copy(
                rig.http(size: size, seed: 14, ["fail": "503", "times": "2"]), to: "after-503.bin")
            try await rig.expectStored("after-503.bin", size: size, seed: 14)
            #expect(events.retries.count >= 2, "\(events.retries)")
            let path = try await rig.source.stats().paths["/gen/\(size)/14"]
            #expect(path?.statuses["503"] ?? 0 >= 2)
        }
    }

    @Test("S3 SlowDown on a part is retried and the object is exact")
    func slowDownThenSuccess() async throws {
        try await TransferRig.with("slowdown", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "PUT", queryParams: ["partNumber": "2"]), action: .slowDown, times: 2))
            let size = 16 * MiB
            let (_, events) = try await rig.copy(rig.http(size: size, seed: 15), to: "slowdown.bin")
            try await rig.expectStored("slowdown.bin", size: size, seed: 15)
            let part2 = try await rig.proxyLog("slowdown.bin").filter { $0.partNumber == 2 }
            #expect(part2.map(\.status) == [.code(503), .code(503), .code(200)])
            #expect(events.retries.count >= 2, "\(events.retries)")
        }
    }

    @Test("a connection reset in the middle of a part upload is retried and the object is exact")
    func resetMidPart() async throws {
        try await TransferRig.with("resetpart", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "PUT", queryParams: ["partNumber": "3"]), action: .resetMidBody, times: 1))
            let size = 16 * MiB
            _ = try await rig.copy(rig.http(size: size, seed: 16), to: "reset-part.bin")
            try await rig.expectStored("reset-part.bin", size: size, seed: 16)
            let part3 = try await rig.proxyLog("reset-part.bin").filter { $0.partNumber == 3 }
            #expect(part3.first?.status == .other("reset"))
            #expect(part3.last?.status == .code(200))
        }
    }

    @Test("a 200 carrying an <Error> on CompleteMultipartUpload is a failure, retried, and the object is exact")
    func completeWith200Error() async throws {
        try await TransferRig.with("complete200", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "POST", queryContains: ["uploadId="]), action: .complete200Error, times: 1))
            let size = 11 * MiB
            _ = try await rig.copy(rig.http(size: size, seed: 17), to: "complete.bin")
            try await rig.expectStored("complete.bin", size: size, seed: 17)
            #expect(try await rig.proxyLog("complete.bin").filter(\.isComplete).count == 2)
            #expect(try await rig.bucket.incompleteUploads().isEmpty)
        }
    }

    @Test("a CompleteMultipartUpload that completed but whose answer was lost is recognised by the object's ETag")
    func completedButAnswerLost() async throws {
        try await TransferRig.with("completelost", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            // Forwarded: the upload really completes, then the client is told it failed; the retry finds no
            // upload any more, as S3 may answer once an upload is completed.
            let complete = ProxyFault.Match(method: "POST", queryContains: ["uploadId="])
            try await proxy.program(
                fault: ProxyFault(match: complete, action: .complete200Error, times: 1, forward: true))
            try await proxy.program(
                fault: ProxyFault(
                    match: complete, action: .error, times: nil, status: 404, code: "NoSuchUpload",
                    message: "The specified upload does not exist."))
            let size = 11 * MiB
            let (report, _) = try await rig.copy(rig.http(size: size, seed: 23), to: "lost.bin")
            #expect(report.outcome == .done)
            #expect(report.sha256 == (try await rig.source.sha256(size: size, seed: 23)))
            try await rig.expectStored("lost.bin", size: size, seed: 23)
            #expect(try await rig.proxyLog("lost.bin").filter(\.isComplete).count >= 2)
            #expect(try await rig.bucket.incompleteUploads().isEmpty)
        }
    }

    @Test("an S3 part that keeps failing gives up after maxAttempts and aborts the multipart upload")
    func giveUpAbortsUpload() async throws {
        try await TransferRig.with("giveup", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "PUT", queryParams: ["partNumber": "2"]), action: .slowDown, times: nil))
            var options = TransferRig.options
            options.maxAttempts = 3
            let (error, events) = try await rig.failure(
                rig.http(size: 16 * MiB, seed: 18), to: "giveup.bin", options: options)
            #expect(!error.isPermanent, "\(error)")
            let log = try await rig.proxyLog("giveup.bin")
            #expect(
                log.filter { $0.partNumber == 2 }.count == 3,
                "part 2 tried \(log.filter { $0.partNumber == 2 }.count) times")
            #expect(log.contains { $0.isAbort }, "no AbortMultipartUpload sent")
            #expect(events.retries.count == 2)
            try await rig.expectNothingLeft("giveup.bin")
        }
    }

    @Test("a CompleteMultipartUpload that always answers 200 with an <Error> fails and leaves no upload")
    func completeAlwaysFails() async throws {
        try await TransferRig.with("completefail", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "POST", queryContains: ["uploadId="]), action: .complete200Error, times: nil))
            var options = TransferRig.options
            options.maxAttempts = 2
            let (error, _) = try await rig.failure(
                rig.http(size: 11 * MiB, seed: 19), to: "never.bin", options: options)
            #expect(!error.isPermanent, "\(error)")
            try await rig.expectNothingLeft("never.bin")
        }
    }

    @Test("a source that keeps answering 503 gives up after maxAttempts and stores nothing")
    func sourceGivesUp() async throws {
        try await TransferRig.with("srcgiveup") { rig in
            var options = TransferRig.options
            options.maxAttempts = 3
            let size = 12 * MiB
            let (error, _) = try await rig.failure(
                rig.http(size: size, seed: 20, ["fail": "503", "times": "all"]), to: "src-giveup.bin", options: options)
            #expect(!error.isPermanent, "\(error)")
            // A HEAD first is fine (it has its own 503s); what matters is that the attempts are bounded.
            let path = try #require(try await rig.source.stats().paths["/gen/\(size)/20"])
            #expect(
                path.requests >= 3 && path.requests <= 3 * (options.concurrency + 1),
                "\(path.requests) requests (\(path.methods)) for maxAttempts 3")
            #expect(path.statuses.keys.allSatisfy { $0 == "503" }, "\(path.statuses)")
            try await rig.expectNothingLeft("src-giveup.bin")
        }
    }

    @Test("a source answering 404 fails at once: permanent, one request, no retry, nothing stored")
    func notFoundFailsAtOnce() async throws {
        try await TransferRig.with("notfound") { rig in
            let size = 12 * MiB
            let started = ContinuousClock.now
            let (error, events) = try await rig.failure(
                rig.http(size: size, seed: 21, ["status": "404"]), to: "missing.bin")
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(error.isPermanent)
            #expect(error.code.contains("404"), "\(error)")
            #expect(events.retries.isEmpty)
            // One GET (and at most one HEAD before it), never a second try.
            let path = try #require(try await rig.source.stats().paths["/gen/\(size)/21"])
            #expect((path.methods["GET"] ?? 0) <= 1 && (path.methods["HEAD"] ?? 0) <= 1, "\(path.methods)")
            try await rig.expectNothingLeft("missing.bin")
        }
    }

    @Test("403 and 410 from a source and a missing S3 source object are permanent too")
    func otherPermanentErrors() async throws {
        try await TransferRig.with("permanent") { rig in
            for status in ["403", "410"] {
                let (error, events) = try await rig.failure(
                    rig.http(size: MiB, seed: 22, ["status": status]), to: "p\(status).bin")
                #expect(error.isPermanent && error.code.contains(status), "\(error)")
                #expect(events.retries.isEmpty)
            }
            let (error, events) = try await rig.failure(rig.bucket.location("no-such-key"), to: "copy.bin")
            #expect(error.isPermanent, "\(error)")
            #expect(events.retries.isEmpty)
            try await rig.expectNothingLeft("copy.bin")
        }
    }

    @Test("AccessDenied from S3 on a part fails at once and aborts the upload")
    func accessDeniedIsPermanent() async throws {
        try await TransferRig.with("denied", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "PUT", queryParams: ["partNumber": "1"]), action: .error, times: nil,
                    status: 403, code: "AccessDenied", message: "Access Denied"))
            let (error, events) = try await rig.failure(rig.http(size: 11 * MiB, seed: 23), to: "denied.bin")
            #expect(error.isPermanent, "\(error)")
            #expect(events.retries.isEmpty)
            #expect(try await rig.proxyLog("denied.bin").filter { $0.partNumber == 1 }.count == 1)
            try await rig.expectNothingLeft("denied.bin")
        }
    }
}

@Suite("Transfer engine: integrity and idempotence", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct TransferEngineIntegrityTests {
    @Test("a matching expected SHA-256 lets the transfer complete")
    func expectedSHA256Matches() async throws {
        try await TransferRig.with("shaok") { rig in
            let size = 11 * MiB
            let expected = try await rig.source.sha256(size: size, seed: 30)
            _ = try await rig.copy(rig.http(size: size, seed: 30), to: "ok.bin", expectedSHA256: expected)
            try await rig.expectStored("ok.bin", size: size, seed: 30)
        }
    }

    @Test(
        "an expected SHA-256 mismatch fails permanently before completing: no object, no upload left",
        arguments: [2 * MiB, 12 * MiB])
    func expectedSHA256Mismatch(size: Int) async throws {
        try await TransferRig.with("shabad") { rig in
            let other = try await rig.source.sha256(size: size, seed: 99)
            let (error, _) = try await rig.failure(
                rig.http(size: size, seed: 31), to: "bad.bin", expectedSHA256: other)
            #expect(error.isPermanent)
            #expect(error.code.contains("mismatch") || error.code.contains("checksum"), "\(error)")
            try await rig.expectNothingLeft("bad.bin")
        }
    }

    @Test("a second transfer of the same bytes is skipped: nothing fetched from the source, nothing uploaded")
    func skipWhenPresent() async throws {
        try await TransferRig.with("skip", proxy: true) { rig in
            let size = 11 * MiB
            let first = try await rig.copy(rig.http(size: size, seed: 32), to: "twice.bin").report
            #expect(first.outcome == .done)
            try await rig.source.reset()
            try await rig.proxy?.reset()

            let second = try await rig.copy(rig.http(size: size, seed: 32), to: "twice.bin").report
            #expect(second.outcome == .skipped)
            #expect(second.bytesFetched == 0)
            #expect(second.bytes == Int64(size))
            #expect(second.sha256 == first.sha256)
            #expect(try await rig.source.stats().bytes("/gen/\(size)/32") == 0)
            let log = try await rig.proxyLog("twice.bin")
            #expect(!log.contains { $0.method == "PUT" || $0.method == "POST" }, "\(log.map(\.method))")
            try await rig.expectStored("twice.bin", size: size, seed: 32)
        }
    }

    @Test("not asked first, an empty destination costs one create-only PUT and no HEAD")
    func freshDestinationWithoutHead() async throws {
        try await TransferRig.with("nohead", proxy: true) { rig in
            let size = 300 * 1024
            let request = rig.unasked(rig.http(size: size, seed: 35), to: "fresh.bin")
            let report = try await rig.run(request, options: TransferRig.createOnlyOptions).result.get()
            #expect(report.outcome == .done)
            let log = try await rig.proxyLog("fresh.bin")
            #expect(log.map(\.method) == ["PUT"])
            #expect(log.first?.status == .code(200))
            try await rig.expectStored("fresh.bin", size: size, seed: 35)

            // Without create-only writes nothing would stop an overwrite: the destination is asked first.
            try await rig.proxy?.reset()
            let again = try await rig.run(request).result.get()
            #expect(again.outcome == .skipped)
            #expect(try await rig.proxyLog("fresh.bin").map(\.method) == ["HEAD"])
        }
    }

    @Test("not asked first, a small object already there is met by the PUT's 412 and skipped when the same")
    func presentSmallObjectMetByConditionalPut() async throws {
        try await TransferRig.with("nohead412", proxy: true) { rig in
            let size = 64 * 1024
            let first = try await rig.copy(rig.http(size: size, seed: 36), to: "small.bin").report
            try await rig.proxy?.reset()
            let other = Data(repeating: 0x33, count: size)
            try await rig.bucket.put("other.bin", other)

            let same = try await rig.run(
                rig.unasked(rig.http(size: size, seed: 36), to: "small.bin"), options: TransferRig.createOnlyOptions
            ).result.get()
            #expect(same.outcome == .skipped)
            #expect(same.sha256 == first.sha256)
            #expect(same.bytesFetched == Int64(size), "the source was read before the PUT found the object")
            let log = try await rig.proxyLog("small.bin")
            #expect(log.map(\.method) == ["PUT", "HEAD"])
            #expect(log.first?.status == .code(412))
            try await rig.expectStored("small.bin", size: size, seed: 36)

            let (result, _) = try await rig.run(
                rig.unasked(rig.http(size: size, seed: 37), to: "other.bin"), options: TransferRig.createOnlyOptions)
            guard case .failure(let error) = result else {
                Issue.record("other bytes were written over: \(result)")
                return
            }
            #expect(error.code == "destination_exists")
            #expect(try await rig.bucket.readBack("other.bin")?.sha256 == LocalFile.sha256(other))
        }
    }

    @Test("not asked first, an object larger than one part is asked about before any part goes")
    func presentLargeObjectAskedBeforeParts() async throws {
        try await TransferRig.with("noheadlarge", proxy: true) { rig in
            let size = 11 * MiB
            _ = try await rig.copy(rig.http(size: size, seed: 38), to: "large.bin")
            try await rig.source.reset()
            try await rig.proxy?.reset()

            let second = try await rig.run(
                rig.unasked(rig.http(size: size, seed: 38), to: "large.bin"), options: TransferRig.createOnlyOptions
            ).result.get()
            #expect(second.outcome == .skipped)
            let log = try await rig.proxyLog("large.bin")
            #expect(!log.contains { $0.method == "PUT" || $0.method == "POST" }, "\(log.map(\.method))")
            #expect(log.map(\.method).first == "HEAD")
            #expect(
                try await rig.source.stats().bytes("/gen/\(size)/38") < size / 2,
                "the GET is dropped once the HEAD finds the object")
            try await rig.expectStored("large.bin", size: size, seed: 38)
        }
    }

    @Test("an existing object with other bytes of the same size is replaced, not skipped")
    func differentBytesAreNotSkipped() async throws {
        try await TransferRig.with("replace") { rig in
            let size = 2 * MiB
            try await rig.bucket.put("same-size.bin", Data(repeating: 0x5A, count: size))
            let (report, _) = try await rig.copy(rig.http(size: size, seed: 33), to: "same-size.bin")
            #expect(report.outcome == .done)
            try await rig.expectStored("same-size.bin", size: size, seed: 33)
        }
    }

    @Test("with createOnly, an existing object with other bytes is left alone and the transfer fails")
    func createOnlyKeepsExisting() async throws {
        try await TransferRig.with("createonly") { rig in
            let size = 2 * MiB
            let existing = Data(repeating: 0x42, count: size)
            try await rig.bucket.put("kept.bin", existing)
            _ = try await rig.failure(
                rig.http(size: size, seed: 34), to: "kept.bin", options: TransferRig.createOnlyOptions)
            let stored = try await rig.bucket.readBack("kept.bin")
            #expect(stored?.sha256 == LocalFile.sha256(existing))
        }
    }
}

/// Address vetting. This machine has a default route, so an address the engine failed to refuse would
/// really be contacted: every test that names a metadata address first checks, on loopback spellings
/// (which stay on this machine), that the engine vets connected addresses at all, and skips the rest
/// with a recorded issue when it does not. Private ranges other than loopback are not tried for that reason.
@Suite("Transfer engine: address safety (SSRF)", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct TransferEngineSafetyTests {
    /// Refused before any byte moves: permanent, `address_refused`, quickly (no connect timeout waited out).
    @discardableResult
    static func expectRefused(
        _ rig: TransferRig, _ url: String, allowPrivate: Bool, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Bool {
        var options = TransferRig.options
        options.allowPrivateSources = allowPrivate
        let started = ContinuousClock.now
        let (result, _) = try await rig.run(
            TransferRequest(source: .http(url), destination: rig.bucket.location("refused.bin")), options: options)
        guard case .failure(let error) = result else {
            Issue.record("\(url) was fetched, not refused", sourceLocation: sourceLocation)
            return false
        }
        TransferRig.expectNoSecret(in: error, sourceLocation: sourceLocation)
        #expect(error.isPermanent, "\(url): \(error)", sourceLocation: sourceLocation)
        #expect(error.code == "address_refused", "\(url): \(error)", sourceLocation: sourceLocation)
        #expect(
            ContinuousClock.now - started < .seconds(4), "\(url) took long to refuse", sourceLocation: sourceLocation)
        try await rig.expectNothingLeft("refused.bin", sourceLocation: sourceLocation)
        return error.code == "address_refused"
    }

    /// Whether the engine refuses loopback by its numeric spellings (no request reaches the fixture):
    /// the precondition for trying addresses that would leave this machine.
    static func vetsAddresses(_ rig: TransferRig) async throws -> Bool {
        let port = rig.source.process.port
        var refused = true
        for url in ["http://2130706433:\(port)/gen/1024/1", "http://[::ffff:127.0.0.1]:\(port)/gen/1024/1"] {
            refused = try await expectRefused(rig, url, allowPrivate: false) && refused
        }
        refused = try await rig.source.stats().requests == 0 && refused
        if !refused {
            Issue.record(
                "the engine does not vet loopback spellings: metadata addresses not tried, they would be contacted")
        }
        return refused
    }

    @Test("a redirect to the metadata address is refused, even with private sources allowed")
    func redirectToMetadata() async throws {
        try await TransferRig.with("ssrf") { rig in
            guard try await Self.vetsAddresses(rig) else { return }
            let url = rig.source.redirectURL(to: "http://169.254.169.254/latest/meta-data/").absoluteString
            try await Self.expectRefused(rig, url, allowPrivate: true)
            #expect(try await rig.source.stats().paths["/redirect"]?.requests == 1)
        }
    }

    @Test("metadata and link-local addresses are refused however they are spelled, private sources allowed")
    func metadataSpellings() async throws {
        try await TransferRig.with("ssrf") { rig in
            guard try await Self.vetsAddresses(rig) else { return }
            for url in [
                "http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/latest/",
                "http://[::ffff:a9fe:a9fe]/", "http://2852039166/", "http://[fd00:ec2::254]/latest/",
                "http://169.254.1.1/",
            ] {
                try await Self.expectRefused(rig, url, allowPrivate: true)
            }
        }
    }

    @Test("loopback sources are refused by default however they are spelled, and no request is sent")
    func loopbackRefusedByDefault() async throws {
        try await TransferRig.with("ssrf") { rig in
            let port = rig.source.process.port
            for url in [
                "http://127.0.0.1:\(port)/gen/1024/1", "http://localhost:\(port)/gen/1024/1",
                "http://2130706433:\(port)/gen/1024/1", "http://0x7f000001:\(port)/gen/1024/1",
                "http://127.1:\(port)/gen/1024/1", "http://[::ffff:127.0.0.1]:\(port)/gen/1024/1",
                "http://[::ffff:7f00:1]:\(port)/gen/1024/1", "http://[::1]:\(port)/gen/1024/1",
                "http://127.0.0.2:\(port)/gen/1024/1",
            ] {
                try await Self.expectRefused(rig, url, allowPrivate: false)
            }
            // The refusal names the address connected to, IPv6 included.
            var options = TransferRig.options
            options.allowPrivateSources = false
            let (result, _) = try await rig.run(
                TransferRequest(
                    source: .http("http://[::1]:\(port)/gen/1024/1"), destination: rig.bucket.location("refused.bin")),
                options: options)
            if case .failure(let error) = result {
                #expect(error.message.contains("connects to ::1,"), "\(error.message)")
            } else {
                Issue.record("http://[::1] was fetched")
            }
            #expect(try await rig.source.stats().requests == 0)
        }
    }

    @Test("a loopback source is fetched when private sources are allowed")
    func loopbackAllowed() async throws {
        try await TransferRig.with("ssrf") { rig in
            _ = try await rig.copy(rig.http(size: 1024, seed: 40), to: "allowed.bin")
            try await rig.expectStored("allowed.bin", size: 1024, seed: 40)
        }
    }

    @Test("a redirect to another scheme is refused and redirects are followed a bounded number of times")
    func redirectLimits() async throws {
        try await TransferRig.with("ssrf") { rig in
            for target in ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x", "dict://127.0.0.1/x"] {
                let (error, _) = try await rig.failure(
                    .http(rig.source.redirectURL(to: target).absoluteString), to: "scheme.bin")
                #expect(error.isPermanent, "\(target): \(error)")
            }
            _ = try await rig.copy(
                .http(rig.source.baseURL.absoluteString + "/hops/3/gen/1024/41"), to: "three-hops.bin")
            try await rig.expectStored("three-hops.bin", size: 1024, seed: 41)
            let (error, _) = try await rig.failure(
                .http(rig.source.baseURL.absoluteString + "/hops/9/gen/1024/41"), to: "nine-hops.bin")
            #expect(error.isPermanent, "\(error)")
            try await rig.expectNothingLeft("nine-hops.bin")
        }
    }

    @Test("an https source whose certificate no trusted CA signed fails at once as tls_error, and nothing is stored")
    func untrustedCertificate() async throws {
        try await TransferRig.with("tls") { rig in
            let folder = try TLSScratch.folder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let tls = try await TLSScratch.makeServerCertificate(in: folder)
            let server = try SourceServerFixture(tls: tls)
            defer { server.stop() }
            let url = server.url(size: 1024, seed: 50).absoluteString
            // The fixture does serve https: a client that trusts the certificate gets the 1,024 bytes.
            let trusted = try await TLSScratch.offPool {
                try TLSScratch.run(
                    "/usr/bin/env",
                    [
                        "python3", "-c",
                        "import ssl, sys, urllib.request; c = ssl.create_default_context(cafile=sys.argv[2]); "
                            + "print(len(urllib.request.urlopen(sys.argv[1], context=c).read()))",
                        url, tls.certificate,
                    ])
            }
            #expect(trusted.status == 0 && trusted.output == "1024\n", "\(trusted.output)")

            let started = ContinuousClock.now
            let (error, events) = try await rig.failure(.http(url), to: "untrusted.bin")
            #expect(error.code == "tls_error", "\(error)")
            #expect(error.isPermanent)
            #expect(error.message.contains(url), "the error does not name the source: \(error.message)")
            #expect(events.retries.isEmpty, "a certificate nobody trusts was retried: \(events.retries)")
            #expect(ContinuousClock.now - started < .seconds(4))
            try await rig.expectNothingLeft("untrusted.bin")
        }
    }

    @Test("schemes other than http, https and s3 are refused by name when parsed")
    func unsupportedSchemes() {
        for text in ["ftp://h/f", "gopher://h/", "dict://h/", "ldap://h/", "scp://h/f"] {
            #expect(throws: TransferError.self) { try TransferLocation.parse(text) }
            #expect((try? TransferLocation.parse(text)) == nil)
        }
    }
}

@Suite("Transfer engine: cancellation", .needs("SQUALL_S3_ENDPOINT"), .timeLimit(.minutes(3)))
struct TransferEngineCancellationTests {
    @Test("cancelling the task mid-transfer returns promptly with `cancelled` and leaves no upload behind")
    func cancelMidTransfer() async throws {
        try await TransferRig.with("cancel") { rig in
            let size = 40 * MiB
            let engine = try rig.engine()
            let recorder = EventRecorder()
            let request = TransferRequest(
                source: rig.http(size: size, seed: 50, ["slow_bps": "\(4 * MiB)"]),
                destination: rig.bucket.location("cancelled.bin"))
            let task = Task { () -> Result<TransferReport, TransferError> in
                do throws(TransferError) {
                    return .success(try await engine.transfer(request, events: recorder.record))
                } catch {
                    return .failure(error)
                }
            }
            // Past two parts, so a multipart upload exists to be aborted.
            let deadline = ContinuousClock.now + .seconds(20)
            while recorder.bytesDone < Int64(12 * MiB), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(recorder.bytesDone >= Int64(12 * MiB), "no progress past 12 MiB in 20 s")
            let cancelled = ContinuousClock.now
            task.cancel()
            let result = await task.value
            #expect(ContinuousClock.now - cancelled < .seconds(5), "took \(ContinuousClock.now - cancelled) to stop")
            #expect(throws: TransferError.cancelled) { try result.get() }
            try await rig.expectNothingLeft("cancelled.bin")
        }
    }

    @Test("cancelled while S3 is creating the multipart upload, the transfer still aborts that upload")
    func cancelDuringCreate() async throws {
        try await TransferRig.with("cancel", proxy: true) { rig in
            let proxy = try #require(rig.proxy)
            // The proxy forwards CreateMultipartUpload (S3 creates the upload), then holds the answer 3 s.
            try await proxy.program(
                fault: ProxyFault(
                    match: .init(method: "POST", queryContains: ["uploads"], queryAbsent: ["uploadId="]),
                    action: .stall, times: 1, seconds: 3, phase: "response"))
            let engine = try rig.engine()
            let request = TransferRequest(
                source: rig.http(size: 12 * MiB, seed: 51), destination: rig.bucket.location("create-cancelled.bin"))
            let task = Task { () -> Result<TransferReport, TransferError> in
                do throws(TransferError) {
                    return .success(try await engine.transfer(request))
                } catch {
                    return .failure(error)
                }
            }
            // Cancelled once S3 holds the upload and while its answer is still held back.
            let deadline = ContinuousClock.now + .seconds(20)
            var created = false
            while !created, ContinuousClock.now < deadline {
                created = try await rig.bucket.incompleteUploads().contains { $0.key == "create-cancelled.bin" }
                if !created { try await Task.sleep(for: .milliseconds(20)) }
            }
            try #require(created, "S3 never held a multipart upload for the object")
            task.cancel()
            let result = await task.value
            #expect(throws: TransferError.cancelled) { try result.get() }
            try await rig.expectNothingLeft("create-cancelled.bin")
        }
    }

    @Test("a task cancelled before it starts does not transfer")
    func cancelledBeforeStart() async throws {
        try await TransferRig.with("cancel") { rig in
            let engine = try rig.engine()
            let request = TransferRequest(
                source: rig.http(size: MiB, seed: 51), destination: rig.bucket.location("never.bin"))
            let task = Task { () -> Result<TransferReport, TransferError> in
                withUnsafeCurrentTask { $0?.cancel() }
                do throws(TransferError) { return .success(try await engine.transfer(request)) } catch {
                    return .failure(error)
                }
            }
            let result = await task.value
            #expect(throws: TransferError.cancelled) { try result.get() }
            try await rig.expectNothingLeft("never.bin")
        }
    }
}

/// Reading and hashing local files in tests.
enum LocalFile {
    static func sha256(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256Hasher()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.hex()
    }

    static func sha256(_ data: Data) -> String {
        var hasher = SHA256Hasher()
        hasher.update(data)
        return hasher.hex()
    }
}

/// CRC32C of `bytes` as S3 spells it (big-endian, base64), computed here without the engine's wrapper.
func crc32cBase64(_ bytes: ArraySlice<UInt8>) -> String {
    let value = bytes.withUnsafeBytes { squall_crc32c_update(0, $0.baseAddress, $0.count) }
    return Data([24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) }).base64EncodedString()
}
