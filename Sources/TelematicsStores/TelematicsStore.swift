import TelematicsWire

/// The storage layer of the pipeline: what a batch of records causes,
/// applied atomically and idempotently, plus the reads the pipeline, the
/// `query` command and the owners' apps and workshops need.
///
/// Implementations: ``SQLiteStore`` (one file set in a data directory) and
/// ``PostgresStore``. Every method throws only ``StoreError``; no store
/// failure stops the process. Call ``close()`` before dropping a store.
public protocol TelematicsStore: Sendable {
    /// Which database is behind this store.
    var backend: StoreBackend { get }

    /// Applies everything one batch causes in one transaction: all of it or,
    /// on error, none of it, the batch's ``StoreBatch/counters`` and the
    /// counters of its result (``StoreBatchResult/counters``) included.
    /// Applying the same batch again changes no data; it only counts again
    /// (`processed.*`, `duplicates.*`).
    func apply(_ batch: StoreBatch) async throws(StoreError) -> StoreBatchResult

    /// The stored consent state of each of `vins` that has one (a VIN with
    /// no state is absent: WIRE.md's defaults apply to it). One query, for
    /// warming the pipeline's consent cache.
    func consent(for vins: [VIN]) async throws(StoreError) -> [VIN: StoredConsent]

    /// The vehicle's latest technical state, nil before its first call.
    func vehicleState(_ vin: VIN) async throws(StoreError) -> VehicleTechnicalState?

    /// The vehicle's stored teleservice calls, by sequence.
    func teleserviceCalls(_ vin: VIN) async throws(StoreError) -> [TeleserviceCallRecord]

    /// The vehicle's maintenance cases, oldest first; closed ones only when asked.
    func maintenanceCases(_ vin: VIN, includeClosed: Bool) async throws(StoreError) -> [MaintenanceCase]

    /// Maintenance cases across vehicles, newest first (by case id), at most
    /// `limit`: those of one service partner when `partner` is given (an
    /// index makes that a range scan), only the ones not closed when
    /// `openOnly`. One query.
    func maintenanceCases(partner: String?, openOnly: Bool, limit: Int) async throws(StoreError) -> [MaintenanceCase]

    /// The vehicle's stored charge sessions, by start time.
    func chargeSessions(_ vin: VIN) async throws(StoreError) -> [ChargeSessionRecord]

    /// Traffic aggregates of one road tile for the minutes in
    /// `fromMinute...toMinute` (both ms since the epoch, floored to the minute).
    func trafficAggregates(tile: Int64, fromMinute: Int64, toMinute: Int64) async throws(StoreError) -> [TrafficAggregate]

    /// Traffic aggregates of every tile from the minute `sinceMinute` (ms
    /// since the epoch) on, newest minute first (then by tile), at most
    /// `limit`, with their speed histograms. One query, whatever the count.
    func trafficAggregates(sinceMinute: Int64, limit: Int) async throws(StoreError) -> [TrafficAggregate]

    /// The pipeline's running totals (`processed.rtti_probe`, ...; see
    /// ``PipelineCounter``), as committed with the batches; a counter never
    /// incremented is absent.
    func counters() async throws(StoreError) -> [String: Int]

    /// How many raw probe points are stored.
    func probePointCount() async throws(StoreError) -> Int
    /// The stored points of a pseudonym's probes, by sequence and point index.
    func probePoints(pseudonym: String) async throws(StoreError) -> [ProbePoint]

    /// Row counts of every table.
    func stats() async throws(StoreError) -> StoreStats

    /// Rows of `rule` that expired before `cutoffMs` (ms since the epoch):
    /// what a retention dry run reports.
    func countExpired(_ rule: RetentionRule, before cutoffMs: Int64) async throws(StoreError) -> Int

    /// Deletes at most `limit` rows of `rule` that expired before `cutoffMs`,
    /// adding them to the counter `retention.<rule>`, in one transaction;
    /// returns how many. The retention job calls it until it returns less
    /// than `limit`, so no transaction holds the store for long.
    func sweep(_ rule: RetentionRule, before cutoffMs: Int64, limit: Int) async throws(StoreError) -> Int

    /// Deletes everything stored of `vin` (its calls, cases and charge
    /// sessions, and the probes and traffic memberships of `pseudonyms`, its
    /// pseudonyms of the days raw points are kept) in one transaction, except
    /// what RULES.md keeps, which the result names. Erasing again is safe.
    func erase(_ vin: VIN, pseudonyms: [String]) async throws(StoreError) -> Erasure

    /// Up to `limit` charge sessions to re-seal with the key `keyID`: those
    /// sealed with another key, and those whose session id is not sealed
    /// (written before schema 5).
    func sessionsToReseal(keyID: String, limit: Int) async throws(StoreError) -> [SealedSession]

    /// Writes each `new` session's sealed parts and reference over its `old`
    /// row where the row still has `old`'s key, in one transaction; returns
    /// how many were replaced.
    func reseal(_ replaced: [(old: SealedSession, new: SealedSession)]) async throws(StoreError) -> Int

    /// Closes the connection. Later calls fail with a ``StoreError``.
    func close() async
}

/// Which database a store writes to.
public enum StoreBackend: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// SQLite in a local data directory.
    case sqlite
    /// A PostgreSQL server.
    case postgres

    /// The backend's name.
    public var description: String { rawValue }
}

/// A store failure: which backend, what it was doing, and what the database
/// said. Carries no record data, so it is safe to log.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The backend that failed.
    public var backend: StoreBackend
    /// What the store was doing, e.g. "apply", "open", "migrate", "vehicleState".
    public var operation: String
    /// The underlying error's message.
    public var message: String

    /// An error from its parts.
    public init(backend: StoreBackend, operation: String, message: String) {
        self.backend = backend
        self.operation = operation
        self.message = message
    }

    /// "sqlite store: apply failed: ..."
    public var description: String {
        "\(backend) store: \(operation) failed: \(message)"
    }
}

/// A vehicle's consent state as stored, with the position that orders it.
public struct StoredConsent: Hashable, Sendable {
    /// The six settings.
    public var state: ConsentState
    /// When the vehicle recorded it (ms since the epoch).
    public var recordedAtMs: Int64
    /// Its message counter.
    public var sequence: UInt64

    /// A stored consent from its parts.
    public init(state: ConsentState, recordedAtMs: Int64, sequence: UInt64) {
        self.state = state
        self.recordedAtMs = recordedAtMs
        self.sequence = sequence
    }
}

/// A vehicle's technical data from its newest teleservice call: kept for
/// the vehicle's life (RULES.md).
public struct VehicleTechnicalState: Hashable, Sendable {
    /// The vehicle.
    public var vin: VIN
    /// The call the state comes from: its time...
    public var recordedAtMs: Int64
    /// ...and its sequence.
    public var sequence: UInt64
    /// Odometer reading.
    public var mileageKm: UInt32
    /// 12 V battery voltage in millivolts.
    public var battery12vMv: UInt32
    /// The service items that call reported.
    public var serviceItems: [ServiceItem]
    /// The check-control messages active at that call.
    public var checkControls: [CheckControl]

    /// A state from its parts.
    public init(
        vin: VIN, recordedAtMs: Int64, sequence: UInt64, mileageKm: UInt32, battery12vMv: UInt32,
        serviceItems: [ServiceItem], checkControls: [CheckControl]
    ) {
        self.vin = vin
        self.recordedAtMs = recordedAtMs
        self.sequence = sequence
        self.mileageKm = mileageKm
        self.battery12vMv = battery12vMv
        self.serviceItems = serviceItems
        self.checkControls = checkControls
    }
}

/// Traffic on one road tile in one minute. No vehicle reference: the
/// distinct-vehicle count comes from a separate membership table.
public struct TrafficAggregate: Hashable, Sendable {
    /// The road tile.
    public var tile: Int64
    /// Start of the minute (ms since the epoch).
    public var minuteMs: Int64
    /// Probe points seen.
    public var pointCount: Int
    /// Distinct vehicles (pseudonyms) seen.
    public var vehicleCount: Int
    /// Sum of the points' speeds in 0.1 km/h (for the mean).
    public var speedSumDkmh: Int64
    /// Points per speed bucket of ``SpeedHistogram``.
    public var histogram: SpeedHistogram

    /// An aggregate from its parts.
    public init(tile: Int64, minuteMs: Int64, pointCount: Int, vehicleCount: Int, speedSumDkmh: Int64, histogram: SpeedHistogram) {
        self.tile = tile
        self.minuteMs = minuteMs
        self.pointCount = pointCount
        self.vehicleCount = vehicleCount
        self.speedSumDkmh = speedSumDkmh
        self.histogram = histogram
    }

    /// Mean speed in km/h; 0 with no points.
    public var meanSpeedKmh: Double {
        pointCount == 0 ? 0 : Double(speedSumDkmh) / Double(pointCount) / 10
    }

    /// 85th-percentile speed in km/h, from the histogram (exact to a bucket).
    public var p85SpeedKmh: Double {
        histogram.percentileKmh(0.85)
    }
}

/// Row counts of every table of a store.
public struct StoreStats: Hashable, Sendable, CustomStringConvertible {
    /// Vehicles with a stored consent state.
    public var consents = 0
    /// Vehicles with a technical state.
    public var vehicleStates = 0
    /// Stored teleservice calls.
    public var teleserviceCalls = 0
    /// Maintenance cases, closed ones included.
    public var maintenanceCases = 0
    /// Maintenance cases not closed.
    public var openMaintenanceCases = 0
    /// Stored charge sessions.
    public var chargeSessions = 0
    /// Raw probe points.
    public var probePoints = 0
    /// (tile, minute) aggregates.
    public var trafficAggregates = 0
    /// (tile, minute, vehicle) memberships behind the vehicle counts: the
    /// keys in the aggregates' vehicle sets (schema 7; rows of
    /// `traffic_vehicles` before).
    public var trafficVehicles = 0
    /// Non-empty speed-histogram buckets.
    public var trafficSpeedBuckets = 0

    /// All zero.
    public init() {}

    /// "consents=1 vehicle_states=..." for logs and the `query` command.
    public var description: String {
        "consents=\(consents) vehicle_states=\(vehicleStates) teleservice_calls=\(teleserviceCalls) "
            + "maintenance_cases=\(maintenanceCases) (open \(openMaintenanceCases)) charge_sessions=\(chargeSessions) "
            + "probe_points=\(probePoints) traffic_aggregates=\(trafficAggregates) "
            + "traffic_vehicles=\(trafficVehicles) traffic_speed_buckets=\(trafficSpeedBuckets)"
    }
}
