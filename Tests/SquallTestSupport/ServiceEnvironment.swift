// Test support only: release builds (static Swift runtime, no Testing module) compile this file empty.
#if canImport(Testing)
    import Foundation
    import Testing

    /// The real servers the integration tests use, as `scripts/services env` describes them.
    ///
    /// A test that needs a server asks for its setting here. When the variable is unset the test is
    /// skipped with a visible reason, unless `SQUALL_REQUIRE_SERVICES=1` (as `scripts/test` and CI set),
    /// where a missing or unreachable server fails the test instead.
    enum ServiceEnvironment {
        static let environment = ProcessInfo.processInfo.environment

        /// Whether missing servers are failures rather than skips.
        static var required: Bool { environment["SQUALL_REQUIRE_SERVICES"] == "1" }

        /// Whether tests needing `variables` should run: they are set, or servers are required.
        static func shouldRun(needing variables: [String], in environment: [String: String] = environment) -> Bool {
            environment["SQUALL_REQUIRE_SERVICES"] == "1" || variables.allSatisfy { !(environment[$0] ?? "").isEmpty }
        }

        /// The value of `variable`, or a failure explaining how to start the servers.
        static func value(_ variable: String, in environment: [String: String] = environment) throws -> String {
            guard let value = environment[variable], !value.isEmpty else {
                throw MissingService(variable: variable)
            }
            return value
        }

        struct MissingService: Error, CustomStringConvertible {
            var variable: String
            var description: String {
                "\(variable) is not set but SQUALL_REQUIRE_SERVICES=1: run `scripts/services up` and `eval \"$(scripts/services env)\"`"
            }
        }
    }

    extension Trait where Self == ConditionTrait {
        /// Runs the test only where its servers are configured or required (see ``ServiceEnvironment``).
        static func needs(_ variables: String...) -> Self {
            .enabled(
                if: ServiceEnvironment.required
                    || variables.allSatisfy { !(ServiceEnvironment.environment[$0] ?? "").isEmpty },
                "\(variables.joined(separator: ", ")) not set (run scripts/services up, or set SQUALL_REQUIRE_SERVICES=1 to fail instead)"
            )
        }
    }
#endif
