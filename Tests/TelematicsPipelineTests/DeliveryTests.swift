import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
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
