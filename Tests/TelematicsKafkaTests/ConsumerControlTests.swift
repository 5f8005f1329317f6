import Foundation
import TelematicsKafka
import Testing

/// Where a record sits: what the tests compare to find losses and duplicates.
struct Position: Hashable, Comparable, CustomStringConvertible {
    var partition: Int32
    var offset: Int64
    static func < (a: Self, b: Self) -> Bool { (a.partition, a.offset) < (b.partition, b.offset) }
    var description: String { "\(partition)@\(offset)" }
}

/// `count` small records for each of `partitions` of `topic`, written to
/// those partitions explicitly so a test knows every partition's end.
func partitionedMessages(_ topic: String, partitions: Range<Int32>, count: Int, tag: String) -> [KafkaProducerMessage] {
    partitions.flatMap { p in
        (0..<count).map { i in KafkaProducerMessage(topic: topic, partition: p, key: Array("\(p)".utf8), value: Array("\(tag)-\(p)-\(i)".utf8)) }
    }
}

/// A one-broker cluster with `topic` of `partitions` partitions, `count`
/// records written to each (``partitionedMessages(_:partitions:count:tag:)``),
/// and the producer that wrote them.
func clusterWithRecords(_ topic: String, partitions: Int32, count: Int, tag: String) async throws -> (EmbeddedKafkaCluster, KafkaProducer) {
    let cluster = try EmbeddedKafkaCluster(brokers: 1)
    try cluster.createTopic(topic, partitions: Int(partitions))
    let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
    try await producer.send(partitionedMessages(topic, partitions: 0..<partitions, count: count, tag: tag))
    return (cluster, producer)
}

/// One poll of `consumer`: the positions of the records it returned (the batch is released).
func pollPositions(_ consumer: KafkaConsumer, timeoutMs: Int = 100) async throws -> [Position] {
    let batch = try await consumer.poll(maxRecords: 500, timeoutMs: timeoutMs)
    defer { batch.release() }
    return batch.map { Position(partition: $0.partition, offset: $0.offset) }
}

/// Polls until `done` holds or `seconds` pass; returns whether it held.
func pollUntil(_ consumers: [KafkaConsumer], seconds: Double = 10, _ done: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await done() { return true }
        for c in consumers { _ = try await pollPositions(c, timeoutMs: 50) }
    }
    return try await done()
}

/// What the rebalance hooks of one member saw, in order.
final class RebalanceLog: @unchecked Sendable {
    enum Event: Equatable { case assigned([KafkaTopicPartition]), revoked([KafkaTopicPartition]) }
    private let lock = NSLock()
    private var log: [Event] = []
    func append(_ event: Event) { lock.withLock { log.append(event) } }
    var events: [Event] { lock.withLock { log } }
    var revoked: [KafkaTopicPartition] {
        events.flatMap { event -> [KafkaTopicPartition] in
            if case .revoked(let partitions) = event { return partitions }
            return []
        }
    }
}

/// A group member as the pipeline drives it: records it polled and finished,
/// and a revoke hook that hands the finished offsets to the commit.
final class Member: @unchecked Sendable {
    let consumer: KafkaConsumer
    let finished = FinishedOffsets()
    let log = RebalanceLog()
    private let lock = NSLock()
    private var seen: [Position] = []

    init(_ configuration: KafkaConsumerConfiguration, topic: String) throws {
        let finished = finished
        let log = log
        consumer = try KafkaConsumer(configuration: configuration, rebalance: KafkaRebalanceHandler(
            onAssign: { log.append(.assigned($0)) },
            onRevoke: { partitions in
                log.append(.revoked(partitions))
                return finished.offsets(of: partitions)
            }))
        try consumer.subscribe([topic])
    }

    /// Everything this member was handed, in order.
    var positions: [Position] { lock.withLock { seen } }

    /// One poll; every record returned is finished before the next poll.
    func pollAndFinish(topic: String, timeoutMs: Int = 100) async throws {
        let batch = try await consumer.poll(maxRecords: 500, timeoutMs: timeoutMs)
        defer { batch.release() }
        for record in batch {
            lock.withLock { seen.append(Position(partition: record.partition, offset: record.offset)) }
            finished.finish(topic: topic, partition: record.partition, offset: record.offset)
        }
    }
}

// The time limit turns a hang (e.g. a close that waits on held batches) into a failure.
@Suite("Consumer control: pause, lag, background commits, rebalances", .serialized, .timeLimit(.minutes(1)))
struct ConsumerControlTests {
    @Test("a paused partition yields nothing while the others flow, and after resume its records arrive once each, in offset order")
    func pauseAndResume() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        let topic = "telematics.pause"
        try cluster.createTopic(topic, partitions: 2)
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        let consumer = try KafkaConsumer(configuration: testConsumerConfiguration(cluster, group: "pause"))
        try consumer.subscribe([topic])
        let p0 = KafkaTopicPartition(topic: topic, partition: 0)

        try await producer.send(partitionedMessages(topic, partitions: 0..<2, count: 50, tag: "a"))
        var seen: [Position] = []
        let deadline = Date().addingTimeInterval(10)
        while seen.count < 100 && Date() < deadline { seen += try await pollPositions(consumer) }
        #expect(seen.count == 100)

        // New records reach both partitions and are prefetched before the
        // pause: the paused partition's must still not be handed out.
        try await producer.send(partitionedMessages(topic, partitions: 0..<2, count: 50, tag: "b"))
        try await Task.sleep(for: .milliseconds(300))
        try consumer.pause([p0])
        try await producer.send(partitionedMessages(topic, partitions: 0..<2, count: 50, tag: "c"))
        var whilePaused: [Position] = []
        let pausedUntil = Date().addingTimeInterval(2)
        while Date() < pausedUntil { whilePaused += try await pollPositions(consumer) }
        #expect(whilePaused.filter { $0.partition == 0 }.isEmpty, "nothing of the paused partition")
        #expect(whilePaused.filter { $0.partition == 1 }.count == 100, "the other partition keeps flowing")
        seen += whilePaused

        try consumer.resume([p0])
        var afterResume: [Position] = []
        let resumeDeadline = Date().addingTimeInterval(10)
        while afterResume.count < 100 && Date() < resumeDeadline { afterResume += try await pollPositions(consumer) }
        afterResume += try await pollPositions(consumer, timeoutMs: 500)
        #expect(afterResume == (50..<150).map { Position(partition: 0, offset: $0) }, "the paused partition's records, once each, in offset order")
        seen += afterResume
        #expect(Set(seen).count == seen.count, "no record twice")
        #expect(Set(seen) == Set((0..<2).flatMap { p in (0..<150).map { Position(partition: p, offset: Int64($0)) } }), "none lost")
        await consumer.close()
        try await producer.close()
    }

    @Test("statistics report each partition's lag behind the committed offset within seconds (200 ms intervals), and agree with lag(of:) and the watermarks")
    func lagStatistics() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        let topic = "telematics.lag"
        try cluster.createTopic(topic, partitions: 2)
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        try await producer.send(partitionedMessages(topic, partitions: 0..<1, count: 100, tag: "p0"))
        try await producer.send(partitionedMessages(topic, partitions: 1..<2, count: 60, tag: "p1"))
        let p0 = KafkaTopicPartition(topic: topic, partition: 0)
        let p1 = KafkaTopicPartition(topic: topic, partition: 1)

        var config = testConsumerConfiguration(cluster, group: "lag")
        config.statisticsIntervalMs = 200
        let consumer = try KafkaConsumer(configuration: config)
        try consumer.subscribe([topic])
        var seen: [Position] = []
        let deadline = Date().addingTimeInterval(10)
        while seen.count < 160 && Date() < deadline { seen += try await pollPositions(consumer) }
        #expect(seen.count == 160)

        // Finished: 40 records of partition 0, 20 of partition 1.
        try await consumer.commit([
            KafkaProcessedOffset(topic: topic, partition: 0, offset: 39),
            KafkaProcessedOffset(topic: topic, partition: 1, offset: 19),
        ])
        let committedAt = Date()
        let expected: [KafkaTopicPartition: Int64] = [p0: 60, p1: 40]
        // Alone this takes one interval plus a commit round trip and a poll
        // (under 1.1 s); under the full suite on two cores CI saw 3.8 s, so
        // the bound is the wait itself.
        let reported = try await pollUntil([consumer], seconds: 5) { consumer.statistics?.consumerLag == expected }
        #expect(reported, "statistics lag \(String(describing: consumer.statistics?.consumerLag)), expected \(expected) \(Date().timeIntervalSince(committedAt)) s after the commit")
        #expect(consumer.statistics?.totalConsumerLag == 100)
        #expect((consumer.statistics?.receivedMessages ?? 0) >= 160, "throughput: every record fetched is counted")

        #expect(try await consumer.lag(of: [p0, p1]) == expected)
        #expect(try await consumer.lag() == expected, "the default is the assignment")
        // The watermarks the fetches brought give the same figure without a round trip.
        #expect(consumer.cachedWatermarks(p0).map { [$0.low, $0.high] } == [0, 100])
        #expect(consumer.cachedWatermarks(p1).map { [$0.low, $0.high] } == [0, 60])
        #expect(try await consumer.lag(fresh: false) == expected)
        #expect(try await consumer.watermarks(p0) == (low: 0, high: 100))
        #expect(try await consumer.watermarks(p1) == (low: 0, high: 60))

        // Finishing the rest brings every figure to zero.
        try await consumer.commit([
            KafkaProcessedOffset(topic: topic, partition: 0, offset: 99),
            KafkaProcessedOffset(topic: topic, partition: 1, offset: 59),
        ])
        #expect(try await pollUntil([consumer], seconds: 5) { consumer.statistics?.totalConsumerLag == 0 })
        #expect(try await consumer.lag() == [p0: 0, p1: 0])
        #expect(try await consumer.lag(fresh: false) == [p0: 0, p1: 0])
        await consumer.close()
        try await producer.close()
    }

    @Test("a background commit reaches the coordinator without the caller waiting, each commit is counted once, and a refused one is surfaced")
    func backgroundCommit() async throws {
        let topic = "telematics.commit"
        let (cluster, producer) = try await clusterWithRecords(topic, partitions: 2, count: 30, tag: "x")
        let consumer = try KafkaConsumer(configuration: testConsumerConfiguration(cluster, group: "background"))
        try consumer.subscribe([topic])
        var tracker = KafkaOffsetTracker()
        let received = try await consume(consumer, count: 60, tracker: &tracker)
        #expect(received.count == 60)
        let partitions = (0..<2).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) }

        // Half of each partition finished: committed in the background,
        // visible at the coordinator while the caller does not poll.
        try consumer.commitInBackground(partitions.map { KafkaProcessedOffset(topic: topic, partition: $0.partition, offset: 14) })
        let deadline = Date().addingTimeInterval(5)
        var committed: [KafkaTopicPartition: Int64] = [:]
        while Date() < deadline {
            committed = try await consumer.committed(partitions)
            if committed.values.allSatisfy({ $0 == 15 }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(committed == [partitions[0]: 15, partitions[1]: 15])
        // Its outcome is counted once, by the next polls.
        #expect(try await pollUntil([consumer], seconds: 3) { consumer.commitCounts.succeeded >= 1 })
        _ = try await pollPositions(consumer, timeoutMs: 300)
        #expect(consumer.commitCounts == (succeeded: 1, failed: 0))

        // A synchronous commit is counted once too (not again when a poll serves librdkafka's callback).
        try await consumer.commit([KafkaProcessedOffset(topic: topic, partition: 0, offset: 19)])
        _ = try await pollPositions(consumer, timeoutMs: 300)
        _ = try await pollPositions(consumer, timeoutMs: 300)
        #expect(consumer.commitCounts == (succeeded: 2, failed: 0))
        #expect(consumer.lastCommitError == nil)

        // The coordinator refuses the next commit: the failure shows in
        // lastCommitError and the counts, and nothing is committed.
        cluster.pushRequestErrors(apiKey: .offsetCommit, [.topicAuthorizationFailed])
        try consumer.commitInBackground([KafkaProcessedOffset(topic: topic, partition: 1, offset: 29)])
        let surfaced = try await pollUntil([consumer], seconds: 5) { consumer.commitCounts.failed >= 1 }
        #expect(surfaced, "the refused background commit is surfaced")
        #expect(consumer.lastCommitError?.code == .topicAuthorizationFailed)
        #expect(consumer.commitCounts.failed == 1)
        #expect(try await consumer.committed(partitions) == [partitions[0]: 20, partitions[1]: 15])
        await consumer.close()
        try await producer.close()
    }

    @Test("a commit librdkafka retries after a retriable refusal can be accepted after a later one and set the group's offset back, with both reported as success: the consumer counts it as overtaken")
    func overtakenCommit() async throws {
        let topic = "telematics.overtaken"
        let (cluster, producer) = try await clusterWithRecords(topic, partitions: 1, count: 30, tag: "x")
        var configuration = testConsumerConfiguration(cluster, group: "overtaken")
        // The retry waits long enough for the later commit to go out and be answered first.
        configuration.properties["retry.backoff.ms"] = "1500"
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe([topic])
        var tracker = KafkaOffsetTracker()
        #expect(try await consume(consumer, count: 30, tracker: &tracker).count == 30)
        let partition = KafkaTopicPartition(topic: topic, partition: 0)

        // The first commit is answered "request timed out" (librdkafka retries it);
        // the second goes out meanwhile and is accepted.
        cluster.pushRequestErrors(apiKey: .offsetCommit, [.requestTimedOut])
        try consumer.commitInBackground([KafkaProcessedOffset(topic: topic, partition: 0, offset: 9)])
        try consumer.commitInBackground([KafkaProcessedOffset(topic: topic, partition: 0, offset: 19)])
        #expect(try await pollUntil([consumer], seconds: 10) { consumer.commitCounts.succeeded >= 2 })
        #expect(consumer.commitCounts == (succeeded: 2, failed: 0), "both reported as accepted")
        #expect(consumer.commitsOvertaken == 1, "the retried commit's acknowledgement came after the later one's")
        #expect(try await consumer.committed([partition]) == [partition: 10], "the retried commit set the offset back")

        // Committing the finished offset again repairs it, and is not counted as overtaken.
        try consumer.commitInBackground([KafkaProcessedOffset(topic: topic, partition: 0, offset: 19)])
        #expect(try await pollUntil([consumer], seconds: 5) { consumer.commitCounts.succeeded >= 3 })
        #expect(try await consumer.committed([partition]) == [partition: 20])
        #expect(consumer.commitsOvertaken == 1)
        await consumer.close()
        try await producer.close()
    }

    @Test("with cooperative-sticky, a joining member takes only some partitions: the first keeps the rest, commits the moved ones in its revoke hook, and no record is read twice")
    func cooperativeRebalance() async throws {
        let topic = "telematics.cooperative"
        let (cluster, producer) = try await clusterWithRecords(topic, partitions: 4, count: 50, tag: "first")
        var config = testConsumerConfiguration(cluster, group: "cooperative")
        config.assignmentStrategy = .cooperativeSticky
        let all = (0..<4).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) }

        let a = try Member(config, topic: topic)
        var deadline = Date().addingTimeInterval(10)
        while a.positions.count < 200 && Date() < deadline { try await a.pollAndFinish(topic: topic) }
        #expect(a.positions.count == 200)
        #expect(a.consumer.assignment == all)

        // B joins while records keep arriving; both keep polling and finishing.
        let b = try Member(config, topic: topic)
        let writer = Task {
            for round in 0..<10 {
                try await producer.send(partitionedMessages(topic, partitions: 0..<4, count: 5, tag: "during-\(round)"))
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        // Waits only as long as needed; the full suite's load on 2 vCPUs has
        // needed more than 10 s to consume the rest (580 of 600 in one CI run).
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline && (b.consumer.assignment.count != 2 || a.consumer.assignment.count != 2) {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }
        try await writer.value
        try await producer.send(partitionedMessages(topic, partitions: 0..<4, count: 50, tag: "after"))
        let total = 200 + 200 + 200
        deadline = Date().addingTimeInterval(30)
        while Date() < deadline && Set(a.positions + b.positions).count < total {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }
        for _ in 0..<3 {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }

        #expect(a.consumer.assignment.count == 2 && b.consumer.assignment.count == 2)
        #expect(Set(a.consumer.assignment).isDisjoint(with: b.consumer.assignment))
        // Incremental: A gave up exactly B's partitions and never all of its own.
        #expect(Set(a.log.revoked) == Set(b.consumer.assignment), "A revoked only what moved: \(a.log.events)")
        #expect(a.log.revoked.count == 2, "no full revoke: \(a.log.events)")
        #expect(a.log.events.first == .assigned(all))

        let readByA = a.positions, readByB = b.positions
        let everything = (0..<4).flatMap { p in (0..<150).map { Position(partition: Int32(p), offset: Int64($0)) } }
        #expect(Set(readByA + readByB) == Set(everything), "every record consumed")
        #expect(readByA.count == Set(readByA).count && readByB.count == Set(readByB).count, "no member reads a record twice")
        let moved = Set(b.consumer.assignment.map(\.partition))
        if a.consumer.commitCounts.failed == 0 {
            #expect(readByA.count + readByB.count == everything.count, "none twice: B re-read \(Set(readByA).intersection(readByB).sorted().prefix(10))")
            // What A finished on the moved partitions was committed by its hook, so B started right after it.
            for p in b.consumer.assignment {
                let lastByA = readByA.filter { $0.partition == p.partition }.map(\.offset).max() ?? -1
                let firstByB = readByB.filter { $0.partition == p.partition }.map(\.offset).min()
                #expect(firstByB == lastByA + 1, "\(p): B starts right after A's last finished record")
            }
        } else {
            // librdkafka 2.0.2's mock refuses OffsetCommit while the group is
            // joining (real Kafka accepts it), which a loaded machine can hit:
            // then the refusal is surfaced and the moved partitions are read
            // again from the last accepted commit, at least once, never lost.
            #expect(a.consumer.lastCommitError != nil, "the refused revoke commit is surfaced")
            let twice = Set(readByA).intersection(readByB)
            #expect(twice.allSatisfy { moved.contains($0.partition) }, "only moved partitions are re-read")
        }
        await b.consumer.close()
        await a.consumer.close()
        try await producer.close()
    }

    @Test("when a member joins an eager group while another holds a batch, the holder's unfinished records are re-read, and a revoke commit the coordinator refuses is surfaced")
    func eagerJoinWithHeldBatch() async throws {
        let topic = "telematics.eager-join"
        let (cluster, producer) = try await clusterWithRecords(topic, partitions: 4, count: 40, tag: "held")
        var config = testConsumerConfiguration(cluster, group: "eager-join")
        config.assignmentStrategy = .range
        let all = (0..<4).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) }

        // A holds every record in batches and finishes only offsets < 15 of each partition.
        let a = try Member(config, topic: topic)
        var held: [KafkaMessageBatch] = []
        var heldPositions: [Position] = []
        let deadline = Date().addingTimeInterval(10)
        while heldPositions.count < 160 && Date() < deadline {
            let batch = try await a.consumer.poll(maxRecords: 500, timeoutMs: 200)
            held.append(batch)
            heldPositions += batch.map { Position(partition: $0.partition, offset: $0.offset) }
        }
        #expect(heldPositions.count == 160)
        for batch in held {
            for record in batch where record.offset < 15 {
                a.finished.finish(topic: topic, partition: record.partition, offset: record.offset)
            }
        }
        let finished = Set(heldPositions.filter { $0.offset < 15 })
        let unfinished = Set(heldPositions.filter { $0.offset >= 15 })

        // B joins; A serves the rebalance with its batches still in hand.
        let b = try Member(config, topic: topic)
        // Until the group is settled: both members hold partitions and
        // together all of them (under load a second rebalance may follow the first).
        var until = Date().addingTimeInterval(30)
        while Date() < until
            && (a.log.revoked.isEmpty || b.consumer.assignment.isEmpty || a.consumer.assignment.isEmpty
                || Set(a.consumer.assignment + b.consumer.assignment) != Set(all))
        {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }
        #expect(Set(a.log.revoked) == Set(all), "eager: everything revoked")
        #expect(Set(a.consumer.assignment + b.consumer.assignment) == Set(all))
        // The held batches are still readable after the rebalance; then they go back.
        #expect(held.flatMap { $0.map(\.offset) }.count == 160)
        for batch in held { batch.release() }

        until = Date().addingTimeInterval(10)
        while Date() < until && !unfinished.isSubset(of: Set(a.positions + b.positions)) {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }
        let reread = a.positions + b.positions
        #expect(unfinished.isSubset(of: Set(reread)), "unfinished records re-read (at least once)")
        // On a loaded machine the group may rebalance more than once (a late
        // heartbeat); each eager rebalance revokes everything and may re-read
        // again. The exact accounting holds for the one rebalance of a quiet run.
        let rebalances = a.log.events.filter { if case .revoked = $0 { true } else { false } }.count
        #expect(rebalances >= 1)
        if rebalances == 1 {
            #expect(Set(reread).count == reread.count, "nothing re-read twice")
        }
        if a.consumer.commitCounts.failed == 0 {
            #expect(finished.isDisjoint(with: reread), "finished records not re-read")
        } else {
            // librdkafka 2.0.2's mock refuses OffsetCommit while the group is
            // joining (Kafka accepts it): the refusal must not be silent.
            #expect(a.consumer.lastCommitError?.code.name == "REBALANCE_IN_PROGRESS")
            #expect(a.consumer.commitCounts.succeeded == 0 && a.consumer.commitCounts.failed <= rebalances,
                    "each refused revoke commit counted once: \(a.consumer.commitCounts) in \(rebalances) rebalances")
            #expect(Set(reread) == Set(heldPositions), "then the finished records come again too")
        }
        await b.consumer.close()
        await a.consumer.close()
        try await producer.close()
    }

    @Test("when an eager member leaves while it holds a batch, its revoke hook commits the finished records, and the next owner re-reads only the unfinished ones")
    func eagerLeaveWithHeldBatch() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        let topic = "telematics.eager-leave"
        try cluster.createTopic(topic, partitions: 4)
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        var config = testConsumerConfiguration(cluster, group: "eager-leave")
        config.assignmentStrategy = .range

        // Two members settle on two partitions each before records arrive.
        let a = try Member(config, topic: topic)
        let b = try Member(config, topic: topic)
        var until = Date().addingTimeInterval(15)
        while Date() < until && (a.consumer.assignment.count != 2 || b.consumer.assignment.count != 2) {
            try await a.pollAndFinish(topic: topic)
            try await b.pollAndFinish(topic: topic)
        }
        #expect(a.consumer.assignment.count == 2 && b.consumer.assignment.count == 2)
        let partitionsOfA = Set(a.consumer.assignment.map(\.partition))
        try await producer.send(partitionedMessages(topic, partitions: 0..<4, count: 40, tag: "leave"))

        // A holds its records and finishes offsets < 15; B finishes all of its own.
        var held: [KafkaMessageBatch] = []
        var heldPositions: [Position] = []
        until = Date().addingTimeInterval(10)
        while Date() < until && (heldPositions.count < 80 || b.positions.count < 80) {
            let batch = try await a.consumer.poll(maxRecords: 500, timeoutMs: 100)
            held.append(batch)
            heldPositions += batch.map { Position(partition: $0.partition, offset: $0.offset) }
            try await b.pollAndFinish(topic: topic)
        }
        #expect(heldPositions.count == 80 && Set(heldPositions.map(\.partition)) == partitionsOfA)
        for position in heldPositions where position.offset < 15 {
            a.finished.finish(topic: topic, partition: position.partition, offset: position.offset)
        }
        let unfinished = Set(heldPositions.filter { $0.offset >= 15 })
        // B commits its own finished work as it goes, as the pipeline does:
        // the eager rebalance takes its partitions away and back too.
        try await b.consumer.commit(b.finished.offsets(of: b.consumer.assignment))
        let readByBBefore = b.positions.count

        // A leaves with its batches in hand: the hook's commit goes through.
        await a.consumer.close()
        #expect(a.consumer.commitCounts == (succeeded: 1, failed: 0), "\(String(describing: a.consumer.lastCommitError))")
        #expect(Set(a.log.revoked.map(\.partition)) == partitionsOfA)
        #expect(held.flatMap { $0.map(\.offset) }.count == 80, "held batches stay readable after close")
        for batch in held { batch.release() }

        until = Date().addingTimeInterval(15)
        while Date() < until && b.positions.count - readByBBefore < unfinished.count {
            try await b.pollAndFinish(topic: topic)
        }
        for _ in 0..<3 { try await b.pollAndFinish(topic: topic) }
        let taken = Array(b.positions.dropFirst(readByBBefore))
        #expect(Set(taken) == unfinished, "exactly the unfinished records, none of the finished")
        #expect(taken.count == unfinished.count, "each once")
        for p in partitionsOfA {
            let offsets = taken.filter { $0.partition == p }.map(\.offset)
            #expect(offsets == Array(15..<40), "partition \(p): from the first unfinished record on, in order")
        }
        await b.consumer.close()
        try await producer.close()
    }
}
