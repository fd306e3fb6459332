/// Which addresses a source may be fetched from, judged on the address libcurl is about to connect
/// to (after DNS, after every redirect), never on the URL's text: `http://2130706433/`,
/// `http://0x7f.1/` and `http://[::ffff:169.254.169.254]/` are all caught, because they all arrive
/// here as the same bytes.
///
/// Always refused: link-local (169.254.0.0/16, where cloud metadata services live, and fe80::/10),
/// the EC2 IPv6 metadata address fd00:ec2::254, unspecified, multicast and broadcast addresses.
/// Refused unless `allowPrivate` (`SQUALL_ALLOW_PRIVATE_SOURCES=1`): loopback, RFC 1918 private,
/// shared (100.64.0.0/10) and unique-local (fc00::/7) ranges.
struct AddressPolicy: Sendable, Equatable {
    var allowPrivate: Bool

    enum Verdict: Sendable, Equatable {
        case allowed
        /// Refused, with the kind of address (`link-local`, `loopback`, …).
        case refused(String)
    }

    /// Judges an IPv4 address given as its four bytes in network order.
    func judge(ipv4 bytes: [UInt8]) -> Verdict {
        guard bytes.count == 4 else { return .refused("malformed IPv4 address") }
        let (a, b) = (bytes[0], bytes[1])
        switch (a, b) {
        case (169, 254): return .refused("link-local (cloud metadata) address")
        case (0, _): return .refused("unspecified address")
        case (224...239, _): return .refused("multicast address")
        case (240...255, _): return .refused("reserved or broadcast address")
        case (127, _): return restricted("loopback address")
        case (10, _), (192, 168), (172, 16...31): return restricted("private address")
        case (100, 64...127): return restricted("shared (carrier-grade NAT) address")
        default: return .allowed
        }
    }

    /// Judges an IPv6 address given as its sixteen bytes; IPv4 addresses embedded in it
    /// (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are
    /// judged as the IPv4 address they reach.
    func judge(ipv6 bytes: [UInt8]) -> Verdict {
        guard bytes.count == 16 else { return .refused("malformed IPv6 address") }
        let tail = Array(bytes[12..<16])
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return judge(ipv4: tail)
        }
        if bytes[0..<12].allSatisfy({ $0 == 0 }) {
            if tail == [0, 0, 0, 0] { return .refused("unspecified address") }
            if tail == [0, 0, 0, 1] { return restricted("loopback address") }
            return judge(ipv4: tail)
        }
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] { return judge(ipv4: tail) }
        let metadata: [UInt8] = [0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54]
        if bytes == metadata { return .refused("EC2 metadata address") }
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return .refused("link-local address") }
        if bytes[0] == 0xff { return .refused("multicast address") }
        if bytes[0] & 0xfe == 0xfc { return restricted("unique-local (private) address") }
        return .allowed
    }

    private func restricted(_ kind: String) -> Verdict {
        allowPrivate ? .allowed : .refused("\(kind) (set SQUALL_ALLOW_PRIVATE_SOURCES=1 to allow)")
    }
}
