import Testing

@testable import SquallCore

@Suite("Configuration")
struct ConfigurationTests {
    private func resolve(_ environment: [String: String], flags: [String] = []) throws -> SquallConfiguration {
        try CommonOptions.parse(flags).resolve(environment: environment, defaultNodeName: "test-node")
    }

    @Test("every DESIGN.md variable is read from the environment")
    func readsEveryVariable() throws {
        let configuration = try resolve([
            "SQUALL_DATABASE_URL": "postgres://squall:pw@db.internal:6432/jobs?sslmode=require",
            "SQUALL_AMQP_URL": "amqps://bunny:pw@mq.internal/prod%2Fsquall",
            "SQUALL_S3_ENDPOINT": "http://127.0.0.1:9000/",
            "SQUALL_S3_REGION": "eu-west-1",
            "SQUALL_S3_PATH_STYLE": "1",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
            "AWS_SESSION_TOKEN": "token-value",
            "SQUALL_HTTP_PORT": "8080",
            "SQUALL_NODE_NAME": "consumer-7",
            "SQUALL_LOG_FORMAT": "json",
            "SQUALL_ALLOW_PRIVATE_SOURCES": "1",
        ])
        let database = try #require(configuration.databaseURL)
        #expect(database.host == "db.internal")
        #expect(database.port == 6432)
        #expect(database.database == "jobs")
        #expect(database.sslMode == "require")
        #expect(database.password?.revealed == "pw")
        let amqp = try #require(configuration.amqpURL)
        #expect(amqp.tls)
        #expect(amqp.port == 5671)
        #expect(amqp.virtualHost == "prod/squall")
        #expect(configuration.s3.endpoint == "http://127.0.0.1:9000")
        #expect(configuration.s3.region == "eu-west-1")
        #expect(configuration.s3.pathStyle)
        #expect(configuration.s3.credentials?.sessionToken?.revealed == "token-value")
        #expect(configuration.httpPort == 8080)
        #expect(configuration.nodeName == "consumer-7")
        #expect(configuration.logFormat == .json)
        #expect(configuration.allowPrivateSources)
    }

    @Test("a flag wins over its environment variable")
    func flagWins() throws {
        let configuration = try resolve(
            ["SQUALL_NODE_NAME": "from-env", "SQUALL_HTTP_PORT": "1"],
            flags: ["--node-name", "from-flag", "--http-port", "9090"])
        #expect(configuration.nodeName == "from-flag")
        #expect(configuration.httpPort == 9090)
    }

    @Test("defaults when nothing is set")
    func defaults() throws {
        let configuration = try resolve([:])
        #expect(configuration.databaseURL == nil)
        #expect(configuration.s3.region == "us-east-1")
        #expect(!configuration.s3.pathStyle)
        #expect(configuration.nodeName == "test-node")
        #expect(configuration.logFormat == .text)
        #expect(throws: ConfigurationError.self) { try configuration.requireDatabaseURL() }
    }

    @Test(
        "a bad value is an error naming the variable and the offending part",
        arguments: [
            ("SQUALL_AMQP_URL", "amqp://u:p@host:abc/", "SQUALL_AMQP_URL: port \"abc\" is not a number"),
            ("SQUALL_AMQP_URL", "http://host/", "SQUALL_AMQP_URL: scheme \"http\" is not amqp:// or amqps://"),
            (
                "SQUALL_DATABASE_URL", "postgres://host:5432",
                "SQUALL_DATABASE_URL: database name is missing (postgres://host/DATABASE)"
            ),
            (
                "SQUALL_DATABASE_URL", "postgres://h/db?sslmode=maybe",
                "SQUALL_DATABASE_URL: sslmode \"maybe\" is not one of allow, disable, prefer, require, verify-ca, verify-full"
            ),
            ("SQUALL_HTTP_PORT", "http", "SQUALL_HTTP_PORT: port \"http\" is not a number in 0...65535"),
            ("SQUALL_LOG_FORMAT", "xml", "SQUALL_LOG_FORMAT: log format \"xml\" is not text or json"),
            ("SQUALL_S3_PATH_STYLE", "maybe", "SQUALL_S3_PATH_STYLE: \"maybe\" is not 1 or 0"),
            ("SQUALL_S3_ENDPOINT", "ftp://s3.local", "SQUALL_S3_ENDPOINT: scheme \"ftp\" is not http:// or https://"),
        ])
    func badValueNamesVariable(variable: String, value: String, message: String) {
        #expect {
            try resolve([variable: value])
        } throws: { error in
            (error as? ConfigurationError)?.description == message
        }
    }

    @Test("an error about a flag names the flag")
    func errorNamesFlag() {
        #expect {
            try resolve([:], flags: ["--amqp-url", "amqp://h:99999/"])
        } throws: { error in
            (error as? ConfigurationError)?.description == "--amqp-url: port 99999 is outside 1...65535"
        }
    }

    @Test("an access key without its secret is refused")
    func halfCredentials() {
        #expect {
            try resolve(["AWS_ACCESS_KEY_ID": "AKID"])
        } throws: { error in
            (error as? ConfigurationError)?.setting == "AWS_SECRET_ACCESS_KEY"
        }
    }

    @Test("printed configuration masks every secret")
    func masksSecrets() throws {
        let configuration = try resolve([
            "SQUALL_DATABASE_URL": "postgres://squall:db-secret@127.0.0.1:5432/squall",
            "SQUALL_AMQP_URL": "amqp://squall:mq-secret@127.0.0.1:5672/%2F",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "s3-secret",
            "AWS_SESSION_TOKEN": "s3-token",
        ])
        let printed = configuration.description
        for secret in ["db-secret", "mq-secret", "s3-secret", "s3-token", "AKIDEXAMPLE"] {
            #expect(!printed.contains(secret), "\(secret) leaked into \(printed)")
        }
        #expect(printed.contains("postgres://squall:******@127.0.0.1:5432/squall"))
        #expect(printed.contains("amqp://squall:******@127.0.0.1:5672/%2F"))
    }

    @Test("a parse error never quotes the password")
    func parseErrorMasksPassword() {
        #expect {
            try resolve(["SQUALL_AMQP_URL": "amqp://user:hunter2@host:port/"])
        } throws: { error in
            !String(describing: error).contains("hunter2")
        }
        #expect {
            try resolve(["SQUALL_DATABASE_URL": "nope:hunter2@host"])
        } throws: { error in
            !String(describing: error).contains("hunter2")
        }
    }

    @Test("percent-escapes in user, password and vhost are decoded")
    func percentDecoding() throws {
        let url = try AMQPURL(parsing: "amqp://us%40er:p%3Ass@[::1]:5673/v%2Fh?heartbeat=5")
        #expect(url.user == "us@er")
        #expect(url.password.revealed == "p:ss")
        #expect(url.host == "::1")
        #expect(url.port == 5673)
        #expect(url.virtualHost == "v/h")
        #expect(url.heartbeatSeconds == 5)
        // scripts/services writes the CA's path this way, so a folder with a space or '&' works.
        let tls = try AMQPURL(parsing: "amqps://u:p@localhost/%2F?cacertfile=/tmp/a%20b%26c/tls/ca.pem")
        #expect(tls.caCertificatePath == "/tmp/a b&c/tls/ca.pem")
    }

    @Test("libpq connection parameters carry the password, the description does not")
    func databaseParameters() throws {
        let url = try DatabaseURL(parsing: "postgres://squall:se%20cret@localhost:25432/squall?sslmode=disable")
        let parameters = Dictionary(uniqueKeysWithValues: url.connectionParameters.map { ($0.keyword, $0.value) })
        #expect(parameters["password"] == "se cret")
        #expect(parameters["port"] == "25432")
        #expect(parameters["sslmode"] == "disable")
        #expect(url.description == "postgres://squall:******@localhost:25432/squall?sslmode=disable")
    }

    @Test("a queue prefix renames every queue and exchange; one with spaces or slashes is refused by name")
    func queuePrefix() throws {
        #expect(try resolve([:]).topology.jobs == "squall.jobs")
        let prefixed = try resolve(["SQUALL_QUEUE_PREFIX": "staging."])
        #expect(prefixed.topology.jobs == "staging.squall.jobs")
        #expect(prefixed.topology.control == "staging.squall.control")
        let flagWins = try resolve(["SQUALL_QUEUE_PREFIX": "env."], flags: ["--queue-prefix", "flag."])
        #expect(flagWins.queuePrefix == "flag.")
        #expect {
            try resolve(["SQUALL_QUEUE_PREFIX": "a b/c"])
        } throws: { error in
            "\(error)".contains("SQUALL_QUEUE_PREFIX") && "\(error)".contains("\"a b/c\"")
        }
    }
}
