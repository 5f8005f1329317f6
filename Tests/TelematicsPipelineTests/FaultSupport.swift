import Foundation
import TelematicsTestSupport
import Logging
import Synchronization
import TelematicsPipeline
import TelematicsStores

/// Issue #9's fault tests: short variants run in `swift test`; the long ones
/// (more records, more kills, longer outages) with TELEMATICS_FAULTS_LONG=1
/// (see RELIABILITY.md).
enum FaultSettings {
    static let long: Bool = {
        guard let value = ProcessInfo.processInfo.environment["TELEMATICS_FAULTS_LONG"] else { return false }
        return !value.isEmpty && value != "0"
    }()

    /// `name` from the environment if it is a number, else the short or long default.
    static func integer(_ name: String, short: Int, long: Int) -> Int {
        if let text = ProcessInfo.processInfo.environment[name], let value = Int(text), value > 0 { return value }
        return Self.long ? long : short
    }
}

/// Prints one test's measured figures on one line (`figures[test]: a=1, b=2`),
/// the numbers RELIABILITY.md records.
func reportFigures(_ test: String, _ items: KeyValuePairs<String, Any>) {
    print("figures[\(test)]: " + items.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
}

/// Milliseconds of a duration, for the figures.
func milliseconds(_ d: Duration) -> Int {
    Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
}

/// This process's resident memory (VmRSS), in bytes; 0 when /proc cannot tell.
func residentMemoryBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
}

/// Watches a lane's statistics every 10 ms while a fault lasts: the most
/// batches in flight, whether it paused, the highest resident memory.
final class LaneSampler: Sendable {
    struct Summary: Sendable {
        var mostInFlight = 0
        var sawPause = false
        var startRSS = residentMemoryBytes()
        var peakRSS = 0
        var committedAtStart = 0
        var mostCommitted = 0
        /// Growth of the resident memory over the watch, in MiB.
        var rssGrowthMiB: Int { max(0, peakRSS - startRSS) / (1024 * 1024) }
    }
    private final class Shared: Sendable {
        let state: Mutex<Summary>
        let running = Atomic<Bool>(true)
        init(_ first: Summary) { state = Mutex(first) }
    }
    private let shared: Shared
    private let task: Task<Void, Never>

    private let statistics: PipelineStatistics

    init(_ statistics: PipelineStatistics) {
        var first = Summary()
        first.committedAtStart = statistics.snapshot.committedRecords
        first.mostCommitted = first.committedAtStart
        let shared = Shared(first)
        self.shared = shared
        self.statistics = statistics
        task = Task.detached {
            while shared.running.load(ordering: .relaxed) {
                Self.sample(statistics, into: shared)
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    private static func sample(_ statistics: PipelineStatistics, into shared: Shared) {
        let s = statistics.snapshot
        let rss = residentMemoryBytes()
        shared.state.withLock {
            $0.mostInFlight = max($0.mostInFlight, s.inFlight)
            $0.sawPause = $0.sawPause || s.paused
            $0.peakRSS = max($0.peakRSS, rss)
            $0.mostCommitted = max($0.mostCommitted, s.committedRecords)
        }
    }

    /// Stops watching; what was seen.
    /// The state at the stop counts too: on a loaded machine the sampling
    /// task may not have run since the caller saw what it waited for (a
    /// CI run missed a pause that way).
    func stop() async -> Summary {
        shared.running.store(false, ordering: .relaxed)
        await task.value
        Self.sample(statistics, into: shared)
        return shared.state.withLock { $0 }
    }
}

/// Runs `sqlite3 -readonly FILE SQL` beside whatever else has the database
/// open (WAL allows a reader); its output trimmed, nil if it could not run.
func sqlite3(_ file: String, _ sql: String) -> String? {
    guard let (status, text) = try? ProcessOutput.run(["sqlite3", "-readonly", file, sql]) else { return nil }
    // What it printed counts even when it exits non-zero (a reader beside a
    // writer can be told the database is busy after printing its answer).
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    return trimmed.isEmpty && status != 0 ? nil : trimmed
}

/// A tmpfs mounted on a new temporary directory, to fill up or to make
/// read-only (needs root and a kernel that lets this container mount);
/// unmounted and removed on deinit.
final class TmpfsMount {
    let path: String

    /// Runs a command to completion; whether it exited 0.
    private static func run(_ arguments: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.start()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// nil when mounting is not possible here.
    init?(sizeKiB: Int, readOnly: Bool = false) {
        guard geteuid() == 0 else { return nil }
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tm-tmpfs-\(UUID().uuidString)").path
        guard (try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)) != nil else { return nil }
        let options = "size=\(sizeKiB)k,mode=0755" + (readOnly ? ",ro" : "")
        guard Self.run(["/bin/mount", "-t", "tmpfs", "-o", options, "tmpfs", path]) else {
            try? FileManager.default.removeItem(atPath: path)
            return nil
        }
    }

    /// Gives the file system a new size (more space coming back); whether it worked.
    func resize(kiB: Int) -> Bool { Self.run(["/bin/mount", "-o", "remount,size=\(kiB)k", path]) }

    deinit {
        _ = Self.run(["/bin/umount", "-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A bulk lane running in the background.
struct BackgroundLane {
    let running: RunningServices
    let statistics: PipelineStatistics
    let configuration: PipelineConfiguration
    /// Records committed so far.
    var committed: Int { statistics.snapshot.committedRecords }
}

extension PipelineHarness {
    /// Starts a bulk lane of `group` over `store`: batches of 200, store
    /// retries doubling from 50 ms up to `retryMaximumMs`, then `adjust`.
    func startLane(group: String, store: any TelematicsStore, retryMaximumMs: Int = 200,
                   adjust: (inout PipelineConfiguration) -> Void = { _ in }) -> BackgroundLane {
        var configuration = self.configuration(group: group, batchSize: 200)
        configuration.retryInitialMs = 50
        configuration.retryMaximumMs = retryMaximumMs
        adjust(&configuration)
        let statistics = PipelineStatistics()
        let lane = BulkLane(configuration: configuration, store: store, dictionaries: dictionaries, secrets: secrets,
                            statistics: statistics, logger: Logger(label: "test.\(group)"))
        return BackgroundLane(running: RunningServices([lane]), statistics: statistics, configuration: configuration)
    }

    /// The ingress topics (or `only` these) `group` has not committed to their ends.
    func uncommittedIngress(group: String, partitions: Int, only: [String]? = nil) async throws -> [String] {
        var out: [String] = []
        for topic in only ?? topics.allIngress where !(try await fullyCommitted(group: group, topic: topic, partitions: partitions)) {
            out.append(topic)
        }
        return out
    }

    /// Waits (checking twice a second) until `group` has committed every
    /// ingress topic to its end; false when `timeout` ran out first.
    func waitUntilFullyCommitted(group: String, partitions: Int, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await uncommittedIngress(group: group, partitions: partitions))?.isEmpty == true { return true }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return false
    }
}
