import FleetSimulator
import Foundation
import Synchronization
import TelematicsKafka
import TelematicsTestSupport
import TelematicsWire
import Testing

/// A record as the tests compare them: where it landed and its bytes.
struct Received: Hashable {
    var partition: Int32
    var offset: Int64
    var key: [UInt8]
    var value: [UInt8]
}

/// Polls `consumer` until `count` records arrived or `seconds` passed; marks them finished in `tracker`.
func consume(_ consumer: KafkaConsumer, count: Int, seconds: Double = 15, tracker: inout KafkaOffsetTracker) async throws -> [Received] {
    var out: [Received] = []
    let deadline = Date().addingTimeInterval(seconds)
    while out.count < count && Date() < deadline {
        let batch = try await consumer.poll(maxRecords: 500, timeoutMs: 200)
        for record in batch {
            out.append(Received(partition: record.partition, offset: record.offset, key: Array(record.key ?? .init(start: nil, count: 0)), value: Array(record.value)))
        }
        tracker.finished(batch)
        batch.release()
    }
    return out
}

/// A consumer configuration for the mock cluster: short session timeout,
/// because the mock waits up to a session timeout to settle a rebalance.
func testConsumerConfiguration(_ cluster: EmbeddedKafkaCluster, group: String) -> KafkaConsumerConfiguration {
    var config = KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: group)
    config.sessionTimeoutMs = 6_000
    config.properties["heartbeat.interval.ms"] = "500"
    return config
}

/// Messages of a simulated fleet, keyed by VIN, for `topic`.
func fleetMessages(_ count: Int, topic: String, seed: UInt64 = 7) throws -> [KafkaProducerMessage] {
    var fleet = try FleetSimulator(configuration: .init(vehicles: 40, seed: seed))
    return (0..<count).map { _ in
        let r = fleet.next()
        return KafkaProducerMessage(topic: topic, key: r.key, value: r.value)
    }
}

@Suite("Kafka layer against librdkafka's mock cluster", .serialized)
struct KafkaLayerTests {
    @Test("topics are created with their partition count and show in the cluster's metadata")
    func topicCreation() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 3)
        try cluster.createTopic("telematics.rtti", partitions: 12)
        try cluster.createTopic("telematics.dlq", partitions: 3)
        let admin = try KafkaAdmin(configuration: .init(bootstrap: cluster.bootstrap))
        let counts = try await admin.topicPartitionCounts()
        #expect(counts["telematics.rtti"] == 12)
        #expect(counts["telematics.dlq"] == 3)
    }

    @Test("the admin client reports the mock's missing controller as a typed timeout, promptly")
    func adminCreateTopicsAgainstMock() async throws {
        // librdkafka 2.0.2's mock cluster advertises no controller, so the
        // CreateTopics admin request cannot be served by it; what matters
        // here is that the failure is typed and bounded by the timeout.
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        let admin = try KafkaAdmin(configuration: .init(bootstrap: cluster.bootstrap))
        await #expect {
            _ = try await admin.createTopics([KafkaTopicSpecification(name: "telematics.hv-warn", partitions: 2)], timeoutMs: 1_000)
        } throws: { error in
            (error as? KafkaError)?.code == .timedOut
        }
    }

    @Test("a produced batch is acknowledged and consumed exactly once with its bytes intact")
    func produceAndConsume() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 3)
        try cluster.createTopic("telematics.rtti", partitions: 6)
        var producerConfig = KafkaProducerConfiguration(bootstrap: cluster.bootstrap)
        producerConfig.compression = .zstd
        let producer = try KafkaProducer(configuration: producerConfig)
        let messages = try fleetMessages(600, topic: "telematics.rtti")
        let reports = try await producer.send(messages)
        #expect(reports.count == messages.count)
        #expect(reports.allSatisfy { $0.error == nil && $0.offset >= 0 && (0..<6).contains($0.partition) })
        #expect(Set(reports.map(\.partition)).count > 1, "keys spread over partitions")

        let consumer = try KafkaConsumer(configuration: testConsumerConfiguration(cluster, group: "once"))
        try consumer.subscribe(["telematics.rtti"])
        var tracker = KafkaOffsetTracker()
        let received = try await consume(consumer, count: messages.count, tracker: &tracker)
        #expect(received.count == messages.count)
        #expect(Set(received.map { [$0.partition: $0.offset] }).count == received.count, "no record twice")
        let sameValues = received.map(\.value).sorted { $0.lexicographicallyPrecedes($1) }
            == messages.map(\.value).sorted { $0.lexicographicallyPrecedes($1) }
        #expect(sameValues, "the values consumed are exactly the values produced")
        // Each report's position holds that very record.
        let byPosition = Dictionary(received.map { ("\($0.partition)@\($0.offset)", $0) }, uniquingKeysWith: { a, _ in a })
        for report in reports {
            let got = byPosition["\(report.partition)@\(report.offset)"]
            #expect(got?.value == messages[report.index].value)
            #expect(got?.key == messages[report.index].key)
        }
        try await consumer.commit(tracker.offsets)
        let committed = try await consumer.committed(tracker.offsets.map { KafkaTopicPartition(topic: $0.topic, partition: $0.partition) })
        for o in tracker.offsets {
            #expect(committed[KafkaTopicPartition(topic: o.topic, partition: o.partition)] == o.offset + 1, "commit stores offset + 1")
        }
        #expect(try await consumer.lag().values.allSatisfy { $0 == 0 })
        await consumer.close()
        try await producer.close()
    }

    @Test("a second member of the group resumes right after the committed offsets: nothing again, nothing skipped")
    func resumeAfterCommit() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        let topic = "telematics.teleservice"
        try cluster.createTopic(topic, partitions: 4)
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        let first = try fleetMessages(400, topic: topic, seed: 11)
        try await producer.send(first)

        // Member A finishes only records at offsets < 30 of each partition;
        // its revoke hook hands exactly those to the commit on close.
        let finished = FinishedOffsets()
        let config = testConsumerConfiguration(cluster, group: "resume")
        let a = try KafkaConsumer(configuration: config, rebalance: .init(onRevoke: { partitions in finished.offsets(of: partitions) }))
        try a.subscribe([topic])
        var unused = KafkaOffsetTracker()
        let seenByA = try await consume(a, count: first.count, tracker: &unused)
        #expect(seenByA.count == first.count)
        let doneByA = seenByA.filter { $0.offset < 30 }
        for r in doneByA { finished.finish(topic: topic, partition: r.partition, offset: r.offset) }
        await a.close()
        #expect(a.commitCounts.succeeded >= 1, "the revoke hook's offsets were committed")

        let second = try fleetMessages(100, topic: topic, seed: 12)
        try await producer.send(second)
        let b = try KafkaConsumer(configuration: config)
        try b.subscribe([topic])
        var trackerB = KafkaOffsetTracker()
        let expected = first.count - doneByA.count + second.count
        let seenByB = try await consume(b, count: expected, tracker: &trackerB)
        // Give a redelivery the chance to show up before judging.
        let extra = try await consume(b, count: 1, seconds: 1, tracker: &trackerB)
        #expect(extra.isEmpty, "nothing beyond the expected records")
        #expect(seenByB.count == expected)
        let doneKeys = Set(doneByA.map { "\($0.partition)@\($0.offset)" })
        #expect(seenByB.allSatisfy { !doneKeys.contains("\($0.partition)@\($0.offset)") }, "no committed record redelivered")
        let nothingSkipped = Set(seenByB.map(\.value)).union(doneByA.map(\.value)) == Set(first.map(\.value) + second.map(\.value))
        #expect(nothingSkipped, "nothing skipped")
        await b.close()
        try await producer.close()
    }

    @Test("a record the broker refuses fails its delivery with a typed error")
    func failedDelivery() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        try cluster.createTopic("telematics.charging", partitions: 1)
        var config = KafkaProducerConfiguration(bootstrap: cluster.bootstrap)
        config.messageTimeoutMs = 2_000
        let producer = try KafkaProducer(configuration: config)
        // Warm up (metadata, producer id) so the injected error hits the produce request.
        try await producer.send([KafkaProducerMessage(topic: "telematics.charging", key: nil, value: [1])])
        cluster.pushRequestErrors(apiKey: .produce, [.topicAuthorizationFailed])
        let summary = try await producer.deliver([KafkaProducerMessage(topic: "telematics.charging", key: Array("K".utf8), value: [2])])
        #expect(summary.delivered == 0)
        #expect(summary.failures.count == 1)
        #expect(summary.failures.first?.error?.code == .topicAuthorizationFailed)
        await #expect(throws: KafkaError.self) {
            cluster.pushRequestErrors(apiKey: .produce, [.topicAuthorizationFailed])
            try await producer.send([KafkaProducerMessage(topic: "telematics.charging", key: nil, value: [3])])
        }
        try? await producer.close(timeoutMs: 1_000)
    }

    @Test("records to an unreachable cluster time out with a typed error instead of vanishing")
    func timedOutDelivery() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        try cluster.createTopic("telematics.consent", partitions: 1)
        var config = KafkaProducerConfiguration(bootstrap: cluster.bootstrap)
        config.messageTimeoutMs = 1_000
        let producer = try KafkaProducer(configuration: config)
        try cluster.setBrokerDown(1)
        let summary = try await producer.deliver((0..<5).map { KafkaProducerMessage(topic: "telematics.consent", key: nil, value: [UInt8($0)]) })
        #expect(summary.delivered == 0)
        #expect(summary.failures.count == 5)
        #expect(summary.failures.allSatisfy { $0.error?.code == .messageTimedOut })
        #expect(summary.error?.code == .messageTimedOut)
        try? await producer.close(timeoutMs: 500)
    }

    @Test("brokers go down and up while other tests start child processes, without librdkafka aborting the test process")
    func brokerSwitchBesideSpawns() async throws {
        // Without EmbeddedKafkaCluster.startingProcess around both, this
        // aborts the test process within a few hundred switches: a child
        // spawned as a broker goes down holds its old listening socket, and
        // librdkafka asserts when binding the port again fails.
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        try cluster.createTopic("telematics.consent", partitions: 1)
        let switching = Atomic<Bool>(true)
        let spawned = Atomic<Int>(0)
        let spawners = (0..<2).map { _ in
            Thread {
                while switching.load(ordering: .relaxed) {
                    let child = Process()
                    child.executableURL = URL(fileURLWithPath: "/bin/true")
                    guard (try? child.start()) != nil else { continue }
                    child.waitUntilExit()
                    spawned.add(1, ordering: .relaxed)
                }
            }
        }
        spawners.forEach { $0.start() }
        for _ in 0..<100 {
            try cluster.setBrokerDown(1)
            try cluster.setBrokerUp(1)
        }
        switching.store(false, ordering: .relaxed)
        #expect(spawned.load(ordering: .relaxed) > 0, "children were started meanwhile")
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        let summary = try await producer.deliver([KafkaProducerMessage(topic: "telematics.consent", key: nil, value: [1])])
        #expect(summary.delivered == 1 && summary.failures.isEmpty, "broker 1 serves after the switches")
        try? await producer.close(timeoutMs: 500)
    }

    @Test("headers travel with a record, as the dead-letter topic needs")
    func headers() async throws {
        let cluster = try EmbeddedKafkaCluster(brokers: 1)
        try cluster.createTopic("telematics.dlq", partitions: 1)
        let producer = try KafkaProducer(configuration: .init(bootstrap: cluster.bootstrap))
        try await producer.send([KafkaProducerMessage(
            topic: "telematics.dlq", key: Array("WMW11DJ0X02A00001".utf8), value: [0x54, 0x4D],
            headers: [KafkaHeader(name: "error", text: "bad_magic"), KafkaHeader(name: "source.offset", text: "42"), KafkaHeader(name: "empty", value: nil)])])
        let consumer = try KafkaConsumer(configuration: testConsumerConfiguration(cluster, group: "dlq-reader"))
        try consumer.subscribe(["telematics.dlq"])
        var found: [KafkaHeader] = []
        var errorHeader: String?
        // A deadline, not a bound: joining the group took over 10 s once
        // under the full suite on two cores.
        let deadline = Date().addingTimeInterval(30)
        while found.isEmpty && Date() < deadline {
            let batch = try await consumer.poll(maxRecords: 10, timeoutMs: 200)
            for record in batch {
                found = record.headers
                errorHeader = record.header(named: "error").flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) }
            }
            batch.release()
        }
        #expect(found == [KafkaHeader(name: "error", text: "bad_magic"), KafkaHeader(name: "source.offset", text: "42"), KafkaHeader(name: "empty", value: nil)])
        #expect(errorHeader == "bad_magic")
        await consumer.close()
        try await producer.close()
    }

    @Test("a fixed port base forwards to the mock brokers")
    func portBase() async throws {
        // The base lies in Linux's ephemeral range, where any outgoing
        // connection of the machine may hold a port for a while (CI saw
        // "Address already in use" once): another base is tried then.
        var made: (cluster: EmbeddedKafkaCluster, base: Int)?
        for attempt in 0..<10 where made == nil {
            let base = 39_000 + Int((Int(getpid()) + 137 * attempt) % 500) * 4
            switch Result(catching: { () throws(KafkaError) in try EmbeddedKafkaCluster(brokers: 2, portBase: base) }) {
            case .success(let cluster): made = (cluster, base)
            case .failure(let error) where "\(error)".contains("Address already in use") && attempt < 9: continue
            case .failure(let error): throw error
            }
        }
        let (cluster, base) = try #require(made)
        #expect(cluster.bootstrap.servers == ["127.0.0.1:\(base)", "127.0.0.1:\(base + 1)"])
        try cluster.createTopic("traffic.probes", partitions: 2)
        let admin = try KafkaAdmin(configuration: .init(bootstrap: cluster.bootstrap))
        #expect(try await admin.topicPartitionCounts()["traffic.probes"] == 2)
    }

    @Test("a bad configuration property is a typed error naming the property")
    func badConfiguration() {
        var config = KafkaProducerConfiguration(bootstrap: KafkaBootstrap("127.0.0.1:1"))
        config.properties["no.such.property"] = "1"
        #expect {
            _ = try KafkaProducer(configuration: config)
        } throws: { error in
            guard let error = error as? KafkaError else { return false }
            return error.code == .invalidConfiguration && error.context.contains("no.such.property")
        }
    }
}

/// Offsets a test marks finished, read by a revoke hook on the poll thread.
final class FinishedOffsets: @unchecked Sendable {
    private let lock = NSLock()
    private var tracker = KafkaOffsetTracker()
    func finish(topic: String, partition: Int32, offset: Int64) {
        lock.withLock { tracker.finished(topic: topic, partition: partition, offset: offset) }
    }
    func offsets(of partitions: [KafkaTopicPartition]) -> [KafkaProcessedOffset] {
        lock.withLock { tracker.offsets(of: partitions) }
    }
}
