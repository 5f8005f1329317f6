import CZstd

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The largest decompressed body WIRE.md allows (1 MiB).
public let maximumBodySize = 1 << 20

/// zstd dictionaries, loaded once at start-up and shared read-only by every
/// worker; each is known by the dictionary id stored inside it.
public final class ZstdDictionaries: @unchecked Sendable {
    // Immutable after init; ZSTD_DDict is safe to share between threads.
    private let byID: [UInt32: OpaquePointer]

    /// No dictionaries: frames that name one are rejected.
    public static let none = ZstdDictionaries(byID: [:])

    private init(byID: [UInt32: OpaquePointer]) { self.byID = byID }

    /// Loads every `*.dict` file of `directory`.
    ///
    /// Throws when the directory cannot be read, a file is not a zstd
    /// dictionary (it has no dictionary id), or two files share an id.
    public convenience init(directory: String) throws(DictionaryError) {
        guard let dir = opendir(directory) else {
            throw DictionaryError(path: directory, problem: "cannot read the dictionary directory (\(String(cString: strerror(errno))))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name.hasSuffix(".dict") { names.append(name) }
        }
        var loaded: [(UInt32, [UInt8])] = []
        for name in names.sorted() {
            let path = directory + "/" + name
            let bytes: [UInt8]
            do { bytes = try readWholeFile(path) } catch { throw DictionaryError(path: path, problem: error.message) }
            loaded.append((try Self.dictionaryID(bytes, path: path), bytes))
        }
        try self.init(loaded)
    }

    /// Dictionaries from memory, as `(id, bytes)` pairs (tests, tools).
    public convenience init(_ dictionaries: [(UInt32, [UInt8])]) throws(DictionaryError) {
        var byID: [UInt32: OpaquePointer] = [:]
        for (id, bytes) in dictionaries {
            guard byID[id] == nil else {
                byID.values.forEach { ZSTD_freeDDict($0) }
                throw DictionaryError(path: "dictionary \(id)", problem: "two dictionaries have id \(id)")
            }
            guard let ddict = bytes.withUnsafeBytes({ ZSTD_createDDict($0.baseAddress, $0.count) }) else {
                byID.values.forEach { ZSTD_freeDDict($0) }
                throw DictionaryError(path: "dictionary \(id)", problem: "zstd cannot load it")
            }
            byID[id] = ddict
        }
        self.init(byID: byID)
    }

    /// The dictionary id inside a dictionary file.
    public static func dictionaryID(_ bytes: [UInt8], path: String) throws(DictionaryError) -> UInt32 {
        let id = bytes.withUnsafeBytes { ZSTD_getDictID_fromDict($0.baseAddress, $0.count) }
        guard id != 0 else { throw DictionaryError(path: path, problem: "not a zstd dictionary (no dictionary id)") }
        return id
    }

    deinit { byID.values.forEach { ZSTD_freeDDict($0) } }

    /// The ids loaded, sorted.
    public var ids: [UInt32] { byID.keys.sorted() }

    @usableFromInline
    func dictionary(_ id: UInt32) -> OpaquePointer? { byID[id] }
}

/// A dictionary directory or file that could not be used.
public struct DictionaryError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

/// Decompresses bodies for one worker: one reusable zstd context and one
/// 1 MiB output buffer, so decompression allocates nothing per record.
///
/// Not thread-safe: give each worker its own.
public final class ZstdDecompressor {
    @usableFromInline let context: OpaquePointer
    @usableFromInline let output: UnsafeMutableRawBufferPointer
    @usableFromInline let dictionaries: ZstdDictionaries

    public init(dictionaries: ZstdDictionaries = .none) {
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        self.context = context
        self.output = .allocate(byteCount: maximumBodySize, alignment: 16)
        self.dictionaries = dictionaries
    }

    deinit {
        ZSTD_freeDCtx(context)
        output.deallocate()
    }

    /// Decompresses the single zstd frame `frame` into this decompressor's
    /// buffer and returns the bytes; they stay valid until the next call.
    ///
    /// Never writes past 1 MiB: a frame that declares more is rejected before
    /// decompression, one without a declared size is cut off at the limit.
    public func decompress(_ frame: UnsafeRawBufferPointer) throws(WireError) -> UnsafeRawBufferPointer {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if size == ZSTD_CONTENTSIZE_ERROR {
            throw WireError(.decompressFailed, .badFrameHeader)
        }
        let dictionaryID = ZSTD_getDictID_fromFrame(frame.baseAddress, frame.count)
        var dictionary: OpaquePointer?
        if dictionaryID != 0 {
            guard let d = dictionaries.dictionary(dictionaryID) else {
                throw WireError(.decompressFailed, .unknownDictionary(dictionaryID))
            }
            dictionary = d
        }
        if size != ZSTD_CONTENTSIZE_UNKNOWN, size > UInt64(maximumBodySize) {
            throw WireError(.decompressFailed, .declaredSizeOverLimit(size))
        }
        let frameSize = ZSTD_findFrameCompressedSize(frame.baseAddress, frame.count)
        if ZSTD_isError(frameSize) != 0 {
            // The frame's blocks run past the body: it was cut short. (The
            // reference decoder reads such a frame as far as it goes; WIRE.md
            // calls it corrupt, and so do we.)
            if ZSTD_getErrorCode(frameSize) == ZSTD_error_srcSize_wrong {
                throw WireError(.decompressFailed, .frameCutShort(available: frame.count))
            }
            throw zstdError(frameSize)
        }
        if frameSize < frame.count {
            throw WireError(.decompressFailed, .dataAfterFrame(extra: frame.count - frameSize))
        }
        let written = ZSTD_decompress_usingDDict(context, output.baseAddress, output.count, frame.baseAddress, frame.count, dictionary)
        if ZSTD_isError(written) != 0 {
            if ZSTD_getErrorCode(written) == ZSTD_error_dstSize_tooSmall {
                throw WireError(.decompressFailed, .expandsPastLimit)
            }
            throw zstdError(written)
        }
        return UnsafeRawBufferPointer(start: output.baseAddress, count: written)
    }

    private func zstdError(_ result: Int) -> WireError {
        WireError(.decompressFailed, .zstd(errorCode: ZSTD_getErrorCode(result).rawValue))
    }
}

/// Reads a whole (small) file.
func readWholeFile(_ path: String) throws(FileError) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw FileError(path: path, errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FileError(path: path, errno: errno)
        }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}

/// A file that could not be opened or read.
public struct FileError: Error, CustomStringConvertible {
    public let path: String
    public let code: Int32
    public init(path: String, errno: Int32) {
        self.path = path
        self.code = errno
    }
    /// The system's text for the error.
    public var message: String { String(cString: strerror(code)) }
    public var description: String { "\(path): \(message)" }
}
