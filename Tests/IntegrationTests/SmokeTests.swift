import CCurl
import CLibPQ
import CRabbitMQ
import Foundation
import SquallCore
import Testing

@testable import SquallTestSupport

/// The three C libraries reach the three real servers: the ground every other integration test stands on.
@Suite("Smoke: real servers through the C libraries")
struct SmokeTests {
    @Test("libpq connects to PostgreSQL and runs a parameterized query", .needs("SQUALL_DATABASE_URL"))
    func postgres() throws {
        let url = try DatabaseURL(parsing: try ServiceEnvironment.value("SQUALL_DATABASE_URL"))
        let parameters = url.connectionParameters
        let connection = withCStrings(parameters.map(\.keyword)) { keywords in
            withCStrings(parameters.map(\.value)) { values in
                PQconnectdbParams(keywords, values, 0)
            }
        }
        defer { PQfinish(connection) }
        #expect(PQstatus(connection) == CONNECTION_OK, "\(String(cString: PQerrorMessage(connection)))")
        let result = withCStrings(["21"]) { values in
            PQexecParams(connection, "SELECT $1::int * 2", 1, nil, values, nil, nil, 0)
        }
        defer { PQclear(result) }
        #expect(PQresultStatus(result) == PGRES_TUPLES_OK)
        #expect(String(cString: PQgetvalue(result, 0, 0)) == "42")
    }

    @Test("rabbitmq-c declares a queue, publishes and gets the message back", .needs("SQUALL_AMQP_URL"))
    func rabbitmq() throws {
        let url = try AMQPURL(parsing: try ServiceEnvironment.value("SQUALL_AMQP_URL"))
        let state = amqp_new_connection()
        defer { amqp_destroy_connection(state) }
        let socket = amqp_tcp_socket_new(state)
        #expect(amqp_socket_open(socket, url.host, Int32(url.port)) == AMQP_STATUS_OK.rawValue)
        let login = squall_amqp_login_plain(
            state, url.virtualHost, 0, 131072, 0, url.user, url.password.revealed)
        try #require(login.reply_type == AMQP_RESPONSE_NORMAL, "login to \(url) failed")
        defer {
            amqp_channel_close(state, 1, AMQP_REPLY_SUCCESS)
            amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        amqp_channel_open(state, 1)
        try #require(amqp_get_rpc_reply(state).reply_type == AMQP_RESPONSE_NORMAL)

        let queue = "squall.smoke.\(UUID().uuidString)"
        amqp_queue_declare(state, 1, squall_amqp_bytes(queue), 0, 0, 0, 1, squall_amqp_empty_table())
        try #require(amqp_get_rpc_reply(state).reply_type == AMQP_RESPONSE_NORMAL)

        let body = "hello from squall"
        let status = body.withCString { text in
            amqp_basic_publish(
                state, 1, squall_amqp_bytes(""), squall_amqp_bytes(queue), 0, 0, nil, squall_amqp_bytes(text))
        }
        #expect(status == AMQP_STATUS_OK.rawValue)

        // basic.get may race the publish by a moment; ask a few times.
        var received: String?
        for _ in 0..<20 where received == nil {
            let reply = amqp_basic_get(state, 1, squall_amqp_bytes(queue), 1)
            try #require(reply.reply_type == AMQP_RESPONSE_NORMAL)
            if reply.reply.id == AMQP_BASIC_GET_OK_METHOD {
                var message = amqp_message_t()
                let read = amqp_read_message(state, 1, &message, 0)
                try #require(read.reply_type == AMQP_RESPONSE_NORMAL)
                received = String(
                    decoding: UnsafeRawBufferPointer(start: message.body.bytes, count: message.body.len), as: UTF8.self)
                amqp_destroy_message(&message)
            } else {
                usleep(50_000)
            }
        }
        #expect(received == body)
    }

    @Test("libcurl signs with SigV4 and PUTs then GETs an object on the S3 emulator", .needs("SQUALL_S3_ENDPOINT"))
    func s3() throws {
        let endpoint = try ServiceEnvironment.value("SQUALL_S3_ENDPOINT")
        let bucket = "squall-smoke-\(UInt32.random(in: 0...UInt32.max))"
        let payload = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })

        #expect(try SmokeCurl.request(method: "PUT", url: "\(endpoint)/\(bucket)").status == 200)
        #expect(
            try SmokeCurl.request(method: "PUT", url: "\(endpoint)/\(bucket)/hello.bin", body: payload).status == 200)
        let fetched = try SmokeCurl.request(method: "GET", url: "\(endpoint)/\(bucket)/hello.bin")
        #expect(fetched.status == 200)
        #expect(fetched.body == payload)
    }
}

/// Calls `body` with a C array of C strings that lives for the call.
func withCStrings<Result>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> Result) -> Result {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    return body(pointers.map { UnsafePointer($0) } + [nil])
}

/// One blocking libcurl request, just enough for the smoke test.
enum SmokeCurl {
    final class Buffers {
        var upload: Data
        var uploadOffset = 0
        var download = Data()
        init(upload: Data) { self.upload = upload }
    }

    static func request(method: String, url: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        let environment = ServiceEnvironment.environment
        let handle = try #require(curl_easy_init())
        defer { curl_easy_cleanup(handle) }
        let buffers = Buffers(upload: body ?? Data())
        let context = Unmanaged.passRetained(buffers)
        defer { context.release() }

        squall_easy_setopt_string(handle, CURLOPT_URL, url)
        squall_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
        squall_easy_setopt_string(handle, CURLOPT_PROXY, "")
        let region = environment["SQUALL_S3_REGION"] ?? "us-east-1"
        squall_easy_setopt_string(handle, CURLOPT_AWS_SIGV4, "aws:amz:\(region):s3")
        let user = "\(environment["AWS_ACCESS_KEY_ID"] ?? "squall"):\(environment["AWS_SECRET_ACCESS_KEY"] ?? "squall")"
        squall_easy_setopt_string(handle, CURLOPT_USERPWD, user)
        var headers: UnsafeMutablePointer<curl_slist>? = nil
        headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD")
        defer { curl_slist_free_all(headers) }
        squall_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        squall_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque())
        squall_easy_setopt_write_function(handle) { data, size, count, user in
            let buffers = Unmanaged<Buffers>.fromOpaque(user!).takeUnretainedValue()
            buffers.download.append(UnsafeRawPointer(data!).assumingMemoryBound(to: UInt8.self), count: size * count)
            return size * count
        }
        if body != nil {
            squall_easy_setopt_long(handle, CURLOPT_UPLOAD, 1)
            squall_easy_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(buffers.upload.count))
            squall_easy_setopt_pointer(handle, CURLOPT_READDATA, context.toOpaque())
            squall_easy_setopt_read_function(handle) { data, size, count, user in
                let buffers = Unmanaged<Buffers>.fromOpaque(user!).takeUnretainedValue()
                let length = min(size * count, buffers.upload.count - buffers.uploadOffset)
                buffers.upload.copyBytes(
                    to: UnsafeMutableRawPointer(data!).assumingMemoryBound(to: UInt8.self),
                    from: buffers.uploadOffset..<(buffers.uploadOffset + length))
                buffers.uploadOffset += length
                return length
            }
        }
        let code = curl_easy_perform(handle)
        try #require(code == CURLE_OK, "\(method) \(url): \(String(cString: curl_easy_strerror(code)))")
        var status = 0
        squall_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return (status, buffers.download)
    }
}
