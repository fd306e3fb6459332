/// Just enough XML for S3's answers, which are flat and regular: the text of `<Tag>…</Tag>` elements,
/// and the blocks of a repeated element (`<Upload>…</Upload>`, `<Part>…</Part>`).
///
/// Foundation's XMLParser is not used: on Linux it pulls libxml2 into every image, for a handful of
/// tags. Entities S3 uses (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, numeric) are decoded.
enum S3XML {
    /// The text of every `<tag>` element, in order.
    static func values(of tag: String, in text: String) -> [String] {
        blocks(of: tag, in: text).map(decodeEntities)
    }

    static func firstValue(of tag: String, in text: String) -> String? {
        values(of: tag, in: text).first
    }

    /// The raw inner text of every `<tag>` element (nested tags left as they are).
    static func blocks(of tag: String, in text: String) -> [String] {
        var results: [String] = []
        let open = "<\(tag)>"
        let close = "</\(tag)>"
        var rest = text[...]
        while let start = rest.range(of: open) {
            let afterOpen = rest[start.upperBound...]
            guard let end = afterOpen.range(of: close) else { break }
            results.append(String(afterOpen[..<end.lowerBound]))
            rest = afterOpen[end.upperBound...]
        }
        return results
    }

    static func decodeEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var output = ""
        var rest = text[...]
        while let amp = rest.firstIndex(of: "&") {
            output += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": output += "&"
            case "lt": output += "<"
            case "gt": output += ">"
            case "quot": output += "\""
            case "apos": output += "'"
            default:
                if entity.hasPrefix("#x"), let value = UInt32(entity.dropFirst(2), radix: 16),
                    let scalar = Unicode.Scalar(value)
                {
                    output.unicodeScalars.append(scalar)
                } else if entity.hasPrefix("#"), let value = UInt32(entity.dropFirst()),
                    let scalar = Unicode.Scalar(value)
                {
                    output.unicodeScalars.append(scalar)
                } else {
                    output += "&\(entity);"
                }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        output += rest
        return output
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
