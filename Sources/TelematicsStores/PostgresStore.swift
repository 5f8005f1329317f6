import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import TelematicsWire

/// The store in a PostgreSQL database: for several pipeline instances
/// sharing one database, and for the owners' apps and workshops.
///
/// One connection, owned by this actor (so work on it is serialised), opened
/// again after the server dropped it. Each ``apply(_:)`` is one transaction
/// of batched statements: every kind is written by one
/// `INSERT ... SELECT * FROM UNNEST($1::text[], $2::bigint[], ...)
/// ON CONFLICT DO NOTHING RETURNING ...` whatever the number of rows, so a
/// batch of thousands of records is a dozen round trips. Maintenance cases:
/// the open cases of all the batch's vehicles are read (and row-locked) in
/// one query, the transitions computed in Swift by ``MaintenanceCases``,
/// and written back with one UPDATE ... FROM UNNEST and one INSERT.
///
/// TLS is not supported yet: the URL must say `sslmode=disable` or nothing.
public actor PostgresStore: TelematicsStore {
    /// Always ``StoreBackend/postgres``.
    public nonisolated let backend = StoreBackend.postgres
    /// The URL with its password masked, for logs.
    public nonisolated let maskedURL: String
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private var connection: PostgresConnection?
    /// One transaction at a time on the connection (batches, sweeps, erases, re-seals).
    private let gate = TransactionGate()
    private var nextConnectionID = 1
    private var isClosed = false

    /// Connects to `url` (`postgres://user:password@host:port/database`,
    /// port 5432 by default) and creates or migrates the schema.
    public init(url: String, logger: Logger = Logger(label: "telematics.stores.postgres")) async throws(StoreError) {
        let (configuration, masked) = try Self.parse(url)
        self.configuration = configuration
        self.maskedURL = masked
        self.logger = logger
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            do {
                try await Self.migrate(connection, logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            self.connection = connection
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(backend: .postgres, operation: "open", message: "\(masked): \(Self.describe(error))")
        }
    }

    deinit {
        // Dropped without close(): release the socket rather than leak it.
        // The callback holds the connection until the channel is closed,
        // which postgres-nio asserts before a connection is freed.
        if let connection, !connection.isClosed { connection.close().whenComplete { _ in _ = connection } }
    }

    /// `url` with its password masked, once it is checked as ``init(url:)``
    /// checks it (without connecting): for `telematics config check`.
    public static func checkedURL(_ url: String) throws(StoreError) -> String { try parse(url).1 }

    /// Parses a `postgres://` or `postgresql://` URL; the second value masks the password.
    static func parse(_ url: String) throws(StoreError) -> (PostgresConnection.Configuration, String) {
        func bad(_ why: String) -> StoreError {
            StoreError(backend: .postgres, operation: "open", message: "bad URL (\(why)); expected postgres://user:password@host:port/database")
        }
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw bad("not a postgres:// URL")
        }
        guard let host = c.host, !host.isEmpty else { throw bad("no host") }
        guard let user = c.user, !user.isEmpty else { throw bad("no user") }
        let database = String(c.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw bad("no database") }
        for item in c.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "disable"): break
            case ("sslmode", let mode): throw bad("sslmode=\(mode): TLS is not supported yet, use sslmode=disable")
            default: throw bad("unknown parameter \(item.name)")
            }
        }
        var masked = c
        if c.password != nil { masked.password = "***" }
        let configuration = PostgresConnection.Configuration(
            host: host, port: c.port ?? 5432, username: user, password: c.password, database: database, tls: .disable)
        return (configuration, masked.string ?? "postgres://\(host)")
    }

    /// The database's message for `error`: SQLSTATE and text, without the
    /// detail line (which can quote row values).
    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            if let info = e.serverInfo, let message = info[.message] {
                return "\(info[.sqlState].map { "SQLSTATE \($0): " } ?? "")\(message)"
            }
            return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }

    private static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        func run(_ sql: String) async throws { try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
        try await run("BEGIN")
        do {
            // Several instances may start at once: one migrates, the others wait.
            try await run("SELECT pg_advisory_xact_lock(7365823100)")
            try await run("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            var current = 0
            for try await (v) in try await connection.query("SELECT coalesce(max(version), 0) FROM schema_version", logger: logger)
                .decode(Int32.self)
            {
                current = Int(v)
            }
            guard current <= Schema.version else {
                throw StoreError(
                    backend: .postgres, operation: "migrate",
                    message: "schema version \(current) is newer than this program's \(Schema.version)")
            }
            var version = current + 1
            while version <= Schema.version {
                for statement in Schema.postgres[version - 1] { try await run(statement) }
                if version == Schema.vehicleSetsVersion { try await moveMembershipsIntoSets(connection, logger: logger) }
                try await run("INSERT INTO schema_version (version) VALUES (\(version))")
                version += 1
            }
            try await run("COMMIT")
        } catch {
            try? await run("ROLLBACK")
            throw error
        }
    }

    /// Schema 7: each aggregate's `traffic_vehicles` rows become its vehicle
    /// set, then the table goes.
    private static func moveMembershipsIntoSets(_ connection: PostgresConnection, logger: Logger) async throws {
        var sets: [TrafficDelta.Key: [Int64]] = [:]
        for try await (tile, minute, pseudonym) in try await connection.query(
            "SELECT tile, minute_ms, pseudonym FROM traffic_vehicles", logger: logger
        ).decode((Int64, Int64, String).self) {
            sets[TrafficDelta.Key(tile: tile, minuteMs: minute), default: []].append(VehicleSet.key(pseudonym))
        }
        if !sets.isEmpty {
            var binds = PostgresBindings()
            binds.append(sets.keys.map(\.tile))
            binds.append(sets.keys.map(\.minuteMs))
            binds.append(sets.values.map { PostgresWriter.arrayLiteral(VehicleSet.sortedDistinct($0)) })
            try await connection.query(PostgresQuery(unsafeSQL: """
                UPDATE traffic_aggregates a SET vehicles = u.vehicles::bigint[]
                FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS u(tile, minute, vehicles)
                WHERE a.tile = u.tile AND a.minute_ms = u.minute
                """, binds: binds), logger: logger)
        }
        try await connection.query("DROP TABLE traffic_vehicles", logger: logger)
    }

    /// The open connection, reconnecting when the server dropped the last one.
    private func liveConnection() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        let id = nextConnectionID
        nextConnectionID += 1
        let fresh = try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        // A concurrent call (a consent lookup beside a batch) may have reconnected meanwhile.
        let connection = await PostgresConnection.keepingOne(current: self.connection, fresh: fresh)
        self.connection = connection
        return connection
    }

    /// Runs `body` on a live connection, turning every failure into a ``StoreError``.
    private func run<T>(_ operation: String, _ body: (PostgresWriter) async throws -> T) async throws(StoreError) -> T {
        guard !isClosed else { throw StoreError(backend: .postgres, operation: operation, message: "store is closed") }
        do {
            return try await body(PostgresWriter(connection: try await liveConnection(), logger: logger))
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(backend: .postgres, operation: operation, message: Self.describe(error))
        }
    }

    /// Applies the batch in one transaction; rolls back on any error.
    public func apply(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult {
        if batch.isEmpty { return StoreBatchResult() }
        return try await gate.exclusively { () async throws(StoreError) in try await self.applyInTransaction(batch) }
    }

    private func applyInTransaction(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult {
        try await run("apply") { writer in
            try await writer.execute("BEGIN")
            do {
                let result = try await applyBatch(batch, with: writer)
                try await writer.execute("COMMIT")
                return result
            } catch {
                try? await writer.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Stored consent states of `vins`, in one query.
    public func consent(for vins: [VIN]) async throws(StoreError) -> [VIN: StoredConsent] {
        try await run("consent") { try await $0.storedConsents(uniqued(vins)) }
    }

    /// The vehicle's technical state.
    public func vehicleState(_ vin: VIN) async throws(StoreError) -> VehicleTechnicalState? {
        try await run("vehicleState") { writer in
            var binds = PostgresBindings()
            binds.append(vin.description)
            let rows = try await writer.query(
                """
                SELECT recorded_at_ms, sequence, mileage_km, battery_12v_mv, service_items::text, check_controls::text
                FROM vehicle_states WHERE vin = $1
                """, binds)
            for try await (at, seq, mileage, battery, items, controls) in rows.decode((Int64, Int64, Int64, Int64, String, String).self) {
                return VehicleTechnicalState(
                    vin: vin, recordedAtMs: at, sequence: UInt64(bitPattern: seq), mileageKm: UInt32(truncatingIfNeeded: mileage),
                    battery12vMv: UInt32(truncatingIfNeeded: battery), serviceItems: try TechnicalData.serviceItems(items),
                    checkControls: try TechnicalData.checkControls(controls))
            }
            return nil
        }
    }

    /// The vehicle's calls by sequence.
    public func teleserviceCalls(_ vin: VIN) async throws(StoreError) -> [TeleserviceCallRecord] {
        try await run("teleserviceCalls") { writer in
            var binds = PostgresBindings()
            binds.append(vin.description)
            let rows = try await writer.query(
                """
                SELECT sequence, recorded_at_ms, trigger, mileage_km, battery_12v_mv, lat_e7, lon_e7,
                       service_partner_id, in_workshop, service_items::text, check_controls::text
                FROM teleservice_calls WHERE vin = $1 ORDER BY sequence
                """, binds)
            var calls: [TeleserviceCallRecord] = []
            for try await row in rows {
                let (seq, at, trigger, mileage, battery, lat, lon, partner, workshop, items, controls) = try row.decode(
                    (Int64, Int64, Int32, Int64, Int64, Int32?, Int32?, String, Bool, String, String).self)
                calls.append(TeleserviceCallRecord(
                    vin: vin, sequence: UInt64(bitPattern: seq), recordedAtMs: at, trigger: trigger,
                    mileageKm: UInt32(truncatingIfNeeded: mileage), battery12vMv: UInt32(truncatingIfNeeded: battery),
                    position: lat.flatMap { lat in lon.map { Position(latE7: lat, lonE7: $0) } },
                    servicePartnerID: partner, inWorkshop: workshop,
                    serviceItems: try TechnicalData.serviceItems(items), checkControls: try TechnicalData.checkControls(controls)))
            }
            return calls
        }
    }

    /// The vehicle's cases, oldest first.
    public func maintenanceCases(_ vin: VIN, includeClosed: Bool) async throws(StoreError) -> [MaintenanceCase] {
        try await run("maintenanceCases") { writer in
            var binds = PostgresBindings()
            binds.append(vin.description)
            let filter = includeClosed ? "" : " AND state <> 'closed'"
            return try await writer.cases(
                "SELECT \(PostgresWriter.caseColumns) FROM maintenance_cases WHERE vin = $1\(filter) ORDER BY case_id", binds)
        }
    }

    /// Cases across vehicles, newest first, in one indexed query.
    public func maintenanceCases(partner: String?, openOnly: Bool, limit: Int) async throws(StoreError) -> [MaintenanceCase] {
        try await run("maintenanceCases") { writer in
            var binds = PostgresBindings()
            var conditions: [String] = []
            if let partner {
                binds.append(partner)
                conditions.append("service_partner_id = $\(binds.count)")
            }
            if openOnly { conditions.append("state <> 'closed'") }
            binds.append(Int64(max(0, limit)))
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await writer.cases(
                "SELECT \(PostgresWriter.caseColumns) FROM maintenance_cases\(filter) ORDER BY case_id DESC LIMIT $\(binds.count)",
                binds)
        }
    }

    /// The vehicle's sessions by start time.
    public func chargeSessions(_ vin: VIN) async throws(StoreError) -> [ChargeSessionRecord] {
        try await run("chargeSessions") { writer in
            var binds = PostgresBindings()
            binds.append(vin.description)
            let rows = try await writer.query(
                """
                SELECT session_id, sequence, recorded_at_ms, started_at_ms, ended_at_ms, soc_start_permille,
                       soc_end_permille, energy_wh, max_power_w, current, site, end_reason, sealed_position, key_id,
                       sealed_session_id
                FROM charge_sessions WHERE vin = $1 ORDER BY started_at_ms, session_id
                """, binds)
            var sessions: [ChargeSessionRecord] = []
            for try await row in rows {
                let (id, seq, at, started, ended, socStart, socEnd, energy, power, current, site, reason, sealed, key, sealedID) =
                    try row.decode(
                        (String, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int32, Int32, Int32, ByteBuffer?, String?, ByteBuffer?).self)
                sessions.append(ChargeSessionRecord(
                    vin: vin, sessionID: id, sequence: UInt64(bitPattern: seq), recordedAtMs: at, startedAtMs: started,
                    endedAtMs: ended, socStartPermille: UInt32(truncatingIfNeeded: socStart),
                    socEndPermille: UInt32(truncatingIfNeeded: socEnd), energyWh: UInt32(truncatingIfNeeded: energy),
                    maxPowerW: UInt32(truncatingIfNeeded: power), current: current, site: site, endReason: reason,
                    sealedPosition: sealed.map { Array($0.readableBytesView) }, keyID: key,
                    sealedSessionID: sealedID.map { Array($0.readableBytesView) }))
            }
            return sessions
        }
    }

    /// Aggregates of `tile` in the minute range, by minute.
    public func trafficAggregates(tile: Int64, fromMinute: Int64, toMinute: Int64) async throws(StoreError) -> [TrafficAggregate] {
        try await run("trafficAggregates") { writer in
            var binds = PostgresBindings()
            binds.append(tile)
            binds.append(fromMinute)
            binds.append(toMinute)
            var histograms: [Int64: SpeedHistogram] = [:]
            for try await (minute, bucket, count) in try await writer.query(
                "SELECT minute_ms, bucket, point_count FROM traffic_speed_buckets WHERE tile = $1 AND minute_ms BETWEEN $2 AND $3",
                binds
            ).decode((Int64, Int32, Int64).self) {
                histograms[minute, default: SpeedHistogram()].add(bucket: Int(bucket), count: Int(count))
            }
            var out: [TrafficAggregate] = []
            for try await (minute, points, vehicles, sum, counts) in try await writer.query(
                """
                SELECT minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram FROM traffic_aggregates
                WHERE tile = $1 AND minute_ms BETWEEN $2 AND $3 ORDER BY minute_ms
                """, binds
            ).decode((Int64, Int64, Int64, Int64, [Int64]?).self) {
                var histogram = histograms[minute] ?? SpeedHistogram()
                histogram.add(SpeedHistogram(counts: counts ?? []))
                out.append(TrafficAggregate(
                    tile: tile, minuteMs: minute, pointCount: Int(points), vehicleCount: Int(vehicles), speedSumDkmh: sum,
                    histogram: histogram))
            }
            return out
        }
    }

    /// Aggregates of every tile since `sinceMinute`, newest first: one query
    /// (the aggregates joined to their buckets), so one consistent snapshot.
    public func trafficAggregates(sinceMinute: Int64, limit: Int) async throws(StoreError) -> [TrafficAggregate] {
        try await run("trafficAggregates") { writer in
            var binds = PostgresBindings()
            binds.append(sinceMinute)
            binds.append(Int64(max(0, limit)))
            var out: [TrafficAggregate] = []
            for try await (tile, minute, points, vehicles, sum, bucket, count, counts) in try await writer.query(
                Schema.recentTrafficQuery(placeholder: { "$\($0)" }), binds
            ).decode((Int64, Int64, Int64, Int64, Int64, Int32?, Int64?, [Int64]?).self) {
                if out.last?.tile != tile || out.last?.minuteMs != minute {
                    out.append(TrafficAggregate(
                        tile: tile, minuteMs: minute, pointCount: Int(points), vehicleCount: Int(vehicles), speedSumDkmh: sum,
                        histogram: SpeedHistogram(counts: counts ?? [])))
                }
                if let bucket, let count { out[out.count - 1].histogram.add(bucket: Int(bucket), count: Int(count)) }
            }
            return out
        }
    }

    /// The pipeline's counters.
    public func counters() async throws(StoreError) -> [String: Int] {
        try await run("counters") { writer in
            var out: [String: Int] = [:]
            for try await (name, value) in try await writer.query("SELECT name, value FROM pipeline_counters", PostgresBindings())
                .decode((String, Int64).self)
            {
                out[name] = Int(value)
            }
            return out
        }
    }

    /// Raw probe points stored.
    public func probePointCount() async throws(StoreError) -> Int {
        try await run("probePointCount") { writer in
            try await writer.count("SELECT coalesce(sum(point_count), 0)::bigint FROM probes", PostgresBindings())
        }
    }

    /// The stored points of a pseudonym's probes, by sequence and index.
    public func probePoints(pseudonym: String) async throws(StoreError) -> [ProbePoint] {
        try await run("probePoints") { writer in
            var out: [ProbePoint] = []
            var binds = PostgresBindings()
            binds.append(pseudonym)
            for try await (sequence, blob, format) in try await writer.query(
                "SELECT sequence, points, points_format FROM probes WHERE pseudonym = $1 ORDER BY sequence", binds
            ).decode((Int64, ByteBuffer, Int16).self) {
                guard let points = ProbePacking.unpack(blob.readableBytesView, format: Int(format), pseudonym: pseudonym, sequence: UInt64(bitPattern: sequence))
                else { throw StoreError(backend: .postgres, operation: "probePoints", message: "unreadable points of probe \(pseudonym)/\(sequence)") }
                out += points
            }
            return out
        }
    }

    /// Row counts of every table, in one query.
    public func stats() async throws(StoreError) -> StoreStats {
        try await run("stats") { writer in
            var s = StoreStats()
            for try await row in try await writer.query(Schema.statsQuery(vehicles: "cardinality(vehicles)"), PostgresBindings()) {
                let c = try row.decode((Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64).self)
                s.consents = Int(c.0)
                s.vehicleStates = Int(c.1)
                s.teleserviceCalls = Int(c.2)
                s.maintenanceCases = Int(c.3)
                s.openMaintenanceCases = Int(c.4)
                s.chargeSessions = Int(c.5)
                s.probePoints = Int(c.6)
                s.trafficAggregates = Int(c.7)
                s.trafficVehicles = Int(c.8)
                s.trafficSpeedBuckets = Int(c.9)
            }
            return s
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

/// The connection was closed (by the server, or the network) before a statement.
struct PostgresStoreConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to PostgreSQL is closed" }
}

/// A continuation resumed by whichever comes first (an answer or a deadline).
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>
    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = Mutex(continuation) }
    /// Resumes it if nobody did; whether this call did.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        guard let pending = continuation.withLock({ c -> CheckedContinuation<T, any Error>? in
            defer { c = nil }
            return c
        }) else { return false }
        pending.resume(with: result)
        return true
    }
}

/// A statement not answered within its deadline (``PostgresConnection/checkedQuery(_:logger:deadline:)``).
struct PostgresStatementTimedOut: Error, CustomStringConvertible {
    var deadline: Duration
    var description: String { "PostgreSQL did not answer a statement within \(deadline); the connection was closed" }
}

/// Watches the statements in flight on every PostgreSQL connection of the
/// process: each 100 ms, one that waits on a connection now closed, or
/// past its deadline, is given up (its `expire` called once, with whether
/// the connection closed). One task for all, running while any statement is
/// in flight.
final class StatementWatch: Sendable {
    static let shared = StatementWatch()

    private struct Watched {
        var connection: PostgresConnection
        var until: ContinuousClock.Instant
        var expire: @Sendable (_ closed: Bool) -> Void
    }
    private struct State {
        var next = 0
        var watched: [Int: Watched] = [:]
        var running = false
    }
    private let state = Mutex(State())

    /// Starts watching a statement; the ticket for ``forget(_:)``.
    func watch(_ connection: PostgresConnection, until: ContinuousClock.Instant, expire: @escaping @Sendable (_ closed: Bool) -> Void) -> Int {
        let (ticket, start) = state.withLock { s -> (Int, Bool) in
            s.next += 1
            s.watched[s.next] = Watched(connection: connection, until: until, expire: expire)
            defer { s.running = true }
            return (s.next, !s.running)
        }
        if start { Task.detached { await self.run() } }
        return ticket
    }

    /// The statement was answered.
    func forget(_ ticket: Int) {
        _ = state.withLock { $0.watched.removeValue(forKey: ticket) }
    }

    private func run() async {
        while true {
            try? await Task.sleep(for: .milliseconds(100))
            let now = ContinuousClock.now
            let (expired, more) = state.withLock { s -> ([(Watched, Bool)], Bool) in
                var out: [(Watched, Bool)] = []
                for (ticket, w) in s.watched {
                    let closed = w.connection.isClosed
                    if closed || now >= w.until {
                        out.append((w, closed))
                        s.watched[ticket] = nil
                    }
                }
                if s.watched.isEmpty { s.running = false }
                return (out, s.running)
            }
            for (w, closed) in expired { w.expire(closed) }
            if !more { return }
        }
    }
}

extension PostgresConnection {
    /// How long a statement may go unanswered: far above any batch's
    /// statement (under a second on the foundation capture), for a
    /// connection that will never answer. (Migrations do not go through
    /// ``checkedQuery(_:logger:deadline:)``: they may take longer.)
    static let statementDeadline = Duration.seconds(60)

    /// A statement, failed at once when the connection is or becomes
    /// closed, and failed when no answer came within `deadline`. A statement
    /// sent on a connection the server has closed is never answered (a
    /// server's shutdown left the lane waiting forever, in CI: the deadline
    /// caught it after a restart of the server); a half-open connection
    /// after a network failure stays silent the same way. The statement
    /// then fails without waiting for the lost answer (on the deadline the
    /// connection is closed first); the caller's retry reconnects. Both PostgreSQL
    /// stores send every statement through it. The deadline covers the
    /// answer's start; rows then stream from the connection.
    func checkedQuery(_ query: PostgresQuery, logger: Logger, deadline: Duration = statementDeadline) async throws -> PostgresRowSequence {
        if isClosed { throw PostgresStoreConnectionClosed() }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresRowSequence, any Error>) in
            let once = ResumeOnce(continuation)
            // Watched, with every other statement, by one task (a timer task
            // per statement cost a third more CPU on the foundation capture).
            let ticket = StatementWatch.shared.watch(self, until: .now + deadline) { closed in
                if closed {
                    once.resume(with: .failure(PostgresStoreConnectionClosed()))
                } else if once.resume(with: .failure(PostgresStatementTimedOut(deadline: deadline))) {
                    logger.warning("PostgreSQL statement unanswered; closing the connection", metadata: ["deadline": "\(deadline)"])
                    Task { try? await self.close() }
                }
            }
            Task {
                let result: Result<PostgresRowSequence, any Error>
                do { result = .success(try await self.query(query, logger: logger)) } catch { result = .failure(error) }
                StatementWatch.shared.forget(ticket)
                once.resume(with: result)
            }
        }
    }

    /// The connection a store keeps after reconnecting: `current` if a
    /// concurrent call of the (reentrant) store actor installed a live one
    /// meanwhile, this one (`fresh`) is then closed, since postgres-nio
    /// asserts that no connection is dropped open; else `fresh`.
    static func keepingOne(current: PostgresConnection?, fresh: PostgresConnection) async -> PostgresConnection {
        guard let current, !current.isClosed else { return fresh }
        try? await fresh.close()
        return current
    }
}

/// The batched writes of ``BatchWriter`` in PostgreSQL's dialect: one
/// statement per kind and step, the rows passed as arrays and unnested.
struct PostgresWriter: BatchWriter {
    let connection: PostgresConnection
    let logger: Logger

    func execute(_ sql: String) async throws {
        _ = try await connection.checkedQuery(PostgresQuery(unsafeSQL: sql), logger: logger)
    }

    func query(_ sql: String, _ binds: PostgresBindings) async throws -> PostgresRowSequence {
        try await connection.checkedQuery(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
    }

    /// Runs a statement whose only row is one count.
    func count(_ sql: String, _ binds: PostgresBindings) async throws -> Int {
        var n = 0
        for try await (c) in try await query(sql, binds).decode(Int64.self) { n = Int(c) }
        return n
    }

    private static func seq(_ value: UInt64) -> Int64 { Int64(bitPattern: value) }

    func storedConsents(_ vins: [VIN]) async throws -> [VIN: StoredConsent] {
        var binds = PostgresBindings()
        binds.append(vins.map(\.description))
        var out: [VIN: StoredConsent] = [:]
        for try await row in try await query(
            """
            SELECT vin, teleservices, smart_maintenance, charging_history, charging_location, rtti, account_deleted,
                   recorded_at_ms, sequence FROM consents WHERE vin = ANY($1::text[])
            """, binds)
        {
            let (vin, t, s, h, l, r, d, at, seq) = try row.decode((String, Bool, Bool, Bool, Bool, Bool, Bool, Int64, Int64).self)
            guard let vin = VIN(vin) else { continue }
            out[vin] = StoredConsent(
                state: ConsentState(
                    teleservices: t, smartMaintenance: s, chargingHistory: h, chargingLocation: l, rtti: r, accountDeleted: d),
                recordedAtMs: at, sequence: UInt64(bitPattern: seq))
        }
        return out
    }

    func upsertConsents(_ changes: [ConsentChange]) async throws {
        var binds = PostgresBindings()
        binds.append(changes.map(\.vin.description))
        binds.append(changes.map(\.state.teleservices))
        binds.append(changes.map(\.state.smartMaintenance))
        binds.append(changes.map(\.state.chargingHistory))
        binds.append(changes.map(\.state.chargingLocation))
        binds.append(changes.map(\.state.rtti))
        binds.append(changes.map(\.state.accountDeleted))
        binds.append(changes.map(\.recordedAtMs))
        binds.append(changes.map { Self.seq($0.sequence) })
        _ = try await query(
            """
            INSERT INTO consents (vin, teleservices, smart_maintenance, charging_history, charging_location, rtti,
                                  account_deleted, recorded_at_ms, sequence)
            SELECT * FROM UNNEST($1::text[], $2::boolean[], $3::boolean[], $4::boolean[], $5::boolean[], $6::boolean[],
                                 $7::boolean[], $8::bigint[], $9::bigint[])
            ON CONFLICT (vin) DO UPDATE SET
                teleservices = excluded.teleservices, smart_maintenance = excluded.smart_maintenance,
                charging_history = excluded.charging_history, charging_location = excluded.charging_location,
                rtti = excluded.rtti, account_deleted = excluded.account_deleted,
                recorded_at_ms = excluded.recorded_at_ms, sequence = excluded.sequence
            WHERE (excluded.recorded_at_ms, excluded.sequence) > (consents.recorded_at_ms, consents.sequence)
            """, binds).collect()
    }

    func deleteChargeSessions(_ vins: [VIN]) async throws -> Int {
        var binds = PostgresBindings()
        binds.append(vins.map(\.description))
        return try await count(
            "WITH d AS (DELETE FROM charge_sessions WHERE vin = ANY($1::text[]) RETURNING 1) SELECT count(*) FROM d", binds)
    }

    func insertCalls(_ calls: [TeleserviceCallRecord]) async throws -> Insertion<CallKey> {
        var binds = PostgresBindings()
        binds.append(calls.map(\.vin.description))
        binds.append(calls.map { Self.seq($0.sequence) })
        binds.append(calls.map(\.recordedAtMs))
        binds.append(calls.map(\.trigger))
        binds.append(calls.map { Int64($0.mileageKm) })
        binds.append(calls.map { Int64($0.battery12vMv) })
        binds.append(calls.map { $0.position != nil })
        binds.append(calls.map { $0.position?.latE7 ?? 0 })
        binds.append(calls.map { $0.position?.lonE7 ?? 0 })
        binds.append(calls.map(\.servicePartnerID))
        binds.append(calls.map(\.inWorkshop))
        binds.append(calls.map { TechnicalData.json($0.serviceItems) })
        binds.append(calls.map { TechnicalData.json($0.checkControls) })
        return try await insertNew(
            """
            INSERT INTO teleservice_calls (vin, sequence, recorded_at_ms, trigger, mileage_km, battery_12v_mv,
                lat_e7, lon_e7, service_partner_id, in_workshop, service_items, check_controls)
            SELECT u.vin, u.seq, u.at, u.trigger, u.mileage, u.battery,
                   CASE WHEN u.has_position THEN u.lat END, CASE WHEN u.has_position THEN u.lon END,
                   u.partner, u.workshop, u.items::jsonb, u.controls::jsonb
            FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::integer[], $5::bigint[], $6::bigint[],
                        $7::boolean[], $8::integer[], $9::integer[], $10::text[], $11::boolean[], $12::text[], $13::text[])
                AS u(vin, seq, at, trigger, mileage, battery, has_position, lat, lon, partner, workshop, items, controls)
            ON CONFLICT DO NOTHING RETURNING vin AS k1, sequence AS k2
            """, rows: calls.count, binds
        ) { vin, seq in VIN(vin).map { CallKey(vin: $0, sequence: UInt64(bitPattern: seq)) } }
    }

    /// Runs `insert` (an INSERT of `rows` rows, ON CONFLICT DO NOTHING,
    /// RETURNING the key columns as k1 text and k2 bigint) and says which
    /// rows it stored. Usually all of them: one row then comes back, the
    /// count, instead of a key per row to decode. Only when some were stored
    /// before (a redelivery) do the new rows' keys come back too.
    private func insertNew<Key: Hashable>(
        _ insert: String, rows: Int, _ binds: PostgresBindings, key: (String, Int64) -> Key?
    ) async throws -> Insertion<Key> {
        var inserted: Set<Key> = []
        var count: Int64 = -1
        for try await (k1, k2) in try await query(
            """
            WITH ins AS (\(insert)), n AS (SELECT count(*) AS n FROM ins)
            SELECT NULL::text, n.n FROM n
            UNION ALL
            SELECT ins.k1, ins.k2 FROM ins, n WHERE n.n < \(rows)
            """, binds
        ).decode((String?, Int64).self) {
            if let k1 { key(k1, k2).map { inserted.insert($0) } } else { count = k2 }
        }
        return count == Int64(rows) ? .all : .only(inserted)
    }

    func upsertVehicleStates(_ calls: [TeleserviceCallRecord]) async throws -> Int {
        var binds = PostgresBindings()
        binds.append(calls.map(\.vin.description))
        binds.append(calls.map(\.recordedAtMs))
        binds.append(calls.map { Self.seq($0.sequence) })
        binds.append(calls.map { Int64($0.mileageKm) })
        binds.append(calls.map { Int64($0.battery12vMv) })
        binds.append(calls.map { TechnicalData.json($0.serviceItems) })
        binds.append(calls.map { TechnicalData.json($0.checkControls) })
        return try await count(
            """
            WITH changed AS (
                INSERT INTO vehicle_states (vin, recorded_at_ms, sequence, mileage_km, battery_12v_mv, service_items,
                                            check_controls)
                SELECT u.vin, u.at, u.seq, u.mileage, u.battery, u.items::jsonb, u.controls::jsonb
                FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[])
                    AS u(vin, at, seq, mileage, battery, items, controls)
                ON CONFLICT (vin) DO UPDATE SET
                    recorded_at_ms = excluded.recorded_at_ms, sequence = excluded.sequence,
                    mileage_km = excluded.mileage_km, battery_12v_mv = excluded.battery_12v_mv,
                    service_items = excluded.service_items, check_controls = excluded.check_controls
                WHERE (excluded.recorded_at_ms, excluded.sequence) > (vehicle_states.recorded_at_ms, vehicle_states.sequence)
                RETURNING 1)
            SELECT count(*) FROM changed
            """, binds)
    }

    static let caseColumns = """
        case_id, vin, need, state, service_partner_id, opened_at_ms, updated_at_ms, closed_at_ms, last_sequence,
        notifications
        """

    func cases(_ sql: String, _ binds: PostgresBindings) async throws -> [MaintenanceCase] {
        var out: [MaintenanceCase] = []
        for try await row in try await query(sql, binds) {
            let (id, vin, need, state, partner, opened, updated, closed, seq, notifications) = try row.decode(
                (Int64, String, String, String, String, Int64, Int64?, Int64?, Int64, Int32).self)
            guard let vin = VIN(vin), let need = MaintenanceNeed(key: need), let state = CaseState(rawValue: state) else {
                throw StoreError(backend: .postgres, operation: "read case", message: "unreadable maintenance case \(id)")
            }
            out.append(MaintenanceCase(
                id: id, vin: vin, need: need, state: state, servicePartnerID: partner, openedAtMs: opened,
                updatedAtMs: updated, closedAtMs: closed, lastSequence: UInt64(bitPattern: seq),
                notifications: Int(notifications)))
        }
        return out
    }

    func openCases(_ vins: [VIN]) async throws -> [MaintenanceCase] {
        var binds = PostgresBindings()
        binds.append(vins.map(\.description))
        // FOR UPDATE: another instance handling the same vehicle (during a
        // partition rebalance) waits instead of computing from stale cases.
        return try await cases(
            """
            SELECT \(Self.caseColumns) FROM maintenance_cases
            WHERE state <> 'closed' AND vin = ANY($1::text[]) ORDER BY case_id FOR UPDATE
            """, binds)
    }

    func updateCases(_ cases: [MaintenanceCase]) async throws {
        var binds = PostgresBindings()
        binds.append(cases.map { $0.id ?? 0 })
        binds.append(cases.map(\.state.rawValue))
        binds.append(cases.map(\.servicePartnerID))
        binds.append(cases.map { $0.updatedAtMs != nil })
        binds.append(cases.map { $0.updatedAtMs ?? 0 })
        binds.append(cases.map { $0.closedAtMs != nil })
        binds.append(cases.map { $0.closedAtMs ?? 0 })
        binds.append(cases.map { Self.seq($0.lastSequence) })
        binds.append(cases.map { Int32(clamping: $0.notifications) })
        _ = try await query(
            """
            UPDATE maintenance_cases AS m SET state = u.state, service_partner_id = u.partner,
                updated_at_ms = CASE WHEN u.has_updated THEN u.updated END,
                closed_at_ms = CASE WHEN u.has_closed THEN u.closed END,
                last_sequence = u.seq, notifications = u.notifications
            FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::bigint[], $6::boolean[], $7::bigint[],
                        $8::bigint[], $9::integer[])
                AS u(id, state, partner, has_updated, updated, has_closed, closed, seq, notifications)
            WHERE m.case_id = u.id
            """, binds).collect()
    }

    func insertCases(_ cases: [MaintenanceCase]) async throws {
        var binds = PostgresBindings()
        binds.append(cases.map(\.vin.description))
        binds.append(cases.map(\.need.key))
        binds.append(cases.map(\.state.rawValue))
        binds.append(cases.map(\.servicePartnerID))
        binds.append(cases.map(\.openedAtMs))
        binds.append(cases.map { $0.updatedAtMs != nil })
        binds.append(cases.map { $0.updatedAtMs ?? 0 })
        binds.append(cases.map { $0.closedAtMs != nil })
        binds.append(cases.map { $0.closedAtMs ?? 0 })
        binds.append(cases.map { Self.seq($0.lastSequence) })
        binds.append(cases.map { Int32(clamping: $0.notifications) })
        _ = try await query(
            """
            INSERT INTO maintenance_cases (vin, need, state, service_partner_id, opened_at_ms, updated_at_ms,
                closed_at_ms, last_sequence, notifications)
            SELECT u.vin, u.need, u.state, u.partner, u.opened, CASE WHEN u.has_updated THEN u.updated END,
                   CASE WHEN u.has_closed THEN u.closed END, u.seq, u.notifications
            FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::boolean[], $7::bigint[],
                        $8::boolean[], $9::bigint[], $10::bigint[], $11::integer[])
                AS u(vin, need, state, partner, opened, has_updated, updated, has_closed, closed, seq, notifications)
            """, binds).collect()
    }

    func insertChargeSessions(_ sessions: [ChargeSessionRecord]) async throws -> Int {
        var binds = PostgresBindings()
        binds.append(sessions.map(\.vin.description))
        binds.append(sessions.map(\.sessionID))
        binds.append(sessions.map { Self.seq($0.sequence) })
        binds.append(sessions.map(\.recordedAtMs))
        binds.append(sessions.map(\.startedAtMs))
        binds.append(sessions.map(\.endedAtMs))
        binds.append(sessions.map { Int64($0.socStartPermille) })
        binds.append(sessions.map { Int64($0.socEndPermille) })
        binds.append(sessions.map { Int64($0.energyWh) })
        binds.append(sessions.map { Int64($0.maxPowerW) })
        binds.append(sessions.map(\.current))
        binds.append(sessions.map(\.site))
        binds.append(sessions.map(\.endReason))
        binds.append(sessions.map { $0.sealedPosition != nil })
        binds.append(sessions.map { ByteBuffer(bytes: $0.sealedPosition ?? []) })
        binds.append(sessions.map { $0.keyID != nil })
        binds.append(sessions.map { $0.keyID ?? "" })
        binds.append(sessions.map { $0.sealedSessionID != nil })
        binds.append(sessions.map { ByteBuffer(bytes: $0.sealedSessionID ?? []) })
        return try await count(
            """
            WITH inserted AS (
                INSERT INTO charge_sessions (vin, session_id, sequence, recorded_at_ms, started_at_ms, ended_at_ms,
                    soc_start_permille, soc_end_permille, energy_wh, max_power_w, current, site, end_reason,
                    sealed_position, key_id, sealed_session_id)
                SELECT u.vin, u.id, u.seq, u.at, u.started, u.ended, u.soc_start, u.soc_end, u.energy, u.power,
                       u.current, u.site, u.reason, CASE WHEN u.has_sealed THEN u.sealed END,
                       CASE WHEN u.has_key THEN u.key END, CASE WHEN u.has_sealed_id THEN u.sealed_id END
                FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                            $8::bigint[], $9::bigint[], $10::bigint[], $11::integer[], $12::integer[], $13::integer[],
                            $14::boolean[], $15::bytea[], $16::boolean[], $17::text[], $18::boolean[], $19::bytea[])
                    AS u(vin, id, seq, at, started, ended, soc_start, soc_end, energy, power, current, site, reason,
                         has_sealed, sealed, has_key, key, has_sealed_id, sealed_id)
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT count(*) FROM inserted
            """, binds)
    }

    func insertProbes(_ probes: [PackedProbe], bytes: [UInt8]) async throws -> Insertion<ProbeKey> {
        var binds = PostgresBindings()
        binds.append(probes.map(\.key.pseudonym))
        binds.append(probes.map { Self.seq($0.key.sequence) })
        binds.append(probes.map(\.firstTMs))
        binds.append(probes.map { Int32($0.pointCount) })
        binds.append(probes.map { ByteBuffer(bytes: bytes[$0.blob]) })
        return try await insertNew(
            """
            INSERT INTO probes (pseudonym, sequence, t_ms, point_count, points)
            SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::integer[], $5::bytea[])
            ON CONFLICT DO NOTHING RETURNING pseudonym AS k1, sequence AS k2
            """, rows: probes.count, binds
        ) { pseudonym, seq in ProbeKey(pseudonym: pseudonym, sequence: UInt64(bitPattern: seq)) }
    }

    func addToAggregates(_ sums: [(TrafficDelta.Key, TrafficDelta.Sums)]) async throws {
        // Each row's histogram and vehicle set as a slice of one flat array
        // (1-based bounds): UNNEST cannot take an array of arrays row by
        // row, and slices of bound arrays need no parsing, where array
        // literals as text were parsed row by row. Trailing empty buckets
        // are left out (most speeds lie in the lower third); the
        // element-wise sum below takes arrays of different lengths, and
        // readers count missing buckets as 0.
        var histogramFirst: [Int64] = [], histogramLast: [Int64] = [], histograms: [Int64] = []
        var vehiclesFirst: [Int64] = [], vehiclesLast: [Int64] = [], vehicles: [Int64] = []
        for (_, sum) in sums {
            let counts = sum.histogram.counts
            histogramFirst.append(Int64(histograms.count + 1))
            histograms.append(contentsOf: counts[..<((counts.lastIndex { $0 != 0 } ?? -1) + 1)].lazy.map(Int64.init))
            histogramLast.append(Int64(histograms.count))
            vehiclesFirst.append(Int64(vehicles.count + 1))
            vehicles.append(contentsOf: sum.vehicles)
            vehiclesLast.append(Int64(vehicles.count))
        }
        var binds = PostgresBindings()
        binds.append(sums.map(\.0.tile))
        binds.append(sums.map(\.0.minuteMs))
        binds.append(sums.map { Int64($0.1.points) })
        binds.append(sums.map(\.1.speedSumDkmh))
        binds.append(histogramFirst)
        binds.append(histogramLast)
        binds.append(vehiclesFirst)
        binds.append(vehiclesLast)
        binds.append(histograms)
        binds.append(vehicles)
        // The vehicles new to a stored row are those its set lacks (a NULL
        // set, cleared by retention, lacks all).
        _ = try await query(
            """
            INSERT INTO traffic_aggregates (tile, minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram, vehicles)
            SELECT u.tile, u.minute, u.points, u.vehicles_last - u.vehicles_first + 1, u.speed,
                   ($9::bigint[])[u.histogram_first:u.histogram_last], ($10::bigint[])[u.vehicles_first:u.vehicles_last]
            FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                AS u(tile, minute, points, speed, histogram_first, histogram_last, vehicles_first, vehicles_last)
            ON CONFLICT (tile, minute_ms) DO UPDATE SET
                point_count = traffic_aggregates.point_count + excluded.point_count,
                vehicle_count = traffic_aggregates.vehicle_count
                    + (SELECT count(*) FROM unnest(excluded.vehicles) AS v(key)
                       WHERE traffic_aggregates.vehicles IS NULL OR NOT v.key = ANY (traffic_aggregates.vehicles)),
                vehicles = ARRAY(SELECT DISTINCT v.key FROM unnest(coalesce(traffic_aggregates.vehicles, '{}') || excluded.vehicles) AS v(key) ORDER BY v.key),
                speed_sum_dkmh = traffic_aggregates.speed_sum_dkmh + excluded.speed_sum_dkmh,
                speed_histogram = CASE WHEN traffic_aggregates.speed_histogram IS NULL THEN excluded.speed_histogram ELSE
                    (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
                     FROM unnest(traffic_aggregates.speed_histogram, excluded.speed_histogram) WITH ORDINALITY AS h(a, b, i)) END
            """, binds).collect()
    }

    /// `{1,2,3}`: an array literal as text, one per row of a `text[]`
    /// parameter (the schema-7 migration's vehicle sets).
    static func arrayLiteral(_ values: some Sequence<some BinaryInteger>) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    func addToCounters(_ deltas: [(String, Int)]) async throws {
        var binds = PostgresBindings()
        binds.append(deltas.map(\.0))
        binds.append(deltas.map { Int64($0.1) })
        _ = try await query(
            """
            INSERT INTO pipeline_counters (name, value)
            SELECT * FROM UNNEST($1::text[], $2::bigint[])
            ON CONFLICT (name) DO UPDATE SET value = pipeline_counters.value + excluded.value
            """, binds).collect()
    }
}

extension PostgresWriter: LifecycleSQL {
    static func placeholder(_ i: Int) -> String { "$\(i)" }
    static var begin: String { "BEGIN" }

    private static func binds(_ values: [LifecycleBind]) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values {
            switch value {
            case .int(let v): binds.append(v)
            case .text(let v): binds.append(v)
            case .blob(let v): binds.append(ByteBuffer(bytes: v))
            case .null: binds.appendNull()
            }
        }
        return binds
    }

    func statement(_ sql: String) async throws { try await execute(sql) }

    func removeVehicles(_ keys: [Int64]) async throws -> Int {
        var binds = PostgresBindings()
        binds.append(VehicleSet.sortedDistinct(keys))
        var n = 0
        for try await _ in try await query(
            """
            UPDATE traffic_aggregates SET vehicles = ARRAY(SELECT unnest(vehicles) EXCEPT SELECT unnest($1::bigint[]) ORDER BY 1)
            WHERE vehicles && $1::bigint[] RETURNING 1
            """, binds) { n += 1 }
        return n
    }

    func returnedRows(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int {
        var n = 0
        for try await _ in try await query(sql, Self.binds(binds)) { n += 1 }
        return n
    }

    func integer(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int {
        try await count(sql, Self.binds(binds))
    }

    func sealedSessions(_ sql: String, _ binds: [LifecycleBind]) async throws -> [SealedSession] {
        var out: [SealedSession] = []
        for try await (vin, session, position, sealedID, key) in try await query(sql, Self.binds(binds))
            .decode((String, String, ByteBuffer?, ByteBuffer?, String?).self)
        {
            guard let vin = VIN(vin) else { throw StoreError(backend: .postgres, operation: "sessionsToReseal", message: "a stored VIN is malformed") }
            out.append(SealedSession(
                vin: vin, sessionID: session, sealedPosition: position.map { Array($0.readableBytesView) },
                sealedSessionID: sealedID.map { Array($0.readableBytesView) }, keyID: key))
        }
        return out
    }
}

extension PostgresStore {
    public func countExpired(_ rule: RetentionRule, before cutoffMs: Int64) async throws(StoreError) -> Int {
        try await run("countExpired") { try await DataLifecycle.countExpired(rule, before: cutoffMs, $0) }
    }

    public func sweep(_ rule: RetentionRule, before cutoffMs: Int64, limit: Int) async throws(StoreError) -> Int {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("sweep") { try await DataLifecycle.sweep(rule, before: cutoffMs, limit: limit, $0) }
        }
    }

    public func erase(_ vin: VIN, pseudonyms: [String]) async throws(StoreError) -> Erasure {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("erase") { try await DataLifecycle.erase(vin, pseudonyms: pseudonyms, $0) }
        }
    }

    public func sessionsToReseal(keyID: String, limit: Int) async throws(StoreError) -> [SealedSession] {
        try await run("sessionsToReseal") { try await DataLifecycle.sessionsToReseal(keyID: keyID, limit: limit, $0) }
    }

    public func reseal(_ replaced: [(old: SealedSession, new: SealedSession)]) async throws(StoreError) -> Int {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("reseal") { try await DataLifecycle.reseal(replaced, $0) }
        }
    }
}
