import NIOCore
import PostgresNIO

/// A `bigint[]` parameter written in one pass. PostgresNIO encodes an
/// array element by element through its generic path (a length placeholder
/// written, the value, the length patched): on the foundation capture that
/// took 12% of the pipeline's CPU with PostgreSQL, for the aggregates'
/// arrays alone. The wire form is the same: PostgreSQL's binary array
/// (dimensions, no-null flag, element type, then length and lower bound,
/// then each element as a 4-byte length and 8 bytes, big-endian).
struct BigintArray: PostgresNonThrowingEncodable {
    static var psqlType: PostgresDataType { .int8Array }
    static var psqlFormat: PostgresFormat { .binary }

    var values: [Int64]

    init(_ values: [Int64]) { self.values = values }

    func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeInteger(values.isEmpty ? 0 : 1, as: UInt32.self)
        buffer.writeInteger(0, as: Int32.self)
        buffer.writeInteger(PostgresDataType.int8.rawValue)
        guard !values.isEmpty else { return }
        buffer.writeInteger(Int32(values.count))
        buffer.writeInteger(1, as: Int32.self)
        let size = values.count * 12
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            values.withUnsafeBufferPointer { elements in
                var at = 0
                for value in elements {
                    out.storeBytes(of: UInt32(8).bigEndian, toByteOffset: at, as: UInt32.self)
                    out.storeBytes(of: value.bigEndian, toByteOffset: at + 4, as: Int64.self)
                    at += 12
                }
            }
            return size
        }
    }
}

extension PostgresBindings {
    /// Binds `values` as a `bigint[]` written in one pass (``BigintArray``),
    /// in place of PostgresNIO's element-by-element encoding.
    mutating func append(_ values: [Int64]) {
        append(BigintArray(values))
    }
}
