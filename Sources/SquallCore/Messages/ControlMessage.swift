/// An operator's order to every Consumer, broadcast on the `squall.control` fanout exchange.
public struct ControlMessage: SquallMessage, Equatable {
    public static let kind = "control"

    public enum Command: Sendable, Equatable {
        case cancelBatch(batchID: Int64)
        case cancelJob(jobID: Int64)
    }

    public var command: Command
    public var issuedAt: Timestamp

    public init(command: Command, issuedAt: Timestamp) {
        self.command = command
        self.issuedAt = issuedAt
    }

    enum CodingKeys: String, CodingKey {
        case command
        case batchID = "batch_id"
        case jobID = "job_id"
        case issuedAt = "issued_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        issuedAt = try container.decode(Timestamp.self, forKey: .issuedAt)
        let name = try container.decode(String.self, forKey: .command)
        switch name {
        case "cancel_batch": command = .cancelBatch(batchID: try container.decode(Int64.self, forKey: .batchID))
        case "cancel_job": command = .cancelJob(jobID: try container.decode(Int64.self, forKey: .jobID))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .command, in: container, debugDescription: "unknown command \"\(name)\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(issuedAt, forKey: .issuedAt)
        switch command {
        case .cancelBatch(let batchID):
            try container.encode("cancel_batch", forKey: .command)
            try container.encode(batchID, forKey: .batchID)
        case .cancelJob(let jobID):
            try container.encode("cancel_job", forKey: .command)
            try container.encode(jobID, forKey: .jobID)
        }
    }
}
