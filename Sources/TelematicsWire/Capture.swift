#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a `.tmcap` capture file (WIRE.md: `u32 length` then the record,
/// repeated) as a stream through one reusable buffer, so files of any size
/// are read without loading them whole, and pipes work as well as files.
public final class CaptureReader {
    /// The largest record length accepted; longer ones mean a corrupt file.
    public static let maximumRecordLength = 256 << 20

    private let fd: Int32
    private let ownsDescriptor: Bool
    private let path: String
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var atEOF = false
    /// Byte offset in the file of the record returned last.
    public private(set) var recordOffset: UInt64 = 0
    private var consumed: UInt64 = 0

    /// Opens `path`, or standard input for `-`.
    public init(path: String, bufferSize: Int = 4 << 20) throws(FileError) {
        if path == "-" {
            fd = 0
            ownsDescriptor = false
        } else {
            fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw FileError(path: path, errno: errno) }
            ownsDescriptor = true
            var st = stat()
            if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
                close(fd)
                throw FileError(path: path, errno: EISDIR)
            }
        }
        self.path = path
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit {
        if ownsDescriptor { close(fd) }
        buffer.deallocate()
    }

    /// Bytes read from the file so far.
    public var bytesRead: UInt64 { consumed + UInt64(end - start) }

    /// The next record, valid until the next call; nil at the end of the file.
    ///
    /// A file that ends inside a record yields the bytes that are there (they
    /// decode as `truncated`), so nothing is silently dropped.
    public func next() throws(CaptureError) -> UnsafeRawBufferPointer? {
        try fill(atLeast: 4)
        let available = end - start
        if available == 0 { return nil }
        recordOffset = consumed
        if available < 4 {
            return take(available, skipping: 0)
        }
        let length = Int(UInt32(littleEndian: UnsafeRawPointer(buffer.baseAddress! + start).loadUnaligned(as: UInt32.self)))
        guard length <= CaptureReader.maximumRecordLength else {
            throw CaptureError(path: path, offset: consumed, problem: "a record length of \(length) bytes, over the \(CaptureReader.maximumRecordLength >> 20) MiB limit: not a .tmcap file, or a corrupt one")
        }
        try fill(atLeast: 4 + length)
        return take(min(length, end - start - 4), skipping: 4)
    }

    private func take(_ count: Int, skipping prefix: Int) -> UnsafeRawBufferPointer {
        let record = UnsafeRawBufferPointer(rebasing: buffer[(start + prefix)..<(start + prefix + count)])
        start += prefix + count
        consumed += UInt64(prefix + count)
        return record
    }

    /// Makes at least `count` bytes available from `start` unless the file ends.
    private func fill(atLeast count: Int) throws(CaptureError) {
        if end - start >= count || atEOF { return }
        if count > buffer.count {
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, buffer.count * 2), alignment: 16)
            bigger.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
            buffer.deallocate()
            buffer = bigger
            end -= start
            start = 0
        } else if start + count > buffer.count {
            let live = end - start
            if live > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, live) }
            start = 0
            end = live
        }
        while end - start < count {
            let n = read(fd, buffer.baseAddress! + end, buffer.count - end)
            if n < 0 {
                if errno == EINTR { continue }
                throw CaptureError(path: path, offset: consumed, problem: String(cString: strerror(errno)))
            }
            if n == 0 {
                atEOF = true
                return
            }
            end += n
        }
    }
}

/// A capture file that could not be read.
public struct CaptureError: Error, CustomStringConvertible {
    public let path: String
    public let offset: UInt64
    public let problem: String
    public var description: String { "\(path): at byte \(offset): \(problem)" }
}

/// Writes a `.tmcap` capture file through a buffer.
public final class CaptureWriter {
    private let fd: Int32
    private let path: String
    private var pending: [UInt8] = []
    /// Records written.
    public private(set) var count = 0

    /// Creates (or truncates) `path`; `-` writes to standard output.
    public init(path: String) throws(FileError) {
        if path == "-" {
            fd = 1
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw FileError(path: path, errno: errno) }
        }
        self.path = path
        pending.reserveCapacity(1 << 20)
    }

    /// Appends one record.
    public func append(_ record: some Collection<UInt8>) throws(FileError) {
        withUnsafeBytes(of: UInt32(record.count).littleEndian) { pending.append(contentsOf: $0) }
        pending.append(contentsOf: record)
        count += 1
        if pending.count >= 1 << 20 { try flush() }
    }

    /// Writes what is buffered.
    public func flush() throws(FileError) {
        var written = 0
        while written < pending.count {
            let n = pending.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, errno: errno)
            }
            written += n
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file.
    public func close() throws(FileError) {
        try flush()
        if fd > 2 {
            #if canImport(Glibc)
            _ = Glibc.close(fd)
            #else
            _ = Darwin.close(fd)
            #endif
        }
    }
}
