/// PostgreSQL array literals (`{…}`) for bind parameters, so a batch of rows travels as a few
/// array parameters of one statement (`unnest($1::bigint[], …)`) instead of one statement per row.
enum PostgresArray {
    static func literal(_ values: some Sequence<Int64>) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    static func literal(_ values: some Sequence<Int32>) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    static func literal(_ values: some Sequence<Int64?>) -> String {
        "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
    }

    /// Text elements, each quoted with `"` and `\` escaped; `nil` is NULL.
    static func literal(_ values: some Sequence<String?>) -> String {
        var text = "{"
        var first = true
        for value in values {
            if !first { text += "," }
            first = false
            guard let value else {
                text += "NULL"
                continue
            }
            text += "\""
            for character in value.unicodeScalars {
                if character == "\"" || character == "\\" { text += "\\" }
                text.unicodeScalars.append(character)
            }
            text += "\""
        }
        return text + "}"
    }
}
