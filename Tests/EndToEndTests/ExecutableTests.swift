import Foundation
import Testing

@testable import SquallTestSupport

/// The built executables, run as processes the way operators and Kubernetes run them.
@Suite("Executables")
struct ExecutableTests {
    static let services = ["squall-producer", "squall-consumer", "squall-observer", "squall-collector"]

    @Test("every executable answers --help with a description of its flags", arguments: services + ["squallctl"])
    func help(executable: String) throws {
        let run = try BuiltExecutable(executable).run(["--help"])
        #expect(run.status == 0)
        #expect(run.output.contains("USAGE: \(executable)"))
        if executable != "squallctl" {
            for flag in ["--database-url", "--amqp-url", "--s3-endpoint", "--http-port", "--log-format", "--node-name"]
            {
                #expect(run.output.contains(flag), "\(executable) --help does not mention \(flag)")
            }
        }
    }

    @Test("a service that needs the database or the broker refuses to start without its URL, naming the variable")
    func missingURL() throws {
        for executable in ["squall-producer", "squall-observer", "squall-collector"] {
            let noDatabase = try BuiltExecutable(executable).run(
                [], environment: ["SQUALL_AMQP_URL": "amqp://u:p@127.0.0.1:1/%2F"])
            #expect(noDatabase.status == 64)
            #expect(noDatabase.output.contains("SQUALL_DATABASE_URL: is not set (or pass --database-url)"))
            let noBroker = try BuiltExecutable(executable).run(
                [], environment: ["SQUALL_DATABASE_URL": "postgres://u:p@127.0.0.1:1/squall"])
            #expect(noBroker.status == 64)
            #expect(noBroker.output.contains("SQUALL_AMQP_URL: is not set (or pass --amqp-url)"))
        }
        let badWindow = try BuiltExecutable("squall-producer").run(
            ["--queue-high-water", "10", "--queue-low-water", "10"],
            environment: [
                "SQUALL_AMQP_URL": "amqp://u:p@127.0.0.1:1/%2F",
                "SQUALL_DATABASE_URL": "postgres://u:p@127.0.0.1:1/squall",
            ])
        #expect(badWindow.status == 64)
        #expect(badWindow.output.contains("low-water mark 10 must be ≥ 0 and below the high-water mark 10"))
    }

    @Test("a bad setting stops start-up with an error naming it")
    func badSetting() throws {
        let run = try BuiltExecutable("squall-consumer").run(
            [], environment: ["SQUALL_AMQP_URL": "amqp://u:p@host:abc/"])
        #expect(run.status == 64)
        #expect(run.output.contains("SQUALL_AMQP_URL: port \"abc\" is not a number"))
    }
}

/// Shutdown time is a property of the executables, not of a machine busy with a hundred parallel tests:
/// `scripts/test` runs suites named `…DisruptiveTests` alone, after the rest, which is where this belongs.
@Suite("Executables: shutdown time", .serialized)
struct ShutdownTimingDisruptiveTests {
    @Test("every service exits 0 within 2 s of SIGTERM", arguments: ExecutableTests.services)
    func sigterm(executable: String) async throws {
        let process = try BuiltExecutable(executable).start(
            environment: [
                "SQUALL_AMQP_URL": "amqp://squall:mq-secret@127.0.0.1:1/%2F",
                "SQUALL_DATABASE_URL": "postgres://squall:pg-secret@127.0.0.1:1/squall", "SQUALL_LOG_FORMAT": "json",
            ])
        let started = try await process.waitForOutput(containing: "\"message\":\"running\"", timeout: .seconds(20))
        #expect(!started.contains("mq-secret"), "the password leaked into the start-up log")
        #expect(!started.contains("pg-secret"), "the password leaked into the start-up log")
        let stopped = ContinuousClock.now
        process.signal(SIGTERM)
        let status = try await process.waitForExit(timeout: .seconds(2))
        #expect(status == 0)
        #expect(ContinuousClock.now - stopped < .seconds(2))
    }
}
