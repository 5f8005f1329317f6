import Foundation
import Logging
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores

/// Issue #9, consumer-group churn: a second member joins and leaves the
/// group every few seconds while the first works through a live feed.
@Suite("Faults: consumer-group rebalances every few seconds", .serialized)
struct FaultRebalanceTests {
    private static let partitions = 4

    @Test("a second lane joining and leaving the group every few seconds while records keep coming: the shared store equals a clean run's and every offset is committed")
    func rebalanceChurn() async throws {
        let h = try PipelineHarness(partitions: Self.partitions)
        let cycles = FaultSettings.integer("TELEMATICS_FAULT_REBALANCES", short: 2, long: 20)
        let joined = Duration.seconds(2), away = Duration.milliseconds(1_500)
        // A live feed for as long as the churn lasts: a chunk every quarter second.
        let chunk = 150
        let chunks = cycles * 14
        let records = try fleetRecords(chunks * chunk, seed: 51, vehicles: 200)
        let group = "churn"
        let store = try await h.openStore()
        let first = PipelineStatistics()
        let started = ContinuousClock.now
        let runningFirst = RunningServices([BulkLane(configuration: h.configuration(group: group, batchSize: 200), store: store,
                                                     dictionaries: .none, secrets: h.secrets, statistics: first,
                                                     logger: Logger(label: "test.churn.first"))])
        let firstAssigned = await eventually(timeout: .seconds(30)) { first.snapshot.assignedPartitions > 0 }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: h.cluster.bootstrap))
        let feed = Task {
            for i in 0..<chunks {
                _ = try await producer.send(h.messages(Array(records[i * chunk ..< (i + 1) * chunk])))
                try await Task.sleep(for: .milliseconds(250))
            }
        }

        // The second member: joins (a rebalance), works a while, leaves (another).
        var secondCommitted = 0
        var secondJoins = 0
        for cycle in 0..<cycles {
            let second = PipelineStatistics()
            let runningSecond = RunningServices([BulkLane(configuration: h.configuration(group: group, batchSize: 200), store: store,
                                                          dictionaries: .none, secrets: h.secrets, statistics: second,
                                                          logger: Logger(label: "test.churn.second.\(cycle)"))])
            // A join waits for the first member to rejoin; under the full suite's load on
            // 2 vCPUs one took longer than 20 s (CI, 2026-11-26).
            if await eventually(timeout: .seconds(60), { second.snapshot.assignedPartitions > 0 }) { secondJoins += 1 }
            try await Task.sleep(for: joined)
            try await runningSecond.stop()
            secondCommitted += second.snapshot.committedRecords
            try await Task.sleep(for: away)
        }
        try await feed.value
        try await producer.close()
        let done = await h.waitUntilFullyCommitted(group: group, partitions: Self.partitions, timeout: .seconds(120))
        let elapsed = ContinuousClock.now - started
        try await runningFirst.stop()
        let firstCommitted = first.snapshot.committedRecords

        #expect(firstAssigned && done, "first member assigned \(firstAssigned), everything committed \(done)")
        // Each join took partitions from the first member, each leave gave them back.
        #expect(secondJoins == cycles, "the second member got partitions in \(secondJoins) of \(cycles) cycles")
        #expect(firstCommitted + secondCommitted >= records.count)
        #expect(try await h.uncommittedIngress(group: group, partitions: Self.partitions).isEmpty)

        let got = try await store.stats()
        await store.close()
        let cleanStore = try await SQLiteStore(directory: h.directory + "/clean")
        try await h.runLane(until: records.count, store: cleanStore, configuration: h.configuration(group: "clean", batchSize: 200),
                            timeout: .seconds(120))
        let expected = try await cleanStore.stats()
        await cleanStore.close()
        #expect(got == expected, "after \(cycles) joins and leaves: \(got); a clean run: \(expected)")
        reportFigures("rebalance-churn", [
            "records": records.count, "cycles": cycles, "rebalances": 2 * secondJoins, "ms": milliseconds(elapsed),
            "committed_first": firstCommitted, "committed_second": secondCommitted,
            "redelivered": firstCommitted + secondCommitted - records.count,
        ])
    }
}
