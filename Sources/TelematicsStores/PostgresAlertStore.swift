import Foundation
import Logging
import PostgresNIO

/// The alert store in PostgreSQL, table `callcentre_alerts`: a connection of
/// its own (not the bulk ``PostgresStore``'s), so an alert never waits behind
/// a bulk transaction. Opened again after the server dropped it.
///
/// Each write is one transaction: the row is read `FOR UPDATE` (several
/// instances may receive repeats of one alert at once), merged in Swift by
/// the rules shared with SQLite, and written; a new alert is inserted with
/// `ON CONFLICT DO NOTHING` and, if another instance won the race, merged
/// into the row it wrote.
public actor PostgresAlertStore: AlertStore {
    /// Transactions one at a time on the one connection (the actor is reentrant).
    private let gate = TransactionGate()
    /// The URL with its password masked, for logs.
    public nonisolated let maskedURL: String
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private var connection: PostgresConnection?
    private var nextConnectionID = 1
    private var isClosed = false

    /// Connects to `url` (as ``PostgresStore/init(url:logger:)``) and creates the table if needed.
    public init(url: String, logger: Logger = Logger(label: "telematics.stores.alerts.postgres")) async throws(StoreError) {
        let (configuration, masked) = try PostgresStore.parse(url)
        self.configuration = configuration
        self.maskedURL = masked
        self.logger = logger
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            do {
                // Several instances may start at once: one creates, the others wait.
                try await connection.query("BEGIN", logger: logger)
                try await connection.query("SELECT pg_advisory_xact_lock(7365823101)", logger: logger)
                for statement in Self.schema { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await connection.query("COMMIT", logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            self.connection = connection
        } catch {
            throw StoreError(backend: .postgres, operation: "open", message: "\(masked): \(PostgresStore.describe(error))")
        }
    }

    deinit {
        // As PostgresStore: release the socket rather than leak it.
        if let connection, !connection.isClosed { connection.close().whenComplete { _ in _ = connection } }
    }

    /// The table and its indexes (idempotent).
    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS callcentre_alerts (
            id text PRIMARY KEY,
            priority text NOT NULL,
            sequence bigint NOT NULL,
            received_at_ms bigint NOT NULL,
            updated_at_ms bigint NOT NULL,
            recorded_at_ms bigint NOT NULL,
            updates bigint NOT NULL DEFAULT 0,
            acknowledged_by text,
            acknowledged_at_ms bigint,
            escalated_at_ms bigint,
            payload text NOT NULL,
            escalation_published_at_ms bigint
        )
        """,
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_listing ON callcentre_alerts (priority, received_at_ms)",
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_open ON callcentre_alerts (received_at_ms) WHERE acknowledged_at_ms IS NULL",
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_recorded ON callcentre_alerts (recorded_at_ms)",
        // A table made before the escalation outbox gets its column; the
        // escalations stored until then count as published (as in SQLiteAlertStore).
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                           AND table_name = 'callcentre_alerts' AND column_name = 'escalation_published_at_ms') THEN
                ALTER TABLE callcentre_alerts ADD COLUMN escalation_published_at_ms bigint;
                UPDATE callcentre_alerts SET escalation_published_at_ms = escalated_at_ms WHERE escalated_at_ms IS NOT NULL;
            END IF;
        END $$
        """,
        AlertRows.unpublishedEscalationsIndex,
    ]

    /// The open connection, reconnecting when the server dropped the last one.
    private func liveConnection() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        let id = nextConnectionID
        nextConnectionID += 1
        let fresh = try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        // A concurrent call (escalation beside an upsert) may have reconnected meanwhile.
        let connection = await PostgresConnection.keepingOne(current: self.connection, fresh: fresh)
        self.connection = connection
        return connection
    }

    /// Runs `body` on a live connection, turning every failure into a ``StoreError``.
    private func run<T>(_ operation: String, _ body: (Session) async throws -> T) async throws(StoreError) -> T {
        guard !isClosed else { throw StoreError(backend: .postgres, operation: operation, message: "store is closed") }
        do {
            return try await body(Session(connection: try await liveConnection(), logger: logger))
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(backend: .postgres, operation: operation, message: PostgresStore.describe(error))
        }
    }

    /// Runs `body` in one transaction, to completion even if the caller is cancelled.
    private func transaction<T: Sendable>(
        _ operation: String, urgent: Bool = false, _ body: @escaping @Sendable (Session) async throws -> T
    ) async throws(StoreError) -> T {
        try await gate.exclusively(urgent: urgent) { () async throws(StoreError) in
            try await self.run(operation) { session in
                try await session.execute("BEGIN")
                do {
                    let result = try await body(session)
                    try await session.execute("COMMIT")
                    return result
                } catch {
                    try? await session.execute("ROLLBACK")
                    throw error
                }
            }
        }
    }

    /// Statements on one connection.
    struct Session: Sendable {
        let connection: PostgresConnection
        let logger: Logger

        func execute(_ sql: String, _ binds: PostgresBindings = PostgresBindings()) async throws {
            _ = try await connection.checkedQuery(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).collect()
        }

        /// The one integer a statement returns.
        func count(_ sql: String, _ binds: PostgresBindings) async throws -> Int {
            var n = 0
            for try await (c) in try await connection.checkedQuery(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).decode(Int64.self) {
                n = Int(c)
            }
            return n
        }

        /// The records a statement returns (it must return ``AlertRows/columns``).
        func records(_ sql: String, _ binds: PostgresBindings) async throws -> [AlertRecord] {
            var out: [AlertRecord] = []
            for try await row in try await connection.checkedQuery(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger) {
                let (id, payload, received, updated, updates, by, ackAt, escAt) = try row.decode(
                    (String, String, Int64, Int64, Int64, String?, Int64?, Int64?).self)
                out.append(AlertRecord(
                    id: id, alert: try AlertRows.alert(payload: payload), receivedAtMs: received, updatedAtMs: updated,
                    updates: Int(updates), acknowledgedBy: by, acknowledgedAtMs: ackAt, escalatedAtMs: escAt))
            }
            return out
        }

        func select(id: String, forUpdate: Bool = false) async throws -> AlertRecord? {
            var binds = PostgresBindings()
            binds.append(id)
            return try await records(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE id = $1\(forUpdate ? " FOR UPDATE" : "")", binds).first
        }

        func update(_ r: AlertRecord) async throws {
            var binds = PostgresBindings()
            binds.append(Int64(bitPattern: r.alert.sequence))
            binds.append(r.updatedAtMs)
            binds.append(Int64(r.updates))
            binds.append(try AlertRows.payload(r.alert))
            binds.append(r.id)
            _ = try await connection.checkedQuery(
                PostgresQuery(
                    unsafeSQL: "UPDATE callcentre_alerts SET sequence = $1, updated_at_ms = $2, updates = $3, payload = $4 WHERE id = $5",
                    binds: binds),
                logger: logger)
        }

        /// Inserts a new record; false when the id exists already.
        func insert(_ r: AlertRecord) async throws -> Bool {
            var binds = PostgresBindings()
            binds.append(r.id)
            binds.append(r.alert.priority)
            binds.append(Int64(bitPattern: r.alert.sequence))
            binds.append(r.receivedAtMs)
            binds.append(r.updatedAtMs)
            binds.append(r.alert.recordedAtMs)
            binds.append(try AlertRows.payload(r.alert))
            let rows = try await connection.checkedQuery(
                PostgresQuery(
                    unsafeSQL: """
                        INSERT INTO callcentre_alerts (id, priority, sequence, received_at_ms, updated_at_ms, recorded_at_ms, updates, payload)
                        VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT (id) DO NOTHING RETURNING id
                        """,
                    binds: binds),
                logger: logger)
            var inserted = false
            for try await _ in rows { inserted = true }
            return inserted
        }
    }

    public func upsert(_ alerts: [CallCentreAlert], receivedAtMs: Int64) async throws(StoreError) -> [AlertUpsert] {
        // An HV warn call's alert goes before queued P1 and console work.
        try await transaction("upsert", urgent: alerts.contains { $0.priority == "P0" }) { session in
            // Rows locked in id order: two instances upserting overlapping
            // alerts cannot deadlock each other. Outcomes in the given order.
            var outcomes = [AlertUpsert?](repeating: nil, count: alerts.count)
            for index in alerts.indices.sorted(by: { (AlertRecord.id(for: alerts[$0]), $0) < (AlertRecord.id(for: alerts[$1]), $1) }) {
                outcomes[index] = try await Self.upsert(alerts[index], receivedAtMs: receivedAtMs, session)
            }
            return outcomes.map { $0! }
        }
    }

    private static func upsert(_ alert: CallCentreAlert, receivedAtMs: Int64, _ session: Session) async throws -> AlertUpsert {
            let id = AlertRecord.id(for: alert)
            var outcome = AlertRows.merge(stored: try await session.select(id: id, forUpdate: true), incoming: alert, receivedAtMs: receivedAtMs)
            if case .new(let r) = outcome, try await !session.insert(r) {
                // Another instance inserted it since our read: merge into its row.
                outcome = AlertRows.merge(stored: try await session.select(id: id, forUpdate: true), incoming: alert, receivedAtMs: receivedAtMs)
            }
            if case .updated(let r) = outcome { try await session.update(r) }
            return outcome
    }

    public func acknowledge(id: String, by agent: String, atMs: Int64) async throws(StoreError) -> AlertRecord? {
        try await transaction("acknowledge") { session in
            var binds = PostgresBindings()
            binds.append(agent)
            binds.append(atMs)
            binds.append(id)
            _ = try await session.connection.checkedQuery(
                PostgresQuery(
                    unsafeSQL: """
                        UPDATE callcentre_alerts SET acknowledged_by = $1, acknowledged_at_ms = $2
                        WHERE id = $3 AND acknowledged_at_ms IS NULL
                        """,
                    binds: binds),
                logger: session.logger)
            return try await session.select(id: id)
        }
    }

    public func markEscalated(id: String, atMs: Int64) async throws(StoreError) -> AlertRecord? {
        try await run("markEscalated") { session in
            var binds = PostgresBindings()
            binds.append(atMs)
            binds.append(id)
            return try await session.records(
                """
                UPDATE callcentre_alerts SET escalated_at_ms = $1
                WHERE id = $2 AND acknowledged_at_ms IS NULL AND escalated_at_ms IS NULL
                RETURNING \(AlertRows.columns)
                """, binds
            ).first
        }
    }

    public func unpublishedEscalations(escalatedAtOrBeforeMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("unpublishedEscalations") { session in
            var binds = PostgresBindings()
            binds.append(escalatedAtOrBeforeMs)
            binds.append(Int64(max(0, limit)))
            return try await session.records(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE \(AlertRows.unpublishedEscalation) AND escalated_at_ms <= $1 ORDER BY escalated_at_ms, id LIMIT $2",
                binds)
        }
    }

    public func markEscalationPublished(id: String, atMs: Int64) async throws(StoreError) {
        try await run("markEscalationPublished") { session in
            var binds = PostgresBindings()
            binds.append(atMs)
            binds.append(id)
            try await session.execute(
                "UPDATE callcentre_alerts SET escalation_published_at_ms = $1 WHERE id = $2 AND escalation_published_at_ms IS NULL", binds)
        }
    }

    public func alert(id: String) async throws(StoreError) -> AlertRecord? {
        try await run("alert") { try await $0.select(id: id) }
    }

    public func alerts(openOnly: Bool, priority: String?, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { session in
            var binds = PostgresBindings()
            var conditions: [String] = []
            if openOnly { conditions.append("acknowledged_at_ms IS NULL") }
            if let priority {
                binds.append(priority)
                conditions.append("priority = $\(binds.count)")
            }
            binds.append(Int64(max(0, limit)))
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await session.records(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts\(filter) \(AlertRows.listingOrder) LIMIT $\(binds.count)", binds)
        }
    }

    public func unacknowledgedOlderThan(receivedBeforeMs: Int64) async throws(StoreError) -> [AlertRecord] {
        try await run("unacknowledgedOlderThan") { session in
            var binds = PostgresBindings()
            binds.append(receivedBeforeMs)
            return try await session.records(
                """
                SELECT \(AlertRows.columns) FROM callcentre_alerts
                WHERE acknowledged_at_ms IS NULL AND escalated_at_ms IS NULL AND received_at_ms < $1
                ORDER BY received_at_ms, id
                """, binds)
        }
    }

    public func alerts(changedSinceMs sinceMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { session in
            var binds = PostgresBindings()
            binds.append(sinceMs)
            binds.append(Int64(max(0, limit)))
            return try await session.records(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE \(AlertRows.changedSince("$1")) ORDER BY greatest(updated_at_ms, acknowledged_at_ms, escalated_at_ms), id LIMIT $2",
                binds)
        }
    }

    public func countAlerts(recordedBeforeMs: Int64) async throws(StoreError) -> Int {
        try await run("countAlerts") { session in
            var binds = PostgresBindings()
            binds.append(recordedBeforeMs)
            return try await session.count("SELECT count(*) FROM callcentre_alerts WHERE recorded_at_ms < $1", binds)
        }
    }

    public func alerts(vin: String) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { session in
            var binds = PostgresBindings()
            binds.append(AlertRows.idPattern(vin: vin))
            return try await session.records(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE id LIKE $1 ORDER BY received_at_ms DESC, id", binds)
        }
    }

    public func eraseAlerts(vin: String) async throws(StoreError) -> (deleted: Int, keptOpen: Int) {
        let result = try await transaction("eraseAlerts") { session -> [Int] in
            var binds = PostgresBindings()
            binds.append(AlertRows.idPattern(vin: vin))
            let deleted = try await session.count(
                "WITH d AS (DELETE FROM callcentre_alerts WHERE id LIKE $1 AND acknowledged_at_ms IS NOT NULL RETURNING id) SELECT count(*) FROM d",
                binds)
            let open = try await session.count("SELECT count(*) FROM callcentre_alerts WHERE id LIKE $1", binds)
            return [deleted, open]
        }
        return (result[0], result[1])
    }

    public func deleteAlerts(recordedBeforeMs: Int64, limit: Int) async throws(StoreError) -> Int {
        try await run("deleteAlerts") { session in
            var binds = PostgresBindings()
            binds.append(recordedBeforeMs)
            binds.append(Int64(max(1, limit)))
            return try await session.count(
                """
                WITH d AS (DELETE FROM callcentre_alerts WHERE id IN
                    (SELECT id FROM callcentre_alerts WHERE recorded_at_ms < $1 LIMIT $2) RETURNING id)
                SELECT count(*) FROM d
                """, binds)
        }
    }

    /// Closes the connection; later calls fail with "store is closed".
    public func close() async {
        guard !isClosed else { return }
        isClosed = true
        if let connection, !connection.isClosed { try? await connection.close() }
        connection = nil
    }
}
