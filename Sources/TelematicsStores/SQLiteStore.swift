import Foundation
import Logging
import NIOCore
import SQLiteNIO
import TelematicsWire

/// The store in one SQLite database file in a data directory: for a single
/// pipeline instance, development and tests.
///
/// WAL journal with `synchronous=NORMAL`: a commit is one append to the WAL,
/// durable across a process crash (the OS still has it), and readers never
/// block the writer. Each ``apply(_:)`` is one `BEGIN IMMEDIATE ... COMMIT`
/// transaction. sqlite-nio prepares every statement anew and offers no
/// statement handles to reuse, so the writes are multi-row
/// `INSERT ... VALUES (...), (...) ... RETURNING` statements of up to a few
/// hundred rows each: a batch of 10,000 rows is a few dozen statements,
/// not 10,000. The actor serialises all work on the one connection.
public actor SQLiteStore: TelematicsStore {
    /// The database file's name inside the data directory.
    public static let fileName = "telematics.sqlite"

    /// Always ``StoreBackend/sqlite``.
    public nonisolated let backend = StoreBackend.sqlite
    /// The data directory.
    public nonisolated let directory: String
    private let connection: SQLiteConnection
    /// One transaction at a time on the connection (batches, sweeps, erases, re-seals).
    private let gate = TransactionGate()
    /// A second connection that moves the WAL into the database file in the
    /// background (see ``checkpointInterval``).
    private let checkpointer: SQLiteConnection
    private let checkpoints: Task<Void, Never>
    private var isClosed = false

    /// How often the WAL is checkpointed in the background. A PASSIVE
    /// checkpoint on the second connection copies what it can without
    /// blocking the writer.
    static let checkpointInterval = Duration.milliseconds(500)

    /// WAL pages (4 KiB) after which the writing connection checkpoints
    /// itself at a COMMIT (`wal_autocheckpoint`). Background checkpoints
    /// alone never catch up with a writer that commits all the time, and
    /// the WAL is reused from its start only after a checkpoint has copied
    /// all of it: without this the WAL grew to 5 GiB on 1,000,000 records,
    /// every append allocating and zeroing new blocks of the file. With
    /// the background having copied most frames, the writer's own
    /// checkpoint copies the rest and the next transaction starts the WAL over.
    /// 128 MiB rather than less: a 10,000-record batch of heavy traffic
    /// dirties thousands of pages, and a page written by several batches
    /// between checkpoints is copied once. On the foundation capture
    /// (1,000,000 records) COMMITs took 5.6 s in all at 8,192 pages, 3.6 s
    /// at 32,768.
    static let autoCheckpointPages = 32_768

    /// Opens (creating as needed) the store in `directory`: creates the
    /// directory, the database file and the schema, or migrates an older
    /// schema. Fails with a ``StoreError`` naming the directory when it cannot
    /// be created or written.
    public init(directory: String, logger: Logger = Logger(label: "telematics.stores.sqlite")) async throws(StoreError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw StoreError(backend: .sqlite, operation: "open", message: "data directory \(directory) exists but is not a directory")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StoreError(backend: .sqlite, operation: "open", message: "cannot create data directory \(directory): \(error.localizedDescription)")
            }
        }
        // access(2) answers for the real user, so it also catches a
        // read-only mount where root's permission bits would not.
        guard access(directory, W_OK) == 0 else {
            throw StoreError(backend: .sqlite, operation: "open", message: "data directory \(directory) is not writable: \(String(cString: strerror(errno)))")
        }
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw StoreError(backend: .sqlite, operation: "open", message: "cannot open \(path): \(error)")
        }
        do {
            try await Self.useWAL(connection, path: path)
            // A batch touches thousands of pages: with SQLite's 2 MiB default
            // cache they spill to the file mid-transaction, and statement
            // journals of multi-row upserts go to temporary files. 64 MiB of
            // cache and journals in memory keep a batch in memory until COMMIT.
            _ = try await connection.query("PRAGMA cache_size=-65536")
            _ = try await connection.query("PRAGMA temp_store=MEMORY")
            _ = try await connection.query("PRAGMA wal_autocheckpoint=\(Self.autoCheckpointPages)")
            // Merges a batch's speed histogram into a stored aggregate row.
            try await connection.install(customFunction: SQLiteCustomFunction("tm_hist_add", argumentCount: 2, pure: true) { args in
                let blobs = args.map { $0.blob.map { Array($0.readableBytesView) } }
                return ByteBuffer(bytes: SpeedHistogram.addPacked(blobs[0], blobs[1]))
            }).get()
            // A batch's vehicles merged into a stored aggregate's (VehicleSet):
            // how many are new, and the union. A NULL set (cleared by
            // retention) counts as empty.
            try await connection.install(customFunction: SQLiteCustomFunction("tm_vehicles_added", argumentCount: 2, pure: true) { args in
                let sets = Self.vehicleSets(args)
                return VehicleSet.added(to: sets[0], from: sets[1])
            }).get()
            try await connection.install(customFunction: SQLiteCustomFunction("tm_vehicles_union", argumentCount: 2, pure: true) { args in
                let sets = Self.vehicleSets(args)
                return ByteBuffer(bytes: VehicleSet.blob(VehicleSet.union(sets[0], sets[1])))
            }).get()
            // An erasure: the set without the keys of the second blob, and
            // whether the set holds any of them.
            try await connection.install(customFunction: SQLiteCustomFunction("tm_vehicles_without", argumentCount: 2, pure: true) { args in
                let sets = Self.vehicleSets(args)
                return ByteBuffer(bytes: VehicleSet.blob(VehicleSet.subtracting(sets[0], Set(sets[1]))))
            }).get()
            try await connection.install(customFunction: SQLiteCustomFunction("tm_vehicles_meet", argumentCount: 2, pure: true) { args in
                let sets = Self.vehicleSets(args)
                return !Set(sets[1]).isDisjoint(with: sets[0])
            }).get()
            // Schema 6's migration: the dense histograms of schema 4 and 5 made sparse.
            try await connection.install(customFunction: SQLiteCustomFunction("tm_hist_from_dense", argumentCount: 1, pure: true) { args in
                let sparse = args[0].blob.flatMap { SpeedHistogram.fromDense($0.readableBytesView) }
                return sparse.map { ByteBuffer(bytes: $0) }
            }).get()
            try await Self.migrate(connection)
        } catch {
            try? await connection.close()
            if let error = error as? StoreError { throw error }
            throw StoreError(backend: .sqlite, operation: "migrate", message: "\(path): \(error)")
        }
        let checkpointer: SQLiteConnection
        do {
            checkpointer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            try? await connection.close()
            throw StoreError(backend: .sqlite, operation: "open", message: "cannot open \(path) for checkpoints: \(error)")
        }
        self.directory = directory
        self.connection = connection
        self.checkpointer = checkpointer
        checkpoints = Task { [checkpointer] in
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.checkpointInterval)
                // Busy or failed: the next round tries again; the WAL only grows meanwhile.
                _ = try? await checkpointer.query("PRAGMA wal_checkpoint(PASSIVE)")
            }
        }
    }

    /// The ``VehicleSet`` blobs a vehicle function is called with (a NULL
    /// set, cleared by retention, or an unreadable one counts as empty).
    private static func vehicleSets(_ args: [SQLiteData]) -> [[Int64]] {
        args.map { $0.blob.flatMap { VehicleSet.keys($0.readableBytesView) } ?? [] }
    }

    deinit {
        // A store dropped without close() must not leave sqlite-nio's handle
        // open (its deinit asserts); the future keeps the connection alive.
        checkpoints.cancel()
        if !isClosed {
            _ = checkpointer.close()
            _ = connection.close()
        }
    }

    private static func migrate(_ connection: SQLiteConnection) async throws {
        _ = try await connection.query("BEGIN IMMEDIATE")
        do {
            _ = try await connection.query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            let current = try await connection.query("SELECT max(version) AS v FROM schema_version")
                .first?.column("v")?.integer ?? 0
            guard current <= Schema.version else {
                throw StoreError(
                    backend: .sqlite, operation: "migrate",
                    message: "schema version \(current) is newer than this program's \(Schema.version)")
            }
            for version in (current + 1)...max(current + 1, Schema.version) where version <= Schema.version {
                for statement in Schema.sqlite[version - 1] { _ = try await connection.query(statement) }
                if version == Schema.vehicleSetsVersion { try await SQLiteWriter(connection: connection).moveMembershipsIntoSets() }
                _ = try await connection.query("INSERT INTO schema_version (version) VALUES (?)", [.integer(version)])
            }
            _ = try await connection.query("COMMIT")
        } catch {
            _ = try? await connection.query("ROLLBACK")
            throw error
        }
    }

    /// Puts a connection's database in WAL mode with `synchronous=NORMAL`:
    /// a commit is one append to the WAL, durable across a process crash,
    /// and readers never block the writer. Both SQLite stores open so.
    static func useWAL(_ connection: SQLiteConnection, path: String) async throws {
        let mode = try await connection.query("PRAGMA journal_mode=WAL").first?.columns.first?.data.string
        guard mode?.lowercased() == "wal" else {
            throw StoreError(backend: .sqlite, operation: "open", message: "\(path): journal_mode=WAL refused (got \(mode ?? "nothing"))")
        }
        _ = try await connection.query("PRAGMA synchronous=NORMAL")
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

    /// Applies the batch in one `BEGIN IMMEDIATE ... COMMIT`; rolls back on any error.
    public func apply(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult {
        if batch.isEmpty { return StoreBatchResult() }
        return try await gate.exclusively { () async throws(StoreError) in try await self.applyInTransaction(batch) }
    }

    private func applyInTransaction(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult {
        try await run("apply") { connection in
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                let result = try await applyBatch(batch, with: SQLiteWriter(connection: connection))
                _ = try await connection.query("COMMIT")
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// Stored consent states of `vins`, in one query per 500 VINs.
    public func consent(for vins: [VIN]) async throws(StoreError) -> [VIN: StoredConsent] {
        try await run("consent") { try await SQLiteWriter(connection: $0).storedConsents(uniqued(vins)) }
    }

    /// The vehicle's technical state.
    public func vehicleState(_ vin: VIN) async throws(StoreError) -> VehicleTechnicalState? {
        try await run("vehicleState") { connection in
            guard let row = try await connection.query(
                """
                SELECT recorded_at_ms, sequence, mileage_km, battery_12v_mv, service_items, check_controls
                FROM vehicle_states WHERE vin = ?
                """, [.text(vin.description)]).first
            else { return nil }
            let r = SQLiteRowReader(row)
            return VehicleTechnicalState(
                vin: vin, recordedAtMs: try r.int64(0), sequence: try r.uint64(1), mileageKm: try r.uint32(2),
                battery12vMv: try r.uint32(3), serviceItems: try TechnicalData.serviceItems(try r.text(4)),
                checkControls: try TechnicalData.checkControls(try r.text(5)))
        }
    }

    /// The vehicle's calls by sequence.
    public func teleserviceCalls(_ vin: VIN) async throws(StoreError) -> [TeleserviceCallRecord] {
        try await run("teleserviceCalls") { connection in
            try await connection.query(
                """
                SELECT sequence, recorded_at_ms, trigger, mileage_km, battery_12v_mv, lat_e7, lon_e7,
                       service_partner_id, in_workshop, service_items, check_controls
                FROM teleservice_calls WHERE vin = ? ORDER BY sequence
                """, [.text(vin.description)]
            ).map { row in
                let r = SQLiteRowReader(row)
                let position: Position? = r.isNull(5) ? nil : Position(latE7: try r.int32(5), lonE7: try r.int32(6))
                return TeleserviceCallRecord(
                    vin: vin, sequence: try r.uint64(0), recordedAtMs: try r.int64(1), trigger: try r.int32(2),
                    mileageKm: try r.uint32(3), battery12vMv: try r.uint32(4), position: position,
                    servicePartnerID: try r.text(7), inWorkshop: try r.int64(8) != 0,
                    serviceItems: try TechnicalData.serviceItems(try r.text(9)),
                    checkControls: try TechnicalData.checkControls(try r.text(10)))
            }
        }
    }

    /// The vehicle's cases, oldest first.
    public func maintenanceCases(_ vin: VIN, includeClosed: Bool) async throws(StoreError) -> [MaintenanceCase] {
        try await run("maintenanceCases") { connection in
            let filter = includeClosed ? "" : " AND state <> 'closed'"
            return try await connection.query(
                "SELECT \(SQLiteWriter.caseColumns) FROM maintenance_cases WHERE vin = ?\(filter) ORDER BY case_id",
                [.text(vin.description)]
            ).map(SQLiteWriter.maintenanceCase)
        }
    }

    /// Cases across vehicles, newest first, in one indexed query.
    public func maintenanceCases(partner: String?, openOnly: Bool, limit: Int) async throws(StoreError) -> [MaintenanceCase] {
        try await run("maintenanceCases") { connection in
            var conditions: [String] = []
            var binds: [SQLiteData] = []
            if let partner {
                conditions.append("service_partner_id = ?")
                binds.append(.text(partner))
            }
            if openOnly { conditions.append("state <> 'closed'") }
            binds.append(.integer(max(0, limit)))
            let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await connection.query(
                "SELECT \(SQLiteWriter.caseColumns) FROM maintenance_cases\(filter) ORDER BY case_id DESC LIMIT ?", binds
            ).map(SQLiteWriter.maintenanceCase)
        }
    }

    /// The vehicle's sessions by start time.
    public func chargeSessions(_ vin: VIN) async throws(StoreError) -> [ChargeSessionRecord] {
        try await run("chargeSessions") { connection in
            try await connection.query(
                """
                SELECT session_id, sequence, recorded_at_ms, started_at_ms, ended_at_ms, soc_start_permille,
                       soc_end_permille, energy_wh, max_power_w, current, site, end_reason, sealed_position, key_id,
                       sealed_session_id
                FROM charge_sessions WHERE vin = ? ORDER BY started_at_ms, session_id
                """, [.text(vin.description)]
            ).map { row in
                let r = SQLiteRowReader(row)
                return ChargeSessionRecord(
                    vin: vin, sessionID: try r.text(0), sequence: try r.uint64(1), recordedAtMs: try r.int64(2),
                    startedAtMs: try r.int64(3), endedAtMs: try r.int64(4), socStartPermille: try r.uint32(5),
                    socEndPermille: try r.uint32(6), energyWh: try r.uint32(7), maxPowerW: try r.uint32(8),
                    current: try r.int32(9), site: try r.int32(10), endReason: try r.int32(11),
                    sealedPosition: r.isNull(12) ? nil : try r.bytes(12), keyID: r.isNull(13) ? nil : try r.text(13),
                    sealedSessionID: r.isNull(14) ? nil : try r.bytes(14))
            }
        }
    }

    /// Aggregates of `tile` in the minute range, by minute.
    public func trafficAggregates(tile: Int64, fromMinute: Int64, toMinute: Int64) async throws(StoreError) -> [TrafficAggregate] {
        try await run("trafficAggregates") { connection in
            let binds: [SQLiteData] = [.integer(Int(tile)), .integer(Int(fromMinute)), .integer(Int(toMinute))]
            var histograms: [Int64: SpeedHistogram] = [:]
            for row in try await connection.query(
                "SELECT minute_ms, bucket, point_count FROM traffic_speed_buckets WHERE tile = ? AND minute_ms BETWEEN ? AND ?",
                binds)
            {
                let r = SQLiteRowReader(row)
                histograms[try r.int64(0), default: SpeedHistogram()].add(bucket: Int(try r.int64(1)), count: Int(try r.int64(2)))
            }
            return try await connection.query(
                """
                SELECT minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram FROM traffic_aggregates
                WHERE tile = ? AND minute_ms BETWEEN ? AND ? ORDER BY minute_ms
                """, binds
            ).map { row in
                let r = SQLiteRowReader(row)
                let minute = try r.int64(0)
                var histogram = histograms[minute] ?? SpeedHistogram()
                histogram.add(try Self.histogram(row, column: 4))
                return TrafficAggregate(
                    tile: tile, minuteMs: minute, pointCount: Int(try r.int64(1)), vehicleCount: Int(try r.int64(2)),
                    speedSumDkmh: try r.int64(3), histogram: histogram)
            }
        }
    }

    /// Aggregates of every tile since `sinceMinute`, newest first: one query
    /// (the aggregates joined to their buckets), so one consistent snapshot.
    public func trafficAggregates(sinceMinute: Int64, limit: Int) async throws(StoreError) -> [TrafficAggregate] {
        try await run("trafficAggregates") { connection in
            let rows = try await connection.query(Schema.recentTrafficQuery(placeholder: { _ in "?" }),
                                                  [.integer(Int(sinceMinute)), .integer(max(0, limit))])
            var out: [TrafficAggregate] = []
            for row in rows {
                let r = SQLiteRowReader(row)
                let tile = try r.int64(0), minute = try r.int64(1)
                if out.last?.tile != tile || out.last?.minuteMs != minute {
                    out.append(TrafficAggregate(
                        tile: tile, minuteMs: minute, pointCount: Int(try r.int64(2)), vehicleCount: Int(try r.int64(3)),
                        speedSumDkmh: try r.int64(4), histogram: try Self.histogram(row, column: 7)))
                }
                if !r.isNull(5) { out[out.count - 1].histogram.add(bucket: Int(try r.int64(5)), count: Int(try r.int64(6))) }
            }
            return out
        }
    }

    /// The speed histogram stored in an aggregate row (empty when NULL: a
    /// row of schema 3 or before, whose buckets are rows of their own).
    private static func histogram(_ row: SQLiteRow, column: Int) throws -> SpeedHistogram {
        guard let blob = row.columns[column].data.blob else { return SpeedHistogram() }
        guard let histogram = SpeedHistogram(packed: blob.readableBytesView) else {
            throw SQLiteRowReader.Mismatch(description: "unreadable speed histogram of \(blob.readableBytes) bytes")
        }
        return histogram
    }

    /// The pipeline's counters.
    public func counters() async throws(StoreError) -> [String: Int] {
        try await run("counters") { connection in
            var out: [String: Int] = [:]
            for row in try await connection.query("SELECT name, value FROM pipeline_counters") {
                let r = SQLiteRowReader(row)
                out[try r.text(0)] = Int(try r.int64(1))
            }
            return out
        }
    }

    /// Raw probe points stored.
    public func probePointCount() async throws(StoreError) -> Int {
        try await run("probePointCount") { connection in
            Int(try SQLiteRowReader(try await connection.query("SELECT coalesce(sum(point_count), 0) FROM probes")[0]).int64(0))
        }
    }

    /// The stored points of a pseudonym's probes, by sequence and index.
    public func probePoints(pseudonym: String) async throws(StoreError) -> [ProbePoint] {
        try await run("probePoints") { connection in
            try await connection.query(
                "SELECT sequence, points, points_format FROM probes WHERE pseudonym = ? ORDER BY sequence", [.text(pseudonym)]
            ).flatMap { row -> [ProbePoint] in
                let r = SQLiteRowReader(row)
                let sequence = try r.uint64(0)
                guard let blob = row.columns[1].data.blob,
                      let points = ProbePacking.unpack(blob.readableBytesView, format: Int(try r.int64(2)), pseudonym: pseudonym, sequence: sequence)
                else { throw SQLiteRowReader.Mismatch(description: "unreadable points of probe \(pseudonym)/\(sequence)") }
                return points
            }
        }
    }

    /// Row counts of every table, in one query.
    public func stats() async throws(StoreError) -> StoreStats {
        try await run("stats") { connection in
            let r = SQLiteRowReader(try await connection.query(Schema.statsQuery(vehicles: "length(vehicles) / 8"))[0])
            var s = StoreStats()
            s.consents = Int(try r.int64(0))
            s.vehicleStates = Int(try r.int64(1))
            s.teleserviceCalls = Int(try r.int64(2))
            s.maintenanceCases = Int(try r.int64(3))
            s.openMaintenanceCases = Int(try r.int64(4))
            s.chargeSessions = Int(try r.int64(5))
            s.probePoints = Int(try r.int64(6))
            s.trafficAggregates = Int(try r.int64(7))
            s.trafficVehicles = Int(try r.int64(8))
            s.trafficSpeedBuckets = Int(try r.int64(9))
            return s
        }
    }

    /// Closes the database; later calls fail with "store is closed".
    public func close() async {
        guard !isClosed else { return }
        isClosed = true
        checkpoints.cancel()
        await checkpoints.value
        try? await checkpointer.close()
        try? await connection.close()
    }
}

/// Reads columns of a row by position, failing with a message instead of
/// trapping on a type the schema does not allow.
struct SQLiteRowReader {
    let columns: [SQLiteColumn]
    init(_ row: SQLiteRow) { columns = row.columns }

    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    private func data(_ i: Int) throws -> SQLiteData {
        guard columns.indices.contains(i) else { throw Mismatch(description: "no column \(i)") }
        return columns[i].data
    }
    func isNull(_ i: Int) -> Bool { (try? data(i))?.isNull ?? true }
    func int64(_ i: Int) throws -> Int64 {
        guard case .integer(let v) = try data(i) else { throw Mismatch(description: "column \(columns[i].name) is not an integer") }
        return Int64(v)
    }
    func uint64(_ i: Int) throws -> UInt64 { UInt64(bitPattern: try int64(i)) }
    func int32(_ i: Int) throws -> Int32 {
        guard let v = Int32(exactly: try int64(i)) else { throw Mismatch(description: "column \(columns[i].name) out of range") }
        return v
    }
    func uint32(_ i: Int) throws -> UInt32 {
        guard let v = UInt32(exactly: try int64(i)) else { throw Mismatch(description: "column \(columns[i].name) out of range") }
        return v
    }
    func text(_ i: Int) throws -> String {
        guard case .text(let v) = try data(i) else { throw Mismatch(description: "column \(columns[i].name) is not text") }
        return v
    }
    func bytes(_ i: Int) throws -> [UInt8] {
        switch try data(i) {
        case .blob(let b): return Array(b.readableBytesView)
        case .null: return []
        default: throw Mismatch(description: "column \(columns[i].name) is not a blob")
        }
    }
}

extension SQLiteData {
    /// An integer column value; u64 by bit pattern (SQLite integers are i64).
    static func int(_ value: some BinaryInteger) -> SQLiteData { .integer(Int(truncatingIfNeeded: value)) }
    static func seq(_ value: UInt64) -> SQLiteData { .integer(Int(Int64(bitPattern: value))) }
    static func bool(_ value: Bool) -> SQLiteData { .integer(value ? 1 : 0) }
    static func vin(_ value: VIN) -> SQLiteData { .text(value.description) }
    static func optionalInt(_ value: (some BinaryInteger)?) -> SQLiteData { value.map { .int($0) } ?? .null }
}

/// The batched writes of ``BatchWriter`` in SQLite's dialect.
struct SQLiteWriter: BatchWriter {
    let connection: SQLiteConnection

    /// Rows per multi-row statement: far below SQLite's 32,766 bound
    /// parameters, large enough that a 10,000-row batch is a few dozen statements.
    static let rowsPerStatement = 500

    /// Runs `sql(n)` (a statement for n rows) over `rows` in chunks, collecting the returned rows.
    private func chunked(
        _ rows: [[SQLiteData]], _ sql: (Int) -> String
    ) async throws -> [SQLiteRow] {
        guard let width = rows.first?.count, width > 0 else { return [] }
        let perStatement = max(1, min(Self.rowsPerStatement, 32_000 / width))
        var out: [SQLiteRow] = []
        var start = 0
        while start < rows.count {
            let end = min(start + perStatement, rows.count)
            var binds: [SQLiteData] = []
            binds.reserveCapacity((end - start) * width)
            for row in rows[start..<end] { binds.append(contentsOf: row) }
            out += try await connection.query(sql(end - start), binds)
            start = end
        }
        return out
    }

    /// The one row `sql` returns.
    private func single(_ sql: String) async throws -> SQLiteRowReader {
        guard let row = try await connection.query(sql).first else { throw SQLiteRowReader.Mismatch(description: "no row from \(sql)") }
        return SQLiteRowReader(row)
    }

    /// "(?,?,?),(?,?,?)" for `rows` rows of `width` columns.
    private static func values(_ rows: Int, _ width: Int) -> String {
        let one = "(" + Array(repeating: "?", count: width).joined(separator: ",") + ")"
        return Array(repeating: one, count: rows).joined(separator: ",")
    }

    private func inList(_ vins: [VIN], _ sql: (String) -> String) async throws -> [SQLiteRow] {
        try await chunked(vins.map { [.vin($0)] }) { n in sql(Array(repeating: "?", count: n).joined(separator: ",")) }
    }

    func storedConsents(_ vins: [VIN]) async throws -> [VIN: StoredConsent] {
        let rows = try await inList(vins) {
            """
            SELECT vin, teleservices, smart_maintenance, charging_history, charging_location, rtti,
                   account_deleted, recorded_at_ms, sequence FROM consents WHERE vin IN (\($0))
            """
        }
        var out: [VIN: StoredConsent] = [:]
        for row in rows {
            let r = SQLiteRowReader(row)
            guard let vin = VIN(try r.text(0)) else { continue }
            out[vin] = StoredConsent(
                state: ConsentState(
                    teleservices: try r.int64(1) != 0, smartMaintenance: try r.int64(2) != 0,
                    chargingHistory: try r.int64(3) != 0, chargingLocation: try r.int64(4) != 0,
                    rtti: try r.int64(5) != 0, accountDeleted: try r.int64(6) != 0),
                recordedAtMs: try r.int64(7), sequence: try r.uint64(8))
        }
        return out
    }

    func upsertConsents(_ changes: [ConsentChange]) async throws {
        _ = try await chunked(changes.map {
            [.vin($0.vin), .bool($0.state.teleservices), .bool($0.state.smartMaintenance), .bool($0.state.chargingHistory),
             .bool($0.state.chargingLocation), .bool($0.state.rtti), .bool($0.state.accountDeleted),
             .int($0.recordedAtMs), .seq($0.sequence)]
        }) {
            """
            INSERT INTO consents (vin, teleservices, smart_maintenance, charging_history, charging_location, rtti,
                                  account_deleted, recorded_at_ms, sequence)
            VALUES \(Self.values($0, 9))
            ON CONFLICT (vin) DO UPDATE SET
                teleservices = excluded.teleservices, smart_maintenance = excluded.smart_maintenance,
                charging_history = excluded.charging_history, charging_location = excluded.charging_location,
                rtti = excluded.rtti, account_deleted = excluded.account_deleted,
                recorded_at_ms = excluded.recorded_at_ms, sequence = excluded.sequence
            WHERE (excluded.recorded_at_ms, excluded.sequence) > (consents.recorded_at_ms, consents.sequence)
            """
        }
    }

    func deleteChargeSessions(_ vins: [VIN]) async throws -> Int {
        try await inList(vins) { "DELETE FROM charge_sessions WHERE vin IN (\($0)) RETURNING vin" }.count
    }

    func insertCalls(_ calls: [TeleserviceCallRecord]) async throws -> Insertion<CallKey> {
        let rows = calls.map { c -> [SQLiteData] in
            [.vin(c.vin), .seq(c.sequence), .int(c.recordedAtMs), .int(c.trigger), .int(c.mileageKm),
             .int(c.battery12vMv), .optionalInt(c.position?.latE7), .optionalInt(c.position?.lonE7),
             .text(c.servicePartnerID), .bool(c.inWorkshop), .text(TechnicalData.json(c.serviceItems)),
             .text(TechnicalData.json(c.checkControls))]
        }
        return try await insertNew(into: "teleservice_calls", keys: "vin, sequence", rows) {
            """
            INSERT OR IGNORE INTO teleservice_calls (vin, sequence, recorded_at_ms, trigger, mileage_km, battery_12v_mv,
                lat_e7, lon_e7, service_partner_id, in_workshop, service_items, check_controls)
            VALUES \(Self.values($0, 12))
            """
        } key: { r in
            guard let vin = VIN(try r.text(0)) else { throw SQLiteRowReader.Mismatch(description: "stored call with an invalid VIN") }
            return CallKey(vin: vin, sequence: try r.uint64(1))
        }
    }

    func upsertVehicleStates(_ calls: [TeleserviceCallRecord]) async throws -> Int {
        try await chunked(calls.map {
            [.vin($0.vin), .int($0.recordedAtMs), .seq($0.sequence), .int($0.mileageKm), .int($0.battery12vMv),
             .text(TechnicalData.json($0.serviceItems)), .text(TechnicalData.json($0.checkControls))]
        }) {
            """
            INSERT INTO vehicle_states (vin, recorded_at_ms, sequence, mileage_km, battery_12v_mv, service_items,
                                        check_controls)
            VALUES \(Self.values($0, 7))
            ON CONFLICT (vin) DO UPDATE SET
                recorded_at_ms = excluded.recorded_at_ms, sequence = excluded.sequence,
                mileage_km = excluded.mileage_km, battery_12v_mv = excluded.battery_12v_mv,
                service_items = excluded.service_items, check_controls = excluded.check_controls
            WHERE (excluded.recorded_at_ms, excluded.sequence) > (vehicle_states.recorded_at_ms, vehicle_states.sequence)
            RETURNING vin
            """
        }.count
    }

    static let caseColumns = """
        case_id, vin, need, state, service_partner_id, opened_at_ms, updated_at_ms, closed_at_ms, last_sequence,
        notifications
        """

    @Sendable static func maintenanceCase(_ row: SQLiteRow) throws -> MaintenanceCase {
        let r = SQLiteRowReader(row)
        let vinText = try r.text(1), needKey = try r.text(2), stateText = try r.text(3)
        guard let vin = VIN(vinText), let need = MaintenanceNeed(key: needKey), let state = CaseState(rawValue: stateText) else {
            throw SQLiteRowReader.Mismatch(description: "unreadable maintenance case \(try r.int64(0))")
        }
        return MaintenanceCase(
            id: try r.int64(0), vin: vin, need: need, state: state, servicePartnerID: try r.text(4),
            openedAtMs: try r.int64(5), updatedAtMs: r.isNull(6) ? nil : try r.int64(6),
            closedAtMs: r.isNull(7) ? nil : try r.int64(7), lastSequence: try r.uint64(8),
            notifications: Int(try r.int64(9)))
    }

    func openCases(_ vins: [VIN]) async throws -> [MaintenanceCase] {
        try await inList(vins) {
            "SELECT \(Self.caseColumns) FROM maintenance_cases WHERE state <> 'closed' AND vin IN (\($0)) ORDER BY case_id"
        }.map(Self.maintenanceCase)
    }

    func updateCases(_ cases: [MaintenanceCase]) async throws {
        _ = try await chunked(cases.map {
            [.int($0.id ?? 0), .text($0.state.rawValue), .text($0.servicePartnerID), .optionalInt($0.updatedAtMs),
             .optionalInt($0.closedAtMs), .seq($0.lastSequence), .int($0.notifications)]
        }) {
            // One UPDATE ... FROM (VALUES ...) per chunk, not one per case.
            """
            UPDATE maintenance_cases SET state = u.column2, service_partner_id = u.column3,
                updated_at_ms = u.column4, closed_at_ms = u.column5, last_sequence = u.column6,
                notifications = u.column7
            FROM (VALUES \(Self.values($0, 7))) AS u WHERE maintenance_cases.case_id = u.column1
            """
        }
    }

    func insertCases(_ cases: [MaintenanceCase]) async throws {
        _ = try await chunked(cases.map {
            [.vin($0.vin), .text($0.need.key), .text($0.state.rawValue), .text($0.servicePartnerID),
             .int($0.openedAtMs), .optionalInt($0.updatedAtMs), .optionalInt($0.closedAtMs), .seq($0.lastSequence),
             .int($0.notifications)]
        }) {
            """
            INSERT INTO maintenance_cases (vin, need, state, service_partner_id, opened_at_ms, updated_at_ms,
                closed_at_ms, last_sequence, notifications)
            VALUES \(Self.values($0, 9))
            """
        }
    }

    func insertChargeSessions(_ sessions: [ChargeSessionRecord]) async throws -> Int {
        try await chunked(sessions.map { s -> [SQLiteData] in
            [.vin(s.vin), .text(s.sessionID), .seq(s.sequence), .int(s.recordedAtMs), .int(s.startedAtMs),
             .int(s.endedAtMs), .int(s.socStartPermille), .int(s.socEndPermille), .int(s.energyWh), .int(s.maxPowerW),
             .int(s.current), .int(s.site), .int(s.endReason),
             s.sealedPosition.map { .blob(ByteBuffer(bytes: $0)) } ?? .null, s.keyID.map { .text($0) } ?? .null,
             s.sealedSessionID.map { .blob(ByteBuffer(bytes: $0)) } ?? .null]
        }) {
            """
            INSERT OR IGNORE INTO charge_sessions (vin, session_id, sequence, recorded_at_ms, started_at_ms, ended_at_ms,
                soc_start_permille, soc_end_permille, energy_wh, max_power_w, current, site, end_reason,
                sealed_position, key_id, sealed_session_id)
            VALUES \(Self.values($0, 16)) RETURNING vin
            """
        }.count
    }

    func insertProbes(_ probes: [PackedProbe], bytes: [UInt8]) async throws -> Insertion<ProbeKey> {
        let rows = probes.map { p -> [SQLiteData] in
            [.text(p.key.pseudonym), .seq(p.key.sequence), .int(p.firstTMs), .int(p.pointCount), .blob(ByteBuffer(bytes: bytes[p.blob]))]
        }
        // OR IGNORE, not ON CONFLICT DO NOTHING: a statement that may abort
        // halfway (the CHECK on the pseudonym) keeps a statement journal, a
        // copy of every page it touches; ignoring instead, it keeps none. So
        // the CHECK is enforced here, before the statement.
        if probes.contains(where: { $0.key.pseudonym.isEmpty }) {
            throw SQLiteRowReader.Mismatch(description: "CHECK constraint failed: a probe without a pseudonym")
        }
        return try await insertNew(into: "probes", keys: "pseudonym, sequence", rows) {
            "INSERT OR IGNORE INTO probes (pseudonym, sequence, t_ms, point_count, points) VALUES \(Self.values($0, 5))"
        } key: { r in
            ProbeKey(pseudonym: try r.text(0), sequence: try r.uint64(1))
        }
    }

    /// Inserts `rows` with `sql(n)` (an INSERT of n rows into the rowid
    /// table `table`, OR IGNORE) and says which it stored.
    /// Usually all of them, and the insert should not pay for telling which
    /// (a RETURNING row each, or a savepoint whose sub-journal copies every
    /// page the insert touches). The transaction is the only writer (BEGIN
    /// IMMEDIATE), so new rows take rowids above the largest before it: when
    /// fewer rows were inserted than given (a redelivery), the rows above it
    /// are the new ones, and `key` reads their `keys` columns.
    private func insertNew<Key: Hashable>(
        into table: String, keys: String, _ rows: [[SQLiteData]], _ sql: (Int) -> String,
        key: (SQLiteRowReader) throws -> Key
    ) async throws -> Insertion<Key> {
        let before = try await single("SELECT coalesce(max(rowid), 0), total_changes() FROM \(table)")
        let lastRowID = try before.int64(0), changesBefore = try before.int64(1)
        _ = try await chunked(rows, sql)
        if try await single("SELECT total_changes()").int64(0) - changesBefore == Int64(rows.count) { return .all }
        var inserted: Set<Key> = []
        for row in try await connection.query("SELECT \(keys) FROM \(table) WHERE rowid > ?", [.integer(Int(lastRowID))]) {
            inserted.insert(try key(SQLiteRowReader(row)))
        }
        return .only(inserted)
    }

    func addToAggregates(_ sums: [(TrafficDelta.Key, TrafficDelta.Sums)]) async throws {
        _ = try await chunked(sums.map {
            [.int($0.0.tile), .int($0.0.minuteMs), .int($0.1.points), .int($0.1.vehicles.count), .int($0.1.speedSumDkmh),
             .blob(ByteBuffer(bytes: $0.1.histogram.packed)), .blob(ByteBuffer(bytes: VehicleSet.blob($0.1.vehicles)))]
        }) {
            // SET reads the row as it was: both vehicle functions see the old set.
            """
            INSERT INTO traffic_aggregates (tile, minute_ms, point_count, vehicle_count, speed_sum_dkmh, speed_histogram, vehicles)
            VALUES \(Self.values($0, 7))
            ON CONFLICT (tile, minute_ms) DO UPDATE SET
                point_count = traffic_aggregates.point_count + excluded.point_count,
                vehicle_count = traffic_aggregates.vehicle_count + tm_vehicles_added(traffic_aggregates.vehicles, excluded.vehicles),
                speed_sum_dkmh = traffic_aggregates.speed_sum_dkmh + excluded.speed_sum_dkmh,
                speed_histogram = tm_hist_add(traffic_aggregates.speed_histogram, excluded.speed_histogram),
                vehicles = tm_vehicles_union(traffic_aggregates.vehicles, excluded.vehicles)
            """
        }
    }

    /// Schema 7: each aggregate's `traffic_vehicles` rows become its vehicle
    /// set, then the table goes.
    func moveMembershipsIntoSets() async throws {
        var sets: [TrafficDelta.Key: [Int64]] = [:]
        for row in try await connection.query("SELECT tile, minute_ms, pseudonym FROM traffic_vehicles") {
            let r = SQLiteRowReader(row)
            sets[TrafficDelta.Key(tile: try r.int64(0), minuteMs: try r.int64(1)), default: []].append(VehicleSet.key(try r.text(2)))
        }
        _ = try await chunked(sets.map { [.int($0.key.tile), .int($0.key.minuteMs), .blob(ByteBuffer(bytes: VehicleSet.blob(VehicleSet.sortedDistinct($0.value))))] }) {
            """
            UPDATE traffic_aggregates SET vehicles = u.column3
            FROM (VALUES \(Self.values($0, 3))) AS u WHERE traffic_aggregates.tile = u.column1 AND traffic_aggregates.minute_ms = u.column2
            """
        }
        _ = try await connection.query("DROP TABLE traffic_vehicles")
    }

    func addToCounters(_ deltas: [(String, Int)]) async throws {
        _ = try await chunked(deltas.map { [.text($0.0), .int($0.1)] }) {
            """
            INSERT INTO pipeline_counters (name, value) VALUES \(Self.values($0, 2))
            ON CONFLICT (name) DO UPDATE SET value = pipeline_counters.value + excluded.value
            """
        }
    }
}

extension SQLiteWriter: LifecycleSQL {
    static func placeholder(_ i: Int) -> String { "?" }
    static var begin: String { "BEGIN IMMEDIATE" }

    private static func binds(_ binds: [LifecycleBind]) -> [SQLiteData] {
        binds.map {
            switch $0 {
            case .int(let v): .integer(Int(v))
            case .text(let v): .text(v)
            case .blob(let v): .blob(ByteBuffer(bytes: v))
            case .null: .null
            }
        }
    }

    func statement(_ sql: String) async throws { _ = try await connection.query(sql) }

    func removeVehicles(_ keys: [Int64]) async throws -> Int {
        let set = SQLiteData.blob(ByteBuffer(bytes: VehicleSet.blob(VehicleSet.sortedDistinct(keys))))
        return try await connection.query(
            """
            UPDATE traffic_aggregates SET vehicles = tm_vehicles_without(vehicles, ?1)
            WHERE vehicles IS NOT NULL AND tm_vehicles_meet(vehicles, ?1) RETURNING 1
            """, [set]).count
    }

    func returnedRows(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int {
        try await connection.query(sql, Self.binds(binds)).count
    }

    func integer(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int {
        let rows = try await connection.query(sql, Self.binds(binds))
        guard let row = rows.first else { return 0 }
        return Int(try SQLiteRowReader(row).int64(0))
    }

    func sealedSessions(_ sql: String, _ binds: [LifecycleBind]) async throws -> [SealedSession] {
        try await connection.query(sql, Self.binds(binds)).map { row in
            let r = SQLiteRowReader(row)
            guard let vin = VIN(try r.text(0)) else { throw SQLiteRowReader.Mismatch(description: "a stored VIN is malformed") }
            return SealedSession(
                vin: vin, sessionID: try r.text(1), sealedPosition: r.isNull(2) ? nil : try r.bytes(2),
                sealedSessionID: r.isNull(3) ? nil : try r.bytes(3), keyID: r.isNull(4) ? nil : try r.text(4))
        }
    }
}

extension SQLiteStore {
    public func countExpired(_ rule: RetentionRule, before cutoffMs: Int64) async throws(StoreError) -> Int {
        try await run("countExpired") { try await DataLifecycle.countExpired(rule, before: cutoffMs, SQLiteWriter(connection: $0)) }
    }

    public func sweep(_ rule: RetentionRule, before cutoffMs: Int64, limit: Int) async throws(StoreError) -> Int {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("sweep") { try await DataLifecycle.sweep(rule, before: cutoffMs, limit: limit, SQLiteWriter(connection: $0)) }
        }
    }

    public func erase(_ vin: VIN, pseudonyms: [String]) async throws(StoreError) -> Erasure {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("erase") { try await DataLifecycle.erase(vin, pseudonyms: pseudonyms, SQLiteWriter(connection: $0)) }
        }
    }

    public func sessionsToReseal(keyID: String, limit: Int) async throws(StoreError) -> [SealedSession] {
        try await run("sessionsToReseal") { try await DataLifecycle.sessionsToReseal(keyID: keyID, limit: limit, SQLiteWriter(connection: $0)) }
    }

    public func reseal(_ replaced: [(old: SealedSession, new: SealedSession)]) async throws(StoreError) -> Int {
        try await gate.exclusively { () async throws(StoreError) in
            try await self.run("reseal") { try await DataLifecycle.reseal(replaced, SQLiteWriter(connection: $0)) }
        }
    }
}
