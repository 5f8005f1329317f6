import FleetSimulator
import Foundation
import SQLiteNIO
import Testing
import TelematicsKafka
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

/// A `telematics broker` process: the cluster outlives the pipeline processes killed around it
/// (here and in MultiInstanceTests).
final class BrokerProcess {
    let process: Process
    let bootstrap: String

    init(partitions: Int) throws {
        let out = Pipe()
        process = try TelematicsBinary.start(["broker", "--brokers", "1", "--partitions", String(partitions)], stdout: out)
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = ProcessOutput.readSome(out.fileHandleForReading)
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        bootstrap = String(decoding: line.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    }

    /// Publishes simulated records, each to its kind's topic keyed by VIN, and waits for every delivery.
    func publish(_ records: [FleetSimulator.Record]) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: KafkaBootstrap(bootstrap)))
        _ = try await producer.send(records.map { KafkaProducerMessage(topic: $0.kind.defaultTopic, key: $0.key, value: $0.value) })
        try await producer.close()
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite("Pipeline processes killed with SIGKILL", .serialized, .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct CrashLoopTests {
    @Test("pipeline processes SIGKILLed at staggered moments and restarted until done store exactly what an uninterrupted run stores")
    func sigkillLoop() async throws {
        // Four kills in `swift test`; TELEMATICS_FAULT_KILLS (or TELEMATICS_FAULTS_LONG: 20) for a longer run,
        // with records and partitions growing alike so each round still has work left.
        let kills = FaultSettings.integer("TELEMATICS_FAULT_KILLS", short: 4, long: 20)
        let scale = max(1, (kills + 3) / 4)
        let broker = try BrokerProcess(partitions: 4 * scale)
        #expect(broker.bootstrap.hasPrefix("127.0.0.1:"))
        // No consent messages: the outcome must not depend on how topics interleave.
        var configuration = FleetSimulator.Configuration(vehicles: 200, seed: 21)
        configuration.mix = FleetSimulator.Mix(rtti: 70, teleservice: 15, charging: 14, consent: 0, hvWarn: 1)
        var fleet = try FleetSimulator(configuration: configuration)
        // Enough records, in small batches, that the kills land mid-way (with
        // 40,000 one CI run had stored them all before the fourth kill).
        let records = (0..<60_000 * scale).map { _ in fleet.next() }
        try await broker.publish(records)

        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tm-kill-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let secrets = root + "/secrets"  // the same keys for both runs, so pseudonyms agree
        func run(group: String, sqlite: String) throws -> Process {
            try TelematicsBinary.start([
                "run", "--brokers", broker.bootstrap, "--group", group, "--sqlite", sqlite, "--secrets", secrets,
                "--batch-size", "50", "--exit-when-idle", "4", "--log-level", "error",
                // A killed member holds its partitions until its session times out.
                "--kafka-property", "session.timeout.ms=6000",
            ])
        }

        /// Probe rows stored so far, read beside the running pipeline, in
        /// this process: spawning sqlite3 every 100 ms met a crash inside
        /// Foundation's Process.run once.
        func storedProbes(_ dir: String) async -> Int {
            let path = dir + "/" + SQLiteStore.fileName
            guard FileManager.default.fileExists(atPath: path),
                  let connection = try? await SQLiteConnection.open(storage: .file(path: path)) else { return 0 }
            let rows = try? await connection.query("SELECT count(*) AS n FROM probes")
            try? await connection.close()
            return rows?.first?.column("n")?.integer ?? 0
        }

        // Killed while storing (once new rows appear, at staggered moments
        // after that), restarted each time, then left to finish.
        let started = ContinuousClock.now
        var rounds: [Int] = []
        for (round, extra) in (0..<kills).map({ [0, 300, 150, 600][$0 % 4] }).enumerated() {
            let roundStarted = ContinuousClock.now
            let before = await storedProbes(root + "/killed")
            let p = try run(group: "killed", sqlite: root + "/killed")
            let deadline = Date().addingTimeInterval(60)
            while await storedProbes(root + "/killed") <= before && p.isRunning && Date() < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .milliseconds(extra))
            #expect(p.isRunning, "round \(round): still running when killed")
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal)
            rounds.append(milliseconds(ContinuousClock.now - roundStarted))
        }
        // The kills fell while records were being stored: some, not all, are there.
        let partialStore = try await SQLiteStore(directory: root + "/killed")
        let partial = try await partialStore.stats()
        await partialStore.close()
        #expect(partial.probePoints > 0, "something was stored between the kills")

        let last = try run(group: "killed", sqlite: root + "/killed")
        last.waitUntilExit()
        #expect(last.terminationStatus == 0)
        let killedRun = ContinuousClock.now - started

        let clean = try run(group: "clean", sqlite: root + "/clean")
        clean.waitUntilExit()
        #expect(clean.terminationStatus == 0)

        let killedStore = try await SQLiteStore(directory: root + "/killed")
        let cleanStore = try await SQLiteStore(directory: root + "/clean")
        let killed = try await killedStore.stats()
        let expected = try await cleanStore.stats()
        await killedStore.close()
        await cleanStore.close()
        #expect(expected.teleserviceCalls > 0 && expected.probePoints > 0 && expected.chargeSessions > 0)
        #expect(killed == expected, "after \(kills) SIGKILLs: \(killed); uninterrupted: \(expected)")
        #expect(partial.probePoints < expected.probePoints, "the kills came before the end")
        reportFigures("sigkill-loop", [
            "records": records.count, "kills": kills, "round_ms": rounds, "killed_run_ms": milliseconds(killedRun),
            "points_stored_before_last_restart": partial.probePoints, "points_total": expected.probePoints,
        ])
    }
}
