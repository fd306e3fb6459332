import Foundation

/// Where a manifest comes from. Files and standard input are read in chunks as the submit
/// streams them into the database, so a million-line manifest is never held whole.
public enum ManifestInput: Sendable {
    case text(String)
    case file(path: String)
    case standardInput

    /// How errors name the input: the path, `standard input` or `manifest`.
    public var name: String {
        switch self {
        case .text: "manifest"
        case .file(let path): path
        case .standardInput: "standard input"
        }
    }

    /// Calls `body` with each line, without its line break, in order.
    func forEachLine(_ body: (Substring) throws -> Void) throws {
        switch self {
        case .text(let text):
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            if lines.last == "" { lines.removeLast() }
            for line in lines { try body(line) }
        case .file(let path):
            let descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else {
                throw ManifestReadError(input: name, reason: String(cString: strerror(errno)))
            }
            defer { close(descriptor) }
            try Self.readLines(descriptor, name: name, body)
        case .standardInput:
            try Self.readLines(0, name: name, body)
        }
    }

    private static func readLines(_ descriptor: Int32, name: String, _ body: (Substring) throws -> Void) throws {
        let chunkSize = 1 << 16
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, chunkSize) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ManifestReadError(input: name, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            var start = 0
            for index in 0..<count where chunk[index] == UInt8(ascii: "\n") {
                if pending.isEmpty {
                    try body(Substring(decoding: chunk[start..<index], as: UTF8.self))
                } else {
                    pending.append(contentsOf: chunk[start..<index])
                    try body(Substring(decoding: pending, as: UTF8.self))
                    pending.removeAll(keepingCapacity: true)
                }
                start = index + 1
            }
            pending.append(contentsOf: chunk[start..<count])
        }
        if !pending.isEmpty { try body(Substring(decoding: pending, as: UTF8.self)) }
    }
}

/// The manifest could not be read at all (missing file, unreadable input).
public struct ManifestReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public var input: String
    public var reason: String
    public var description: String { "cannot read \(input): \(reason)" }
}
