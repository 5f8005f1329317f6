/// zstd frames written by hand (RFC 8878), for what a compressor will not
/// make: frames that do not declare their content size, and bombs.
public enum ZstdFrames {
    /// The largest block (128 KiB).
    public static let maximumBlock = 128 << 10

    /// A frame without a content size in its header holding `body` in raw
    /// (stored) blocks: the decoder learns its size only by decompressing.
    public static func withoutContentSize(_ body: [UInt8]) -> [UInt8] {
        var frame = header()
        var at = 0
        repeat {
            let n = min(maximumBlock, body.count - at)
            frame += blockHeader(last: at + n == body.count, type: 0, size: n)
            frame += body[at..<at + n]
            at += n
        } while at < body.count
        return frame
    }

    /// A bomb: a frame without a content size of `blocks` RLE blocks, each 4
    /// bytes that expand to 128 KiB of `byte`.
    public static func rleBomb(blocks: Int, byte: UInt8 = 0) -> [UInt8] {
        var frame = header()
        for i in 0..<blocks { frame += blockHeader(last: i == blocks - 1, type: 1, size: maximumBlock) + [byte] }
        return frame
    }

    /// Magic number, a descriptor without content size, checksum or
    /// dictionary (and not single-segment), and a 128 KiB window.
    private static func header() -> [UInt8] {
        [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38]
    }

    /// A 3-byte block header: last-block bit, block type (0 raw, 1 RLE), size.
    private static func blockHeader(last: Bool, type: UInt32, size: Int) -> [UInt8] {
        let value = (last ? 1 : 0) | type << 1 | UInt32(size) << 3
        return [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF)]
    }
}
