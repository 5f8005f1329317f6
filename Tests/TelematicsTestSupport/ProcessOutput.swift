import Foundation

/// Reading a child's pipes without Foundation's traps: `readDataToEndOfFile`,
/// `availableData` and `readData(ofLength:)` end in `try!` and crash the
/// whole test process when a read is interrupted by a signal (EINTR), which
/// the SIGCHLD of any other test's child can cause. These retry instead.
public enum ProcessOutput {
    /// Runs `arguments[0]` (looked up on PATH) with the rest to completion:
    /// its exit status and standard output, standard error too when
    /// `withStandardError` (discarded otherwise).
    public static func run(_ arguments: [String], withStandardError: Bool = false) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = withStandardError ? out : FileHandle.nullDevice
        try p.start()
        let data = readToEnd(out.fileHandleForReading)
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Everything until end of file.
    public static func readToEnd(_ handle: FileHandle) -> Data {
        var data = Data()
        while true {
            let chunk = readSome(handle)
            if chunk.isEmpty { return data }
            data += chunk
        }
    }

    /// What is there now (waiting for at least one byte), at most `limit`
    /// bytes; empty at end of file or on an error other than EINTR.
    public static func readSome(_ handle: FileHandle, limit: Int = 65_536) -> Data {
        var buffer = [UInt8](repeating: 0, count: max(1, limit))
        while true {
            let n = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if n >= 0 { return Data(buffer[0..<n]) }
            if errno != EINTR { return Data() }
        }
    }
}
