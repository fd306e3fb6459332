/// How an object is cut into multipart parts, within S3's limits: parts of at least 5 MiB (all but
/// the last), at most 10,000 of them, at most 5 GiB each.
///
/// Part sizes are whole MiB, so every part boundary is also a 64-byte block boundary of the
/// whole-object SHA-256 (whose state is saved there for resuming, see ``ResumableSHA256``).
enum PartPlan {
    static let mebibyte = 1 << 20
    static let minimumPartSize = 5 * mebibyte
    static let maximumPartSize = 5 * 1024 * mebibyte
    static let maximumParts = 10_000

    /// The part size for an object of `objectSize` bytes (nil: unknown) when `requested` was asked for.
    static func partSize(requested: Int, objectSize: Int64?) -> Int {
        var size = roundUpToMebibyte(max(requested, minimumPartSize))
        if let objectSize, objectSize > Int64(size) * Int64(maximumParts) {
            let needed = (objectSize + Int64(maximumParts) - 1) / Int64(maximumParts)
            size = roundUpToMebibyte(Int(needed))
        }
        return min(size, maximumPartSize)
    }

    private static func roundUpToMebibyte(_ bytes: Int) -> Int {
        (bytes + mebibyte - 1) / mebibyte * mebibyte
    }
}
