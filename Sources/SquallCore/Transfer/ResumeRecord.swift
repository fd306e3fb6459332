import Foundation

/// What a multipart upload in progress needs to be picked up by another process: written beside
/// the upload in the destination bucket after every part (key `.squall-resume/<sha256 of the key>`),
/// deleted when the upload completes or is aborted.
///
/// S3 cannot say which source an upload in progress was reading, nor hold the whole-object
/// digest's state; this record does both. A resumed transfer checks that the source is unchanged
/// (same validators and size), that S3 still holds the upload and its parts `1…partsDone` with the
/// recorded ETags, restores the digest state after part `partsDone`, and reads the source from the
/// byte after it. Anything else and the stale upload is aborted and the transfer starts afresh.
struct ResumeRecord: Codable, Sendable, Equatable {
    /// 2: parts carry their CRC32C (version 1 carried a SHA-256 per part).
    static let currentVersion = 2
    var version = currentVersion
    var key: String
    var uploadID: String
    var source: String
    var sourceETag: String?
    var sourceLastModified: String?
    var size: Int64
    var partSize: Int
    /// Parts `1…partsDone` are uploaded; the digest state is the one after part `partsDone`.
    var partsDone: Int
    var digestState: [UInt32]
    var parts: [StoredPart]

    struct StoredPart: Codable, Sendable, Equatable {
        var number: Int
        var etag: String
        /// The part's CRC32C as S3 spells it (base64), for CompleteMultipartUpload.
        var crc32c: String
    }

    /// What any version of the record says: enough to abort an upload that cannot be continued.
    struct UploadOnly: Decodable {
        var uploadID: String
    }

    static func key(for objectKey: String) -> String {
        ".squall-resume/"
            + Array(objectKey.utf8).withUnsafeBytes { ResumableSHA256.hex(ResumableSHA256.digest(of: $0)) }
    }

    /// Whether this record describes an upload of the same bytes the source holds now.
    func matches(source: String, etag: String?, lastModified: String?, size: Int64, partSize: Int) -> Bool {
        self.source == source && self.size == size && self.partSize == partSize
            && (etag != nil || lastModified != nil) && sourceETag == etag && sourceLastModified == lastModified
    }
}
