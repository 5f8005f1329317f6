import Foundation
import TelematicsTestSupport
import Testing

@Suite("telematics decode", .enabled(if: TelematicsBinary.url != nil, "telematics binary not built"))
struct DecodeCommandTests {
    let dicts = Fixtures.dictionaryDirectory.path

    @Test("prints one canonical JSON line per record and exits 0 even when records are rejected")
    func linesAndStatus() throws {
        let result = try TelematicsBinary.run(["decode", "--dict-dir", dicts, Fixtures.vectors.appendingPathComponent("invalid.tmcap").path])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n")
        let expected = try Fixtures.expectedLines("invalid.jsonl")
        #expect(lines.count == expected.count)
        for (line, want) in zip(lines, expected) {
            #expect(try JSONValue.parse(Array(line.utf8))["error"] == want["error"])
        }
    }

    @Test("reads standard input given -")
    func standardInput() throws {
        let data = try Data(contentsOf: Fixtures.vectors.appendingPathComponent("valid.tmcap"))
        let result = try TelematicsBinary.run(["decode", "--dict-dir", dicts, "-"], stdin: data)
        #expect(result.status == 0)
        let got = try result.stdout.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)) }
        #expect(got == (try Fixtures.expectedLines("valid.jsonl")))
    }

    @Test("--count prints one summary line with counts by error code")
    func count() throws {
        let result = try TelematicsBinary.run(["decode", "--count", "--dict-dir", dicts, Fixtures.vectors.appendingPathComponent("invalid.tmcap").path])
        #expect(result.status == 0)
        let summary = try JSONValue.parse(Array(result.stdout.trimmingCharacters(in: .newlines).utf8))
        #expect(summary["records"] == .number("28"))
        #expect(summary["valid"] == .number("0"))
        #expect(summary["rejected"] == .number("28"))
        #expect(summary["by_error"]?["bad_protobuf"] == .number("6"))
        #expect(summary["by_error"]?["bad_field"] == .number("8"))
        #expect(summary["by_error"]?["decompress_failed"] == .number("4"))
    }

    @Test("a missing file or dictionary directory fails with a clear message and a non-zero status")
    func missingFile() throws {
        let result = try TelematicsBinary.run(["decode", "/nonexistent/x.tmcap"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("/nonexistent/x.tmcap") && result.stderr.contains("No such file"))
        let noDicts = try TelematicsBinary.run(["decode", "--dict-dir", "/nonexistent/dicts", Fixtures.vectors.appendingPathComponent("valid.tmcap").path])
        #expect(noDicts.status != 0)
        #expect(noDicts.stderr.contains("/nonexistent/dicts"))
    }
}
