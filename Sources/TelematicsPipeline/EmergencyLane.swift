import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import TelematicsKafka
import TelematicsStores
import TelematicsWire

/// Makes alerts durable (the call-centre desk stores them, together) and
/// says of each, in order, whether it is new: a new alert is published, a
/// repeat of one already stored is not (it must not page twice). Throws
/// when the alerts could not be stored; the lane then tries again, it never
/// drops an alert.
public typealias AlertHandler = @Sendable ([CallCentreAlert]) async throws -> [Bool]

/// How the emergency lane runs.
public struct EmergencyLaneConfiguration: Sendable {
    /// Its own consumer, in its own group (`<bulk group>.emergency`).
    public var consumer: KafkaConsumerConfiguration
    /// Its own producer, with no lingering: an alert is sent at once.
    public var producer: KafkaProducerConfiguration
    public var topics = PipelineTopics()
    /// The most HV warn calls handled together.
    public var batchSize = 64
    /// First and longest wait between retries of a failed store or publish.
    public var retryInitialMs = 20
    public var retryMaximumMs = 2_000

    public init(consumer: KafkaConsumerConfiguration, producer: KafkaProducerConfiguration) {
        self.consumer = consumer
        self.producer = producer
    }
}

/// Running totals of the emergency lane.
public final class EmergencyStatistics: Sendable {
    public struct Snapshot: Sendable {
        /// HV warn calls read from the emergency topic.
        public var hvWarnCalls = 0
        /// Alerts handed over by the bulk lane (P1 calls, HV warn calls found on bulk topics).
        public var handedOver = 0
        /// Alerts published as new.
        public var published = 0
        /// Repeats of stored alerts (not published again).
        public var repeats = 0
        /// Records of the emergency topic dead-lettered.
        public var rejected = 0
        /// Records of another kind found on the emergency topic, sent on to their own topic.
        public var forwarded = 0
        /// Failed attempts to store or publish (each retried).
        public var retries = 0
        /// Times the lane committed its finished offsets again after a
        /// failed or overtaken commit (``CommitRepair``).
        public var recommits = 0
        /// Milliseconds from an HV warn call's Kafka timestamp to its alert
        /// acknowledged on the alert topic: the latest few thousand.
        public var latenciesMs: [Double] = []
    }

    private let state = Mutex(Snapshot())
    public init() {}
    public var snapshot: Snapshot { state.withLock { $0 } }
    func update(_ body: (inout Snapshot) -> Void) { state.withLock { body(&$0) } }
}

/// The emergency lane (RULES.md P0): HV warn calls consumed and handled
/// apart from bulk work, so that no RTTI backlog, slow store or bulk
/// rebalance delays them.
///
/// - Its own consumer group on the HV warn topic, its own thread for
///   polling, its own producer, its own commits; the alert store behind the
///   ``AlertHandler`` has its own connection.
/// - Each alert is stored (the handler) and, when new, published on
///   `callcentre.alerts` (key VIN) before its offset is committed.
/// - The bulk lane hands over alerts it finds (P1 breakdown and accident
///   calls; an HV warn call on a bulk topic) through ``submit(_:)`` while it
///   routes, not after its batch is stored; the bulk batch commits only once
///   they are durable.
public final class EmergencyLane: Service, Sendable {
    public let configuration: EmergencyLaneConfiguration
    public let statistics: EmergencyStatistics
    private let producer: KafkaProducer
    private let handler: AlertHandler
    private let dictionaries: ZstdDictionaries
    private let logger: Logger
    private let latency = Metrics.Timer(label: "telematics_alert_latency_seconds", preferredDisplayUnit: .milliseconds)
    private let published = Counter(label: "telematics_alerts_published_total")
    private let hvWarnRecords = Counter(label: "telematics_records_total", dimensions: [("kind", "\(MessageKind.hvWarnCall.name)")])

    /// Keeps this many latency samples in ``EmergencyStatistics``.
    static let latencySamples = 10_000

    /// A lane; its producer connects now, its consumer when it runs.
    public init(
        configuration: EmergencyLaneConfiguration, dictionaries: ZstdDictionaries, handler: @escaping AlertHandler,
        statistics: EmergencyStatistics = EmergencyStatistics(), logger: Logger = Logger(label: "telematics.emergency")
    ) throws(KafkaError) {
        var producerConfiguration = configuration.producer
        producerConfiguration.lingerMs = 0
        var configuration = configuration
        // A broker may hold an empty fetch up to fetch.wait.max.ms (the mock
        // cluster always does): the HV warn topic is small, so ask often.
        if configuration.consumer.properties["fetch.wait.max.ms"] == nil {
            configuration.consumer.properties["fetch.wait.max.ms"] = "10"
        }
        // librdkafka backs off reconnecting to a broker that stays away up
        // to reconnect.backoff.max.ms, 10 s by default: a broker back from a
        // restart would then wait that long for this lane. A call centre
        // should hear again within a second.
        let reconnect = "reconnect.backoff.max.ms"
        if configuration.consumer.properties[reconnect] == nil { configuration.consumer.properties[reconnect] = "1000" }
        if producerConfiguration.properties[reconnect] == nil { producerConfiguration.properties[reconnect] = "1000" }
        self.configuration = configuration
        self.producer = try KafkaProducer(configuration: producerConfiguration)
        self.handler = handler
        self.dictionaries = dictionaries
        self.statistics = statistics
        self.logger = logger
    }

    /// Takes over alerts the bulk lane found, at once: the returned task
    /// ends when they are stored (in one transaction) and the new ones
    /// published (it retries until then; it ends early only if cancelled).
    public func submit(_ alerts: [CallCentreAlert]) -> Task<Void, Never> {
        statistics.update { $0.handedOver += alerts.count }
        return Task(priority: .high) {
            // In small transactions: an HV warn call's alert, which the store
            // lets in first, then waits for one small one at most.
            for start in stride(from: 0, to: alerts.count, by: Self.handOverChunk) {
                let chunk = alerts[start..<min(start + Self.handOverChunk, alerts.count)]
                try? await self.handle(chunk.map { ($0, nil) })
            }
        }
    }

    /// Handed-over alerts stored per transaction.
    static let handOverChunk = 25

    /// Publishes an alert again (escalation: `escalated` set by the caller),
    /// retrying until Kafka has it.
    public func republish(_ alert: CallCentreAlert) async throws {
        try await deliver([message(alert)])
    }

    public func run() async throws {
        let topic = configuration.topics.ingress[.hvWarnCall] ?? MessageKind.hvWarnCall.defaultTopic
        // Offsets of finished batches, committed again after a failed or
        // overtaken commit; a revoke commits them before the partitions go.
        let durable = DurableOffsets()
        let consumer = try KafkaConsumer(configuration: configuration.consumer,
                                         rebalance: KafkaRebalanceHandler(onRevoke: { durable.take($0) }))
        try consumer.subscribe([topic])
        var repair = CommitRepair()
        do {
            try await producer.prepare(topics: [configuration.topics.alerts, configuration.topics.deadLetter] + configuration.topics.bulkIngress)
        } catch {
            logger.warning("output topics not looked up ahead", metadata: ["error": "\(error)"])
        }
        logger.info("emergency lane consuming", metadata: ["topic": "\(topic)", "group": "\(configuration.consumer.groupID)"])
        let decoder = RecordDecoder(dictionaries: dictionaries)
        var failure: (any Error)?
        do {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                if repair.check(consumer, durable: durable, logger: logger) { statistics.update { $0.recommits += 1 } }
                // Whatever is there at once; otherwise wait for one record,
                // which returns as soon as it arrives (a batch poll would wait
                // out its timeout for a full batch).
                var batch = try await consumer.poll(maxRecords: configuration.batchSize, timeoutMs: 0)
                if batch.isEmpty {
                    batch.release()
                    batch = try await consumer.poll(maxRecords: 1, timeoutMs: 100)
                }
                for error in batch.errors where error.code != .partitionEOF {
                    logger.warning("consumer", metadata: ["error": "\(error)"])
                }
                if batch.isEmpty {
                    batch.release()
                    continue
                }
                var alerts: [(CallCentreAlert, Int64?)] = []
                var others: [KafkaProducerMessage] = []
                var offsets = KafkaOffsetTracker()
                offsets.finished(batch)
                // After the poll: a revoke it served is counted in the ticket.
                let ticket = durable.ticket
                for record in batch {
                    do throws(WireError) {
                        let decoded = try decoder.decode(record.value, key: record.key ?? UnsafeRawBufferPointer(start: nil, count: 0))
                        if case .hvWarnCall(let call) = decoded.body {
                            alerts.append((CallCentreAlert(hvWarnCall: call, envelope: decoded.envelope), record.timestampMs))
                        } else {
                            // Not an emergency: on to its own topic, where the bulk lane reads it.
                            let kind = decoded.envelope.kind
                            others.append(KafkaProducerMessage(
                                topic: configuration.topics.ingress[kind] ?? kind.defaultTopic, key: record.key.map(Array.init),
                                value: Array(record.value), headers: record.headers))
                        }
                    } catch {
                        others.append(KafkaProducerMessage(
                            topic: configuration.topics.deadLetter, key: record.key.map(Array.init), value: Array(record.value),
                            headers: DeadLetter.headers(error: error, topic: record.topic, partition: record.partition, offset: record.offset)))
                        statistics.update { $0.rejected += 1 }
                        Counter(label: "telematics_rejected_total", dimensions: [("code", error.code.rawValue)]).increment()
                    }
                }
                let forwarded = others.filter { $0.topic != configuration.topics.deadLetter }.count
                batch.release()
                hvWarnRecords.increment(by: alerts.count)
                statistics.update {
                    $0.hvWarnCalls += alerts.count
                    $0.forwarded += forwarded
                }
                async let handled: Void = handle(alerts)
                try await deliver(others)
                try await handled
                do {
                    try consumer.commitInBackground(durable.record(offsets.offsets, ticket: ticket))
                } catch {
                    logger.warning("commit refused; records will be redelivered", metadata: ["error": "\(error)"])
                }
            }
        } catch {
            failure = error
        }
        await consumer.close()
        try? await producer.close(timeoutMs: 10_000)
        if let failure, !(failure is CancellationError) {
            logger.error("emergency lane stopped", metadata: ["error": "\(failure)"])
            throw failure
        }
        logger.info("emergency lane stopped")
    }

    /// Stores each alert through the handler and publishes the new ones;
    /// retries each step until it succeeds.
    private func handle(_ alerts: [(CallCentreAlert, Int64?)]) async throws {
        guard !alerts.isEmpty else { return }
        let isNew = try await retrying("store alerts") { try await self.handler(alerts.map(\.0)) }
        let fresh = zip(alerts, isNew).filter(\.1).map(\.0)
        statistics.update { $0.repeats += alerts.count - fresh.count }
        guard !fresh.isEmpty else { return }
        try await deliver(fresh.map { message($0.0) })
        published.increment(by: fresh.count)
        let now = wallClockMs()
        let samples = fresh.compactMap { $0.1.map { Double(max(0, now - $0)) } }
        for ms in samples { latency.recordNanoseconds(Int64(ms * 1_000_000)) }
        statistics.update { s in
            s.published += fresh.count
            s.latenciesMs += samples
            if s.latenciesMs.count > Self.latencySamples { s.latenciesMs.removeFirst(s.latenciesMs.count - Self.latencySamples) }
        }
    }

    private func message(_ alert: CallCentreAlert) -> KafkaProducerMessage {
        KafkaProducerMessage(topic: configuration.topics.alerts, key: Array(alert.vin.utf8), value: OutputEncoding.json(alert))
    }

    private var retry: RetryPolicy {
        RetryPolicy(initialMs: configuration.retryInitialMs, maximumMs: configuration.retryMaximumMs, logger: logger)
    }

    /// Sends `messages` and waits for Kafka to have every one; retries failures.
    private func deliver(_ messages: [KafkaProducerMessage]) async throws {
        try await retry.deliver(messages, with: producer) { statistics.update { $0.retries += 1 } }
    }

    private func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        try await retry.retrying(what, onFailure: { _ in self.statistics.update { $0.retries += 1 } }, body)
    }
}

/// Milliseconds since the epoch, by the wall clock (Kafka timestamps are wall-clock).
public func wallClockMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
