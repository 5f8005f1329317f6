import Foundation
import Testing
import TelematicsTestSupport
import TelematicsWire

/// Damages records the ways a network, a disk or a hostile sender would.
struct Mutator {
    var rng: SeededGenerator

    mutating func mutate(_ record: [UInt8]) -> [UInt8] {
        var r = record
        switch Int.random(in: 0..<6, using: &rng) {
        case 0, 1:  // flip 1-4 bytes, often in the header
            for _ in 0..<Int.random(in: 1...4, using: &rng) where !r.isEmpty {
                let at = Bool.random(using: &rng) ? Int.random(in: 0..<min(r.count, 56), using: &rng) : Int.random(in: 0..<r.count, using: &rng)
                r[at] ^= UInt8.random(in: 1...255, using: &rng)
            }
        case 2:  // truncate
            r.removeLast(Int.random(in: 0...r.count, using: &rng))
        case 3:  // extend, keeping body_length consistent half of the time
            r.append(contentsOf: (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            if Bool.random(using: &rng), r.count >= 48 { setBodyLength(&r, r.count - 48) }
        case 4:  // flip bits in the body and fix body_length: exercises the protobuf reader and zstd
            if r.count > 48 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) { r[Int.random(in: 48..<r.count, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng) }
            }
        default:  // cut the body and fix body_length
            if r.count > 48 {
                r.removeLast(Int.random(in: 1...(r.count - 48), using: &rng))
                setBodyLength(&r, r.count - 48)
            }
        }
        return r
    }

    func setBodyLength(_ r: inout [UInt8], _ n: Int) {
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: n).littleEndian) { for i in 0..<4 { r[44 + i] = $0[i] } }
    }
}

@Suite("Damaged and hostile records")
struct MutationTests {
    @Test("100,000 random flips, truncations and extensions never crash, and each yields a decode or a WIRE.md error code")
    func mutations() throws {
        let seeds = try Fixtures.records("valid.tmcap") + Fixtures.records("sample.tmcap").prefix(500)
        let decoder = RecordDecoder(dictionaries: try Fixtures.dictionaries())
        var mutator = Mutator(rng: SeededGenerator(seed: 42))
        var codes: [WireError.Code: Int] = [:]
        var accepted = 0
        var json = CanonicalJSONWriter()
        for i in 0..<100_000 {
            let mutant = mutator.mutate(seeds[i % seeds.count])
            let outcome: Result<TelematicsMessage, WireError> = mutant.withUnsafeBytes { raw in
                do throws(WireError) {
                    let decoded = try decoder.decode(raw)
                    json.reset()
                    json.write(decoded)
                    return .success(decoded.materialize())
                } catch { return .failure(error) }
            }
            switch outcome {
            case .success(let message):
                accepted += 1
                // What was accepted is well-formed JSON and re-encodes to the same message.
                json.bytes.removeLast()
                #expect(throws: Never.self) { try JSONValue.parse(json.bytes) }
                let again = EnvelopeWriter.record(message)
                let redecoded = try again.withUnsafeBytes { try decoder.decode($0).materialize() }
                #expect(redecoded == message, "mutant \(i) re-encodes differently")
            case .failure(let error):
                codes[error.code, default: 0] += 1
                #expect(!error.detail.isEmpty)
            }
        }
        #expect(accepted + codes.values.reduce(0, +) == 100_000)
        // The mutations reach every layer: envelope, zstd, protobuf, field rules.
        for code in [WireError.Code.truncated, .trailingBytes, .badMagic, .badFlags, .badVin, .decompressFailed, .badProtobuf, .badField] {
            #expect(codes[code, default: 0] > 0, "no mutant produced \(code.rawValue): \(codes)")
        }
    }

    @Test("damaged records get the same verdict as the reference decoder tmgen.py",
          .enabled(if: ReferenceDecoder.isAvailable, "python3 with protobuf, zstandard and grpcio-tools is needed"))
    func agreesWithReference() throws {
        let seeds = try Fixtures.records("valid.tmcap") + Fixtures.records("sample.tmcap").prefix(300)
        var mutator = Mutator(rng: SeededGenerator(seed: 7))
        let mutants = (0..<3000).map { mutator.mutate(seeds[$0 % seeds.count]) }
        let reference = try ReferenceDecoder.decode(mutants)
        let decoder = RecordDecoder(dictionaries: try Fixtures.dictionaries())
        var compared = 0
        var stricter = 0
        var libraryDifference = 0
        for (i, (mutant, want)) in zip(mutants, reference).enumerated() {
            let got = try canonicalJSON(mutant, decoder: decoder)
            // Known, deliberate differences: WIRE.md says a body is one whole zstd
            // frame. The reference decodes a frame cut short as far as it goes and
            // ignores bytes after the frame; we reject both as decompress_failed.
            if let detail = got["detail"]?.stringValue, detail.contains("cut short") || detail.contains("after the zstd frame") {
                stricter += 1
                continue
            }
            if let code = want["error"] {
                // The reference bundles a newer zstd than Debian's 1.5.4, which
                // notices a few more corrupt blocks; ours then rejects the garbage
                // it decompressed at the protobuf or field level instead.
                if code == .string("decompress_failed"), want["detail"]?.stringValue?.contains("corruption") == true,
                   got["error"] != code, got["error"] != nil {
                    libraryDifference += 1
                    continue
                }
                #expect(got["error"] == code, "mutant \(i): reference \(want), ours \(got)")
            } else {
                #expect(got == want, "mutant \(i)")
            }
            compared += 1
        }
        #expect(compared > 2300, "\(stricter) of 3000 mutants were frames cut short or followed by data")
        #expect(libraryDifference <= 10, "\(libraryDifference) corrupt frames that only the reference's zstd noticed")
    }
}

/// Runs ../shared/tools/tmgen.py (or the copy CI installs) as the reference.
enum ReferenceDecoder {
    /// The repository's copy (kept equal to ../shared/tools/tmgen.py by a test).
    static var script: URL? {
        let copy = Fixtures.root.appendingPathComponent("tools/tmgen.py")
        return FileManager.default.fileExists(atPath: copy.path) ? copy : nil
    }

    static let isAvailable: Bool = {
        guard script != nil else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import zstandard, google.protobuf, grpc_tools"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.start()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    static func decode(_ records: [[UInt8]]) throws -> [JSONValue] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tm-ref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let capture = dir.appendingPathComponent("mutants.tmcap")
        let writer = try CaptureWriter(path: capture.path)
        for r in records { try writer.append(r) }
        try writer.close()
        let out = dir.appendingPathComponent("out.jsonl")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script!.path, "decode", capture.path, "--dict-dir", Fixtures.dictionaryDirectory.path]
        p.standardOutput = try FileHandle(forWritingTo: out)
        try p.start()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CocoaError(.fileReadUnknown) }
        let text = try String(contentsOf: out, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)) }
    }
}
