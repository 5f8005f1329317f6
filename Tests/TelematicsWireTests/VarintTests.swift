import Testing
@testable import TelematicsWire

/// The plain byte-by-byte reading of a packed run, as the protobuf rules state it.
private func naiveVarints(_ bytes: [UInt8]) -> Result<[UInt64], WireError> {
    var out: [UInt64] = []
    var i = 0
    while i < bytes.count {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var continuation = 0
        while true {
            guard i < bytes.count else { return .failure(WireError(.badProtobuf, .truncatedPackedVarint)) }
            let b = bytes[i]
            i += 1
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { break }
            shift += 7
            continuation += 1
            if continuation >= 10 { return .failure(WireError(.badProtobuf, .varintTooLong)) }
        }
        out.append(value)
    }
    return .success(out)
}

@Suite("Varint fast paths")
struct VarintTests {
    @Test("packed runs decode and count exactly as byte by byte, for random lengths, padding and cut-off runs")
    func packedRuns() {
        var rng = SeededGenerator(seed: 99)
        for round in 0..<20_000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                var w = ProtoWriter()
                let bits = UInt64.random(in: 0...64, using: &rng)
                w.varint(bits == 64 ? UInt64.random(in: 0...UInt64.max, using: &rng) : UInt64.random(in: 0...(UInt64(1) << bits), using: &rng))
                bytes += w.bytes
                // Non-canonical padding, as some encoders write: still a valid varint up to 10 bytes.
                if Int.random(in: 0..<8, using: &rng) == 0, bytes.last! < 0x80 {
                    let pad = Int.random(in: 1...3, using: &rng)
                    bytes[bytes.count - 1] |= 0x80
                    bytes += [UInt8](repeating: 0x80, count: pad - 1) + [0]
                }
            }
            if round % 5 == 0, !bytes.isEmpty { bytes.removeLast(Int.random(in: 1...min(3, bytes.count), using: &rng)) }
            if round % 7 == 0 { bytes += [UInt8](repeating: 0xFF, count: Int.random(in: 8...12, using: &rng)) + [1] }
            let expected = naiveVarints(bytes)
            var decoded: [UInt64] = []
            let fast = bytes.withUnsafeBytes { raw in
                Result { () throws(WireError) in
                    try forEachPackedVarint(raw, start: 0, end: raw.count) { decoded.append($0) }
                    return decoded
                }
            }
            let counted = bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try countPackedVarints(raw, start: 0, end: raw.count) } }
            switch expected {
            case .success(let values):
                #expect(fast == .success(values), "round \(round): \(bytes)")
                #expect(counted == .success(values.count), "round \(round): \(bytes)")
                var reader = PackedVarints(UnsafeRawBufferPointer(start: nil, count: 0), start: 0, end: 0)
                let viaReader: [UInt64] = bytes.withUnsafeBytes { raw in
                    reader = PackedVarints(raw, start: 0, end: raw.count)
                    return values.indices.map { _ in reader.next() }
                }
                #expect(viaReader == values, "round \(round)")
            case .failure(let error):
                guard case .failure(let e) = fast, case .failure(let c) = counted else {
                    Issue.record("round \(round): accepted \(bytes)")
                    continue
                }
                #expect(e.code == error.code && c.code == error.code)
            }
        }
    }
}

extension Result where Success: Equatable, Failure == WireError {
    static func == (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.success(let x), .success(let y)): x == y
        case (.failure(let x), .failure(let y)): x.code == y.code
        default: false
        }
    }
}
