import TelematicsWire

/// What the retention job deletes, table by table, and by which time.
/// Which period applies to which rule is the privacy module's policy
/// (RULES.md); a store only knows how to find and delete expired rows.
public enum RetentionRule: String, CaseIterable, Sendable, Hashable {
    /// Raw pseudonymised RTTI probes, by their first point's time.
    case rawProbes = "raw-probes"
    /// The vehicle sets behind the distinct-vehicle counts (schema 7; rows
    /// of `traffic_vehicles` before): they link a pseudonym to places, so
    /// they go with the raw points. A sweep clears an aggregate's set and
    /// keeps its counts.
    case trafficMemberships = "traffic-memberships"
    /// Traffic aggregates, by minute.
    case trafficAggregates = "traffic-aggregates"
    /// Speed-histogram rows of schema 1-3 aggregates, by minute.
    case trafficSpeedBuckets = "traffic-speed-buckets"
    /// Charge sessions, by their end.
    case chargeSessions = "charge-sessions"
    /// Teleservice calls, by their time, and only once no case of the
    /// vehicle is open: call data is kept until the case is closed.
    case teleserviceCalls = "teleservice-calls"
    /// Closed maintenance cases, by their closing time.
    case closedCases = "closed-cases"

    /// The table the rule deletes from.
    public var table: String {
        switch self {
        case .rawProbes: "probes"
        case .trafficMemberships: "traffic_aggregates"
        case .trafficAggregates: "traffic_aggregates"
        case .trafficSpeedBuckets: "traffic_speed_buckets"
        case .chargeSessions: "charge_sessions"
        case .teleserviceCalls: "teleservice_calls"
        case .closedCases: "maintenance_cases"
        }
    }

    /// The table's primary key columns (the unique key of `probes`).
    var keyColumns: String {
        switch self {
        case .rawProbes: "t_ms, pseudonym, sequence"
        case .trafficMemberships: "minute_ms, tile"
        case .trafficAggregates: "minute_ms, tile"
        case .trafficSpeedBuckets: "tile, minute_ms, bucket"
        case .chargeSessions: "vin, session_id"
        case .teleserviceCalls: "vin, sequence"
        case .closedCases: "case_id"
        }
    }

    /// Which rows (of the table aliased `x`) have expired, `cutoff` the
    /// placeholder of the cutoff time (ms since the epoch).
    func expired(_ cutoff: String) -> String {
        switch self {
        case .rawProbes: "x.t_ms < \(cutoff)"
        case .trafficMemberships: "x.minute_ms < \(cutoff) AND x.vehicles IS NOT NULL"
        case .trafficAggregates, .trafficSpeedBuckets: "x.minute_ms < \(cutoff)"
        case .chargeSessions: "x.ended_at_ms < \(cutoff)"
        case .teleserviceCalls:
            "x.recorded_at_ms < \(cutoff) AND NOT EXISTS "
                + "(SELECT 1 FROM maintenance_cases m WHERE m.vin = x.vin AND m.state <> 'closed')"
        case .closedCases: "x.state = 'closed' AND x.closed_at_ms < \(cutoff)"
        }
    }

    /// The column a sweep sets to NULL instead of deleting the row.
    var clearedColumn: String? { self == .trafficMemberships ? "vehicles" : nil }

    /// The counter a sweep adds its deletions to.
    public var counter: String { "retention.\(rawValue)" }
}

/// What an erasure removed from one store, table by table.
public struct Erasure: Hashable, Sendable {
    /// Rows deleted per table (tables with none are absent).
    public var deleted: [String: Int]
    /// Rows kept on purpose per table, with the reason (RULES.md).
    public var kept: [String: Kept]

    /// Rows kept and why.
    public struct Kept: Hashable, Sendable {
        public var rows: Int
        public var reason: String
        public init(rows: Int, reason: String) {
            self.rows = rows
            self.reason = reason
        }
    }

    public init(deleted: [String: Int] = [:], kept: [String: Kept] = [:]) {
        self.deleted = deleted
        self.kept = kept
    }
}

/// A charge session's sealed parts and the key that sealed them, for re-sealing.
public struct SealedSession: Hashable, Sendable {
    public var vin: VIN
    /// The stored `session_id`: the keyed reference, or the plain id of a row
    /// written before schema 5 (then ``sealedSessionID`` is nil).
    public var sessionID: String
    public var sealedPosition: [UInt8]?
    public var sealedSessionID: [UInt8]?
    public var keyID: String?

    public init(vin: VIN, sessionID: String, sealedPosition: [UInt8]?, sealedSessionID: [UInt8]?, keyID: String?) {
        self.vin = vin
        self.sessionID = sessionID
        self.sealedPosition = sealedPosition
        self.sealedSessionID = sealedSessionID
        self.keyID = keyID
    }
}

/// Counters of the privacy operations, kept with the pipeline's.
public enum PrivacyCounter {
    /// Rows an erasure deleted, per table: `erased.<table>`.
    public static func erased(_ table: String) -> String { "erased.\(table)" }
    /// Vehicles erased.
    public static let erasedVehicles = "erased.vehicles"
    /// Sessions whose sealed parts were re-sealed with the current key.
    public static let resealedSessions = "keys.resealed_sessions"
}

/// What both backends run the data-lifecycle statements with: plain SQL,
/// integer and text binds, and their placeholders.
protocol LifecycleSQL: BatchWriter {
    /// The placeholder of bind `i` (1-based): `?` or `$i`.
    static func placeholder(_ i: Int) -> String
    /// Runs a statement without binds (BEGIN, COMMIT...).
    func statement(_ sql: String) async throws
    /// Runs a statement and returns how many rows it returned.
    func returnedRows(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int
    /// Takes the vehicles of `keys` (``VehicleSet``) out of every
    /// aggregate's vehicle set; returns how many sets held any.
    func removeVehicles(_ keys: [Int64]) async throws -> Int
    /// Runs a statement whose one row is one integer.
    func integer(_ sql: String, _ binds: [LifecycleBind]) async throws -> Int
    /// The sessions the statement returns (vin, session_id, sealed_position, sealed_session_id, key_id).
    func sealedSessions(_ sql: String, _ binds: [LifecycleBind]) async throws -> [SealedSession]
    /// The transaction's opening statement (`BEGIN IMMEDIATE` on SQLite).
    static var begin: String { get }
}

/// A bound value of a data-lifecycle statement.
enum LifecycleBind: Sendable {
    case int(Int64)
    case text(String)
    case blob([UInt8])
    case null
}

/// The data-lifecycle operations, written once for both backends.
enum DataLifecycle {
    /// In one transaction: `body`, committed, or rolled back on any error.
    static func transaction<W: LifecycleSQL, T>(_ w: W, _ body: () async throws -> T) async throws -> T {
        try await w.statement(W.begin)
        do {
            let result = try await body()
            try await w.statement("COMMIT")
            return result
        } catch {
            try? await w.statement("ROLLBACK")
            throw error
        }
    }

    /// Rows of `rule` expired before `cutoffMs`.
    static func countExpired<W: LifecycleSQL>(_ rule: RetentionRule, before cutoffMs: Int64, _ w: W) async throws -> Int {
        try await w.integer("SELECT count(*) FROM \(rule.table) AS x WHERE \(rule.expired(W.placeholder(1)))", [.int(cutoffMs)])
    }

    /// Deletes at most `limit` rows of `rule` expired before `cutoffMs`, and
    /// counts them, in one transaction; returns how many.
    static func sweep<W: LifecycleSQL>(_ rule: RetentionRule, before cutoffMs: Int64, limit: Int, _ w: W) async throws -> Int {
        try await transaction(w) {
            let change = rule.clearedColumn.map { "UPDATE \(rule.table) SET \($0) = NULL" } ?? "DELETE FROM \(rule.table)"
            let deleted = try await w.returnedRows(
                """
                \(change) WHERE (\(rule.keyColumns)) IN
                    (SELECT \(rule.keyColumns) FROM \(rule.table) AS x WHERE \(rule.expired(W.placeholder(1))) LIMIT \(W.placeholder(2)))
                RETURNING 1
                """, [.int(cutoffMs), .int(Int64(max(1, limit)))])
            if deleted > 0 { try await w.addToCounters([(rule.counter, deleted)]) }
            return deleted
        }
    }

    /// Everything of `vin` (and its probes under `pseudonyms`) deleted in one
    /// transaction, except what RULES.md keeps; says what went and what stayed.
    static func erase<W: LifecycleSQL>(_ vin: VIN, pseudonyms: [String], _ w: W) async throws -> Erasure {
        try await transaction(w) {
            var erasure = Erasure()
            let p1 = W.placeholder(1)
            for table in ["teleservice_calls", "maintenance_cases", "charge_sessions"] {
                erasure.deleted[table] = try await w.returnedRows(
                    "DELETE FROM \(table) WHERE vin = \(p1) RETURNING 1", [.text(vin.description)])
            }
            var probes = 0
            for pseudonym in Set(pseudonyms) {
                probes += try await w.returnedRows("DELETE FROM probes WHERE pseudonym = \(p1) RETURNING 1", [.text(pseudonym)])
            }
            erasure.deleted["probes"] = probes
            // The memberships: the vehicle leaves the aggregates' sets (their counts stay).
            erasure.deleted["traffic_vehicles"] = pseudonyms.isEmpty ? 0 : try await w.removeVehicles(Set(pseudonyms).map(VehicleSet.key))
            erasure.deleted = erasure.deleted.filter { $0.value > 0 }
            let states = try await w.integer("SELECT count(*) FROM vehicle_states WHERE vin = \(p1)", [.text(vin.description)])
            if states > 0 {
                erasure.kept["vehicle_states"] = .init(
                    rows: states, reason: "vehicle technical data is kept for the vehicle's life (RULES.md, 003:825-831)")
            }
            let consents = try await w.integer("SELECT count(*) FROM consents WHERE vin = \(p1)", [.text(vin.description)])
            if consents > 0 {
                erasure.kept["consents"] = .init(
                    rows: consents,
                    reason: "the vehicle's consent choices stay so that they keep applying (without them every default would be on again)")
            }
            var counts = erasure.deleted.map { (PrivacyCounter.erased($0.key), $0.value) }
            counts.append((PrivacyCounter.erasedVehicles, 1))
            try await w.addToCounters(counts)
            return erasure
        }
    }

    /// Up to `limit` sessions whose sealed parts are not sealed with
    /// `keyID`, or whose session id is not sealed at all (before schema 5).
    static func sessionsToReseal<W: LifecycleSQL>(keyID: String, limit: Int, _ w: W) async throws -> [SealedSession] {
        try await w.sealedSessions(
            """
            SELECT vin, session_id, sealed_position, sealed_session_id, key_id FROM charge_sessions
            WHERE sealed_session_id IS NULL OR coalesce(key_id, '') <> \(W.placeholder(1))
            ORDER BY vin, session_id LIMIT \(W.placeholder(2))
            """, [.text(keyID), .int(Int64(max(1, limit)))])
    }

    /// Writes each `new` session's sealed parts (and reference) over its
    /// `old` row where the row is still as it was read, in one transaction;
    /// returns how many rows were replaced. A row of the plain id whose
    /// reference is stored already (delivered again after schema 5) is
    /// deleted instead: the session is stored once.
    static func reseal<W: LifecycleSQL>(_ replaced: [(old: SealedSession, new: SealedSession)], _ w: W) async throws -> Int {
        try await transaction(w) {
            var n = 0
            let p = W.placeholder
            func blob(_ bytes: [UInt8]?) -> LifecycleBind { bytes.map { .blob($0) } ?? .null }
            for (old, new) in replaced {
                if old.sessionID != new.sessionID {
                    let merged = try await w.returnedRows(
                        """
                        DELETE FROM charge_sessions WHERE vin = \(p(1)) AND session_id = \(p(2))
                            AND EXISTS (SELECT 1 FROM charge_sessions c WHERE c.vin = \(p(1)) AND c.session_id = \(p(3)))
                        RETURNING 1
                        """, [.text(old.vin.description), .text(old.sessionID), .text(new.sessionID)])
                    if merged > 0 { continue }
                }
                n += try await w.returnedRows(
                    """
                    UPDATE charge_sessions SET session_id = \(p(1)), sealed_position = \(p(2)), sealed_session_id = \(p(3)), key_id = \(p(4))
                    WHERE vin = \(p(5)) AND session_id = \(p(6)) AND coalesce(key_id, '') = \(p(7)) RETURNING 1
                    """,
                    [.text(new.sessionID), blob(new.sealedPosition), blob(new.sealedSessionID), new.keyID.map { .text($0) } ?? .null,
                     .text(old.vin.description), .text(old.sessionID), .text(old.keyID ?? "")])
            }
            if n > 0 { try await w.addToCounters([(PrivacyCounter.resealedSessions, n)]) }
            return n
        }
    }
}
