import Testing
import TelematicsTestSupport
import TelematicsWire

/// WIRE.md: a decompressed body is at most 1 MiB; a frame that would expand
/// past that is rejected without being expanded, and a frame must declare
/// its content size or decompress within the limit (`decompress_failed`).
/// The flood tests send the same bombs through the pipeline; these pin the
/// decoder's reasons.
@Suite("The 1 MiB body limit and zstd bombs")
struct BodyLimitTests {
    let decoder = RecordDecoder()

    /// A compressed teleservice call record holding `frame`.
    func record(_ frame: [UInt8]) -> [UInt8] {
        EnvelopeWriter.record(
            kind: MessageKind.teleserviceCall.rawValue, sequence: 1, recordedAtMs: 1_763_942_400_000,
            vin: VIN("WMW11DJ0X02L00001")!, body: frame, compressed: true)
    }

    /// A teleservice call body of exactly `size` bytes: one unknown
    /// length-delimited field, which the decoder skips.
    func body(size: Int) -> [UInt8] {
        var w = ProtoWriter()
        w.key(99, 2)
        w.varint(UInt64(size - w.bytes.count - 3))  // a 3-byte length for sizes of 16 KiB to 2 MiB
        w.bytes += [UInt8](repeating: 0x61, count: size - w.bytes.count)
        precondition(w.bytes.count == size)
        return w.bytes
    }

    /// The error decoding `record` gives, or nil when it is accepted.
    func rejection(_ record: [UInt8]) -> WireError? {
        record.withUnsafeBytes { bytes -> WireError? in
            do throws(WireError) {
                _ = try decoder.decode(bytes)
                return nil
            } catch {
                return error
            }
        }
    }

    @Test("a bomb without a declared size (128 MiB of RLE blocks in 4 KiB) stops at 1 MiB: decompress_failed, at once")
    func bombWithoutDeclaredSize() {
        let bomb = ZstdFrames.rleBomb(blocks: 1_024)
        #expect(bomb.count < 5_000)
        let started = ContinuousClock.now
        #expect(rejection(record(bomb)) == WireError(.decompressFailed, .expandsPastLimit))
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test("a frame declaring more than 1 MiB (64 MiB of zeros) is rejected before decompression")
    func declaredBomb() throws {
        let frame = try ZstdCompressor(level: 1).compress([UInt8](repeating: 0, count: 64 << 20))
        #expect(rejection(record(frame)) == WireError(.decompressFailed, .declaredSizeOverLimit(64 << 20)))
    }

    @Test("a body of exactly 1 MiB is accepted with or without a declared size; one byte more is decompress_failed")
    func exactlyAtTheLimit() throws {
        let compressor = try ZstdCompressor(level: 1)
        let atLimit = body(size: maximumBodySize), over = body(size: maximumBodySize + 1)
        #expect(rejection(record(compressor.compress(atLimit))) == nil)
        #expect(rejection(record(ZstdFrames.withoutContentSize(atLimit))) == nil)
        #expect(rejection(record(compressor.compress(over))) == WireError(.decompressFailed, .declaredSizeOverLimit(UInt64(maximumBodySize + 1))))
        #expect(rejection(record(ZstdFrames.withoutContentSize(over))) == WireError(.decompressFailed, .expandsPastLimit))
    }
}
