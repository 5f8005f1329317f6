import Foundation
import Testing
import TelematicsWire

@Suite("Conformance vectors of ../shared/vectors")
struct ConformanceTests {
    /// Decodes every record of `name`.tmcap and compares with `name`.jsonl:
    /// whole values for accepted records, the error code for rejected ones.
    func check(_ name: String) throws {
        let records = try Fixtures.records("\(name).tmcap")
        let expected = try Fixtures.expectedLines("\(name).jsonl")
        #expect(records.count == expected.count, "\(name): \(records.count) records, \(expected.count) expected lines")
        let decoder = RecordDecoder(dictionaries: try Fixtures.dictionaries())
        for (index, (record, want)) in zip(records, expected).enumerated() {
            let got = try canonicalJSON(record, decoder: decoder)
            if let code = want["error"] {
                #expect(got["error"] == code, "\(name) line \(index + 1): expected error \(code), got \(got)")
                #expect(got["detail"]?.stringValue?.isEmpty == false, "\(name) line \(index + 1): a rejection explains itself")
            } else {
                #expect(got == want, "\(name) line \(index + 1)")
            }
        }
    }

    @Test("every valid vector decodes to exactly its expected JSON")
    func valid() throws { try check("valid") }

    @Test("every invalid vector is rejected with its expected error code")
    func invalid() throws { try check("invalid") }

    @Test("all 2000 sample records decode to their expected JSON")
    func sample() throws { try check("sample") }

    @Test("the repository's copies of the vectors and schema equal ../shared when it is there")
    func fixturesMatchShared() throws {
        let shared = Fixtures.packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
        guard FileManager.default.fileExists(atPath: shared.path) else { return }
        for path in ["vectors/valid.tmcap", "vectors/valid.jsonl", "vectors/invalid.tmcap", "vectors/invalid.jsonl",
                     "vectors/sample.tmcap", "vectors/sample.jsonl", "vectors/dicts/4242.dict",
                     "spec/WIRE.md", "spec/RULES.md", "spec/telematics.proto",
                     "tools/tmgen.py", "tools/requirements.txt"] {
            let ours = try Data(contentsOf: Fixtures.root.appendingPathComponent(path))
            let theirs = try Data(contentsOf: shared.appendingPathComponent(path))
            #expect(ours == theirs, "Tests/Fixtures/\(path) differs from ../shared/\(path): copy it again")
        }
    }
}
