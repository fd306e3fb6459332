import CChecksum
import Foundation

/// The checksum S3 verifies on each part (and on a single PUT): CRC32C, sent as `x-amz-checksum-crc32c`.
///
/// The whole object's SHA-256 is what Squall promises (metadata, the manifest's expected digest); the
/// per-part checksum only has to let S3 refuse a part damaged on the way. CRC32C does that at a tenth
/// of SHA-256's cost (the processor has an instruction for it), so every byte is hashed once with
/// SHA-256 and once with CRC32C instead of twice with SHA-256 (docs/transfer.md, "Integrity").
struct PartChecksum: Sendable, Equatable, Hashable {
    /// The CRC32C of the bytes so far (0 for none).
    private(set) var value: UInt32 = 0

    init() {}

    init(value: UInt32) { self.value = value }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        value = squall_crc32c_update(value, base, bytes.count)
    }

    static func of(_ bytes: UnsafeRawBufferPointer) -> PartChecksum {
        var checksum = PartChecksum()
        checksum.update(bytes)
        return checksum
    }

    /// Big-endian bytes in base64, as S3 writes CRC32C checksums (`x-amz-checksum-crc32c`, `<ChecksumCRC32C>`).
    var base64: String {
        Data([UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)])
            .base64EncodedString()
    }

    /// Reads S3's base64 spelling back; nil when `text` is not four bytes in base64.
    init?(base64 text: String) {
        guard let data = Data(base64Encoded: text), data.count == 4 else { return nil }
        value = data.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
