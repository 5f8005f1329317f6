import Foundation
import Testing
import TelematicsWire

private let vin = VIN("WMW11DJ0X02A00001")!

/// An envelope around a hand-made body.
private func record(kind: UInt8, body: [UInt8], compressed: Bool = false) -> [UInt8] {
    EnvelopeWriter.record(kind: kind, sequence: 9, recordedAtMs: 1_763_942_400_000, vin: vin, body: body, compressed: compressed)
}

private func decode(_ bytes: [UInt8], key: [UInt8]? = nil, dictionaries: ZstdDictionaries = .none) -> Result<TelematicsMessage, WireError> {
    let decoder = RecordDecoder(dictionaries: dictionaries)
    return bytes.withUnsafeBytes { raw in
        if let key {
            return key.withUnsafeBytes { k in Result { () throws(WireError) in try decoder.decode(raw, key: k).materialize() } }
        }
        return Result { () throws(WireError) in try decoder.decode(raw).materialize() }
    }
}

private func body(of result: Result<TelematicsMessage, WireError>) -> MessageBody? {
    if case .success(let m) = result { return m.body }
    return nil
}

private func code(of result: Result<TelematicsMessage, WireError>) -> WireError.Code? {
    if case .failure(let e) = result { return e.code }
    return nil
}

@Suite("Protobuf decoding rules of WIRE.md")
struct WireRulesTests {
    @Test("a scalar given twice takes its last value; a sub-message given twice is merged")
    func lastValueWinsAndMerge() {
        // soc_permille = 5 then 7; position {lat 1} then {lon 2}.
        let result = decode(record(kind: 2, body: [0x60, 5, 0x60, 7, 0x22, 2, 0x08, 2, 0x22, 2, 0x10, 4]))
        guard case .hvWarnCall(let m) = body(of: result) else { Issue.record("not decoded: \(result)"); return }
        #expect(m.socPermille == 7)
        #expect(m.position == Position(latE7: 1, lonE7: 2))
    }

    @Test("a varint wider than its field is truncated to the field's width; any non-zero varint is true")
    func truncationAndBool() {
        // mileage_km = 2^32 + 5 (truncates to 5); in_workshop = 256 (true).
        var w = ProtoWriter()
        w.uint(2, (1 << 32) + 5)
        w.uint(8, 256)
        guard case .teleserviceCall(let m) = body(of: decode(record(kind: 1, body: w.bytes))) else { Issue.record("not decoded"); return }
        #expect(m.mileageKm == 5)
        #expect(m.inWorkshop)
    }

    @Test("an enum number the schema does not list is kept as a number, and printed as one")
    func unlistedEnum() throws {
        var w = ProtoWriter()
        w.int32(2, 77)
        let bytes = record(kind: 2, body: w.bytes)
        guard case .hvWarnCall(let m) = body(of: decode(bytes)) else { Issue.record("not decoded"); return }
        #expect(m.thermal.rawValue == 77 && m.thermal.name == nil)
        let json = try canonicalJSON(bytes, decoder: RecordDecoder())
        #expect(json["body"]?["thermal"] == .number("77"))
    }

    @Test("unknown fields of every wire type are skipped")
    func unknownFields() {
        var w = ProtoWriter()
        w.bool(1, true)
        w.key(99, WireType.fixed64); w.bytes += [UInt8](repeating: 1, count: 8)
        w.key(98, WireType.fixed32); w.bytes += [1, 2, 3, 4]
        w.bytesField(97, [1, 2, 3])
        w.uint(96, 12345)
        guard case .consentState(let c) = body(of: decode(record(kind: 5, body: w.bytes))) else { Issue.record("not decoded"); return }
        #expect(c.teleservices && !c.rtti)
    }

    @Test("RTTI columns may mix packed runs and unpacked values")
    func packedAndUnpacked() {
        var w = ProtoWriter()
        w.packed(1, [0, 2].map(UInt64.init))  // dt 0, 1 (zig-zag)
        w.uint(2, 20); w.uint(2, 2)  // dlat 10, then +1, unpacked
        w.packed(3, [40, 0].map(UInt64.init))  // dlon 20, +0
        w.uint(4, 5); w.packed(4, [6].map(UInt64.init))
        w.packed(5, [90, 180].map(UInt64.init))
        guard case .rttiProbe(let p) = body(of: decode(record(kind: 3, body: w.bytes))) else { Issue.record("not decoded"); return }
        #expect(p.dtMs == [0, 1] && p.dlatE7 == [10, 1] && p.dlonE7 == [20, 0] && p.speedDkmh == [5, 6] && p.headingDeg == [90, 180])
    }

    @Test("field checks reject what WIRE.md lists as bad_field", arguments: [
        ("position as a varint", UInt8(2), [UInt8(0x22 & ~7), 5]),
        ("string not UTF-8", 4, [0x0A, 2, 0xC3, 0x28]),
        ("surrogate in a string", 2, [0x0A, 3, 0xED, 0xA0, 0x80]),
        ("latitude past 90 degrees", 2, [0x22, 6, 0x08, 0x82, 0xA8, 0xD6, 0xB9, 0x07]),
        ("soc over 1000", 2, [0x60, 0xE9, 0x07]),
        ("mileage as fixed32", 1, [0x15, 1, 0, 0, 0]),
    ] as [(String, UInt8, [UInt8])])
    func badFields(name: String, kind: UInt8, bytes: [UInt8]) {
        #expect(code(of: decode(record(kind: kind, body: bytes))) == .badField, "\(name)")
    }

    @Test("protobuf syntax errors are bad_protobuf, also inside a nested message", arguments: [
        [UInt8(0x08)],  // truncated varint
        [0x0A, 0x05, 0x61],  // length past the end
        [0x0B], [0x0F],  // wire types 3 and 7
        [0x00, 0x01],  // field number 0
        [0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01],  // varint over 10 bytes
        [0x22, 0x01, 0x08],  // position holding a truncated varint
    ] as [[UInt8]])
    func badProtobuf(bytes: [UInt8]) {
        #expect(code(of: decode(record(kind: 2, body: bytes))) == .badProtobuf, "\(bytes)")
    }

    /// An RTTI body of `n` points whose latitude starts at `startLat` and
    /// moves by `step`, longitude `lon` throughout (heading 90, speed 10).
    private func track(n: Int, startLat: Int32, step: Int32, lon: Int32 = 100_000_000) -> [UInt8] {
        func zz(_ v: Int32) -> UInt64 { UInt64(UInt32(bitPattern: (v << 1) ^ (v >> 31))) }
        var w = ProtoWriter()
        w.packed(1, (0..<n).map { zz(Int32(-1000 * $0)) })
        w.packed(2, (0..<n).map { zz($0 == 0 ? startLat : step) })
        w.packed(3, (0..<n).map { zz($0 == 0 ? lon : 0) })
        w.packed(4, [UInt64](repeating: 10, count: n))
        w.packed(5, [UInt64](repeating: 90, count: n))
        return w.bytes
    }

    @Test("positions near the poles are checked point by point: 90 degrees is in range, the first point past it is named")
    func positionsNearTheRangeEdge() {
        // 40 short steps north from 89.99 degrees: the deltas' bound reaches
        // past 90, so every point is summed; the last is exactly 90.
        let edge = decode(record(kind: 3, body: track(n: 41, startLat: 899_900_000, step: 2_500)))
        guard case .rttiProbe(let p) = body(of: edge) else { Issue.record("not decoded: \(edge)"); return }
        #expect(p.dlatE7.reduce(0, +) == 900_000_000)
        // One more step: point 41 is past the pole.
        guard case .failure(let error) = decode(record(kind: 3, body: track(n: 42, startLat: 899_900_000, step: 2_500))) else {
            Issue.record("accepted a latitude past 90 degrees"); return
        }
        #expect(error.reason == .pointOutOfRange(index: 41, latE7: 900_002_500, lonE7: 100_000_000))
        // Far from the edge, the same steps are proven in range without summing.
        #expect(code(of: decode(record(kind: 3, body: track(n: 42, startLat: 550_000_000, step: 2_500)))) == nil)
        // Southward past -90 from far away, with long (4-byte) steps summed exactly.
        guard case .failure(let south) = decode(record(kind: 3, body: track(n: 10, startLat: -850_000_000, step: -10_000_000))) else {
            Issue.record("accepted a latitude past -90 degrees"); return
        }
        #expect(south.reason == .pointOutOfRange(index: 6, latE7: -910_000_000, lonE7: 100_000_000))
    }

    @Test("headings up to 359 pass, 360 and more are named at their point, also in non-canonical 3-byte form")
    func headingLimits() {
        func headingBody(_ headings: [[UInt8]]) -> [UInt8] {
            var w = ProtoWriter()
            let n = headings.count
            w.packed(1, [UInt64](repeating: 0, count: n))
            w.packed(2, [UInt64](repeating: 2, count: n))
            w.packed(3, [UInt64](repeating: 2, count: n))
            w.packed(4, [UInt64](repeating: 10, count: n))
            w.bytesField(5, headings.flatMap { $0 })
            return w.bytes
        }
        let ok: [[UInt8]] = [[0x00], [0x7F], [0x80, 0x01], [0xE7, 0x02], [0x85, 0x80, 0x00]]  // 0, 127, 128, 359, 5 in 3 bytes
        guard case .rttiProbe(let p) = body(of: decode(record(kind: 3, body: headingBody(ok)))) else { Issue.record("not decoded"); return }
        #expect(p.headingDeg == [0, 127, 128, 359, 5])
        for (bad, value) in [([UInt8(0xE8), 0x02], UInt32(360)), ([0xFF, 0x03], 511), ([0xE8, 0x82, 0x00], 360)] {
            guard case .failure(let error) = decode(record(kind: 3, body: headingBody(ok + [bad] + ok))) else {
                Issue.record("accepted heading \(value)"); continue
            }
            #expect(error.reason == .headingOver359(index: 5, value: value))
        }
    }

    @Test("a packed column whose last varint runs past its field is bad_protobuf")
    func truncatedPacked() {
        #expect(code(of: decode(record(kind: 3, body: [0x0A, 0x01, 0x80]))) == .badProtobuf)
    }

    @Test("the record key must equal the envelope VIN")
    func keyMustBeVin() {
        let bytes = record(kind: 5, body: [])
        #expect(code(of: decode(bytes, key: Array("WMW11DJ0X02A00001".utf8))) == nil)
        #expect(code(of: decode(bytes, key: Array("WMW11DJ0X02A00002".utf8))) == .badVin)
        #expect(code(of: decode(bytes, key: [])) == .badVin)
    }

    @Test("a zstd frame is decompressed with the dictionary it names, and one it does not know is rejected")
    func dictionaries() throws {
        let compressor = try ZstdCompressor(level: 3, dictionary: try Fixtures.dictionaryBytes())
        var w = ProtoWriter()
        w.string(1, "cs-1")
        let bytes = record(kind: 4, body: compressor.compress(w.bytes), compressed: true)
        #expect(code(of: decode(bytes)) == .decompressFailed)
        guard case .chargeSession(let s) = body(of: decode(bytes, dictionaries: try Fixtures.dictionaries())) else {
            Issue.record("not decoded with the dictionary"); return
        }
        #expect(s.sessionID == "cs-1")
    }

    @Test("a body over 1 MiB is rejected, whether or not its frame declares its size")
    func sizeLimit() throws {
        let big = [UInt8](repeating: 0, count: (1 << 20) + 1)
        let compressed = try ZstdCompressor().compress(big)
        let result = decode(record(kind: 5, body: compressed, compressed: true))
        guard case .failure(let e) = result else { Issue.record("accepted"); return }
        #expect(e.code == .decompressFailed && e.detail.contains("declares"))
        // Exactly 1 MiB of protobuf is allowed: an unknown field filling it.
        var w = ProtoWriter()
        w.bytesField(15, [UInt8](repeating: 7, count: (1 << 20) - 4))
        #expect(w.bytes.count == 1 << 20)
        #expect(code(of: decode(record(kind: 5, body: try ZstdCompressor().compress(w.bytes), compressed: true))) == nil)
    }

    @Test("bytes after the zstd frame are rejected: a body is one frame")
    func oneFrame() throws {
        let frame = try ZstdCompressor().compress([0x08, 0x01])
        #expect(code(of: decode(record(kind: 5, body: frame, compressed: true))) == nil)
        #expect(code(of: decode(record(kind: 5, body: frame + frame, compressed: true))) == .decompressFailed)
    }

    @Test("the envelope is checked in WIRE.md's order with a detail a person can act on")
    func envelopeDetails() {
        var bytes = record(kind: 5, body: [])
        bytes[2] = 2
        guard case .failure(let e) = decode(bytes) else { Issue.record("accepted"); return }
        #expect(e.code == .unsupportedVersion && e.detail.contains("version 2"))
        bytes = record(kind: 5, body: [])
        bytes[24 + 3] = UInt8(ascii: "I")
        guard case .failure(let v) = decode(bytes) else { Issue.record("accepted"); return }
        #expect(v.code == .badVin && v.detail.contains("byte 3"))
    }
}

@Suite("Capture files")
struct CaptureTests {
    @Test("a capture is read record by record through a buffer smaller than the file, records larger than the buffer included")
    func streaming() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tm-\(UUID()).tmcap").path
        defer { unlink(path) }
        let writer = try CaptureWriter(path: path)
        let records = (0..<300).map { i in [UInt8](repeating: UInt8(i & 0xFF), count: (i * 37) % 5000) }
        for r in records { try writer.append(r) }
        try writer.close()
        let reader = try CaptureReader(path: path, bufferSize: 1024)
        var read: [[UInt8]] = []
        while let r = try reader.next() { read.append(Array(r)) }
        #expect(read == records)
    }

    @Test("a capture that ends inside a record yields the bytes that are there, which decode as truncated")
    func cutFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tm-\(UUID()).tmcap").path
        defer { unlink(path) }
        var bytes: [UInt8] = []
        let full = record(kind: 5, body: [0x08, 1])
        withUnsafeBytes(of: UInt32(full.count).littleEndian) { bytes += $0 }
        bytes += full
        withUnsafeBytes(of: UInt32(full.count).littleEndian) { bytes += $0 }
        bytes += full.prefix(30)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let reader = try CaptureReader(path: path)
        let first = try #require(try reader.next())
        #expect(Array(first) == full)
        let second = try #require(try reader.next())
        #expect(second.count == 30)
        #expect(code(of: decode(Array(second))) == .truncated)
        #expect(try reader.next() == nil)
    }

    @Test("a dictionary directory with a file that is not a zstd dictionary is refused with its name")
    func badDictionaryDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tm-dicts-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = FileManager.default.createFile(atPath: dir.appendingPathComponent("x.dict").path, contents: Data("hello".utf8))
        #expect(throws: DictionaryError.self) { try ZstdDictionaries(directory: dir.path) }
        #expect(throws: DictionaryError.self) { try ZstdDictionaries(directory: dir.appendingPathComponent("missing").path) }
        #expect(try Fixtures.dictionaries().ids == [4242])
    }
}

@Suite("VIN")
struct VINTests {
    @Test("exactly the 33 characters of ISO 3779 are VIN characters: digits and letters but I, O and Q")
    func alphabet() {
        let allowed = Set("0123456789ABCDEFGHJKLMNPRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(VIN.isAllowed(byte) == allowed.contains(byte), "byte \(byte)")
        }
        #expect(VIN("WMW11DJ0X02A00001")?.description == "WMW11DJ0X02A00001")
        #expect(VIN("WMW11DJ0X02A0000I") == nil)
        #expect(VIN("WMW11DJ0X02A0000") == nil)
    }
}
