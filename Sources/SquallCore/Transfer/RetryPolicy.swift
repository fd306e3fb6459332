/// What one request's reply means for the transfer: go on, try again later, or give up.
///
/// Retryable: connection errors, timeouts (connect, and the low-speed limit that notices a stall),
/// 429, 500, 502, 503, 504, and S3's `SlowDown`/`RequestTimeout`/`InternalError` error codes.
/// Permanent: 400, 401, 403, 404, 410 and every other 4xx, a refused address, a bad URL or
/// scheme, too many redirects. Waits between attempts grow exponentially to a cap, with full
/// jitter (a uniformly random wait below the bound), so a fleet of Consumers retrying against
/// one throttled endpoint spreads out instead of knocking in step.
struct RetryPolicy: Sendable, Equatable {
    var maxAttempts: Int
    var baseDelay: Duration = .milliseconds(200)
    var maxDelay: Duration

    enum Verdict: Sendable, Equatable {
        case success
        case retry(reason: String)
        case fail(TransferError)
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1), given a random fraction in 0..<1.
    func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let bound = min(baseDelay * (1 << exponent), maxDelay)
        return bound * random
    }

    /// Judges a reply to a request described by `what` (e.g. `GET http://host/a`), for error texts.
    static func judge(_ reply: HTTPReply, what: String) -> Verdict {
        if let refused = reply.refusedAddress {
            return .fail(TransferError(code: "address_refused", message: "\(what): \(refused)", isPermanent: true))
        }
        if reply.curlCode != 0 { return judgeConnection(reply, what: what) }
        switch reply.status {
        case 200..<300:
            return .success
        case 429, 500, 502, 503, 504:
            let s3Code = S3XML.firstValue(of: "Code", in: reply.bodyText)
            return .retry(reason: s3Code.map(reasonForS3Code) ?? "http_\(reply.status)")
        case 400..<500:
            let s3Code = S3XML.firstValue(of: "Code", in: reply.bodyText)
            if let s3Code, s3Code == "RequestTimeout" || s3Code == "SlowDown" {
                return .retry(reason: reasonForS3Code(s3Code))
            }
            let detail = s3Code.map { " (\($0): \(S3XML.firstValue(of: "Message", in: reply.bodyText) ?? ""))" } ?? ""
            return .fail(
                TransferError(
                    code: "http_\(reply.status)", message: "\(what) answered \(reply.status)\(detail)",
                    isPermanent: true))
        default:
            return .fail(
                TransferError(
                    code: "http_\(reply.status)", message: "\(what) answered \(reply.status)", isPermanent: true))
        }
    }

    static func reasonForS3Code(_ code: String) -> String {
        switch code {
        case "SlowDown": "slow_down"
        case "RequestTimeout": "request_timeout"
        case "InternalError": "internal_error"
        case "ServiceUnavailable": "service_unavailable"
        default: "s3_\(code)"
        }
    }

    private static func judgeConnection(_ reply: HTTPReply, what: String) -> Verdict {
        let detail = "\(what): \(reply.curlMessage)"
        switch reply.curlCode {
        case 42: return .fail(.cancelled)  // CURLE_ABORTED_BY_CALLBACK
        case 1:  // CURLE_UNSUPPORTED_PROTOCOL, e.g. a redirect to ftp://
            return .fail(TransferError(code: "unsupported_scheme", message: detail, isPermanent: true))
        case 3: return .fail(TransferError(code: "bad_url", message: detail, isPermanent: true))
        case 47: return .fail(TransferError(code: "too_many_redirects", message: detail, isPermanent: true))
        case 35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91:
            return .fail(TransferError(code: "tls_error", message: detail, isPermanent: true))
        case 6: return .retry(reason: "dns_error")
        case 7: return .retry(reason: "connect_failed")
        case 28: return .retry(reason: "timeout")
        case 18: return .retry(reason: "short_body")
        case 52, 55, 56: return .retry(reason: "connection_reset")
        default: return .retry(reason: "curl_\(reply.curlCode)")
        }
    }
}
