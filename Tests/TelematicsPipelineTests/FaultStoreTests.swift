import Foundation
import Logging
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsTestSupport

/// Issue #9, faults of the stores: PostgreSQL stopped and restarted under
/// a running lane, SQLite's disk full and space coming back, a read-only
/// data directory at start.
@Suite("Faults: stores down, disk full, read-only data", .serialized)
struct FaultStoreTests {
    private static let partitions = 4

    /// Runs a clean lane over what `h` holds into `store`; its stats.
    private static func cleanRun(_ h: PipelineHarness, records: Int, store: any TelematicsStore) async throws -> StoreStats {
        try await h.runLane(until: records, store: store, configuration: h.configuration(group: "clean", batchSize: 200), timeout: .seconds(120))
        let stats = try await store.stats()
        await store.close()
        return stats
    }

    @Test("PostgreSQL stopped mid-run and restarted: the lane holds with bounded batches in flight, retries with backoff, resumes, and stores what a clean run stores")
    func postgresRestart() async throws {
        guard let server = await TestPostgres.dedicated() else {
            let message = "no local PostgreSQL to stop and start (Debian's postgresql, and no TELEMATICS_TEST_POSTGRES_URL)"
            if ProcessInfo.processInfo.environment["CI"] != nil { Issue.record(Comment(rawValue: message)) }
            try Test.cancel(Comment(rawValue: message))
        }
        let h = try PipelineHarness(partitions: Self.partitions)
        let records = try fleetRecords(FaultSettings.integer("TELEMATICS_FAULT_RECORDS", short: 6_000, long: 40_000), seed: 41, vehicles: 200)
        try await h.produce(records)
        let expected = try await Self.cleanRun(h, records: records.count, store: try await PostgresStore(url: try await server.url()))

        let group = "pg-down"
        let store = try await PostgresStore(url: try await server.url())
        let lane = h.startLane(group: group, store: store, retryMaximumMs: 1_000)
        let (running, statistics, configuration) = (lane.running, lane.statistics, lane.configuration)
        let working = await eventually(timeout: .seconds(60)) { statistics.snapshot.committedRecords >= 1_000 }

        let outage = Duration.seconds(FaultSettings.integer("TELEMATICS_FAULT_OUTAGE_S", short: 5, long: 30))
        let stopped = await server.stop()
        let retriesAtStop = statistics.snapshot.storeRetries
        let sampler = LaneSampler(statistics)
        try await Task.sleep(for: outage)
        let duringOutage = await sampler.stop()
        let retriesDuringOutage = statistics.snapshot.storeRetries - retriesAtStop
        let committedAtRestart = statistics.snapshot.committedRecords
        let restartedAt = ContinuousClock.now
        let restarted = await server.start()
        let resumed = await eventually(timeout: .seconds(60)) { statistics.snapshot.committedRecords > committedAtRestart }
        let recovery = ContinuousClock.now - restartedAt
        let finished = await eventually(timeout: .seconds(120)) { statistics.snapshot.committedRecords >= records.count }
        try await running.stop()
        let snapshot = statistics.snapshot

        #expect(working && stopped && restarted && resumed && finished,
                "working \(working), stopped \(stopped), restarted \(restarted), resumed \(resumed), finished \(finished): \(snapshot.committedRecords) of \(records.count)")
        // While the server was down: nothing new became durable (a batch
        // already committed to the database may finish), the batches in
        // flight stayed bounded (the lane pauses its partitions, or its
        // polling loop waits in the consent lookup of the next batch, which
        // fails too), and memory did not run away.
        #expect(duringOutage.mostCommitted - duringOutage.committedAtStart <= 2 * 200,
                "records committed during the outage: \(duringOutage.mostCommitted - duringOutage.committedAtStart)")
        #expect(duringOutage.mostInFlight <= configuration.batchesInFlight + 1, "batches in flight: \(duringOutage.mostInFlight)")
        #expect(duringOutage.rssGrowthMiB < 100, "resident memory grew \(duringOutage.rssGrowthMiB) MiB while waiting")
        // Backoff: a tight loop would retry ~100 times in 5 s per retrying
        // call; doubling from 50 ms to 1 s retries about 9 times. Two calls
        // retry at once: the batch's transaction and the consent lookup.
        let outageSeconds = Int(outage.components.seconds)
        #expect(retriesDuringOutage >= 3 && retriesDuringOutage <= 2 * (outageSeconds + 6),
                "store retries during a \(outageSeconds) s outage: \(retriesDuringOutage)")
        #expect(snapshot.lastError?.contains("store batch") == true || snapshot.lastError?.contains("load consent") == true,
                "the last error names what failed: \(snapshot.lastError ?? "none")")
        #expect(try await h.uncommittedIngress(group: group, partitions: Self.partitions).isEmpty)
        let got = try await store.stats()
        await store.close()
        #expect(got == expected, "after the restart: \(got); a clean run: \(expected)")
        reportFigures("postgres-restart", [
            "records": records.count, "outage_ms": milliseconds(outage), "retries_during_outage": retriesDuringOutage,
            "most_in_flight": duringOutage.mostInFlight, "paused": duringOutage.sawPause, "rss_growth_mib": duringOutage.rssGrowthMiB,
            "first_commit_after_restart_ms": milliseconds(recovery), "last_error": snapshot.lastError ?? "",
        ])
    }

    @Test("SQLite's disk full: a clear error, ingestion paused, no corruption; space comes back and the lane finishes with what a clean run stores",
          .enabled(if: geteuid() == 0, "mounting a small tmpfs needs root"))
    func sqliteDiskFull() async throws {
        // Big enough for the schema and some batches, far too small for all of them.
        guard let disk = TmpfsMount(sizeKiB: 1_536) else {
            Issue.record("this container cannot mount a tmpfs")
            return
        }
        let h = try PipelineHarness(partitions: Self.partitions)
        let records = try fleetRecords(FaultSettings.integer("TELEMATICS_FAULT_RECORDS", short: 8_000, long: 40_000), seed: 43, vehicles: 200)
        try await h.produce(records)
        let expected = try await Self.cleanRun(h, records: records.count, store: try await SQLiteStore(directory: h.directory + "/clean"))

        let group = "disk-full"
        let directory = disk.path + "/data"
        let database = directory + "/" + SQLiteStore.fileName
        let store = try await SQLiteStore(directory: directory)
        let lane = h.startLane(group: group, store: store, retryMaximumMs: 500)
        let (running, statistics, configuration) = (lane.running, lane.statistics, lane.configuration)
        let full = await eventually(timeout: .seconds(90)) { statistics.snapshot.storeRetries >= 3 }
        let fullAt = ContinuousClock.now
        let sampler = LaneSampler(statistics)
        try await Task.sleep(for: .seconds(2))
        // On a loaded machine the lane may take longer to route the batches
        // that fill its window and wait out the pause delay.
        _ = await eventually(timeout: .seconds(15)) { statistics.snapshot.paused }
        let whileFull = await sampler.stop()
        let error = statistics.snapshot.lastError ?? ""
        let integrityWhileFull = sqlite3(database, "PRAGMA integrity_check")

        let committedAtResize = statistics.snapshot.committedRecords
        let resized = disk.resize(kiB: 256 * 1024)
        let resizedAt = ContinuousClock.now
        let resumed = await eventually(timeout: .seconds(60)) { statistics.snapshot.committedRecords > committedAtResize }
        let recovery = ContinuousClock.now - resizedAt
        let finished = await eventually(timeout: .seconds(120)) { statistics.snapshot.committedRecords >= records.count }
        try await running.stop()
        let snapshot = statistics.snapshot

        #expect(full && resized && resumed && finished,
                "full \(full), resized \(resized), resumed \(resumed), finished \(finished): \(snapshot.committedRecords) of \(records.count)")
        #expect(committedAtResize < records.count, "the disk filled before the end")
        #expect(error.contains("disk is full"), "the error says the disk is full: \(error)")
        #expect(whileFull.mostCommitted == whileFull.committedAtStart, "nothing committed while the disk was full")
        #expect(whileFull.sawPause && whileFull.mostInFlight <= configuration.batchesInFlight + 1,
                "paused \(whileFull.sawPause), batches in flight \(whileFull.mostInFlight)")
        #expect(integrityWhileFull == "ok", "integrity while full: \(integrityWhileFull ?? "sqlite3 failed")")
        #expect(try await h.uncommittedIngress(group: group, partitions: Self.partitions).isEmpty)
        let got = try await store.stats()
        await store.close()
        #expect(sqlite3(database, "PRAGMA integrity_check") == "ok")
        #expect(got == expected, "after the disk filled and space came back: \(got); a clean run: \(expected)")
        reportFigures("sqlite-disk-full", [
            "records": records.count, "committed_when_full": committedAtResize, "retries": snapshot.storeRetries,
            "first_commit_after_space_ms": milliseconds(recovery), "full_for_ms": milliseconds(resizedAt - fullAt), "error": error,
        ])
    }

    @Test("telematics run on a read-only data directory, or one it cannot create, exits non-zero with a clear message and no stack trace",
          .enabled(if: geteuid() == 0 && TelematicsBinary.url != nil, "needs root (a read-only tmpfs) and the telematics binary"))
    func readOnlyDataDirectory() throws {
        guard let readOnly = TmpfsMount(sizeKiB: 1_024, readOnly: true) else {
            Issue.record("this container cannot mount a tmpfs")
            return
        }
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("tm-ro-secrets-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: secrets) }
        for directory in [readOnly.path, readOnly.path + "/data"] {
            let started = ContinuousClock.now
            let out = try TelematicsBinary.run(["run", "--sqlite", directory, "--secrets", secrets, "--console", "off", "--duration", "5"])
            let elapsed = ContinuousClock.now - started
            #expect(out.status != 0, "\(directory): exit status \(out.status)")
            #expect(out.stderr.contains(directory) && (out.stderr.contains("not writable") || out.stderr.contains("cannot create")),
                    "\(directory): the message names the directory and the problem: \(out.stderr)")
            // The system's reason, in strerror's words or Foundation's.
            #expect(["read-only file system", "volume is read only"].contains { out.stderr.lowercased().contains($0) },
                    "\(directory): the system's reason: \(out.stderr)")
            for trace in ["Stack dump", "Fatal error", "backtrace", "Current stack trace", "0x0000"] {
                #expect(!out.stderr.contains(trace), "\(directory): no stack trace: \(out.stderr)")
            }
            #expect(elapsed < .seconds(15), "\(directory): it stops at once (no retrying, no hanging), took \(elapsed)")
            reportFigures("read-only", ["directory": directory, "status": out.status, "ms": milliseconds(elapsed),
                                        "message": out.stderr.split(separator: "\n").last.map(String.init) ?? ""])
        }
    }
}
