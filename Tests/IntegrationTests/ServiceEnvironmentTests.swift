import Testing

@testable import SquallTestSupport

/// The rule that keeps CI honest: a required server that is missing fails a test instead of skipping it.
@Suite("Service requirements")
struct ServiceEnvironmentTests {
    @Test("without the variables and without SQUALL_REQUIRE_SERVICES the tests are skipped")
    func skippedWhenNotRequired() {
        #expect(!ServiceEnvironment.shouldRun(needing: ["SQUALL_DATABASE_URL"], in: [:]))
    }

    @Test("with SQUALL_REQUIRE_SERVICES=1 the tests run and a missing variable fails them")
    func failsWhenRequired() {
        let environment = ["SQUALL_REQUIRE_SERVICES": "1"]
        #expect(ServiceEnvironment.shouldRun(needing: ["SQUALL_DATABASE_URL"], in: environment))
        #expect(throws: ServiceEnvironment.MissingService.self) {
            try ServiceEnvironment.value("SQUALL_DATABASE_URL", in: environment)
        }
    }

    @Test("with the variables set the tests run and read them")
    func runsWhenSet() throws {
        let environment = ["SQUALL_DATABASE_URL": "postgres://h/db"]
        #expect(ServiceEnvironment.shouldRun(needing: ["SQUALL_DATABASE_URL"], in: environment))
        #expect(try ServiceEnvironment.value("SQUALL_DATABASE_URL", in: environment) == "postgres://h/db")
    }
}
