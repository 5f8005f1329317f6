import Foundation
import Testing
import TelematicsStores
import TelematicsTestSupport

@Suite("telematics run as a process", .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct RunCommandTests {
    @Test("the embedded default (cluster, simulator, SQLite) stores records, and SIGTERM drains, commits and exits 0")
    func embeddedDefaultAndSigterm() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tm-run-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let errPath = dir + ".stderr"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let process = try TelematicsBinary.start(
            ["run", "--sqlite", dir, "--secrets", dir + "/secrets", "--simulate-rate", "1000", "--simulate-vehicles", "100", "--batch-size", "200"],
            stderr: try FileHandle(forWritingTo: URL(fileURLWithPath: errPath)))
        // Let it store for a while, then ask it to stop as an orchestrator would.
        try await Task.sleep(for: .seconds(8))
        #expect(process.isRunning)
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!process.isRunning, "stopped within 30 s of SIGTERM")
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "exit status; stderr: \(stderr.suffix(2000))")
        #expect(stderr.contains("stopped after draining"))
        #expect(stderr.contains("records committed in"))

        // What it committed is in the store.
        let store = try await SQLiteStore(directory: dir)
        let stats = try await store.stats()
        await store.close()
        #expect(stats.teleserviceCalls > 0 && stats.probePoints > 0 && stats.chargeSessions > 0, "\(stats)")
    }
}
