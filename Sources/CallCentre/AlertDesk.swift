import Logging
import Metrics
import ServiceLifecycle
import TelematicsStores

/// The call centre's desk: every alert the pipeline reads passes here.
///
/// It stores each alert durably (``AlertStore``) before the caller publishes
/// it and commits its offset, keeps one alert per (VIN, event) so a repeat
/// updates the alert instead of paging again, records acknowledgements,
/// escalates alerts nobody acknowledged in time (re-published with
/// `escalated: true`), purges alerts past retention, and tells the console's
/// live subscribers about every change.
///
/// Time comes from `clock` (ms since the epoch), so tests drive escalation
/// without waiting.
public actor AlertDesk {
    /// RULES.md: stored alert data is deleted six months after the event.
    public static let retentionMs: Int64 = 183 * 24 * 3_600_000

    /// Where the alerts are kept.
    public nonisolated let store: any AlertStore
    /// How long an alert may stay unacknowledged before it is escalated (ms).
    public nonisolated let escalateAfterMs: Int64
    private let clock: @Sendable () -> Int64
    private let publish: @Sendable (AlertRecord) async throws -> Void
    private let logger: Logger
    private let metrics: DeskMetrics
    private var subscribers: [Int: AsyncStream<AlertRecord>.Continuation] = [:]
    private var nextSubscriber = 0
    /// Escalated alerts whose publish failed, to try again.
    private var unpublished: [AlertRecord] = []
    /// What subscribers were last told of each recently changed alert (``followStore(windowMs:)``).
    private var shown: [String: Shown] = [:]

    /// A desk over `store`.
    ///
    /// - Parameters:
    ///   - escalateAfterMs: the escalation time (RULES.md: 60 s by default).
    ///   - clock: the time now, ms since the epoch.
    ///   - publish: sends an escalated alert (payload `escalated: true`) to
    ///     `callcentre.alerts`; new alerts are published by the caller.
    ///   - metrics: where the desk's counters go (the process's
    ///     `MetricsSystem` by default; tests pass a registry of their own).
    public init(
        store: some AlertStore,
        escalateAfterMs: Int64 = 60_000,
        clock: @escaping @Sendable () -> Int64,
        publish: @escaping @Sendable (AlertRecord) async throws -> Void,
        metrics: any MetricsFactory = MetricsSystem.factory,
        logger: Logger = Logger(label: "telematics.callcentre")
    ) {
        self.store = store
        self.escalateAfterMs = escalateAfterMs
        self.clock = clock
        self.publish = publish
        self.metrics = DeskMetrics(factory: metrics)
        self.logger = logger
    }

    /// The time now by the desk's clock (ms since the epoch).
    public nonisolated func now() -> Int64 { clock() }

    /// Stores a received alert and tells subscribers of a new or updated one.
    /// The caller publishes a ``AlertUpsert/new(_:)`` alert (and only that:
    /// a repeat does not page twice), then commits the record's offset.
    public func receive(_ alert: CallCentreAlert) async throws(StoreError) -> AlertUpsert {
        try await receive([alert])[0]
    }

    /// Several alerts at once, stored in one transaction; outcomes in order.
    public func receive(_ alerts: [CallCentreAlert]) async throws(StoreError) -> [AlertUpsert] {
        let outcomes = try await store.upsert(alerts, receivedAtMs: clock())
        for outcome in outcomes { note(outcome) }
        return outcomes
    }

    private func note(_ outcome: AlertUpsert) {
        switch outcome {
        case .new(let r):
            metrics.received(r.alert.priority).increment()
            notify(r)
        case .updated(let r):
            metrics.repeats.increment()
            notify(r)
        case .unchanged:
            metrics.repeats.increment()
        }
    }

    /// Records that `agent` acknowledged the alert (the first acknowledgement
    /// wins); the record, nil when there is no such alert.
    public func acknowledge(id: String, by agent: String) async throws(StoreError) -> AlertRecord? {
        let before = try await store.alert(id: id)
        guard let before else { return nil }
        guard before.isOpen else { return before }
        let record = try await store.acknowledge(id: id, by: agent, atMs: clock())
        if let record {
            metrics.acknowledged.increment()
            if record.acknowledgedBy == agent, let at = record.acknowledgedAtMs {
                metrics.timeToAcknowledge.recordMilliseconds(max(0, at - record.receivedAtMs))
            }
            notify(record)
        }
        return record
    }

    /// Escalates every open alert first received at least `escalateAfterMs`
    /// ago and not escalated yet: marks it in the store (which refuses an
    /// alert acknowledged meanwhile, so an acknowledged alert never
    /// escalates), tells subscribers, and publishes it with `escalated:
    /// true`, then notes the publication in the store. The store is the
    /// outbox: a publish that fails is tried again on the next round (the
    /// desk keeps it in memory); one left unpublished by a desk that stopped
    /// (a crash between the mark and the publish) or by another desk is
    /// published once it is ``orphanedEscalationMs`` old. At least once:
    /// a crash after a publish and before its note publishes it again. A
    /// store error is logged and the alert looked at again on the next
    /// round. The records escalated now.
    @discardableResult
    public func escalateDue() async -> [AlertRecord] {
        let now = clock()
        var escalated: [AlertRecord] = []
        do {
            for candidate in try await store.unacknowledgedOlderThan(receivedBeforeMs: now - escalateAfterMs + 1) {
                guard let record = try await store.markEscalated(id: candidate.id, atMs: now) else { continue }
                escalated.append(record)
                metrics.escalated.increment()
                logger.warning("alert escalated", metadata: ["alert": "\(record.id)", "priority": "\(record.alert.priority)"])
                notify(record)
                unpublished.append(record)
            }
        } catch {
            logger.error("cannot escalate alerts", metadata: ["error": "\(error)"])
        }
        do {
            let known = Set(unpublished.map(\.id))
            let orphans = try await store.unpublishedEscalations(escalatedAtOrBeforeMs: now - Self.orphanedEscalationMs, limit: 100)
            for record in orphans where !known.contains(record.id) {
                logger.warning("publishing an escalation left unpublished", metadata: ["alert": "\(record.id)"])
                unpublished.append(record)
            }
        } catch {
            logger.error("cannot look for unpublished escalations", metadata: ["error": "\(error)"])
        }
        var failed: [AlertRecord] = []
        for record in unpublished {
            do {
                try await publish(record)
            } catch {
                logger.error("cannot publish escalated alert", metadata: ["alert": "\(record.id)", "error": "\(error)"])
                failed.append(record)
                continue
            }
            do {
                try await store.markEscalationPublished(id: record.id, atMs: clock())
            } catch {
                // Published: found again as an orphan later, and published once more.
                logger.error("cannot note an escalation published", metadata: ["alert": "\(record.id)", "error": "\(error)"])
            }
        }
        unpublished = failed
        return escalated
    }

    /// How long an escalation may wait unpublished in the store before any
    /// desk publishes it: well past a round (a second), so that a live
    /// desk's own publication is rarely doubled by another's.
    public static let orphanedEscalationMs: Int64 = 10_000

    /// Runs ``escalateDue()`` and ``followStore(windowMs:)`` every `interval`, and ``purge(olderThanMs:)``
    /// (six months) at start and every `purgeInterval` (never when nil: a
    /// retention job of its own deletes them), until the task is cancelled
    /// (or, inside a service group, shut down gracefully).
    public func runEscalations(every interval: Duration = .seconds(1), purgeEvery purgeInterval: Duration? = .seconds(3_600)) async {
        var lastPurge: ContinuousClock.Instant?
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await escalateDue()
            await followStore()
            // Retention runs with escalation: at start, then every purgeInterval.
            if let purgeInterval, lastPurge.map({ ContinuousClock.now - $0 >= purgeInterval }) ?? true {
                lastPurge = .now
                do {
                    let purged = try await purge()
                    if purged > 0 { logger.notice("alerts past retention deleted", metadata: ["count": "\(purged)"]) }
                } catch {
                    logger.error("cannot delete alerts past retention", metadata: ["error": "\(error)"])
                }
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
        }
    }

    /// Deletes the alerts whose event was recorded more than `olderThanMs`
    /// ago (six months by default); how many.
    @discardableResult
    public func purge(olderThanMs: Int64 = AlertDesk.retentionMs) async throws(StoreError) -> Int {
        let deleted = try await store.deleteAlerts(recordedBeforeMs: clock() - olderThanMs)
        metrics.purged.increment(by: deleted)
        return deleted
    }

    /// A stream of every alert change (new, updated, acknowledged,
    /// escalated), from now on, until the consumer stops iterating. Keeps the
    /// newest `buffer` changes for a slow consumer.
    public func updates(buffer: Int = 256) -> AsyncStream<AlertRecord> {
        let (stream, continuation) = AsyncStream.makeStream(of: AlertRecord.self, bufferingPolicy: .bufferingNewest(buffer))
        let key = nextSubscriber
        nextSubscriber += 1
        subscribers[key] = continuation
        metrics.subscribers.record(subscribers.count)
        continuation.onTermination = { [weak self] _ in
            Task { await self?.unsubscribe(key) }
        }
        return stream
    }

    private func unsubscribe(_ key: Int) {
        subscribers[key] = nil
        metrics.subscribers.record(subscribers.count)
    }

    private func notify(_ record: AlertRecord) {
        shown[record.id] = Shown(record)
        for continuation in subscribers.values { continuation.yield(record) }
    }

    /// The state of an alert last told to subscribers.
    private struct Shown: Equatable {
        var updates: Int
        var acknowledgedAtMs: Int64?
        var escalatedAtMs: Int64?
        /// When it last changed, for forgetting.
        var changedAtMs: Int64
        init(_ r: AlertRecord) {
            updates = r.updates
            acknowledgedAtMs = r.acknowledgedAtMs
            escalatedAtMs = r.escalatedAtMs
            changedAtMs = max(r.updatedAtMs, r.acknowledgedAtMs ?? 0, r.escalatedAtMs ?? 0)
        }
        func same(as other: Shown) -> Bool {
            updates == other.updates && acknowledgedAtMs == other.acknowledgedAtMs && escalatedAtMs == other.escalatedAtMs
        }
    }

    /// Tells subscribers what other desks sharing the store changed (several
    /// pipeline instances on one PostgreSQL: each desk receives the alerts
    /// of its own partitions, and every console must show them all): the
    /// alerts changed in the last `windowMs` (a margin for clocks and commit
    /// delays) that this desk has not shown in that state. Runs with
    /// escalation, every second. How many it told.
    @discardableResult
    public func followStore(windowMs: Int64 = 10_000) async -> Int {
        let since = clock() - windowMs
        var told = 0
        do {
            for record in try await store.alerts(changedSinceMs: since, limit: 1_000) {
                if let seen = shown[record.id], seen.same(as: Shown(record)) { continue }
                notify(record)
                told += 1
            }
        } catch {
            logger.error("cannot read other desks' alert changes", metadata: ["error": "\(error)"])
        }
        // Forget what is older than the window: it will not be read again.
        shown = shown.filter { $0.value.changedAtMs >= since - windowMs }
        return told
    }
}

/// Escalation and retention as a service-lifecycle `Service`:
/// ``AlertDesk/runEscalations(every:purgeEvery:)``.
public struct EscalationService: Service {
    /// The desk.
    public let desk: AlertDesk
    /// How often to look for due alerts.
    public let interval: Duration
    /// How often to purge alerts past six months; nil when another job does.
    public let purgeInterval: Duration?

    /// Escalates `desk`'s due alerts every `interval`, purges every `purgeInterval`.
    public init(desk: AlertDesk, interval: Duration = .seconds(1), purgeEvery purgeInterval: Duration? = .seconds(3_600)) {
        self.desk = desk
        self.interval = interval
        self.purgeInterval = purgeInterval
    }

    public func run() async throws {
        await desk.runEscalations(every: interval, purgeEvery: purgeInterval)
    }
}

/// The desk's metrics (swift-metrics; exported by the console's /metrics).
struct DeskMetrics: Sendable {
    let p0: Counter
    let p1: Counter
    let other: Counter
    let repeats: Counter
    let acknowledged: Counter
    let escalated: Counter
    let purged: Counter
    let timeToAcknowledge: Metrics.Timer
    let subscribers: Gauge

    init(factory: any MetricsFactory) {
        p0 = Counter(label: "callcentre_alerts_received_total", dimensions: [("priority", "P0")], factory: factory)
        p1 = Counter(label: "callcentre_alerts_received_total", dimensions: [("priority", "P1")], factory: factory)
        other = Counter(label: "callcentre_alerts_received_total", dimensions: [("priority", "other")], factory: factory)
        repeats = Counter(label: "callcentre_alert_repeats_total", factory: factory)
        acknowledged = Counter(label: "callcentre_alerts_acknowledged_total", factory: factory)
        escalated = Counter(label: "callcentre_alerts_escalated_total", factory: factory)
        purged = Counter(label: "callcentre_alerts_purged_total", factory: factory)
        timeToAcknowledge = Metrics.Timer(label: "callcentre_time_to_acknowledge", factory: factory)
        subscribers = Gauge(label: "callcentre_console_subscribers", factory: factory)
    }

    func received(_ priority: String) -> Counter {
        switch priority {
        case "P0": p0
        case "P1": p1
        default: other
        }
    }
}
