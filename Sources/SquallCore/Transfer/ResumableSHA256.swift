import COpenSSL
import Foundation

/// SHA-256 over a stream whose running state can be written down and picked up by another process.
///
/// The whole-object digest of a multipart upload is computed while the parts stream through. When a
/// worker dies half-way, the next one resumes the upload from the first missing part
/// (docs/transfer.md, "Resume"); it cannot re-read the bytes already uploaded (S3 does not serve
/// the parts of an incomplete upload, and fetching them again from the source is what resuming
/// avoids). So after each part the digest's state is saved beside the upload, and the resumed
/// transfer restores it and hashes on. The state is only saved at a 64-byte block boundary (part
/// sizes are multiples of 1 MiB), where it is exactly eight 32-bit words and a bit count.
struct ResumableSHA256: Sendable {
    private var context = SHA256_CTX()

    init() {
        SHA256_Init(&context)
    }

    /// Restores a state written by ``savedState``, or returns nil when `saved` is not one.
    init?(restoring saved: [UInt32]) {
        guard saved.count == 10 else { return nil }
        SHA256_Init(&context)
        withUnsafeMutableBytes(of: &context.h) { words in
            for index in 0..<8 { words.storeBytes(of: saved[index], toByteOffset: index * 4, as: UInt32.self) }
        }
        context.Nl = saved[8]
        context.Nh = saved[9]
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        SHA256_Update(&context, base, bytes.count)
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The number of bytes hashed so far.
    var byteCount: Int64 {
        (Int64(context.Nh) << 32 | Int64(context.Nl)) / 8
    }

    /// The state as ten words (eight of the digest, two of the bit count), or nil when bytes of an
    /// unfinished 64-byte block are pending and the state cannot be resumed exactly.
    var savedState: [UInt32]? {
        guard context.num == 0 else { return nil }
        var words = withUnsafeBytes(of: context.h) { raw in
            (0..<8).map { raw.load(fromByteOffset: $0 * 4, as: UInt32.self) }
        }
        words += [context.Nl, context.Nh]
        return words
    }

    /// The digest, as 32 bytes. The value itself is left unchanged: finishing works on a copy.
    func digest() -> [UInt8] {
        var copy = context
        var output = [UInt8](repeating: 0, count: 32)
        output.withUnsafeMutableBufferPointer { _ = SHA256_Final($0.baseAddress, &copy) }
        return output
    }

    /// The digest in lowercase hex, as Squall writes checksums everywhere.
    func hexDigest() -> String { Self.hex(digest()) }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Whether `text` is a SHA-256 as Squall writes it: 64 lowercase hex digits (checked on its bytes:
    /// `Character` properties cost more than the rest of a small job's checks).
    static func isDigestHex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// The SHA-256 of `bytes` at once.
    static func digest(of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = ResumableSHA256()
        hasher.update(bytes)
        return hasher.digest()
    }
}
