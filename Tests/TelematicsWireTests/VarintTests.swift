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

/// The byte length of each varint of a well-formed packed run.
private func varintLengths(_ bytes: [UInt8]) -> [Int] {
    var lengths: [Int] = []
    var run = 0
    for b in bytes {
        run += 1
        if b < 0x80 {
            lengths.append(run)
            run = 0
        }
    }
    return lengths
}

@Suite("Varint counting without decoding")
struct VarintCountingTests {
    /// A run of varints of 1 to 4 bytes (values near the bounds the
    /// counters test: 359 and 360, 2^14 and 2^21), sometimes non-canonical,
    /// sometimes cut off, placed after `lead` bytes and followed by `slack`
    /// bytes of garbage (0 to 9: the counters read whole words past the run
    /// only where the buffer has them, and must ignore them).
    private func run(_ rng: inout SeededGenerator) -> (buffer: [UInt8], start: Int, end: Int, run: [UInt8]) {
        let interesting: [UInt64] = [0, 1, 127, 128, 255, 256, 358, 359, 360, 383, 384, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455]
        var bytes: [UInt8] = []
        let headings = Bool.random(using: &rng)  // values as headings have them, most at most 359
        for _ in 0..<Int.random(in: 0...40, using: &rng) {
            var w = ProtoWriter()
            let value = headings ? (Int.random(in: 0..<30, using: &rng) == 0 ? UInt64.random(in: 360...400, using: &rng) : UInt64.random(in: 0...359, using: &rng))
                : Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt64.random(in: 0..<(1 << 22), using: &rng)
            w.varint(value)
            bytes += w.bytes
            if Int.random(in: 0..<(headings ? 60 : 10), using: &rng) == 0 {
                bytes[bytes.count - 1] |= 0x80  // the same value, one byte longer
                bytes.append(0)
            }
        }
        if Int.random(in: 0..<6, using: &rng) == 0, !bytes.isEmpty { bytes[bytes.count - 1] |= 0x80 }  // cut off
        let lead = (0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let slack = (0..<Int.random(in: 0...9, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return (lead + bytes + slack, lead.count, lead.count + bytes.count, bytes)
    }

    @Test("short-varint and heading counts say exactly when they hold, and count as byte by byte does")
    func countsAgreeWithByteByByte() {
        var rng = SeededGenerator(seed: 4242)
        var shortHeld = 0, headingHeld = 0
        for round in 0..<30_000 {
            let (buffer, start, end, bytes) = run(&rng)
            let expected = naiveVarints(bytes)
            let (short, heading, counted, exact) = buffer.withUnsafeBytes { raw in
                (countShortVarints(raw, start: start, end: end), countHeadingVarints(raw, start: start, end: end),
                 Result { () throws(WireError) in try countVarints(raw, start: start, end: end) },
                 Result { () throws(WireError) in try countPackedVarints(raw, start: start, end: end) })
            }
            #expect(counted == exact, "round \(round): \(bytes)")
            guard case .success(let values) = expected else {
                #expect(short == nil && heading == nil, "round \(round): a bad run counted: \(bytes)")
                continue
            }
            let lengths = varintLengths(bytes)
            let allShort = lengths.allSatisfy { $0 <= 3 }
            let allHeadings = zip(lengths, values).allSatisfy { $0 == 1 || ($0 == 2 && $1 <= 359) }
            #expect(short == (allShort ? values.count : nil), "round \(round): \(bytes)")
            #expect(heading == (allHeadings ? values.count : nil), "round \(round): \(bytes)")
            if allShort { shortHeld += 1 }
            if allHeadings { headingHeld += 1 }
        }
        // Both outcomes were exercised.
        #expect(shortHeld > 1_000 && shortHeld < 29_000)
        #expect(headingHeld > 1_000 && headingHeld < 29_000)
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
