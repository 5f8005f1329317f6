/// The five kinds of message the envelope's kind byte names (WIRE.md).
public enum MessageKind: UInt8, Sendable, CaseIterable, Codable {
    case teleserviceCall = 1
    case hvWarnCall = 2
    case rttiProbe = 3
    case chargeSession = 4
    case consentState = 5

    /// The kind's name in canonical JSON (`"teleservice_call"`, ...).
    public var name: StaticString {
        switch self {
        case .teleserviceCall: "teleservice_call"
        case .hvWarnCall: "hv_warn_call"
        case .rttiProbe: "rtti_probe"
        case .chargeSession: "charge_session"
        case .consentState: "consent_state"
        }
    }

    /// The default ingress topic of WIRE.md for this kind.
    public var defaultTopic: String {
        switch self {
        case .teleserviceCall: "telematics.teleservice"
        case .hvWarnCall: "telematics.hv-warn"
        case .rttiProbe: "telematics.rtti"
        case .chargeSession: "telematics.charging"
        case .consentState: "telematics.consent"
        }
    }
}

/// A vehicle identification number: 17 ASCII bytes of ISO 3779's
/// `[A-HJ-NPR-Z0-9]`, held inline (no heap) so it can key per-vehicle
/// state and be compared without allocating.
public struct VIN: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Number of bytes in a VIN.
    public static let length = 17
    @usableFromInline let head: UInt64
    @usableFromInline let middle: UInt64
    @usableFromInline let last: UInt8

    /// Reads 17 bytes at `offset` without checking them.
    @inlinable
    init(unchecked bytes: UnsafeRawBufferPointer, at offset: Int) {
        head = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        middle = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        last = bytes[offset + 16]
    }

    /// The VIN of an envelope, read from its header without checking the rest
    /// (for routing before decoding); nil when the record is too short or the
    /// bytes are not VIN characters.
    @inlinable
    public init?(peekingAt record: UnsafeRawBufferPointer) {
        guard record.count >= 41 else { return nil }
        for i in 24..<41 where !VIN.isAllowed(record[i]) { return nil }
        self.init(unchecked: record, at: 24)
    }

    /// A VIN from text; nil unless it is 17 characters of the ISO 3779 set.
    public init?(_ text: some StringProtocol) {
        var utf8 = Array(text.utf8)
        guard utf8.count == VIN.length, utf8.allSatisfy(VIN.isAllowed) else { return nil }
        self = utf8.withUnsafeMutableBytes { VIN(unchecked: UnsafeRawBufferPointer($0), at: 0) }
        utf8.removeAll()
    }

    /// Whether `byte` is one of ISO 3779's VIN characters (no I, O, Q).
    @inlinable
    public static func isAllowed(_ byte: UInt8) -> Bool {
        // One bit per character from "0" (0x30) to "Z" (0x5A): digits and
        // letters but I, O and Q; a shift and a mask instead of branches.
        let offset = byte &- 0x30
        return offset < 43 && (allowedMask >> UInt64(offset)) & 1 == 1
    }

    /// Bit n set when 0x30 + n is a VIN character (checked by a test).
    @usableFromInline
    static let allowedMask: UInt64 = 0x7FD_7DFE_03FF

    /// Calls `body` with the 17 ASCII bytes.
    @inlinable
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var raw: (UInt64, UInt64, UInt8) = (head.bigEndian, middle.bigEndian, last)
        return try withUnsafeBytes(of: &raw) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<VIN.length])) }
    }

    /// The VIN as text.
    public var description: String {
        withBytes { String(decoding: $0, as: UTF8.self) }
    }

    public static func < (a: VIN, b: VIN) -> Bool {
        (a.head, a.middle, a.last) < (b.head, b.middle, b.last)
    }
}

/// The fixed 48-byte header of an envelope, checked, plus where its body is.
///
/// A view: ``body`` points into the record buffer it was read from and is
/// valid only while that buffer is.
public struct Envelope {
    /// Size of the fixed header.
    public static let headerSize = 48

    /// What the body is.
    public let kind: MessageKind
    /// The vehicle's message counter; (VIN, sequence) identifies a message.
    public let sequence: UInt64
    /// Milliseconds since the Unix epoch, vehicle clock.
    public let recordedAtMs: Int64
    /// The vehicle.
    public let vin: VIN
    /// Whether the body is one zstd frame.
    public let isCompressed: Bool
    /// The body as sent (compressed when ``isCompressed``).
    public let body: UnsafeRawBufferPointer

    /// Checks `record` in the order of WIRE.md's table and returns its
    /// header; `key`, when given, must equal the VIN.
    @inlinable
    public init(parsing record: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer? = nil) throws(WireError) {
        let count = record.count
        guard count >= Envelope.headerSize else {
            throw WireError(.truncated, .shorterThanHeader(length: count))
        }
        guard record[0] == 0x54, record[1] == 0x4D else {
            throw WireError(.badMagic, .magic(record[0], record[1]))
        }
        guard record[2] == 1 else { throw WireError(.unsupportedVersion, .version(record[2])) }
        guard let kind = MessageKind(rawValue: record[3]) else { throw WireError(.unknownKind, .kind(record[3])) }
        let flags = record[4]
        guard flags & 0xFE == 0 else { throw WireError(.badFlags, .flags(flags)) }
        for offset in 5...7 where record[offset] != 0 {
            throw WireError(.badFlags, .reservedByte(offset: offset, value: record[offset]))
        }
        for offset in 41...43 where record[offset] != 0 {
            throw WireError(.badFlags, .reservedByte(offset: offset, value: record[offset]))
        }
        let bodyLength = UInt32(littleEndian: record.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
        let available = count - Envelope.headerSize
        if UInt64(available) < UInt64(bodyLength) {
            throw WireError(.truncated, .bodyShorterThanDeclared(available: available, declared: bodyLength))
        }
        if UInt64(available) > UInt64(bodyLength) {
            throw WireError(.trailingBytes, .bytesAfterBody(extra: available - Int(bodyLength), declared: bodyLength))
        }
        for i in 0..<VIN.length where !VIN.isAllowed(record[24 + i]) {
            throw WireError(.badVin, .vinCharacter(index: i, byte: record[24 + i]))
        }
        if let key {
            guard key.count == VIN.length, memcmpEqual(key, record, offset: 24, count: VIN.length) else {
                throw WireError(.badVin, .keyNotVin(keyLength: key.count))
            }
        }
        self.kind = kind
        self.sequence = UInt64(littleEndian: record.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        self.recordedAtMs = Int64(littleEndian: record.loadUnaligned(fromByteOffset: 16, as: Int64.self))
        self.vin = VIN(unchecked: record, at: 24)
        self.isCompressed = flags & 1 == 1
        self.body = UnsafeRawBufferPointer(rebasing: record[Envelope.headerSize...])
    }
}

@inlinable
func memcmpEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, offset: Int, count: Int) -> Bool {
    for i in 0..<count where a[i] != b[offset + i] { return false }
    return true
}
