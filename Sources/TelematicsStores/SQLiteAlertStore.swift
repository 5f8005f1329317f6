import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO

/// The alert store in a file of its own, `alerts.sqlite`, in the data
/// directory: its own connection and write lock, so an alert never waits
/// behind a bulk transaction of ``SQLiteStore``.
///
/// WAL journal with `synchronous=NORMAL` as the bulk store: a commit
/// survives a crash of the process. Each write is one `BEGIN IMMEDIATE ...
/// COMMIT` (read, merge in Swift by the shared rules, write), shielded from
/// cancellation by `runToCompletion`. The actor serialises the connection.
public actor SQLiteAlertStore: AlertStore {
    /// Transactions one at a time on the one connection (the actor is reentrant).
    private let gate = TransactionGate()
    /// The database file's name inside the data directory.
    public static let fileName = "alerts.sqlite"

    /// The data directory.
    public nonisolated let directory: String
    private let connection: SQLiteConnection
    private let threadPool: NIOThreadPool
    private var isClosed = false

    /// Opens (creating as needed) `alerts.sqlite` in `directory` and its table.
    public init(directory: String, logger: Logger = Logger(label: "telematics.stores.alerts.sqlite")) async throws(StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(backend: .sqlite, operation: "open", message: "cannot create data directory \(directory): \(error.localizedDescription)")
        }
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        // Its own thread: sqlite-nio's shared pool also runs the bulk store's
        // statements, and an alert must not queue behind them.
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
        } catch {
            try? await threadPool.shutdownGracefully()
            throw StoreError(backend: .sqlite, operation: "open", message: "cannot open \(path): \(error)")
        }
        do {
            try await SQLiteStore.useWAL(connection, path: path)
            // A second process (the console of another command) may hold the write lock briefly.
            _ = try await connection.query("PRAGMA busy_timeout=5000")
            for statement in Self.schema { _ = try await connection.query(statement) }
            try await Self.addEscalationOutbox(connection)
        } catch {
            try? await connection.close()
            try? await threadPool.shutdownGracefully()
            if let error = error as? StoreError { throw error }
            throw StoreError(backend: .sqlite, operation: "migrate", message: "\(path): \(error)")
        }
        self.directory = directory
        self.connection = connection
        self.threadPool = threadPool
    }

    deinit {
        // As SQLiteStore: never leave sqlite-nio's handle open.
        if !isClosed {
            let pool = threadPool
            _ = connection.close().always { _ in pool.shutdownGracefully { _ in } }
        }
    }

    /// The table and its indexes (idempotent).
    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS callcentre_alerts (
            id TEXT PRIMARY KEY,
            priority TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            received_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            recorded_at_ms INTEGER NOT NULL,
            updates INTEGER NOT NULL DEFAULT 0,
            acknowledged_by TEXT,
            acknowledged_at_ms INTEGER,
            escalated_at_ms INTEGER,
            payload TEXT NOT NULL,
            escalation_published_at_ms INTEGER
        )
        """,
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_listing ON callcentre_alerts (priority, received_at_ms)",
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_open ON callcentre_alerts (received_at_ms) WHERE acknowledged_at_ms IS NULL",
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_recorded ON callcentre_alerts (recorded_at_ms)",
    ]

    /// Adds `escalation_published_at_ms` to a table made before it (see
    /// ``AlertStore/unpublishedEscalations(escalatedAtOrBeforeMs:limit:)``):
    /// escalations stored until then count as published, as the desk that
    /// made them published them or kept them in memory only. Then the index
    /// of escalations waiting to be published.
    static func addEscalationOutbox(_ connection: SQLiteConnection) async throws {
        let columns = try await connection.query("PRAGMA table_info(callcentre_alerts)").compactMap { $0.column("name")?.string }
        if !columns.contains("escalation_published_at_ms") {
            try await inTransaction(connection) { connection in
                _ = try await connection.query("ALTER TABLE callcentre_alerts ADD COLUMN escalation_published_at_ms INTEGER")
                _ = try await connection.query(
                    "UPDATE callcentre_alerts SET escalation_published_at_ms = escalated_at_ms WHERE escalated_at_ms IS NOT NULL")
            }
        }
        _ = try await connection.query(AlertRows.unpublishedEscalationsIndex)
    }

    /// Runs `body` on the open connection, turning every failure into a ``StoreError``.
    private func run<T>(_ operation: String, _ body: (SQLiteConnection) async throws -> T) async throws(StoreError) -> T {
        guard !isClosed else { throw StoreError(backend: .sqlite, operation: operation, message: "store is closed") }
        do {
            return try await body(connection)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(backend: .sqlite, operation: operation, message: "\(error)")
        }
    }

    /// Runs `body` in one `BEGIN IMMEDIATE ... COMMIT`, to completion even if the caller is cancelled.
    private func transaction<T: Sendable>(
        _ operation: String, urgent: Bool = false, _ body: @escaping @Sendable (SQLiteConnection) async throws -> T
    ) async throws(StoreError) -> T {
        try await gate.exclusively(urgent: urgent) { () async throws(StoreError) in
            try await self.run(operation) { try await Self.inTransaction($0, body) }
        }
    }

    /// `body` between `BEGIN IMMEDIATE` and `COMMIT`, rolled back on any error.
    private static func inTransaction<T>(_ connection: SQLiteConnection, _ body: (SQLiteConnection) async throws -> T) async throws -> T {
        _ = try await connection.query("BEGIN IMMEDIATE")
        do {
            let result = try await body(connection)
            _ = try await connection.query("COMMIT")
            return result
        } catch {
            _ = try? await connection.query("ROLLBACK")
            throw error
        }
    }

    private static func select(_ connection: SQLiteConnection, id: String) async throws -> AlertRecord? {
        try await connection.query("SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE id = ?", [.text(id)])
            .first.map(record)
    }

    private static func record(_ row: SQLiteRow) throws -> AlertRecord {
        let r = SQLiteRowReader(row)
        return AlertRecord(
            id: try r.text(0), alert: try AlertRows.alert(payload: try r.text(1)), receivedAtMs: try r.int64(2),
            updatedAtMs: try r.int64(3), updates: Int(try r.int64(4)), acknowledgedBy: r.isNull(5) ? nil : try r.text(5),
            acknowledgedAtMs: r.isNull(6) ? nil : try r.int64(6), escalatedAtMs: r.isNull(7) ? nil : try r.int64(7))
    }

    public func upsert(_ alerts: [CallCentreAlert], receivedAtMs: Int64) async throws(StoreError) -> [AlertUpsert] {
        // An HV warn call's alert goes before queued P1 and console work.
        try await transaction("upsert", urgent: alerts.contains { $0.priority == "P0" }) { connection in
            var outcomes: [AlertUpsert] = []
            for alert in alerts { outcomes.append(try await Self.upsert(alert, receivedAtMs: receivedAtMs, connection)) }
            return outcomes
        }
    }

    private static func upsert(_ alert: CallCentreAlert, receivedAtMs: Int64, _ connection: SQLiteConnection) async throws -> AlertUpsert {
            let stored = try await Self.select(connection, id: AlertRecord.id(for: alert))
            let outcome = AlertRows.merge(stored: stored, incoming: alert, receivedAtMs: receivedAtMs)
            switch outcome {
            case .new(let r):
                _ = try await connection.query(
                    """
                    INSERT INTO callcentre_alerts (id, priority, sequence, received_at_ms, updated_at_ms, recorded_at_ms, updates, payload)
                    VALUES (?, ?, ?, ?, ?, ?, 0, ?)
                    """,
                    [.text(r.id), .text(r.alert.priority), .seq(r.alert.sequence), .int(r.receivedAtMs), .int(r.updatedAtMs),
                     .int(r.alert.recordedAtMs), .text(try AlertRows.payload(r.alert))])
            case .updated(let r):
                _ = try await connection.query(
                    "UPDATE callcentre_alerts SET sequence = ?, updated_at_ms = ?, updates = ?, payload = ? WHERE id = ?",
                    [.seq(r.alert.sequence), .int(r.updatedAtMs), .int(r.updates), .text(try AlertRows.payload(r.alert)), .text(r.id)])
            case .unchanged:
                break
            }
            return outcome
    }

    public func acknowledge(id: String, by agent: String, atMs: Int64) async throws(StoreError) -> AlertRecord? {
        try await transaction("acknowledge") { connection in
            _ = try await connection.query(
                "UPDATE callcentre_alerts SET acknowledged_by = ?, acknowledged_at_ms = ? WHERE id = ? AND acknowledged_at_ms IS NULL",
                [.text(agent), .int(atMs), .text(id)])
            return try await Self.select(connection, id: id)
        }
    }

    public func markEscalated(id: String, atMs: Int64) async throws(StoreError) -> AlertRecord? {
        try await transaction("markEscalated") { connection in
            let changed = try await connection.query(
                """
                UPDATE callcentre_alerts SET escalated_at_ms = ?
                WHERE id = ? AND acknowledged_at_ms IS NULL AND escalated_at_ms IS NULL RETURNING id
                """, [.int(atMs), .text(id)])
            return changed.isEmpty ? nil : try await Self.select(connection, id: id)
        }
    }

    public func unpublishedEscalations(escalatedAtOrBeforeMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("unpublishedEscalations") { connection in
            try await connection.query(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE \(AlertRows.unpublishedEscalation) AND escalated_at_ms <= ? ORDER BY escalated_at_ms, id LIMIT ?",
                [.int(escalatedAtOrBeforeMs), .integer(max(0, limit))]
            ).map(Self.record)
        }
    }

    public func markEscalationPublished(id: String, atMs: Int64) async throws(StoreError) {
        try await transaction("markEscalationPublished") { connection in
            _ = try await connection.query(
                "UPDATE callcentre_alerts SET escalation_published_at_ms = ? WHERE id = ? AND escalation_published_at_ms IS NULL",
                [.int(atMs), .text(id)])
        }
    }

    public func alert(id: String) async throws(StoreError) -> AlertRecord? {
        try await run("alert") { try await Self.select($0, id: id) }
    }

    public func alerts(openOnly: Bool, priority: String?, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { connection in
            var conditions: [String] = []
            var binds: [SQLiteData] = []
            if openOnly { conditions.append("acknowledged_at_ms IS NULL") }
            if let priority {
                conditions.append("priority = ?")
                binds.append(.text(priority))
            }
            binds.append(.integer(max(0, limit)))
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await connection.query(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts\(filter) \(AlertRows.listingOrder) LIMIT ?", binds
            ).map(Self.record)
        }
    }

    public func unacknowledgedOlderThan(receivedBeforeMs: Int64) async throws(StoreError) -> [AlertRecord] {
        try await run("unacknowledgedOlderThan") { connection in
            try await connection.query(
                """
                SELECT \(AlertRows.columns) FROM callcentre_alerts
                WHERE acknowledged_at_ms IS NULL AND escalated_at_ms IS NULL AND received_at_ms < ?
                ORDER BY received_at_ms, id
                """, [.int(receivedBeforeMs)]
            ).map(Self.record)
        }
    }

    public func deleteAlerts(recordedBeforeMs: Int64, limit: Int) async throws(StoreError) -> Int {
        try await transaction("deleteAlerts") { connection in
            try await connection.query(
                """
                DELETE FROM callcentre_alerts WHERE id IN
                    (SELECT id FROM callcentre_alerts WHERE recorded_at_ms < ? LIMIT ?) RETURNING id
                """, [.int(recordedBeforeMs), .integer(max(1, limit))]
            ).count
        }
    }

    public func alerts(changedSinceMs sinceMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { connection in
            try await connection.query(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE \(AlertRows.changedSince("?1")) ORDER BY \(AlertRows.lastChange), id LIMIT ?2",
                [.int(sinceMs), .integer(max(0, limit))]
            ).map(Self.record)
        }
    }

    public func countAlerts(recordedBeforeMs: Int64) async throws(StoreError) -> Int {
        try await run("countAlerts") { connection in
            Int(try SQLiteRowReader(try await connection.query(
                "SELECT count(*) FROM callcentre_alerts WHERE recorded_at_ms < ?", [.int(recordedBeforeMs)])[0]).int64(0))
        }
    }

    public func alerts(vin: String) async throws(StoreError) -> [AlertRecord] {
        try await run("alerts") { connection in
            try await connection.query(
                "SELECT \(AlertRows.columns) FROM callcentre_alerts WHERE id LIKE ? ORDER BY received_at_ms DESC, id",
                [.text(AlertRows.idPattern(vin: vin))]
            ).map(Self.record)
        }
    }

    public func eraseAlerts(vin: String) async throws(StoreError) -> (deleted: Int, keptOpen: Int) {
        let pattern = AlertRows.idPattern(vin: vin)
        let result = try await transaction("eraseAlerts") { connection -> [Int] in
            let deleted = try await connection.query(
                "DELETE FROM callcentre_alerts WHERE id LIKE ? AND acknowledged_at_ms IS NOT NULL RETURNING id", [.text(pattern)]
            ).count
            let open = try await connection.query("SELECT count(*) FROM callcentre_alerts WHERE id LIKE ?", [.text(pattern)])
            return [deleted, Int(try SQLiteRowReader(open[0]).int64(0))]
        }
        return (result[0], result[1])
    }

    /// Closes the database; later calls fail with "store is closed".
    public func close() async {
        guard !isClosed else { return }
        isClosed = true
        try? await connection.close()
        try? await threadPool.shutdownGracefully()
    }
}
