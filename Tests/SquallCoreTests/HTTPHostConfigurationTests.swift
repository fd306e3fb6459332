import Testing

@testable import SquallCore

@Suite("Endpoint address configuration")
struct HTTPHostConfigurationTests {
    func resolve(_ environment: [String: String], flags: [String] = []) throws -> SquallConfiguration {
        try CommonOptions.parse(flags).resolve(environment: environment, defaultNodeName: "test-node")
    }

    @Test("the endpoint binds every interface unless told otherwise, as containers need")
    func defaultsToAllInterfaces() throws {
        let configuration = try resolve(["SQUALL_HTTP_PORT": "8081"])
        #expect(configuration.httpPort == 8081)
        #expect(configuration.httpHost == "0.0.0.0")
    }

    @Test("SQUALL_HTTP_HOST and --http-host set the address; the flag wins")
    func hostSetting() throws {
        #expect(try resolve(["SQUALL_HTTP_HOST": "127.0.0.1"]).httpHost == "127.0.0.1")
        #expect(try resolve(["SQUALL_HTTP_HOST": "127.0.0.1"], flags: ["--http-host", "::1"]).httpHost == "::1")
    }

    @Test("a host that is not a name or address is refused, naming the setting")
    func badHost() {
        #expect {
            try resolve(["SQUALL_HTTP_HOST": "http://x/"])
        } throws: { error in
            "\(error)".contains("SQUALL_HTTP_HOST") && "\(error)".contains("http://x/")
        }
    }
}
