import FleetSimulator
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import TelematicsKafka
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

/// A `telematics run` process of a multi-instance deployment, its standard
/// error in a file (where it says its console's port).
private final class PipelineInstance {
    let process: Process
    let log: URL

    init(_ arguments: [String], log: URL) throws {
        self.log = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process = try TelematicsBinary.start(arguments, stderr: try FileHandle(forWritingTo: log))
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The console's base URL, once the instance has said it.
    var console: URL? {
        guard let match = logText.firstMatch(of: /call-centre console: (http:\/\/127\.0\.0\.1:[0-9]+)\//) else { return nil }
        return URL(string: String(match.output.1))
    }

    /// GET `path` of the console: status and body, or nil if it does not answer.
    func get(_ path: String) async -> (Int, String)? {
        guard let console, let (data, response) = try? await URLSession.shared.data(from: console.appendingPathComponent(path)) else { return nil }
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// Waits up to `seconds` for the process to end on its own.
    func waitForExit(seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(200)) }
        return !process.isRunning
    }

    /// Expects the process to end on its own within `seconds` with status 0;
    /// one that does not is killed, and the test stops there.
    func expectCleanExit(within seconds: Double) async throws {
        let exited = await waitForExit(seconds: seconds)
        if !exited {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try #require(exited, "\(log.lastPathComponent) did not finish within \(Int(seconds)) s: \(logText)")
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(logText)")
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite("Several pipeline processes in one consumer group", .serialized, .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct MultiInstanceTests {
    @Test("three `telematics run` processes share a group on PostgreSQL; one is SIGKILLed mid-run; the others take over its partitions and the store ends complete with nothing twice")
    func threeInstancesOneKilled() async throws {
        let began = Date()
        func note(_ what: String) { print("multi-instance +\(String(format: "%.1f", Date().timeIntervalSince(began))) s: \(what)") }
        let broker = try BrokerProcess(partitions: 6)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tm-multi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        // One set of keys for every instance, made before any starts (as the
        // compose `keys` job and the Kubernetes Secret do): instances with keys
        // of their own would store different pseudonyms for one vehicle.
        let secrets = root.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        for key in ["pseudonym.key", "charging-k1.key"] {
            try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: secrets.appendingPathComponent(key))
        }
        let shared = try await TestPostgres.url()
        let clean = try await TestPostgres.url()
        func start(_ name: String, group: String, postgres: String, idle: Int) throws -> PipelineInstance {
            try PipelineInstance([
                "run", "--brokers", broker.bootstrap, "--group", group, "--postgres", postgres, "--secrets", secrets.path,
                "--batch-size", "100", "--exit-when-idle", String(idle), "--log-level", "notice",
                "--console", "127.0.0.1:0", "--agent", "ops:multi-instance-token",
                // A killed member holds its partitions until its session times out.
                "--kafka-property", "session.timeout.ms=6000",
            ], log: root.appendingPathComponent("\(name).log"))
        }

        // Three members of group "fleet", all consuming before any record exists.
        // Idle long enough to outlast the killed member's session timeout and
        // the rebalance. The survivors' idle times differ so that they leave
        // the group one after the other: two members leaving at once has been
        // seen to leave one hanging after its final commit was refused with
        // REBALANCE_IN_PROGRESS (reported; not what this test is about).
        let instances = try [12, 12, 20].enumerated().map { i, idle in
            try start("instance-\(i + 1)", group: "fleet", postgres: shared, idle: idle)
        }
        let readyBy = Date().addingTimeInterval(120)
        var ready: Set<Int> = []
        while ready.count < 3 && Date() < readyBy {
            for (i, instance) in instances.enumerated() where !ready.contains(i) {
                if await instance.get("readyz")?.0 == 200 { ready.insert(i) }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        try #require(ready.count == 3, "every member has partitions: \(instances.map(\.logText))")

        note("all ready")
        // No consent messages: the outcome must not depend on how topics interleave.
        var configuration = FleetSimulator.Configuration(vehicles: 300, seed: 8)
        configuration.mix = FleetSimulator.Mix(rtti: 70, teleservice: 15, charging: 13, consent: 0, hvWarn: 2)
        var fleet = try FleetSimulator(configuration: configuration)
        let records = (0..<20_000).map { _ in fleet.next() }
        // A first part, until the group is storing; then the rest in small
        // steps, with the kill half-way through them: records published after
        // the kill cannot have been stored before it, so the kill always comes
        // mid-run (a kill after a fixed pause came after the end whenever the
        // group was faster than the pause).
        try await broker.publish(Array(records.prefix(6_000)))
        note("published the first part")
        let observer = try await PostgresStore(url: shared)
        let deadline = Date().addingTimeInterval(120)
        while try await observer.stats().teleserviceCalls == 0 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let steps = stride(from: 6_000, to: records.count, by: 1_000).map { records[$0 ..< min($0 + 1_000, records.count)] }
        let victim = instances[0]
        var routed = 0.0
        var atKill: StoreStats?
        for (i, step) in steps.enumerated() {
            try await broker.publish(Array(step))
            guard i == steps.count / 2 else { continue }
            // SIGKILL the first member while records flow: no drain, no
            // commit, its partitions held until its session times out.
            // The victim is a working member: it has routed records.
            let victimMetrics = await victim.get("metrics")?.1 ?? ""
            routed = victimMetrics.matches(of: /\ntelematics_records_total\{[^}]*\} ([0-9.e+]+)/).compactMap { Double($0.output.1) }.reduce(0, +)
            #expect(routed > 0, "the victim routed records before the kill: \(victimMetrics)")
            #expect(victim.process.isRunning, "the victim was still working")
            kill(victim.process.processIdentifier, SIGKILL)
            victim.process.waitUntilExit()
            #expect(victim.process.terminationReason == .uncaughtSignal)
            atKill = try await observer.stats()
            note("killed after \(6_000 + (i + 1) * 1_000) records were published")
        }
        note("published the rest")
        let stored = try #require(atKill)

        // A survivor's /metrics carry what the dashboard and alert rules use.
        let metrics = await instances[1].get("metrics")
        #expect(metrics?.0 == 200)
        for name in ["telematics_records_total", "telematics_consumer_lag", "telematics_consumer_partition_lag{",
                     "telematics_store_batch_seconds_bucket", "callcentre_alerts_escalated_total"] {
            #expect(metrics?.1.contains(name) == true, "/metrics has \(name)")
        }

        for survivor in instances.dropFirst() {
            try await survivor.expectCleanExit(within: 120)
        }

        note("survivors exited")
        // The same records through one uninterrupted instance into a database of its own.
        let single = try start("single", group: "single", postgres: clean, idle: 4)
        try await single.expectCleanExit(within: 120)

        let cleanStore = try await PostgresStore(url: clean)
        note("single run done")
        let got = try await observer.stats()
        let expected = try await cleanStore.stats()
        #expect(expected.teleserviceCalls > 0 && expected.probePoints > 0 && expected.chargeSessions > 0)
        #expect(stored.probePoints < expected.probePoints, "the kill came before the end: \(stored)")
        #expect(got == expected, "three members, one killed: \(got); one uninterrupted: \(expected)")
        // Aggregates are sums: a batch applied twice would show here even with every row count right.
        let aggregates = try await observer.trafficAggregates(sinceMinute: 0, limit: 1_000_000)
        let cleanAggregates = try await cleanStore.trafficAggregates(sinceMinute: 0, limit: 1_000_000)
        #expect(!aggregates.isEmpty && Set(aggregates) == Set(cleanAggregates) && aggregates.count == cleanAggregates.count)
        let redelivered = try await observer.counters()["duplicates"] ?? 0
        await observer.close()
        await cleanStore.close()

        // One alert per vehicle and event, whichever member (or both) saw it.
        let alertStore = try await PostgresAlertStore(url: shared)
        let cleanAlertStore = try await PostgresAlertStore(url: clean)
        let alerts = try await alertStore.alerts(openOnly: false, priority: nil, limit: 100_000).map(\.id)
        let cleanAlerts = try await cleanAlertStore.alerts(openOnly: false, priority: nil, limit: 100_000).map(\.id)
        await alertStore.close()
        await cleanAlertStore.close()
        #expect(!alerts.isEmpty && alerts.count == Set(alerts).count && Set(alerts) == Set(cleanAlerts),
                 "\(alerts.count) alerts, \(cleanAlerts.count) in the clean run")
        await TestPostgres.dropDatabase(url: shared)
        await TestPostgres.dropDatabase(url: clean)
        print("multi-instance: \(records.count) records, the victim routed \(Int(routed)) before the kill, store at the kill \(stored.probePoints)/\(expected.probePoints) probe points, "
            + "\(redelivered) records redelivered after the kill and stored once, \(alerts.count) alerts")
    }
}
