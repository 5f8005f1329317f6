import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

@Suite("Pipeline: nothing lost, nothing twice", .serialized)
struct DeliveryTests {
    @Test("a lane killed mid-run and a fresh one in the same group store exactly what one clean run stores")
    func crashAndRestart() async throws {
        let records = try fleetRecords(3_000, seed: 5)

        let clean = try PipelineHarness()
        try await clean.produce(records)
        let cleanStore = try await clean.openStore()
        try await clean.runLane(until: records.count, store: cleanStore, configuration: clean.configuration(batchSize: 250))
        let expected = try await cleanStore.stats()
        await cleanStore.close()

        let crashed = try PipelineHarness()
        try await crashed.produce(records)
        let store = try await crashed.openStore()
        // Kill the lane without a graceful shutdown once some batches are durable:
        // batches in flight are neither finished nor committed.
        let statistics = PipelineStatistics()
        let lane = BulkLane(configuration: crashed.configuration(batchSize: 100), store: store, dictionaries: .none,
                            secrets: crashed.secrets, statistics: statistics, logger: Logger(label: "test.crash"))
        let running = Task { try await lane.run() }
        while statistics.snapshot.committedRecords < 800 { try await Task.sleep(for: .milliseconds(5)) }
        running.cancel()
        _ = await running.result
        let before = statistics.snapshot.committedRecords
        #expect(before < records.count, "the lane was stopped before the end")

        try await crashed.runLane(until: records.count - before, store: store, configuration: crashed.configuration(batchSize: 100))
        // Anything redelivered must already have been absorbed; let a late straggler show up.
        try await Task.sleep(for: .milliseconds(500))
        let got = try await store.stats()
        #expect(got == expected, "after a crash and restart: \(got); a clean run: \(expected)")
        await store.close()
    }

    @Test("a batch routed in three shards (by vehicle) stores exactly what one router stores")
    func shardedRouting() async throws {
        let records = try fleetRecords(3_000, seed: 11)
        let h = try PipelineHarness()
        try await h.produce(records)
        var contents: [String] = []
        for threads in [1, 3] {
            let directory = h.directory + "/routing-\(threads)"
            let store = try await SQLiteStore(directory: directory)
            var configuration = h.configuration(group: "routing-\(threads)", batchSize: 500)
            configuration.routingThreads = threads
            try await h.runLane(until: records.count, store: store, configuration: configuration)
            await store.close()
            contents.append(try storedContents(directory + "/" + SQLiteStore.fileName))
        }
        #expect(contents[0].contains("rtti_probe") && contents[0].split(separator: "\n").count > 1_000, "the run stored data")
        #expect(contents[0] == contents[1], "one router and three shards stored different data")
    }

    @Test("when the store falls behind, the lane pauses its partitions instead of buffering, and catches up afterwards")
    func backpressure() async throws {
        let h = try PipelineHarness()
        let records = try fleetRecords(1_000, seed: 9)
        try await h.produce(records)
        let store = DelayingStore(try await h.openStore(), delay: .milliseconds(150))
        var configuration = h.configuration(batchSize: 50)
        configuration.batchesInFlight = 1
        configuration.pauseAfterMs = 0  // pause at once: what is tested is the pause itself
        let statistics = PipelineStatistics()
        let lane = BulkLane(configuration: configuration, store: store, dictionaries: .none, secrets: h.secrets,
                            statistics: statistics, logger: Logger(label: "test.slow"))
        let group = ServiceGroup(services: [lane], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        var sawPause = false
        var mostInFlight = 0
        while statistics.snapshot.committedRecords < records.count {
            let s = statistics.snapshot
            sawPause = sawPause || s.paused
            mostInFlight = max(mostInFlight, s.inFlight)
            try await Task.sleep(for: .milliseconds(5))
        }
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(sawPause, "the lane paused while the store was behind")
        #expect(mostInFlight <= 2, "at most one batch beyond the limit waits (the one polled before pausing); saw \(mostInFlight)")
        #expect(try await store.stats().teleserviceCalls > 0)
        await store.close()
    }
}

/// Every stored row of a SQLite store, in key order, but what differs
/// between two correct runs: case ids (assigned in insert order across
/// vehicles) and sealed bytes (a fresh nonce each).
private func storedContents(_ file: String) throws -> String {
    let queries = [
        "SELECT * FROM consents ORDER BY vin",
        "SELECT * FROM vehicle_states ORDER BY vin",
        "SELECT * FROM teleservice_calls ORDER BY vin, sequence",
        """
        SELECT vin, need, state, service_partner_id, opened_at_ms, updated_at_ms, closed_at_ms, last_sequence, notifications
        FROM maintenance_cases ORDER BY vin, need, opened_at_ms, last_sequence
        """,
        """
        SELECT vin, session_id, sequence, recorded_at_ms, started_at_ms, ended_at_ms, energy_wh, sealed_position IS NULL, key_id
        FROM charge_sessions ORDER BY vin, session_id
        """,
        "SELECT pseudonym, sequence, t_ms, point_count, hex(points) FROM probes ORDER BY pseudonym, sequence",
        """
        SELECT minute_ms, tile, point_count, vehicle_count, speed_sum_dkmh, hex(speed_histogram), hex(vehicles)
        FROM traffic_aggregates ORDER BY minute_ms, tile
        """,
        "SELECT * FROM pipeline_counters ORDER BY name",
    ]
    return try ProcessOutput.run(["sqlite3", "-readonly", file, queries.joined(separator: ";\n") + ";"]).output
}
