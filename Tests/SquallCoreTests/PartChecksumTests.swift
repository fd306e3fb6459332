import CChecksum
import Foundation
import Testing

@testable import SquallCore

@Suite("Transfer engine: the per-part CRC32C checksum")
struct PartChecksumTests {
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { PartChecksum.of($0).value }
    }

    @Test("RFC 3720's CRC32C test vectors, and the usual check value of \"123456789\"")
    func knownVectors() {
        #expect(Self.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.checksum([UInt8](repeating: 0xff, count: 32)) == 0x62A8_AB43)
        #expect(Self.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(Self.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        #expect(Self.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(Self.checksum([]) == 0)
    }

    @Test("updating piece by piece, at any split and alignment, gives the checksum of the whole")
    func incrementalEqualsWhole() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<(1 << 20) + 13).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let whole = Self.checksum(bytes)
        for pieceSize in [1, 3, 7, 8, 9, 4096, 65_537, 262_144] {
            var checksum = PartChecksum()
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let end = min(offset + pieceSize, raw.count)
                    checksum.update(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                    offset = end
                }
            }
            #expect(checksum.value == whole, "pieces of \(pieceSize) bytes")
        }
    }

    @Test("the processor's instruction and the byte-by-byte fallback agree")
    func fastPathAgreesWithFallback() {
        for length in [0, 1, 7, 8, 15, 64, 1000, 100_003] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
            let fallback = bytes.withUnsafeBufferPointer { ~squall_crc32c_bytes(~0, $0.baseAddress, $0.count) }
            #expect(Self.checksum(bytes) == fallback, "\(length) bytes")
        }
    }

    @Test("S3 spells it as the four big-endian bytes in base64, and the spelling reads back")
    func base64Spelling() throws {
        let check = PartChecksum(value: 0xE306_9283)
        #expect(check.base64 == "4waSgw==")
        #expect(PartChecksum(base64: "4waSgw==") == check)
        #expect(PartChecksum(base64: "AAAAAA==")?.value == 0)
        #expect(PartChecksum(base64: "not base64") == nil)
        #expect(PartChecksum(base64: "AAAAAAAA") == nil)  // six bytes, not four
    }
}
