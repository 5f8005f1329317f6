import CallCentre
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

/// A real call-centre desk over a real SQLite alert store in a temporary
/// directory of its own (escalations published nowhere: they are not tested here).
final class DeskFixture: Sendable {
    let directory: String
    let store: SQLiteAlertStore
    let desk: AlertDesk

    private init(directory: String, store: SQLiteAlertStore) {
        self.directory = directory
        self.store = store
        desk = AlertDesk(store: store, clock: { Int64(Date().timeIntervalSince1970 * 1000) }, publish: { _ in })
    }

    static func make() async throws -> DeskFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tm-alerts-\(UUID().uuidString)").path
        return DeskFixture(directory: directory, store: try await SQLiteAlertStore(directory: directory))
    }

    /// The lane's handler as `telematics run` wires it: the desk stores, and says whether the alert is new.
    var handler: AlertHandler {
        let desk = self.desk
        return { alerts in try await desk.receive(alerts).map(\.isNew) }
    }

    /// Every stored alert.
    func alerts() async throws -> [AlertRecord] { try await store.alerts(openOnly: false, priority: nil, limit: 1_000) }

    func close() async {
        await store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Opens once released; until then every `wait()` waits.
final class Gate: Sendable {
    private let open = Atomic<Bool>(false)
    private let waiters = Atomic<Int>(0)
    func release() { open.store(true, ordering: .releasing) }
    /// How many callers are waiting (or waited) at the gate.
    var arrivals: Int { waiters.load(ordering: .relaxed) }
    func wait() async {
        waiters.add(1, ordering: .relaxed)
        while !open.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Services running in a group in the background; `stop()` shuts them down
/// gracefully (in reverse order: list the emergency lane first, so it
/// outlives the bulk lane that hands it alerts, as `telematics run` does).
final class RunningServices: Sendable {
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init(_ services: [any Service]) {
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) }, logger: Logger(label: "test.services")))
        self.group = group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Waits until `condition` holds, checking every 10 ms; false when `timeout` ran out first.
@discardableResult
func eventually(timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now > deadline { return false }
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// A record as a watcher saw it.
struct SeenRecord: Sendable {
    var topic: String
    var partition: Int32
    var key: [UInt8]?
    var value: [UInt8]
    var headers: [KafkaHeader]
    var at: ContinuousClock.Instant

    var alert: CallCentreAlert? { try? JSONDecoder().decode(CallCentreAlert.self, from: Data(value)) }
    /// The headers by name (the last one of a name wins), values as text.
    var headerMap: [String: String] {
        var out: [String: String] = [:]
        for h in headers { out[h.name] = h.value.map { String(decoding: $0, as: UTF8.self) } }
        return out
    }
}

/// Reads `topics` from the start in a fresh group, in the background, noting
/// when each record arrived (short fetch waits, so the arrival time is close
/// to when the record reached the topic).
final class TopicWatcher: Sendable {
    private final class Shared: Sendable {
        let seen = Mutex<[SeenRecord]>([])
        let running = Atomic<Bool>(true)
    }
    private let consumer: KafkaConsumer
    private let shared = Shared()
    private let task: Task<Void, Never>
    private let expectedPartitions: Int

    init(_ cluster: EmbeddedKafkaCluster, topics: [String], partitionsPerTopic: Int) throws {
        var configuration = KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: "watcher-\(UUID().uuidString)")
        configuration.sessionTimeoutMs = 6_000
        configuration.properties["fetch.wait.max.ms"] = "10"
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe(topics)
        self.consumer = consumer
        expectedPartitions = topics.count * partitionsPerTopic
        let shared = self.shared
        task = Task.detached {
            while shared.running.load(ordering: .relaxed) {
                guard let batch = try? await consumer.poll(maxRecords: 500, timeoutMs: 20) else { break }
                let now = ContinuousClock.now
                var records: [SeenRecord] = []
                for r in batch {
                    records.append(SeenRecord(topic: r.topic, partition: r.partition, key: r.key.map(Array.init), value: Array(r.value),
                                              headers: r.headers, at: now))
                }
                batch.release()
                if !records.isEmpty { shared.seen.withLock { $0 += records } }
            }
        }
    }

    /// Whether the group has given the watcher every partition.
    func waitUntilAssigned(timeout: Duration = .seconds(30)) async -> Bool {
        await eventually(timeout: timeout) { consumer.assignment.count >= expectedPartitions }
    }

    var records: [SeenRecord] { shared.seen.withLock { $0 } }
    func records(on topic: String) -> [SeenRecord] { records.filter { $0.topic == topic } }

    /// The records of `topic` once there are at least `count` (fewer if `timeout` runs out first).
    func records(on topic: String, atLeast count: Int, timeout: Duration = .seconds(30)) async -> [SeenRecord] {
        await eventually(timeout: timeout) { records(on: topic).count >= count }
        return records(on: topic)
    }

    func close() async {
        shared.running.store(false, ordering: .relaxed)
        await task.value
        await consumer.close()
    }
}

extension PipelineHarness {
    /// An emergency lane configuration on the harness cluster, fast retries.
    func emergencyConfiguration(group: String) -> EmergencyLaneConfiguration {
        var consumer = KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: group)
        consumer.sessionTimeoutMs = 6_000
        consumer.batchSize = 64
        var c = EmergencyLaneConfiguration(consumer: consumer, producer: KafkaProducerConfiguration(bootstrap: cluster.bootstrap))
        c.topics = topics
        c.retryInitialMs = 20
        c.retryMaximumMs = 200
        return c
    }

    func emergencyLane(group: String, handler: @escaping AlertHandler, statistics: EmergencyStatistics = EmergencyStatistics(),
                       adjust: (inout EmergencyLaneConfiguration) -> Void = { _ in }) throws -> EmergencyLane {
        var configuration = emergencyConfiguration(group: group)
        adjust(&configuration)
        return try EmergencyLane(configuration: configuration, dictionaries: dictionaries, handler: handler,
                          statistics: statistics, logger: Logger(label: "test.emergency"))
    }

    /// The offsets committed by `group` ("next record to read"; negative for
    /// none) and the high watermarks of every partition of `topic`.
    func committedAndEnd(group: String, topic: String, partitions: Int) async throws -> (committed: [Int64], end: [Int64]) {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: group))
        let list = (0..<partitions).map { KafkaTopicPartition(topic: topic, partition: Int32($0)) }
        do {
            let committed = try await consumer.committed(list)
            var end: [Int64] = []
            for p in list { end.append(try await consumer.watermarks(p).high) }
            await consumer.close()
            return (list.map { committed[$0] ?? -1001 }, end)
        } catch {
            await consumer.close()
            throw error
        }
    }

    /// Whether `group` has committed every partition of `topic` up to its end
    /// (a partition nothing was ever written to needs no commit).
    func fullyCommitted(group: String, topic: String, partitions: Int) async throws -> Bool {
        let offsets = try await committedAndEnd(group: group, topic: topic, partitions: partitions)
        return zip(offsets.committed, offsets.end).allSatisfy { committed, end in end == 0 || committed == end }
    }

    /// How many records were ever written to `topic` (the sum of its high watermarks).
    func recordCount(_ topic: String, partitions: Int) async throws -> Int64 {
        try await committedAndEnd(group: "counter-\(UUID().uuidString)", topic: topic, partitions: partitions).end.reduce(0, +)
    }

    /// Publishes `messages` as they are (topic, key, value, headers), waiting for every delivery.
    func produce(_ messages: [KafkaProducerMessage]) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: cluster.bootstrap))
        _ = try await producer.send(messages)
        try await producer.close()
    }
}

/// A store that takes its time (a bulk store far behind), or is down (every
/// write and consent lookup fails) while ``down`` is set.
final class DelayingStore: TelematicsStore, @unchecked Sendable {
    let inner: any TelematicsStore
    let delay: Duration
    private let applies = Atomic<Int>(0)
    private let isDown = Atomic<Bool>(false)
    init(_ inner: any TelematicsStore, delay: Duration) { self.inner = inner; self.delay = delay }
    /// Batches that began to be applied.
    var appliesStarted: Int { applies.load(ordering: .relaxed) }
    /// Whether the store refuses work, as a database that went away would.
    var down: Bool {
        get { isDown.load(ordering: .relaxed) }
        set { isDown.store(newValue, ordering: .relaxed) }
    }
    private func checkUp(_ operation: String) throws(StoreError) {
        if down { throw StoreError(backend: inner.backend, operation: operation, message: "connection refused (the test took the store down)") }
    }
    var backend: StoreBackend { inner.backend }
    func apply(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult {
        applies.add(1, ordering: .relaxed)
        try? await Task.sleep(for: delay)
        try checkUp("apply")
        return try await inner.apply(batch)
    }
    func consent(for vins: [VIN]) async throws(StoreError) -> [VIN: StoredConsent] {
        try checkUp("consent")
        return try await inner.consent(for: vins)
    }
    func vehicleState(_ vin: VIN) async throws(StoreError) -> VehicleTechnicalState? { try await inner.vehicleState(vin) }
    func teleserviceCalls(_ vin: VIN) async throws(StoreError) -> [TeleserviceCallRecord] { try await inner.teleserviceCalls(vin) }
    func maintenanceCases(_ vin: VIN, includeClosed: Bool) async throws(StoreError) -> [MaintenanceCase] { try await inner.maintenanceCases(vin, includeClosed: includeClosed) }
    func chargeSessions(_ vin: VIN) async throws(StoreError) -> [ChargeSessionRecord] { try await inner.chargeSessions(vin) }
    func trafficAggregates(tile: Int64, fromMinute: Int64, toMinute: Int64) async throws(StoreError) -> [TrafficAggregate] { try await inner.trafficAggregates(tile: tile, fromMinute: fromMinute, toMinute: toMinute) }
    func probePointCount() async throws(StoreError) -> Int { try await inner.probePointCount() }
    func probePoints(pseudonym: String) async throws(StoreError) -> [ProbePoint] { try await inner.probePoints(pseudonym: pseudonym) }
    func stats() async throws(StoreError) -> StoreStats { try await inner.stats() }
    func maintenanceCases(partner: String?, openOnly: Bool, limit: Int) async throws(StoreError) -> [MaintenanceCase] { try await inner.maintenanceCases(partner: partner, openOnly: openOnly, limit: limit) }
    func trafficAggregates(sinceMinute: Int64, limit: Int) async throws(StoreError) -> [TrafficAggregate] { try await inner.trafficAggregates(sinceMinute: sinceMinute, limit: limit) }
    func counters() async throws(StoreError) -> [String: Int] { try await inner.counters() }
    func countExpired(_ rule: RetentionRule, before cutoffMs: Int64) async throws(StoreError) -> Int { try await inner.countExpired(rule, before: cutoffMs) }
    func sweep(_ rule: RetentionRule, before cutoffMs: Int64, limit: Int) async throws(StoreError) -> Int { try await inner.sweep(rule, before: cutoffMs, limit: limit) }
    func erase(_ vin: VIN, pseudonyms: [String]) async throws(StoreError) -> Erasure { try await inner.erase(vin, pseudonyms: pseudonyms) }
    func sessionsToReseal(keyID: String, limit: Int) async throws(StoreError) -> [SealedSession] { try await inner.sessionsToReseal(keyID: keyID, limit: limit) }
    func reseal(_ replaced: [(old: SealedSession, new: SealedSession)]) async throws(StoreError) -> Int { try await inner.reseal(replaced) }
    func close() async { await inner.close() }
}
