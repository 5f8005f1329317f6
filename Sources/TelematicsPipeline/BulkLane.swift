import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import TelematicsKafka
import TelematicsStores
import TelematicsWire

/// Topic names (WIRE.md's defaults, each configurable).
public struct PipelineTopics: Sendable, Hashable {
    /// The ingress topic of each kind.
    public var ingress: [MessageKind: String] = Dictionary(uniqueKeysWithValues: MessageKind.allCases.map { ($0, $0.defaultTopic) })
    public var alerts = "callcentre.alerts"
    public var probes = "traffic.probes"
    public var deadLetter = "telematics.dlq"

    public init() {}

    /// Every ingress topic, sorted.
    public var allIngress: [String] { Set(ingress.values).sorted() }
    /// The ingress topics but the HV warn calls' (the emergency lane's), sorted.
    public var bulkIngress: [String] { Set(ingress.filter { $0.key != .hvWarnCall }.values).sorted() }
    /// Every topic the pipeline reads or writes.
    public var all: [String] { Set(allIngress + [alerts, probes, deadLetter]).sorted() }
}

/// How the bulk lane runs.
public struct PipelineConfiguration: Sendable {
    public var consumer: KafkaConsumerConfiguration
    public var producer: KafkaProducerConfiguration
    public var topics = PipelineTopics()
    /// Most records per poll, and so per store transaction. A poll returns
    /// with what has arrived within its timeout, so only a lane that is
    /// behind fills its batches; large ones then write each hot page once
    /// per transaction (README: 2,000 -> 10,000 took SQLite from 38,700 to
    /// 56,400 records/s).
    public var batchSize = 10_000
    /// Threads that route a polled batch, each the records of its share of
    /// the vehicles (so one vehicle's records stay in order, in one
    /// shard): by default one per core but the one the store's writes take,
    /// at most 8.
    public var routingThreads = PipelineConfiguration.defaultRoutingThreads
    /// ``routingThreads`` unless configured: the machine's cores less one.
    public static var defaultRoutingThreads: Int {
        min(8, max(1, ProcessInfo.processInfo.activeProcessorCount - 1))
    }
    /// Vehicles whose consent state the lane keeps in memory, all routing
    /// threads together (``ConsentBook``): about 100 bytes each. A vehicle
    /// not seen for a while is forgotten, once what it last changed is
    /// durable, and its state is loaded from the store when it comes again.
    public var consentCacheVehicles = 1_000_000
    /// Batches routed but not yet durable before consumption pauses
    /// (backpressure: memory stays bounded when a store falls behind).
    public var batchesInFlight = 2
    /// How long the lane waits for a store that is behind before it pauses
    /// its partitions (a pause drops the client's prefetched records).
    public var pauseAfterMs = 500
    /// First and longest wait between retries of a store or Kafka write.
    public var retryInitialMs = 100
    public var retryMaximumMs = 5_000

    public init(consumer: KafkaConsumerConfiguration, producer: KafkaProducerConfiguration) {
        self.consumer = consumer
        self.producer = producer
    }
}

/// Running totals of a pipeline, safe to read from any thread (progress
/// display, tests, metrics).
public final class PipelineStatistics: Sendable {
    /// A copy of the totals.
    public struct Snapshot: Sendable {
        public var tally = BatchTally()
        public var store = StoreBatchResult()
        public var batches = 0
        public var inFlight = 0
        public var paused = false
        public var storeRetries = 0
        /// Background commits the group refused or that failed, commits
        /// accepted after a later one (``KafkaConsumer/commitsOvertaken``),
        /// and how often the lane committed its durable offsets again after one.
        public var commitsFailed = 0
        public var commitsOvertaken = 0
        public var recommits = 0
        public var lastStoreMs = 0.0
        public var lastError: String?
        /// Records whose effects are durable and whose offsets were committed.
        public var committedRecords = 0
        /// Records in the assigned partitions not yet consumed (refreshed every few seconds).
        public var lag: Int64?
        /// Partitions this member owns now (0 until the group has assigned some).
        public var assignedPartitions = 0
        /// When the first record was polled and when the last commit finished.
        public var firstRecordAt: ContinuousClock.Instant?
        public var lastCommitAt: ContinuousClock.Instant?

        /// Records per second from the first record polled to the last commit.
        public var committedPerSecond: Double? {
            guard let first = firstRecordAt, let last = lastCommitAt, last > first else { return nil }
            let d = (last - first).components
            return Double(committedRecords) / (Double(d.seconds) + Double(d.attoseconds) / 1e18)
        }
    }

    private let state = Mutex(Snapshot())
    public init() {}

    /// The totals now.
    public var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ body: (inout Snapshot) -> Void) { state.withLock { body(&$0) } }
}

/// The bulk lane: consumes the ingress topics in one consumer group, decodes
/// and routes each batch by RULES.md, writes its effects to the store in one
/// transaction, publishes its messages (alerts, hazards, dead letters) and
/// commits its offsets only when all of that is durable.
///
/// Routing of batch N+1 overlaps the store write of batch N; when
/// ``PipelineConfiguration/batchesInFlight`` batches are waiting, the lane
/// pauses its partitions instead of buffering more. On graceful shutdown it
/// stops polling, makes the batches in flight durable, commits and leaves.
public final class BulkLane: Service, Sendable {
    public let configuration: PipelineConfiguration
    public let statistics: PipelineStatistics
    private let store: any TelematicsStore
    private let dictionaries: ZstdDictionaries
    private let secrets: PipelineSecrets
    private let logger: Logger
    /// The newest durable offset per partition: what the revoke hook and the
    /// final commit commit.
    private let durable = DurableOffsets()
    /// The emergency lane, if any: it then reads the HV warn topic, and the
    /// bulk lane hands it the alerts it finds.
    private let emergency: EmergencyLane?
    private let storeLatency = Metrics.Timer(label: "telematics_store_batch_seconds", preferredDisplayUnit: .milliseconds)
    private let lagGauge = Gauge(label: "telematics_consumer_lag")

    public init(configuration: PipelineConfiguration, store: any TelematicsStore, dictionaries: ZstdDictionaries,
                secrets: PipelineSecrets, statistics: PipelineStatistics = PipelineStatistics(),
                emergency: EmergencyLane? = nil, logger: Logger = Logger(label: "telematics.bulk")) {
        self.emergency = emergency
        self.configuration = configuration
        self.store = store
        self.dictionaries = dictionaries
        self.secrets = secrets
        self.statistics = statistics
        self.logger = logger
    }

    public func run() async throws {
        let statistics = self.statistics
        let durable = self.durable
        // Batches are committed in the background as they become durable; a
        // revoke commits the durable offsets of the partitions it takes, at
        // once and synchronously, so the next owner starts right after them.
        let rebalance = KafkaRebalanceHandler(
            onAssign: { partitions in statistics.update { $0.assignedPartitions += partitions.count } },
            onRevoke: { partitions in
                statistics.update { $0.assignedPartitions = max(0, $0.assignedPartitions - partitions.count) }
                return durable.take(partitions)
            })
        let consumer = try KafkaConsumer(configuration: configuration.consumer, rebalance: rebalance)
        let producer = try KafkaProducer(configuration: configuration.producer)
        // Outputs look up their topics now, while the group forms, not when
        // the first batch waits for them.
        do {
            try await producer.prepare(topics: [configuration.topics.alerts, configuration.topics.probes, configuration.topics.deadLetter])
        } catch {
            logger.warning("output topics not looked up ahead", metadata: ["error": "\(error)"])
        }
        // With an emergency lane, the HV warn topic is its alone.
        let topics = emergency == nil ? configuration.topics.allIngress : configuration.topics.bulkIngress
        try consumer.subscribe(topics)
        logger.info("bulk lane consuming", metadata: ["topics": "\(topics.joined(separator: ","))", "group": "\(configuration.consumer.groupID)"])
        let (batches, queue) = AsyncStream<PreparedBatch>.makeStream()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await prepared in batches {
                        try await self.makeDurable(prepared, producer: producer, consumer: consumer)
                    }
                }
                // Lag is asked of the brokers apart from polling (one round trip per partition).
                let polling = Atomic<Bool>(true)
                group.addTask {
                    // Partitions this member reported: one it no longer owns reads 0
                    // here, so the group's lag per partition is the maximum over members.
                    var reported: Set<KafkaTopicPartition> = []
                    while polling.load(ordering: .relaxed) {
                        if let lag = try? await consumer.lag(fresh: false) {
                            let total = lag.values.reduce(0, +)
                            self.statistics.update { $0.lag = total }
                            self.lagGauge.record(total)
                            for partition in reported.union(lag.keys) {
                                Gauge(label: "telematics_consumer_partition_lag",
                                      dimensions: [("topic", partition.topic), ("partition", "\(partition.partition)")])
                                    .record(lag[partition] ?? 0)
                            }
                            reported.formUnion(lag.keys)
                        }
                        for _ in 0..<20 where polling.load(ordering: .relaxed) { try? await Task.sleep(for: .milliseconds(100)) }
                    }
                }
                defer {
                    queue.finish()
                    polling.store(false, ordering: .relaxed)
                }
                try await self.pollLoop(consumer, into: queue)
                queue.finish()
                polling.store(false, ordering: .relaxed)
                try await group.waitForAll()
            }
        } catch {
            logger.error("bulk lane stopped", metadata: ["error": "\(error)"])
            await consumer.close()
            try? await producer.close(timeoutMs: 10_000)
            throw error
        }
        // Everything durable, committed and waited for before leaving.
        let last = durable.all
        do {
            try await consumer.commit(last)
        } catch {
            logger.warning("final commit refused; the last records will be redelivered", metadata: ["error": "\(error)"])
        }
        await consumer.close()
        try? await producer.close(timeoutMs: 10_000)
        logger.info("bulk lane stopped after draining", metadata: ["committed": "\(statistics.snapshot.committedRecords)"])
    }

    /// Polls and routes until shutdown; pauses while too many batches wait.
    private func pollLoop(_ consumer: KafkaConsumer, into queue: AsyncStream<PreparedBatch>.Continuation) async throws {
        // A router per shard of the vehicles, each on a thread of its own:
        // routing a batch is some milliseconds of work without a suspension
        // point, so it never holds a thread of the cooperative pool, where
        // the emergency lane's tasks must run at once.
        let shards = max(1, configuration.routingThreads)
        let routers = (0..<shards).map { _ in
            BatchRouter(dictionaries: dictionaries, topics: configuration.topics, secrets: secrets, emergency: emergency,
                        consentCapacity: configuration.consentCacheVehicles / shards)
        }
        var routed = 0
        let durableBefore = statistics.snapshot.batches
        var repair = CommitRepair()
        let threads = (0..<shards).map { BlockingThread(name: "telematics-route-\($0)") }
        defer { for thread in threads { thread.stop() } }
        var paused = Set<KafkaTopicPartition>()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // A store a little behind is waited for without pausing: a pause
            // drops the client's prefetched records, and fetching them again
            // costs more than the wait. Only a store that stays behind (down,
            // or far slower) pauses the partitions; polling then goes on
            // serving the group. librdkafka's prefetch queue is bounded on
            // its own (queued.max.messages.kbytes), so memory stays bounded.
            var waited = 0
            while statistics.snapshot.inFlight >= configuration.batchesInFlight, waited < configuration.pauseAfterMs,
                  !Task.isShuttingDownGracefully, !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(2))
                waited += 2
            }
            let waiting = statistics.snapshot.inFlight
            if waiting >= configuration.batchesInFlight {
                // Also partitions a rebalance assigned since the pause began.
                let assigned = Set(consumer.assignment)
                let fresh = assigned.subtracting(paused)
                if !fresh.isEmpty {
                    try? consumer.pause(Array(fresh))
                    if paused.isEmpty { logger.debug("paused: store behind", metadata: ["in_flight": "\(waiting)"]) }
                    paused = assigned
                    statistics.update { $0.paused = true }
                }
            } else if !paused.isEmpty {
                // Partitions revoked meanwhile are no longer ours to resume.
                try? consumer.resume(Array(paused.intersection(consumer.assignment)))
                paused = []
                statistics.update { $0.paused = false }
            }
            // Polling goes on while paused: it keeps the group membership and
            // serves rebalances; paused partitions deliver nothing new.
            let batch = try await consumer.poll(maxRecords: configuration.batchSize, timeoutMs: paused.isEmpty ? 100 : 50)
            for error in batch.errors where error.code != .partitionEOF {
                logger.warning("consumer", metadata: ["error": "\(error)"])
            }
            if repair.check(consumer, durable: durable, logger: logger) {
                statistics.update {
                    ($0.commitsFailed, $0.commitsOvertaken) = repair.seen
                    $0.recommits += 1
                }
            }
            if batch.isEmpty {
                if !paused.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
                continue
            }
            if statistics.snapshot.firstRecordAt == nil {
                let now = ContinuousClock.now
                statistics.update { $0.firstRecordAt = now }
            }
            // After the poll: a revoke it served is counted in the ticket.
            let ticket = durable.ticket
            // Batches become durable in order: the first `batches` of those
            // routed are. The ticket counts the revocations so far.
            let durableBatches = statistics.snapshot.batches - durableBefore
            for router in routers { router.beginBatch(routed, durableBatches: durableBatches, revocations: ticket) }
            routed += 1
            var prepared = try await route(batch, routers: routers, threads: threads)
            prepared.ticket = ticket
            batch.release()
            statistics.update { $0.inFlight += 1 }
            queue.yield(prepared)
        }
    }

    /// Routes `batch`: each router takes the records of its vehicles (by a
    /// hash of the VIN, so a vehicle's records keep their order in one
    /// shard and its consent state lives in one router), on its thread, and
    /// the shards are joined in shard order. Consent states not known yet
    /// are loaded first, in one query.
    private func route(_ batch: KafkaMessageBatch, routers: [BatchRouter], threads: [BlockingThread]) async throws -> PreparedBatch {
        let shards = routers.count
        // Records whose envelope has no readable VIN go to shard 0 (to be dead-lettered there).
        var members = [[Int]](repeating: [], count: shards)
        for i in batch.indices {
            let shard = shards == 1 ? 0 : VIN(peekingAt: batch[i].value).map { Int(UInt(bitPattern: $0.hashValue) % UInt(shards)) } ?? 0
            members[shard].append(i)
        }
        let unknown = (0..<shards).map { shard in routers[shard].unknownVINs(in: members[shard].lazy.map { batch[$0] }) }
        let all = unknown.flatMap { $0 }
        if !all.isEmpty {
            let loaded = try await retrying("load consent") { try await self.store.consent(for: all) }
            for (router, vins) in zip(routers, unknown) where !vins.isEmpty {
                let mine = Set(vins)
                router.warmConsent(vins, loaded: loaded.filter { mine.contains($0.key) })
            }
        }
        let parts = await withTaskGroup(of: (Int, PreparedBatch).self) { group in
            for shard in 0..<shards {
                let router = routers[shard], indices = members[shard], thread = threads[shard]
                group.addTask { (shard, await thread.perform { router.route(indices.lazy.map { batch[$0] }) }) }
            }
            var parts = [PreparedBatch?](repeating: nil, count: shards)
            for await (shard, part) in group { parts[shard] = part }
            return parts.compactMap { $0 }
        }
        return await threads[0].perform {
            var prepared = parts[0]
            // Counters add up with the rest (each shard's are its tally's).
            for part in parts.dropFirst() { prepared.append(contentsOf: part) }
            prepared.store.prepareProbes()
            return prepared
        }
    }

    /// Store transaction and publications (at the same time), then the commit.
    private func makeDurable(_ prepared: PreparedBatch, producer: KafkaProducer, consumer: KafkaConsumer) async throws {
        async let published: Void = publish(prepared.outputs, producer: producer)
        let started = ContinuousClock.now
        let result = prepared.store.isEmpty ? StoreBatchResult() : try await retrying("store batch") { try await self.store.apply(prepared.store) }
        let elapsedDuration = ContinuousClock.now - started
        storeLatency.recordNanoseconds(elapsedDuration.components.seconds * 1_000_000_000 + elapsedDuration.components.attoseconds / 1_000_000_000)
        let elapsed = elapsedDuration.components
        let storeMs = Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
        try await published
        for alert in prepared.handedOver { await alert.value }
        // A synchronous commit would wait behind the consumer's long-polling
        // fetch on the same broker connection (up to fetch.wait.max.ms per
        // batch), so the commit goes out in the background. A refused one
        // (partitions lost in a rebalance) means redelivery, which the
        // idempotent writes absorb; the revoke hook and the final commit
        // commit the durable offsets synchronously.
        let current = durable.record(prepared.processedOffsets, ticket: prepared.ticket)
        do {
            if !current.isEmpty { try consumer.commitInBackground(current) }
        } catch {
            logger.warning("commit refused; records will be redelivered", metadata: ["error": "\(error)"])
        }
        prepared.tally.exportMetrics()
        statistics.update { s in
            s.tally.add(prepared.tally)
            s.store.add(result)
            s.batches += 1
            s.inFlight -= 1
            s.lastStoreMs = storeMs
            s.committedRecords += prepared.tally.records
            s.lastCommitAt = .now
        }
    }

    private var retry: RetryPolicy {
        RetryPolicy(initialMs: configuration.retryInitialMs, maximumMs: configuration.retryMaximumMs, logger: logger)
    }

    /// Publishes and waits for every message (retrying; never dropped).
    private func publish(_ messages: [KafkaProducerMessage], producer: KafkaProducer) async throws {
        try await retry.deliver(messages, with: producer)
    }

    /// Runs `body` until it succeeds; a store that is down pauses the lane.
    private func retrying<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        try await retry.retrying(what, onFailure: { error in
            self.statistics.update { s in
                s.storeRetries += 1
                s.lastError = "\(what): \(error)"
            }
        }, body)
    }
}

/// The newest durable offset per partition, shared with the revoke hook.
///
/// A batch polled before a revoke of some of its partitions may become
/// durable after it: its offsets of those partitions are stale (the next
/// owner may have committed further meanwhile) and must not be recorded or
/// committed, or the group's offset would move back. Each batch carries the
/// revocation count of when it was polled (``ticket``); ``record(_:ticket:)``
/// drops offsets of partitions revoked since.
final class DurableOffsets: Sendable {
    private struct State {
        var offsets: [KafkaTopicPartition: KafkaProcessedOffset] = [:]
        var revocations = 0
        /// The revocation that last took each partition.
        var revokedAt: [KafkaTopicPartition: Int] = [:]
    }
    private let state = Mutex(State())

    /// What a batch polled now carries to ``record(_:ticket:)``.
    var ticket: Int { state.withLock { $0.revocations } }

    /// Notes offsets whose records are durable (newer batches come later),
    /// but not those of partitions revoked after the batch's `ticket`;
    /// returns the offsets noted (the ones to commit).
    func record(_ processed: [KafkaProcessedOffset], ticket: Int) -> [KafkaProcessedOffset] {
        state.withLock { s in
            processed.filter { o in
                let partition = KafkaTopicPartition(topic: o.topic, partition: o.partition)
                guard (s.revokedAt[partition] ?? Int.min) <= ticket else { return false }
                s.offsets[partition] = o
                return true
            }
        }
    }

    /// Removes and returns the offsets of `partitions` (they are being revoked).
    func take(_ partitions: [KafkaTopicPartition]) -> [KafkaProcessedOffset] {
        state.withLock { s in
            s.revocations += 1
            for p in partitions { s.revokedAt[p] = s.revocations }
            return partitions.compactMap { s.offsets.removeValue(forKey: $0) }
        }
    }

    /// Every partition's newest durable offset.
    var all: [KafkaProcessedOffset] { state.withLock { Array($0.offsets.values) } }
}

extension StoreBatchResult {
    /// Adds another batch's counts to these.
    mutating func add(_ other: StoreBatchResult) {
        consentsApplied += other.consentsApplied
        consentsIgnored += other.consentsIgnored
        sessionsDeletedByConsent += other.sessionsDeletedByConsent
        callsInserted += other.callsInserted
        callsAlreadyPresent += other.callsAlreadyPresent
        vehicleStatesUpdated += other.vehicleStatesUpdated
        casesOpened += other.casesOpened
        casesUpdated += other.casesUpdated
        casesClosed += other.casesClosed
        sessionsInserted += other.sessionsInserted
        sessionsAlreadyPresent += other.sessionsAlreadyPresent
        probePointsInserted += other.probePointsInserted
        probePointsAlreadyPresent += other.probePointsAlreadyPresent
    }
}
