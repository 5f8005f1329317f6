import Foundation

/// Runs the built `telematics` binary (beside the test bundle in .build).
public enum TelematicsBinary {
    /// The executable, if it is built (the tests build it with `swift build --build-tests`).
    public static var url: URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("telematics")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir.deleteLastPathComponent()
        }
        return nil
    }

    /// What a finished run printed.
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs `telematics ARGUMENTS` to completion, feeding `stdin`, with
    /// `environment` added to this process's environment.
    public static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]) throws -> Output {
        guard let binary = url else { throw CocoaError(.fileNoSuchFile) }
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.start()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        // Both pipes at once: a child filling one while we wait on the other would never finish.
        let stderrBox = DataBox()
        let reader = Thread { stderrBox.set(ProcessOutput.readToEnd(err.fileHandleForReading)) }
        reader.start()
        let stdoutData = ProcessOutput.readToEnd(out.fileHandleForReading)
        let stderrData = stderrBox.wait()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self), stderr: String(decoding: stderrData, as: UTF8.self))
    }


    /// Starts `telematics ARGUMENTS` and returns the running process (its
    /// standard error goes to `stderr` when given).
    public static func start(_ arguments: [String], stdout: Pipe? = nil, stderr: FileHandle? = nil) throws -> Process {
        guard let binary = url else { throw CocoaError(.fileNoSuchFile) }
        let p = Process()
        p.executableURL = binary
        p.arguments = arguments
        p.standardOutput = stdout ?? FileHandle.nullDevice
        p.standardError = stderr ?? FileHandle.nullDevice
        try p.start()
        return p
    }
}

/// Data handed from a reader thread, waited for once.
final class DataBox: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()
    func set(_ value: Data) {
        data = value
        done.signal()
    }
    func wait() -> Data {
        done.wait()
        return data
    }
}
