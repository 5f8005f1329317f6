import Crypto
import FleetSimulator
import Foundation
import ServiceLifecycle
import Synchronization
import Logging
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

/// An embedded cluster with the WIRE.md topics, a SQLite store in a temporary
/// directory, and helpers to produce records and to run the bulk lane.
final class PipelineHarness: @unchecked Sendable {
    let cluster: EmbeddedKafkaCluster
    let topics = PipelineTopics()
    let directory: String
    let secrets: PipelineSecrets
    let dictionaries: ZstdDictionaries

    init(partitions: Int = 4, brokers: Int = 1, dictionaries: ZstdDictionaries = .none) throws {
        cluster = try EmbeddedKafkaCluster(brokers: brokers)
        for topic in topics.all { try cluster.createTopic(topic, partitions: partitions) }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tm-pipeline-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        secrets = PipelineSecrets(
            pseudonymKey: SymmetricKey(size: .bits256), sealingKeyID: "k1", sealingKeys: ["k1": SymmetricKey(size: .bits256)])
        self.dictionaries = dictionaries
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func openStore() async throws -> SQLiteStore { try await SQLiteStore(directory: directory) }

    /// A fresh store of `backend`: SQLite in the harness directory, or a new
    /// database on the test PostgreSQL server.
    func openStore(_ backend: StoreBackend) async throws -> any TelematicsStore {
        switch backend {
        case .sqlite: try await openStore()
        case .postgres: try await PostgresStore(url: try await TestPostgres.url())
        }
    }

    func configuration(group: String = "pipeline-test", batchSize: Int = 500) -> PipelineConfiguration {
        var consumer = KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: group)
        consumer.sessionTimeoutMs = 6_000
        consumer.batchSize = batchSize
        var producer = KafkaProducerConfiguration(bootstrap: cluster.bootstrap)
        producer.lingerMs = 1
        var c = PipelineConfiguration(consumer: consumer, producer: producer)
        c.batchSize = batchSize
        c.retryInitialMs = 20
        c.retryMaximumMs = 200
        return c
    }

    /// Publishes records (value bytes; key = the envelope's VIN unless given)
    /// to the topic of their kind, or to `topic`.
    func produce(_ records: [[UInt8]], keys: [[UInt8]?]? = nil, topic: String? = nil) async throws {
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrap: cluster.bootstrap))
        let reports = try await producer.send(messages(records, keys: keys, topic: topic))
        precondition(reports.count == records.count)
        try await producer.close()
    }

    /// Records as messages to the topic of their kind (or `topic`), keyed by the envelope's VIN unless given.
    func messages(_ records: [[UInt8]], keys: [[UInt8]?]? = nil, topic: String? = nil) -> [KafkaProducerMessage] {
        records.enumerated().map { i, value -> KafkaProducerMessage in
            let kind = value.count > 3 ? MessageKind(rawValue: value[3]) : nil
            let key = keys?[i] ?? (value.count >= 41 ? Array(value[24..<41]) : nil)
            return KafkaProducerMessage(topic: topic ?? kind?.defaultTopic ?? topics.deadLetter, key: key, value: value)
        }
    }

    /// Runs a bulk lane until `records` records are committed, then shuts it
    /// down gracefully; returns its statistics.
    @discardableResult
    func runLane(until records: Int, store: any TelematicsStore, configuration: PipelineConfiguration? = nil,
                 timeout: Duration = .seconds(60)) async throws -> PipelineStatistics.Snapshot {
        let statistics = PipelineStatistics()
        let lane = BulkLane(configuration: configuration ?? self.configuration(), store: store, dictionaries: dictionaries,
                            secrets: secrets, statistics: statistics, logger: Logger(label: "test.bulk"))
        let group = ServiceGroup(services: [lane], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let deadline = ContinuousClock.now + timeout
            while statistics.snapshot.committedRecords < records {
                if ContinuousClock.now > deadline {
                    await group.triggerGracefulShutdown()
                    throw HarnessError.timeout(committed: statistics.snapshot.committedRecords, wanted: records)
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        return statistics.snapshot
    }

    /// Every record on `topic` (a fresh group reads from the start).
    func read(_ topic: String, expecting count: Int, timeout: Duration = .seconds(20)) async throws -> [(key: [UInt8]?, value: [UInt8], headers: [String: String])] {
        var configuration = KafkaConsumerConfiguration(bootstrap: cluster.bootstrap, groupID: "reader-\(UUID().uuidString)")
        configuration.sessionTimeoutMs = 6_000
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe([topic])
        var out: [(key: [UInt8]?, value: [UInt8], headers: [String: String])] = []
        let deadline = ContinuousClock.now + timeout
        while out.count < count && ContinuousClock.now < deadline {
            let batch = try await consumer.poll(maxRecords: 1000, timeoutMs: 200)
            for r in batch {
                var headers: [String: String] = [:]
                for h in r.headers { headers[h.name] = h.value.map { String(decoding: $0, as: UTF8.self) } }
                out.append((r.key.map(Array.init), Array(r.value), headers))
            }
            batch.release()
        }
        // A little longer, to see anything beyond what was expected.
        let extra = try await consumer.poll(maxRecords: 1000, timeoutMs: 300)
        for r in extra { out.append((r.key.map(Array.init), Array(r.value), [:])) }
        extra.release()
        await consumer.close()
        return out
    }

    enum HarnessError: Error, CustomStringConvertible {
        case timeout(committed: Int, wanted: Int)
        var description: String {
            switch self {
            case .timeout(let c, let w): "the lane committed \(c) of \(w) records before the timeout"
            }
        }
    }
}

/// Simulated records without consent messages, so the outcome does not
/// depend on how the consent topic interleaves with the others.
func fleetRecords(_ count: Int, seed: UInt64, vehicles: Int = 50) throws -> [[UInt8]] {
    var configuration = FleetSimulator.Configuration(vehicles: vehicles, seed: seed)
    configuration.mix = FleetSimulator.Mix(rtti: 70, teleservice: 15, charging: 14, consent: 0, hvWarn: 1)
    var fleet = try FleetSimulator(configuration: configuration)
    return (0..<count).map { _ in fleet.next().value }
}

/// Builds records of one vehicle with increasing sequence numbers.
struct VehicleScript {
    let vin: VIN
    var sequence: UInt64 = 0
    var time: Int64 = 1_763_942_400_000

    init(_ vin: String) { self.vin = VIN(vin)! }

    mutating func record(_ body: MessageBody, compressor: ZstdCompressor? = nil) -> [UInt8] {
        sequence += 1
        time += 1_000
        return EnvelopeWriter.record(TelematicsMessage(vin: vin, sequence: sequence, recordedAtMs: time, body: body), compressor: compressor)
    }

    static func consent(teleservices: Bool = true, smartMaintenance: Bool = false, chargingHistory: Bool = true,
                        chargingLocation: Bool = true, rtti: Bool = true, accountDeleted: Bool = false) -> MessageBody {
        .consentState(ConsentState(teleservices: teleservices, smartMaintenance: smartMaintenance, chargingHistory: chargingHistory,
                                   chargingLocation: chargingLocation, rtti: rtti, accountDeleted: accountDeleted))
    }

    static func call(_ trigger: Trigger, items: [ServiceItem] = [], controls: [CheckControl] = [], inWorkshop: Bool = false, position: Position? = nil) -> MessageBody {
        var m = TeleserviceCall()
        m.trigger = trigger
        m.mileageKm = 42_000
        m.battery12vMv = 12_600
        m.serviceItems = items
        m.checkControls = controls
        m.servicePartnerID = "DK-1070"
        m.inWorkshop = inWorkshop
        m.position = position
        return .teleserviceCall(m)
    }

    static func session(_ id: String, position: Position? = Position(latE7: 556_761_000, lonE7: 125_683_000)) -> MessageBody {
        var m = ChargeSession()
        m.sessionID = id
        m.startedAtMs = 1_763_900_000_000
        m.endedAtMs = 1_763_903_600_000
        m.socStartPermille = 200
        m.socEndPermille = 800
        m.energyWh = 40_000
        m.position = position
        return .chargeSession(m)
    }

    static func probe(points: Int, recordedAtMs: Int64, hazardAt: Int? = nil) -> MessageBody {
        let pts = (0..<points).map { i in
            RttiPoint(tMs: recordedAtMs - Int64(points - i) * 1000, latE7: 556_000_000 + Int64(i) * 300, lonE7: 125_000_000 + Int64(i) * 300,
                      speedDkmh: UInt32(500 + i * 10), headingDeg: 90)
        }
        return .rttiProbe(RttiProbe(points: pts, recordedAtMs: recordedAtMs, hazards: hazardAt.map { [Hazard(type: .obstacle, pointIndex: UInt32($0))] } ?? [])!)
    }

    static func hvWarn(_ eventID: String) -> MessageBody {
        var m = HvWarnCall()
        m.eventID = eventID
        m.thermal = .temperatureRise
        m.powertrain = .bev
        m.position = Position(latE7: 556_761_000, lonE7: 125_683_000)
        m.pluggedIn = true
        m.vehicleState = .charging
        m.maxCellTempDc = 812
        m.socPermille = 640
        return .hvWarnCall(m)
    }
}
