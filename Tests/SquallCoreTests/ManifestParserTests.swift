import Foundation
import SquallCore
import Testing

/// Manifest parsing and validation: what is accepted, and how every rejection names its line.
@Suite("Manifest parser")
struct ManifestParserTests {
    @Test("a CSV manifest with a header yields one entry per line, numbered as an editor counts")
    func csv() throws {
        let entries = try ManifestParser.parse(
            """
            source,destination,priority,sha256
            https://example.com/a.bin,s3://out-bucket/a.bin,5,\(String(repeating: "AbC0", count: 16))

            s3://in-bucket/b,s3://out-bucket/b,,
            /data/c.bin,s3://out-bucket/c,-3,
            """)
        #expect(entries.map(\.line) == [2, 4, 5])
        #expect(entries[0].priority == 5)
        #expect(entries[0].sha256 == String(repeating: "abc0", count: 16))
        #expect(entries[1] == ManifestEntry(line: 4, source: "s3://in-bucket/b", destination: "s3://out-bucket/b"))
        #expect(entries[2].source == "/data/c.bin")
        #expect(entries[2].priority == -3)
    }

    @Test("CSV columns come in any order, and quoted fields may hold commas and quotes")
    func csvQuotingAndOrder() throws {
        let entries = try ManifestParser.parse(
            "destination,source\r\n\"s3://out-bucket/a,b\",\"https://example.com/q?x=\"\"1\"\"\"\r\n")
        #expect(
            entries == [
                ManifestEntry(line: 2, source: "https://example.com/q?x=\"1\"", destination: "s3://out-bucket/a,b")
            ])
    }

    @Test("JSON Lines is detected from the first character")
    func jsonLines() throws {
        let entries = try ManifestParser.parse(
            """
            {"source":"https://example.com/a","destination":"s3://out-bucket/a","priority":2}
            {"source":"https://example.com/b","destination":"s3://out-bucket/b","sha256":null}
            """)
        #expect(entries.map(\.destination) == ["s3://out-bucket/a", "s3://out-bucket/b"])
        #expect(entries[0].priority == 2)
    }

    @Test(
        "every bad line is reported with its number and reason",
        arguments: [
            ("https://e.com/a,s3://Bad_Bucket/x,,", "destination \"s3://Bad_Bucket/x\": bucket names are lowercase"),
            ("ftp://e.com/a,s3://out-bucket/x,,", "source \"ftp://e.com/a\": scheme \"ftp\" is not http, https or s3"),
            ("https://e.com/a,/local/x,,", "destination \"/local/x\" is not s3://bucket/key"),
            ("https://e.com/a,s3://out-bucket/,,", "has no key"),
            ("https://e.com/a,s3://ab/x,,", "bucket names are 3 to 63 characters long"),
            ("https://e.com/a,s3://-out/x,,", "begin and end with a letter or digit"),
            ("https://e.com/a,s3://192.168.1.1/x,,", "are not IP addresses"),
            ("https://e.com/a,s3://a..b/x,,", "no two adjacent dots"),
            ("https://e.com/a,s3://out-bucket/x,1001,", "priority \"1001\" is not an integer in -1000...1000"),
            ("https://e.com/a,s3://out-bucket/x,high,", "priority \"high\""),
            ("https://e.com/a,s3://out-bucket/x,1,abc", "sha256 \"abc\" is not 64 hexadecimal digits"),
            ("https://e.com/a,s3://out-bucket/x,1,2,3", "has 5 fields, the header has 4"),
            ("\"https://e.com/a,s3://out-bucket/x,1,", "unclosed quote"),
            ("https:///a,s3://out-bucket/x,,", "the host is missing"),
        ])
    func badLine(line: String, reason: String) throws {
        let manifest = "source,destination,priority,sha256\nhttps://e.com/ok,s3://out-bucket/ok,,\n\(line)\n"
        let error = #expect(throws: ManifestError.self) { try ManifestParser.parse(manifest) }
        #expect(error?.problems.count == 1)
        #expect(error?.problems.first?.line == 3)
        #expect(error?.problems.first?.description.contains(reason) == true, "\(error?.description ?? "")")
        #expect(error?.problems.first?.description.hasPrefix("manifest line 3: ") == true)
    }

    @Test("the example of the issue: line 4 has an uppercase bucket")
    func issueExample() {
        let manifest = """
            source,destination
            https://example.com/1,s3://good-bucket/1
            https://example.com/2,s3://good-bucket/2
            https://example.com/3,s3://Bad_Bucket/x
            """
        let error = #expect(throws: ManifestError.self) { try ManifestParser.parse(manifest) }
        #expect(
            error?.description
                == "manifest line 4: destination \"s3://Bad_Bucket/x\": bucket names are lowercase letters, digits, dots and hyphens (\"Bad_Bucket\" has uppercase \"B\")"
        )
    }

    @Test("a destination used twice in one batch is rejected, naming the first line")
    func duplicateDestination() {
        let manifest =
            "source,destination\nhttps://e.com/a,s3://out-bucket/x\nhttps://e.com/b,s3://out-bucket/y\nhttps://e.com/c,s3://out-bucket/x\n"
        let error = #expect(throws: ManifestError.self) { try ManifestParser.parse(manifest) }
        #expect(
            error?.problems == [
                ManifestProblem(
                    line: 4, reason: "destination \"s3://out-bucket/x\" is already the destination of line 2")
            ])
    }

    @Test("problems are listed up to the limit, then counted")
    func problemLimit() {
        var manifest = "source,destination\n"
        for index in 0..<30 { manifest += "https://e.com/\(index),s3://BAD/\(index)\n" }
        let error = #expect(throws: ManifestError.self) { try ManifestParser.parse(manifest) }
        #expect(error?.problems.count == 20)
        #expect(error?.totalCount == 30)
        #expect(error?.problems.first?.line == 2)
        #expect(error?.description.hasSuffix("\nand 10 more") == true)
    }

    @Test("a missing or wrong header, an empty manifest and bad JSON are reported")
    func headerAndFormat() {
        let missing = #expect(throws: ManifestError.self) {
            try ManifestParser.parse("https://e.com/a,s3://out-bucket/a\n")
        }
        #expect(missing?.description.contains("line 1: the CSV header is missing") == true)
        let unknown = #expect(throws: ManifestError.self) { try ManifestParser.parse("source,target\n") }
        #expect(unknown?.description.contains("column \"target\" is not known") == true)
        let empty = #expect(throws: ManifestError.self) { try ManifestParser.parse("source,destination\n\n") }
        #expect(empty?.description.contains("holds no job") == true)
        let json = #expect(throws: ManifestError.self) {
            try ManifestParser.parse(
                "{\"source\":\"https://e.com/a\",\"destination\":\"s3://out-bucket/a\"}\n{\"source\":1}\n{oops\n")
        }
        #expect(json?.problems.map(\.line) == [2, 3])
        #expect(json?.problems.first?.reason == "field \"source\" is not a string")
        #expect(json?.problems.last?.reason == "is not a JSON object")
    }

    @Test("a hundred thousand lines stream through the parser with only the duplicate check held")
    func manyLines() {
        var parser = ManifestParser()
        _ = parser.read(line: "source,destination")
        for index in 0..<100_000 {
            _ = parser.read(line: Substring("https://example.com/\(index),s3://out-bucket/\(index)"))
        }
        #expect(parser.entryCount == 100_000)
        #expect(parser.problemCount == 0)
    }
}

@Suite("Reconnect backoff")
struct ReconnectBackoffTests {
    @Test("delays double up to the cap, and stop once the budget is spent")
    func schedule() {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), cap: .milliseconds(500), giveUpAfter: .seconds(2))
        var delays: [Duration] = []
        while let delay = backoff.nextDelay() { delays.append(delay) }
        #expect(delays == [100, 200, 400, 500, 500, 300].map { .milliseconds($0) })
        backoff.reset()
        #expect(backoff.nextDelay() == .milliseconds(100))
    }
}
