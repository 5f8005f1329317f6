import Foundation
import Logging
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores

/// Issue #9, faults of Kafka: the mock cluster's fault injection while a
/// bulk lane works through a backlog on three brokers.
@Suite("Faults: Kafka brokers down, leaders moving, request errors", .serialized)
struct FaultKafkaTests {
    private static let partitions = 4

    @Test("request errors on produce, fetch and commit, a broker down and back, leaders moved away and back: the store equals a clean run's and every offset is committed")
    func brokerFaults() async throws {
        let h = try PipelineHarness(partitions: Self.partitions, brokers: 3)
        let count = FaultSettings.integer("TELEMATICS_FAULT_RECORDS", short: 6_000, long: 60_000)
        let records = try fleetRecords(count, seed: 31, vehicles: 200)
        try await h.produce(records)

        let cleanStarted = ContinuousClock.now
        let cleanStore = try await SQLiteStore(directory: h.directory + "/clean")
        try await h.runLane(until: records.count, store: cleanStore, configuration: h.configuration(group: "clean", batchSize: 200),
                            timeout: .seconds(120))
        let cleanTime = ContinuousClock.now - cleanStarted
        let expected = try await cleanStore.stats()
        await cleanStore.close()

        // The group's coordinator stays on broker 1; broker 2 is the one that goes down.
        let group = "faulty"
        try h.cluster.setGroupCoordinator(group, broker: 1)
        let store = try await h.openStore()
        let started = ContinuousClock.now
        // A socket timeout short enough that the run does not wait minutes on a dead connection.
        // And metadata refreshed often: a partition whose leader moved while its
        // fetches failed waited for the next refresh (5 minutes by default) in
        // one run of the full suite, 13 records short of the end.
        let lane = h.startLane(group: group, store: store) {
            $0.consumer.properties["socket.timeout.ms"] = "10000"
            $0.consumer.properties["topic.metadata.refresh.interval.ms"] = "5000"
        }
        let (running, statistics) = (lane.running, lane.statistics)
        func committed() -> Int { statistics.snapshot.committedRecords }
        /// Waits until `more` further records are committed; false on timeout.
        func progress(_ more: Int, timeout: Duration = .seconds(60)) async -> Bool {
            let target = min(committed() + more, records.count)
            return await eventually(timeout: timeout) { committed() >= target }
        }
        var steps: [String: Bool] = [:]
        steps["first batch"] = await progress(1)

        // 1. Retriable request errors on every kind of request the lane makes.
        h.cluster.pushRequestErrors(apiKey: .produce, [.notLeaderForPartition, .requestTimedOut, .notLeaderForPartition])
        h.cluster.pushRequestErrors(apiKey: .fetch, [.notLeaderForPartition, .requestTimedOut, .notLeaderForPartition, .requestTimedOut])
        h.cluster.pushRequestErrors(apiKey: .offsetCommit, [.coordinatorNotAvailable, .requestTimedOut, .notCoordinator, .coordinatorNotAvailable])
        steps["past request errors"] = await progress(400)

        // 2. Broker 2 down: its partitions stall until their leadership moves to 1 and 3.
        let retriesBefore = statistics.snapshot.storeRetries
        try h.cluster.setBrokerDown(2)
        let downAt = ContinuousClock.now
        let committedAtDown = committed()
        try await Task.sleep(for: .seconds(2))
        for topic in h.topics.all {
            for p in 0..<Self.partitions { try h.cluster.setPartitionLeader(topic, partition: Int32(p), broker: p % 2 == 0 ? 1 : 3) }
        }
        steps["after leaders moved off the down broker"] = await progress(400)
        let resumedAfterDown = ContinuousClock.now - downAt

        // 3. Broker 2 back, with a slow broker 3; leadership spread over all three again.
        try h.cluster.setBrokerUp(2)
        try h.cluster.setRoundTripTime(broker: 3, milliseconds: 150)
        for topic in h.topics.all {
            for p in 0..<Self.partitions { try h.cluster.setPartitionLeader(topic, partition: Int32(p), broker: Int32(p % 3 + 1)) }
        }
        let upAt = ContinuousClock.now
        steps["after leaders moved back"] = await progress(400)
        let resumedAfterUp = ContinuousClock.now - upAt
        try h.cluster.setRoundTripTime(broker: 3, milliseconds: 0)

        // The committed count includes records fetched again after a fault
        // (at least once), so it can pass the record count before every
        // partition is at its end. The store decides: it holds what the
        // clean run stored.
        steps["everything stored"] = await eventually(timeout: .seconds(120)) {
            guard committed() >= records.count else { return false }
            return (try? await store.stats()) == expected
        }
        let faultyTime = ContinuousClock.now - started
        // And the group's offsets reach the end while the lane runs, idle:
        // commits that librdkafka retried and that set offsets back after a
        // later one were seen here before the lane committed again after them.
        steps["offsets at the end while running"] = await h.waitUntilFullyCommitted(group: group, partitions: Self.partitions, timeout: .seconds(60))
        try await running.stop()
        let snapshot = statistics.snapshot
        #expect(steps.values.allSatisfy { $0 }, "steps: \(steps); committed \(snapshot.committedRecords) of \(records.count); background commits failed \(snapshot.commitsFailed), overtaken \(snapshot.commitsOvertaken), committed again \(snapshot.recommits)")

        let uncommitted = try await h.uncommittedIngress(group: group, partitions: Self.partitions)
        #expect(uncommitted.isEmpty, "offsets not committed to the end on \(uncommitted)")
        let got = try await store.stats()
        await store.close()
        #expect(got == expected, "after the faults: \(got); a clean run: \(expected)")
        #expect(snapshot.storeRetries == retriesBefore, "Kafka faults never reach the store")
        reportFigures("kafka", [
            "records": records.count, "clean_ms": milliseconds(cleanTime), "faulty_ms": milliseconds(faultyTime),
            "committed_at_broker_down": committedAtDown, "resumed_400_after_broker_down_ms": milliseconds(resumedAfterDown),
            "resumed_400_after_broker_up_ms": milliseconds(resumedAfterUp), "committed_records": snapshot.committedRecords,
            "commits_overtaken": snapshot.commitsOvertaken, "recommits": snapshot.recommits,
        ])
    }

    @Test("background commits refused while the lane then stays idle: it commits the durable offsets again, and the group's offsets reach the end without new records")
    func recommitWhenIdle() async throws {
        let h = try PipelineHarness(partitions: 1)
        let records = try fleetRecords(60, seed: 37, vehicles: 6)
        let group = "recommit"
        let store = try await h.openStore()
        let lane = h.startLane(group: group, store: store)
        // Ready and idle: everything produced so far (nothing) committed.
        #expect(await eventually(timeout: .seconds(30)) { lane.statistics.snapshot.assignedPartitions > 0 })
        // The next commits are refused: those of the records' batches among them.
        h.cluster.pushRequestErrors(apiKey: .offsetCommit, Array(repeating: .requestTimedOut, count: 6))
        try await h.produce(records)
        #expect(await eventually(timeout: .seconds(60)) { lane.committed >= records.count })
        let caughtUp = await h.waitUntilFullyCommitted(group: group, partitions: 1, timeout: .seconds(30))
        let snapshot = lane.statistics.snapshot
        try await lane.running.stop()
        await store.close()
        #expect(caughtUp, "the group's offsets reached the end while the lane was idle; background commits failed \(snapshot.commitsFailed), committed again \(snapshot.recommits)")
        #expect(snapshot.recommits >= 1, "the lane committed again after a refused commit")
    }

    @Test("a batch's commit retried by librdkafka is accepted after the next batch's and sets the group's offsets back: the lane notices and commits its durable offsets again")
    func recommitWhenOvertaken() async throws {
        let h = try PipelineHarness(partitions: 1)
        let first = try fleetRecords(40, seed: 41, vehicles: 4)
        let second = try fleetRecords(40, seed: 43, vehicles: 4)
        let group = "overtaken"
        let store = try await h.openStore()
        // librdkafka retries a commit answered "request timed out" after
        // retry.backoff.ms: long enough for the next batch's commit to go first.
        let lane = h.startLane(group: group, store: store) { $0.consumer.properties["retry.backoff.ms"] = "3000" }
        #expect(await eventually(timeout: .seconds(30)) { lane.statistics.snapshot.assignedPartitions > 0 })
        h.cluster.pushRequestErrors(apiKey: .offsetCommit, [.requestTimedOut])
        try await h.produce(first)
        #expect(await eventually(timeout: .seconds(30)) { lane.committed >= first.count })
        try await h.produce(second)
        #expect(await eventually(timeout: .seconds(30)) { lane.committed >= first.count + second.count })
        // The retry lands a few seconds later, setting the offsets back.
        let overtaken = await eventually(timeout: .seconds(20)) { lane.statistics.snapshot.commitsOvertaken >= 1 }
        let caughtUp = await h.waitUntilFullyCommitted(group: group, partitions: 1, timeout: .seconds(20))
        let snapshot = lane.statistics.snapshot
        try await lane.running.stop()
        await store.close()
        #expect(overtaken, "the first batch's retried commit was accepted after the second's (batches \(snapshot.batches))")
        #expect(caughtUp, "the group's offsets reached the end; overtaken \(snapshot.commitsOvertaken), failed \(snapshot.commitsFailed), committed again \(snapshot.recommits)")
        #expect(snapshot.recommits >= 1)
    }
}
