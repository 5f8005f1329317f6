/// Protobuf wire types (the low three bits of a field key).
public enum WireType {
    public static let varint: UInt8 = 0
    public static let fixed64: UInt8 = 1
    public static let lengthDelimited: UInt8 = 2
    public static let fixed32: UInt8 = 5
}

/// One field of a protobuf message, read in place.
///
/// For varint, fixed64 and fixed32 fields ``value`` holds the number; for
/// length-delimited fields ``payload`` is the range of bytes inside the
/// message buffer. Nothing is copied.
public struct ProtoField {
    /// The field number (never 0: the reader rejects it).
    public let number: UInt64
    /// The wire type (0, 1, 2 or 5: the reader rejects 3, 4, 6, 7).
    public let wireType: UInt8
    /// The numeric value of a varint or fixed field.
    public let value: UInt64
    /// Start and end offsets of a length-delimited payload in the buffer.
    public let start: Int
    public let end: Int

    @inlinable
    init(number: UInt64, wireType: UInt8, value: UInt64, start: Int, end: Int) {
        self.number = number
        self.wireType = wireType
        self.value = value
        self.start = start
        self.end = end
    }

    /// Throws `bad_field` unless the field has the wire type `expected`.
    @inlinable
    public func require(_ expected: UInt8, _ name: StaticString) throws(WireError) {
        if wireType != expected {
            throw WireError(.badField, .wrongWireType(field: name, wireType: wireType))
        }
    }
}

/// Reads the fields of one protobuf message in order, in place, checking
/// the syntax rules of WIRE.md (`bad_protobuf`) as it goes.
///
/// A struct of a buffer and an offset: iterating allocates nothing. The
/// buffer must outlive the reader.
public struct ProtoFieldReader {
    public let buffer: UnsafeRawBufferPointer
    @usableFromInline var offset: Int
    @usableFromInline let end: Int

    /// Reads the message that fills `buffer`.
    @inlinable
    public init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
        self.offset = 0
        self.end = buffer.count
    }

    /// Reads the message in `buffer[start..<end]`.
    @inlinable
    public init(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) {
        self.buffer = buffer
        self.offset = start
        self.end = end
    }

    /// The next field, or nil at the end of the message.
    @inlinable @inline(__always)
    public mutating func next() throws(WireError) -> ProtoField? {
        if offset >= end { return nil }
        // Keys are almost always one byte: a branch that predicts well.
        let first = buffer[offset]
        let key: UInt64
        if first < 0x80 {
            offset &+= 1
            key = UInt64(first)
        } else {
            key = try readVarint()
        }
        let number = key >> 3
        let wireType = UInt8(truncatingIfNeeded: key & 7)
        if number == 0 { throw WireError(.badProtobuf, .fieldNumberZero) }
        switch wireType {
        case WireType.varint:
            let value = try readVarint()
            return ProtoField(number: number, wireType: wireType, value: value, start: 0, end: 0)
        case WireType.fixed64:
            guard end - offset >= 8 else { throw WireError(.badProtobuf, .lengthPastEnd) }
            let value = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset &+= 8
            return ProtoField(number: number, wireType: wireType, value: value, start: 0, end: 0)
        case WireType.fixed32:
            guard end - offset >= 4 else { throw WireError(.badProtobuf, .lengthPastEnd) }
            let value = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            offset &+= 4
            return ProtoField(number: number, wireType: wireType, value: UInt64(value), start: 0, end: 0)
        case WireType.lengthDelimited:
            let length = try readVarint()
            guard length <= UInt64(end - offset) else { throw WireError(.badProtobuf, .lengthPastEnd) }
            let start = offset
            offset &+= Int(length)
            return ProtoField(number: number, wireType: wireType, value: length, start: start, end: offset)
        default:
            throw WireError(.badProtobuf, .wireType(wireType))
        }
    }

    /// Whether every byte has been read.
    @inlinable
    public var isAtEnd: Bool { offset >= end }

    /// Reads a base-128 varint of at most 10 bytes; bits past 64 are dropped,
    /// as the protobuf rules truncate a varint wider than its field. (Also
    /// what the stores' own packed formats are read with.)
    @inlinable @inline(__always)
    public mutating func readVarint() throws(WireError) -> UInt64 {
        // Lengths and small values are one byte more often than not.
        if offset < end, buffer[offset] < 0x80 {
            offset &+= 1
            return UInt64(buffer[offset &- 1])
        }
        return try readLongerVarint()
    }

    /// ``readVarint()`` past its one-byte case.
    @inlinable
    mutating func readLongerVarint() throws(WireError) -> UInt64 {
        if end - offset >= 8, let (value, length) = decodeShortVarint(buffer, at: offset) {
            offset &+= length
            return value
        }
        var i = offset
        guard i < end else { throw WireError(.badProtobuf, .truncatedVarint) }
        var byte = buffer[i]
        i &+= 1
        if byte < 0x80 {
            offset = i
            return UInt64(byte)
        }
        var result = UInt64(byte & 0x7F)
        var shift: UInt64 = 7
        while true {
            guard i < end else { throw WireError(.badProtobuf, .truncatedVarint) }
            byte = buffer[i]
            i &+= 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 {
                offset = i
                return result
            }
            shift &+= 7
            if shift >= 70 { throw WireError(.badProtobuf, .varintTooLong) }
        }
    }
}

/// Squeezes the 7-bit groups of up to eight varint bytes (continuation bits
/// already cleared, bytes past the varint zeroed) into one number.
@inlinable @inline(__always)
func squeezeVarintBytes(_ bytes: UInt64) -> UInt64 {
    var x = bytes
    x = ((x & 0x7F00_7F00_7F00_7F00) >> 1) | (x & 0x007F_007F_007F_007F)
    x = ((x & 0x3FFF_0000_3FFF_0000) >> 2) | (x & 0x0000_3FFF_0000_3FFF)
    x = ((x & 0x0FFF_FFFF_0000_0000) >> 4) | (x & 0x0000_0000_0FFF_FFFF)
    return x
}

/// The low `bits` bits set (bits 1...64).
@inlinable @inline(__always)
func lowBits(_ bits: Int) -> UInt64 {
    bits >= 64 ? UInt64.max : (1 << UInt64(bits)) &- 1
}

/// Decodes the varint at `offset` from one 8-byte load, without branching
/// on its length (which varies at random in real data, so a branch would
/// mispredict). Returns nil when the varint does not end within those 8
/// bytes; the caller then takes the byte-by-byte path. Needs 8 readable bytes.
@inlinable @inline(__always)
func decodeShortVarint(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> (value: UInt64, length: Int)? {
    let word = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    let terminators = ~word & 0x8080_8080_8080_8080
    if terminators == 0 { return nil }
    let bits = terminators.trailingZeroBitCount &+ 1  // 8 * length
    return (squeezeVarintBytes(word & lowBits(bits) & 0x7F7F_7F7F_7F7F_7F7F), bits >> 3)
}

/// Varint values of a packed run (or of one unpacked field), read in place.
/// Used only on runs the validating pass has already checked.
@usableFromInline
struct PackedVarints {
    @usableFromInline let buffer: UnsafeRawBufferPointer
    @usableFromInline var offset: Int
    @usableFromInline let end: Int

    @inlinable
    init(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) {
        self.buffer = buffer
        self.offset = start
        self.end = end
    }

    @inlinable
    var isEmpty: Bool { offset >= end }

    /// The next value; the run is known to be well formed.
    @inlinable
    mutating func next() -> UInt64 {
        if end - offset >= 8, let (value, length) = decodeShortVarint(buffer, at: offset) {
            offset &+= length
            return value
        }
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while offset < end {
            let byte = buffer[offset]
            offset &+= 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift &+= 7
        }
        return result
    }
}

/// Counts the varints of a packed run, checking that each ends within the
/// run and is at most 10 bytes long (protobuf's limit).
///
/// Eight bytes at a time: a varint ends at each byte whose top bit is clear,
/// so the count is a population count, and only runs of continuation bytes
/// that cross a word boundary can reach the limit.
@inlinable
func countPackedVarints(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> Int {
    let highBits: UInt64 = 0x8080_8080_8080_8080
    var count = 0
    var run = 0  // continuation bytes at the end of what was scanned
    var i = start
    while end &- i >= 8 {
        let word = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        let terminators = ~word & highBits
        if terminators == 0 {
            run &+= 8
            if run >= 10 { throw WireError(.badProtobuf, .varintTooLong) }
        } else {
            if run &+ terminators.trailingZeroBitCount / 8 >= 10 { throw WireError(.badProtobuf, .varintTooLong) }
            count &+= terminators.nonzeroBitCount
            run = terminators.leadingZeroBitCount / 8
        }
        i &+= 8
    }
    while i < end {
        if buffer[i] >= 0x80 {
            run &+= 1
            if run >= 10 { throw WireError(.badProtobuf, .varintTooLong) }
        } else {
            run = 0
            count &+= 1
        }
        i &+= 1
    }
    if run != 0 { throw WireError(.badProtobuf, .truncatedPackedVarint) }
    return count
}

/// Something that consumes the varints of a packed run (kept in registers
/// by ``forEachPackedVarint(_:start:end:into:)``).
@usableFromInline
protocol VarintSink {
    mutating func take(_ value: UInt64)
}

/// A sink that calls a closure (tests, cold paths).
@usableFromInline
struct ClosureSink: VarintSink {
    @usableFromInline let body: (UInt64) -> Void
    @inlinable init(_ body: @escaping (UInt64) -> Void) { self.body = body }
    @inlinable func take(_ value: UInt64) { body(value) }
}

/// Calls `body` with each varint of a packed run, checking, as
/// ``countPackedVarints`` does, that each ends in the run within 10 bytes.
@inlinable
func forEachPackedVarint(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int, _ body: (UInt64) -> Void) throws(WireError) {
    try withoutActuallyEscaping(body) { (escapable) throws(WireError) in
        var sink = ClosureSink(escapable)
        try forEachPackedVarint(buffer, start: start, end: end, into: &sink)
    }
}

/// Feeds each varint of a packed run to `sink`, checking, as
/// ``countPackedVarints`` does, that each ends in the run within 10 bytes.
@inlinable @inline(__always)
func forEachPackedVarint<Sink: VarintSink>(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int, into sink: inout Sink) throws(WireError) {
    var local = sink  // a local copy the optimiser can keep in registers
    defer { sink = local }
    var i = start
    // Two varints per 8-byte load while both end inside it: the next load's
    // address then waits on one length computation per two values.
    while end &- i >= 8 {
        let word = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        let terminators = ~word & 0x8080_8080_8080_8080
        if terminators == 0 { break }  // a varint over 8 bytes: byte by byte below
        let firstBits = terminators.trailingZeroBitCount &+ 1
        let payload = word & 0x7F7F_7F7F_7F7F_7F7F
        local.take(squeezeVarintBytes(payload & lowBits(firstBits)))
        let rest = terminators & (terminators &- 1)
        if rest == 0 {
            i &+= firstBits >> 3
            continue
        }
        let bothBits = rest.trailingZeroBitCount &+ 1
        local.take(squeezeVarintBytes((payload & lowBits(bothBits)) >> UInt64(firstBits)))
        i &+= bothBits >> 3
    }
    while i < end {
        let first = buffer[i]
        i &+= 1
        if first < 0x80 {
            local.take(UInt64(first))
            continue
        }
        var result = UInt64(first & 0x7F)
        var shift: UInt64 = 7
        while true {
            guard i < end else { throw WireError(.badProtobuf, .truncatedPackedVarint) }
            let byte = buffer[i]
            i &+= 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift &+= 7
            if shift >= 70 { throw WireError(.badProtobuf, .varintTooLong) }
        }
        local.take(result)
    }
}

/// Feeds the packed run `start..<end` to `take` as little-endian 8-byte
/// words; in the last one the bytes past the run read as 0 (a whole word
/// loaded and masked where the buffer has 8 bytes there, else assembled
/// byte by byte). Says whether the run's last byte ends a varint (its high
/// bit clear); an empty run does.
@inlinable @inline(__always)
func forEachWord(ofRun buffer: UnsafeRawBufferPointer, start: Int, end: Int, _ take: (UInt64) -> Void) -> Bool {
    var i = start
    var last: UInt64 = 0
    while end &- i >= 8 {
        last = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        take(last)
        i &+= 8
    }
    let left = end &- i
    guard left > 0 else { return last >> 63 == 0 }
    if buffer.count &- i >= 8 {
        last = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self)) & lowBits(left &* 8)
    } else {
        last = 0
        for k in 0..<left { last |= UInt64(buffer[i &+ k]) << UInt64(k &* 8) }
    }
    take(last)
    return (last >> UInt64(left &* 8 &- 1)) & 1 == 0
}

/// The number of varints in the packed run `start..<end` when each has at
/// most 3 bytes and the run ends on a last byte; nil otherwise (a longer or
/// cut-off varint: the caller decodes the run and reports it). Eight bytes
/// at a time with no dependency between words but the position.
@inlinable
func countShortVarints(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) -> Int? {
    let highBits: UInt64 = 0x8080_8080_8080_8080
    var continuations = 0
    var bad: UInt64 = 0
    var previous: UInt64 = 0  // continuation bits of the word before
    let endsOnLastByte = forEachWord(ofRun: buffer, start: start, end: end) { word in
        let continued = word & highBits
        // A continuation byte after two continuation bytes: 4 bytes or more.
        bad |= continued & ((continued << 8) | (previous >> 56)) & ((continued << 16) | (previous >> 48))
        continuations &+= continued.nonzeroBitCount
        previous = continued
    }
    return endsOnLastByte && bad == 0 ? (end &- start) &- continuations : nil
}

/// The number of varints in the packed run `start..<end` when every one is
/// at most 359 in its shortest form (one byte, or two whose last byte is 0
/// or 1, or 2 after a first byte whose low 7 bits are at most 103); nil
/// when that does not hold for one of them (the caller decodes the run).
/// Bytes past the run read as 0: they end no varint of the run, and a run
/// whose last byte continues is refused.
@inlinable
func countHeadingVarints(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) -> Int? {
    let highBits: UInt64 = 0x8080_8080_8080_8080
    let lowBits7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
    var continuations = 0
    var bad: UInt64 = 0
    var previous: UInt64 = 0  // the word before
    let endsOnLastByte = forEachWord(ofRun: buffer, start: start, end: end) { word in
        let continued = word & highBits
        let before = (word << 8) | (previous >> 56)  // each byte's previous byte
        let second = before & highBits  // lanes that are a second (or later) byte
        let value = word & lowBits7
        let atLeast3 = (value &+ 0x7D7D_7D7D_7D7D_7D7D) & highBits
        let isNot2 = ((value ^ 0x0202_0202_0202_0202) &+ lowBits7) & highBits
        let firstOver103 = ((before & lowBits7) &+ 0x1818_1818_1818_1818) & highBits
        // 3 bytes or more, or a second byte making the value over 359.
        bad |= (continued & second) | (second & (atLeast3 | (~isNot2 & firstOver103)))
        continuations &+= continued.nonzeroBitCount
        previous = word
    }
    return endsOnLastByte && bad == 0 ? (end &- start) &- continuations : nil
}

/// The number of varints in the packed run `start..<end`, checked as
/// ``countPackedVarints`` checks them, taking ``countShortVarints``'s
/// quicker way when every varint is short.
@inlinable @inline(__always)
func countVarints(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> Int {
    if let n = countShortVarints(buffer, start: start, end: end) { return n }
    return try countPackedVarints(buffer, start: start, end: end)
}

/// Zig-zag decoding of a `sint32` after truncation to 32 bits.
@inlinable
func zigZag32(_ raw: UInt64) -> Int32 {
    let v = UInt32(truncatingIfNeeded: raw)
    return Int32(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
}

/// Zig-zag encoding of a `sint32`.
@inlinable
func zigZagEncode32(_ v: Int32) -> UInt32 {
    UInt32(bitPattern: (v << 1) ^ (v >> 31))
}
