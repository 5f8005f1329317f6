import CZstd

/// Why a record was rejected: one of the error codes of WIRE.md, plus the
/// facts a person needs to act on it.
///
/// Thrown with typed throws and made only of trivial values (no strings), so
/// rejecting a record allocates nothing; ``detail`` renders the text on demand.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error codes of WIRE.md, in the order its table lists them.
    public enum Code: String, Sendable, CaseIterable, Codable {
        case truncated
        case trailingBytes = "trailing_bytes"
        case badMagic = "bad_magic"
        case unsupportedVersion = "unsupported_version"
        case unknownKind = "unknown_kind"
        case badFlags = "bad_flags"
        case badVin = "bad_vin"
        case decompressFailed = "decompress_failed"
        case badProtobuf = "bad_protobuf"
        case badField = "bad_field"
    }

    /// The precise cause; each case maps to exactly one ``Code``.
    public enum Reason: Sendable, Equatable {
        case shorterThanHeader(length: Int)
        case bodyShorterThanDeclared(available: Int, declared: UInt32)
        case bytesAfterBody(extra: Int, declared: UInt32)
        case magic(UInt8, UInt8)
        case version(UInt8)
        case kind(UInt8)
        case flags(UInt8)
        case reservedByte(offset: Int, value: UInt8)
        case vinCharacter(index: Int, byte: UInt8)
        case keyNotVin(keyLength: Int)
        case badFrameHeader
        case zstd(errorCode: UInt32)
        case unknownDictionary(UInt32)
        case declaredSizeOverLimit(UInt64)
        case expandsPastLimit
        case dataAfterFrame(extra: Int)
        case frameCutShort(available: Int)
        case truncatedVarint
        case varintTooLong
        case lengthPastEnd
        case wireType(UInt8)
        case fieldNumberZero
        case truncatedPackedVarint
        case wrongWireType(field: StaticString, wireType: UInt8)
        case notUTF8(field: StaticString)
        case outOfRange(field: StaticString, value: Int64)
        case permilleOver1000(field: StaticString, value: UInt32)
        case columnsDiffer(dt: Int, lat: Int, lon: Int, speed: Int, heading: Int)
        case pointOutOfRange(index: Int, latE7: Int64, lonE7: Int64)
        case headingOver359(index: Int, value: UInt32)
        case hazardPastLastPoint(hazard: Int, pointIndex: UInt32, points: Int)
    }

    /// The WIRE.md error code.
    public let code: Code
    /// What exactly was wrong.
    public let reason: Reason

    @inlinable
    public init(_ code: Code, _ reason: Reason) {
        self.code = code
        self.reason = reason
    }

    /// A sentence a person can act on (allocates; call it off the hot path).
    public var detail: String {
        switch reason {
        case .shorterThanHeader(let n):
            return "record is \(n) bytes, shorter than the 48-byte envelope header"
        case .bodyShorterThanDeclared(let available, let declared):
            return "body is \(available) bytes, shorter than its body_length \(declared)"
        case .bytesAfterBody(let extra, let declared):
            return "\(extra) bytes after the body of body_length \(declared)"
        case .magic(let a, let b):
            return "magic is \(hex(a)) \(hex(b)), expected 0x54 0x4d (\"TM\")"
        case .version(let v):
            return "version \(v); this decoder reads version 1"
        case .kind(let k):
            return "kind \(k); known kinds are 1 to 5"
        case .flags(let f):
            return "flags \(hex(f)): only bit 0 (zstd body) may be set"
        case .reservedByte(let offset, let value):
            return "reserved byte at offset \(offset) is \(hex(value)), must be 0"
        case .vinCharacter(let index, let byte):
            return "VIN byte \(index) is \(hex(byte)), outside ISO 3779 [A-HJ-NPR-Z0-9]"
        case .keyNotVin(let n):
            return "record key (\(n) bytes) does not equal the envelope VIN"
        case .badFrameHeader:
            return "not a zstd frame, or its frame header is corrupt"
        case .zstd(let code):
            return "zstd decompress error: " + String(cString: ZSTD_getErrorString(ZSTD_ErrorCode(rawValue: code)))
        case .unknownDictionary(let id):
            return "frame needs zstd dictionary \(id), which is not loaded (add it to the dictionary directory)"
        case .declaredSizeOverLimit(let size):
            return "frame declares \(size) bytes, over the 1 MiB limit"
        case .expandsPastLimit:
            return "frame expands past the 1 MiB limit"
        case .frameCutShort(let available):
            return "the zstd frame is cut short: its blocks run past the \(available)-byte body"
        case .dataAfterFrame(let extra):
            return "\(extra) bytes after the zstd frame; a body is one frame"
        case .truncatedVarint:
            return "truncated varint"
        case .varintTooLong:
            return "varint longer than 10 bytes"
        case .lengthPastEnd:
            return "field length runs past the end of the message"
        case .wireType(let wt):
            return "wire type \(wt) (groups and reserved wire types are not used)"
        case .fieldNumberZero:
            return "field number 0"
        case .truncatedPackedVarint:
            return "truncated varint in a packed field"
        case .wrongWireType(let field, let wt):
            return "\(field): wire type \(wt)"
        case .notUTF8(let field):
            return "\(field): not UTF-8"
        case .outOfRange(let field, let value):
            return "\(field) = \(value) out of range"
        case .permilleOver1000(let field, let value):
            return "\(field) = \(value), over 1000"
        case .columnsDiffer(let dt, let lat, let lon, let speed, let heading):
            return "RTTI columns differ in length (dt_ms \(dt), dlat_e7 \(lat), dlon_e7 \(lon), speed_dkmh \(speed), heading_deg \(heading))"
        case .pointOutOfRange(let index, let lat, let lon):
            return "point \(index) position out of range (lat_e7 \(lat), lon_e7 \(lon))"
        case .headingOver359(let index, let value):
            return "point \(index) heading \(value), over 359"
        case .hazardPastLastPoint(let hazard, let pointIndex, let points):
            return "hazard \(hazard) point_index \(pointIndex) past the last point (\(points) points)"
        }
    }

    public var description: String { "\(code.rawValue): \(detail)" }

    public static func == (a: WireError, b: WireError) -> Bool {
        a.code == b.code && a.detail == b.detail
    }
}

extension WireError.Reason {
    public static func == (a: Self, b: Self) -> Bool {
        WireError(.truncated, a).detail == WireError(.truncated, b).detail
    }
}

private func hex(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return "0x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
}
