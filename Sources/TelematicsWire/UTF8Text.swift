/// A protobuf `string` field read in place: bytes known to be valid UTF-8.
///
/// A view into a message buffer; copy it out with ``string`` (which
/// allocates) when it must outlive the record.
public struct UTF8Text: CustomStringConvertible {
    /// The UTF-8 bytes.
    public let bytes: UnsafeRawBufferPointer

    @inlinable
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The empty string (a field that was absent).
    public static var empty: UTF8Text { UTF8Text(UnsafeRawBufferPointer(start: nil, count: 0)) }

    /// Number of UTF-8 bytes.
    @inlinable public var count: Int { bytes.count }
    /// Whether the text is empty.
    @inlinable public var isEmpty: Bool { bytes.isEmpty }

    /// A copy as a Swift string.
    public var string: String { String(decoding: bytes, as: UTF8.self) }
    public var description: String { string }

    /// Compares with a Swift string without allocating.
    public static func == (text: UTF8Text, other: String) -> Bool {
        var other = other
        return other.withUTF8 { $0.elementsEqual(text.bytes) }
    }
}

/// Whether `buffer[start..<end]` is well-formed UTF-8 (no overlong forms,
/// no surrogates, nothing past U+10FFFF), as protobuf requires of strings.
@inlinable
func isValidUTF8(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) -> Bool {
    var i = start
    @inline(__always) func continuation(_ at: Int) -> Bool { buffer[at] & 0xC0 == 0x80 }
    while i < end {
        let b0 = buffer[i]
        if b0 < 0x80 {
            i &+= 1
            continue
        }
        if b0 < 0xC2 { return false }
        if b0 < 0xE0 {
            guard end - i >= 2, continuation(i + 1) else { return false }
            i &+= 2
            continue
        }
        if b0 < 0xF0 {
            guard end - i >= 3 else { return false }
            let b1 = buffer[i + 1]
            switch b0 {
            case 0xE0: guard (0xA0...0xBF).contains(b1) else { return false }
            case 0xED: guard (0x80...0x9F).contains(b1) else { return false }
            default: guard b1 & 0xC0 == 0x80 else { return false }
            }
            guard continuation(i + 2) else { return false }
            i &+= 3
            continue
        }
        if b0 < 0xF5 {
            guard end - i >= 4 else { return false }
            let b1 = buffer[i + 1]
            switch b0 {
            case 0xF0: guard (0x90...0xBF).contains(b1) else { return false }
            case 0xF4: guard (0x80...0x8F).contains(b1) else { return false }
            default: guard b1 & 0xC0 == 0x80 else { return false }
            }
            guard continuation(i + 2), continuation(i + 3) else { return false }
            i &+= 4
            continue
        }
        return false
    }
    return true
}
