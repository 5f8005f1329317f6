import Foundation
import Logging
import ServiceLifecycle
import TelematicsStores

/// What one retention pass deleted (or, dry, would delete), per store and rule.
public struct RetentionReport: Sendable {
    /// One rule of one store.
    public struct Line: Sendable, Hashable {
        /// "pipeline" (maintenance, charging and traffic) or "alerts".
        public var store: String
        /// The store rule (`raw-probes`, ...) or `hv-alerts`.
        public var rule: String
        /// The configured period it applies.
        public var period: RetentionPolicy.Period
        /// Rows older than this (ms since the epoch) expired.
        public var cutoffMs: Int64
        /// Rows deleted, or that would be.
        public var rows: Int
    }

    /// Whether nothing was deleted (only counted).
    public var dryRun: Bool
    /// The pass's clock reading.
    public var nowMs: Int64
    /// Every rule, in order.
    public var lines: [Line] = []

    /// Rows over all lines.
    public var total: Int { lines.reduce(0) { $0 + $1.rows } }

    /// The report as JSON Lines: one object per rule, then a total.
    public var jsonLines: [JSON] {
        lines.map { line in
            .object([
                ("store", .string(line.store)), ("rule", .string(line.rule)), ("period", .string(line.period.rawValue)),
                ("cutoff_ms", .int(line.cutoffMs)), (dryRun ? "would_delete" : "deleted", .int(line.rows)),
            ])
        } + [.object([("total", .int(total)), ("dry_run", .bool(dryRun)), ("now_ms", .int(nowMs))])]
    }
}

/// Deletes what RULES.md says must go, from the pipeline's store and the
/// call centre's alert store, in bounded batches: each batch is one short
/// transaction, with a pause after it, so ingestion keeps the store most of
/// the time. Runs inside `telematics run` on a schedule
/// (``RetentionService``) and as `telematics retention run`.
public struct RetentionJob: Sendable {
    public let store: any TelematicsStore
    public let alerts: (any AlertStore)?
    public let policy: RetentionPolicy
    /// Rows per delete transaction.
    public var batchSize = 2_000
    /// Pause after each full batch: room for the ingestion's transactions.
    public var pause: Duration = .milliseconds(20)
    /// The clock (ms since the epoch); injectable for tests.
    public let now: @Sendable () -> Int64

    public init(store: any TelematicsStore, alerts: (any AlertStore)?, policy: RetentionPolicy, now: @escaping @Sendable () -> Int64) {
        self.store = store
        self.alerts = alerts
        self.policy = policy
        self.now = now
    }

    /// One pass over every rule. `progress` sees each rule as it finishes.
    public func run(dryRun: Bool, progress: (@Sendable (RetentionReport.Line) -> Void)? = nil) async throws(StoreError) -> RetentionReport {
        let nowMs = now()
        var report = RetentionReport(dryRun: dryRun, nowMs: nowMs)
        for period in RetentionPolicy.Period.allCases {
            let cutoff = nowMs - policy[period]
            for rule in period.rules {
                var rows = 0
                if dryRun {
                    rows = try await store.countExpired(rule, before: cutoff)
                } else {
                    while true {
                        let deleted = try await store.sweep(rule, before: cutoff, limit: batchSize)
                        rows += deleted
                        if deleted < batchSize { break }
                        try? await Task.sleep(for: pause)
                    }
                }
                let line = RetentionReport.Line(store: "pipeline", rule: rule.rawValue, period: period, cutoffMs: cutoff, rows: rows)
                report.lines.append(line)
                progress?(line)
            }
            if period == .hvAlerts, let alerts {
                let rows = dryRun
                    ? try await alerts.countAlerts(recordedBeforeMs: cutoff)
                    : try await alerts.deleteAlerts(recordedBeforeMs: cutoff, batch: batchSize)
                let line = RetentionReport.Line(store: "alerts", rule: period.rawValue, period: period, cutoffMs: cutoff, rows: rows)
                report.lines.append(line)
                progress?(line)
            }
        }
        return report
    }
}

/// The retention job on a schedule inside `telematics run`: the first pass
/// `firstAfter` the start (a restart loop does not sweep on every start, and
/// starting stays quick), then every `interval`. A failed pass is logged and
/// tried again at the next interval; it never stops the pipeline.
public struct RetentionService: Service {
    public let job: RetentionJob
    public let firstAfter: Duration
    public let interval: Duration
    let logger = Logger(label: "telematics.retention")

    public init(job: RetentionJob, firstAfter: Duration, interval: Duration) {
        self.job = job
        self.firstAfter = firstAfter
        self.interval = interval
    }

    public func run() async throws {
        var wait = firstAfter
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let pause = wait
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            } catch {
                return
            }
            wait = interval
            do {
                let report = try await job.run(dryRun: false)
                let deleted = report.lines.filter { $0.rows > 0 }.map { "\($0.store)/\($0.rule)=\($0.rows)" }
                logger.notice(
                    "retention pass done", metadata: ["deleted": "\(report.total)", "rules": "\(deleted.joined(separator: " "))"])
            } catch {
                logger.error("retention pass failed; next try in \(interval)", metadata: ["error": "\(error)"])
            }
        }
    }
}
