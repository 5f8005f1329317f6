import Foundation
import TelematicsWire

/// Where the repository's copies of the conformance vectors and schema are.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let vectors = root.appendingPathComponent("vectors")
    static let dictionaryDirectory = vectors.appendingPathComponent("dicts")
    /// The package root (for tools and the built binary).
    static let packageRoot = root.deletingLastPathComponent().deletingLastPathComponent()

    static func records(_ name: String) throws -> [[UInt8]] {
        let reader = try CaptureReader(path: vectors.appendingPathComponent(name).path)
        var out: [[UInt8]] = []
        while let r = try reader.next() { out.append(Array(r)) }
        return out
    }

    static func expectedLines(_ name: String) throws -> [JSONValue] {
        let text = try String(contentsOf: vectors.appendingPathComponent(name), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONValue.parse(Array($0.utf8)) }
    }

    static func dictionaries() throws -> ZstdDictionaries {
        try ZstdDictionaries(directory: Fixtures.dictionaryDirectory.path)
    }

    static func dictionaryBytes() throws -> [UInt8] {
        Array(try Data(contentsOf: dictionaryDirectory.appendingPathComponent("4242.dict")))
    }
}

/// A parsed JSON value that keeps numbers exact (as their decimal text), so
/// 2^64-1 and other wide integers compare exactly.
indirect enum JSONValue: Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .number(let n): n
        case .string(let s): "\"\(s)\""
        case .array(let a): "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]!)" }.joined(separator: ",") + "}"
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        let offset: Int
        let message: String
        var description: String { "JSON parse error at \(offset): \(message)" }
    }

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var p = Parser(bytes: bytes)
        let v = try p.value()
        p.skipSpace()
        guard p.i == bytes.count else { throw ParseError(offset: p.i, message: "trailing characters") }
        return v
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ literal: String) throws {
            for b in literal.utf8 {
                guard i < bytes.count, bytes[i] == b else { throw ParseError(offset: i, message: "expected \(literal)") }
                i += 1
            }
        }

        mutating func value() throws -> JSONValue {
            skipSpace()
            guard i < bytes.count else { throw ParseError(offset: i, message: "unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                i += 1
                var items: [JSONValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    items.append(try value())
                    skipSpace()
                    guard i < bytes.count else { throw ParseError(offset: i, message: "unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw ParseError(offset: i, message: "expected , or ]")
                }
            case UInt8(ascii: "{"):
                i += 1
                var object: [String: JSONValue] = [:]
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(object) }
                while true {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    try expect(":")
                    guard object[key] == nil else { throw ParseError(offset: i, message: "duplicate key \(key)") }
                    object[key] = try value()
                    skipSpace()
                    guard i < bytes.count else { throw ParseError(offset: i, message: "unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(object) }
                    throw ParseError(offset: i, message: "expected , or }")
                }
            default:
                let start = i
                if bytes[i] == UInt8(ascii: "-") { i += 1 }
                let digits = i
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
                guard i > digits else { throw ParseError(offset: start, message: "unexpected character") }
                guard i == digits + 1 || bytes[digits] != UInt8(ascii: "0") else {
                    throw ParseError(offset: start, message: "leading zero")
                }
                if i < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) {
                    throw ParseError(offset: i, message: "only integers occur in canonical JSON")
                }
                let text = String(decoding: bytes[start..<i], as: UTF8.self)
                return .number(text == "-0" ? "0" : text)
            }
        }

        mutating func string() throws -> String {
            try expect("\"")
            var scalars = String.UnicodeScalarView()
            var raw: [UInt8] = []
            func flush() { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
            while true {
                guard i < bytes.count else { throw ParseError(offset: i, message: "unterminated string") }
                let b = bytes[i]
                i += 1
                if b == UInt8(ascii: "\"") { break }
                guard b >= 0x20 else { throw ParseError(offset: i - 1, message: "control character in string") }
                if b != UInt8(ascii: "\\") { raw.append(b); continue }
                flush()
                guard i < bytes.count else { throw ParseError(offset: i, message: "bad escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var unit = try hex4()
                    if (0xD800..<0xDC00).contains(unit), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try hex4()
                        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let s = Unicode.Scalar(unit) else { throw ParseError(offset: i, message: "lone surrogate") }
                    scalars.append(s)
                default: throw ParseError(offset: i - 1, message: "bad escape")
                }
            }
            flush()
            return String(scalars)
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else {
                throw ParseError(offset: i, message: "bad \\u escape")
            }
            i += 4
            return v
        }
    }
}

/// A small, fast, seeded generator (SplitMix64) so random tests repeat.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Decodes `record` to its canonical JSON line, parsed.
func canonicalJSON(_ record: [UInt8], decoder: RecordDecoder) throws -> JSONValue {
    var writer = CanonicalJSONWriter()
    record.withUnsafeBytes { raw in
        do throws(WireError) { writer.write(try decoder.decode(raw)) } catch { writer.write(error) }
    }
    writer.bytes.removeLast()  // the newline
    return try JSONValue.parse(writer.bytes)
}
