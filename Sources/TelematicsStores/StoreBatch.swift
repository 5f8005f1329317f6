import TelematicsWire

/// A vehicle's consent state as one consent message recorded it.
public struct ConsentChange: Hashable, Sendable {
    /// The vehicle.
    public var vin: VIN
    /// The six settings of the privacy menu and account.
    public var state: ConsentState
    /// When the vehicle recorded the state (vehicle clock, ms since the epoch).
    public var recordedAtMs: Int64
    /// The vehicle's message counter; breaks ties of `recordedAtMs`.
    public var sequence: UInt64

    /// A consent change as read from one consent-state message.
    public init(vin: VIN, state: ConsentState, recordedAtMs: Int64, sequence: UInt64) {
        self.vin = vin
        self.state = state
        self.recordedAtMs = recordedAtMs
        self.sequence = sequence
    }

    /// Whether this change takes a vehicle's charging history away (RULES.md:
    /// switching `charging_history` off or deleting the account deletes the
    /// stored sessions).
    public var deletesChargeSessions: Bool {
        !state.chargingHistory || state.accountDeleted
    }
}

/// One teleservice call as the store keeps it: envelope fields plus body.
public struct TeleserviceCallRecord: Hashable, Sendable {
    /// The vehicle.
    public var vin: VIN
    /// The vehicle's message counter; (vin, sequence) identifies the call.
    public var sequence: UInt64
    /// When the vehicle recorded the call (ms since the epoch).
    public var recordedAtMs: Int64
    /// Why the call was sent: the raw number of `Trigger` (kept as a number
    /// so a trigger newer vehicles send survives storage).
    public var trigger: Int32
    /// Odometer reading.
    public var mileageKm: UInt32
    /// 12 V battery voltage in millivolts.
    public var battery12vMv: UInt32
    /// Where the vehicle was, if it said.
    public var position: Position?
    /// The vehicle's preferred service partner: who a maintenance case goes to.
    public var servicePartnerID: String
    /// The vehicle is at a workshop: no case is opened or re-notified.
    public var inWorkshop: Bool
    /// Condition-based service items as reported.
    public var serviceItems: [ServiceItem]
    /// The check-control messages active at the time of the call.
    public var checkControls: [CheckControl]

    /// A call from its parts.
    public init(
        vin: VIN, sequence: UInt64, recordedAtMs: Int64, trigger: Int32 = 0, mileageKm: UInt32 = 0,
        battery12vMv: UInt32 = 0, position: Position? = nil, servicePartnerID: String = "",
        inWorkshop: Bool = false, serviceItems: [ServiceItem] = [], checkControls: [CheckControl] = []
    ) {
        self.vin = vin
        self.sequence = sequence
        self.recordedAtMs = recordedAtMs
        self.trigger = trigger
        self.mileageKm = mileageKm
        self.battery12vMv = battery12vMv
        self.position = position
        self.servicePartnerID = servicePartnerID
        self.inWorkshop = inWorkshop
        self.serviceItems = serviceItems
        self.checkControls = checkControls
    }

    /// A call from an envelope's fields and a decoded body.
    public init(vin: VIN, sequence: UInt64, recordedAtMs: Int64, call: TeleserviceCall) {
        self.init(
            vin: vin, sequence: sequence, recordedAtMs: recordedAtMs, trigger: call.trigger.rawValue,
            mileageKm: call.mileageKm, battery12vMv: call.battery12vMv, position: call.position,
            servicePartnerID: call.servicePartnerID, inWorkshop: call.inWorkshop,
            serviceItems: call.serviceItems, checkControls: call.checkControls)
    }
}

/// One finished charging session as the store keeps it. The position
/// arrives sealed (encrypted by the pipeline); the store never sees it in
/// the clear.
public struct ChargeSessionRecord: Hashable, Sendable {
    /// The vehicle.
    public var vin: VIN
    /// What identifies the session with the VIN: the pipeline's keyed
    /// reference of the vehicle's session id (schema 5 on; the id itself is
    /// in ``sealedSessionID``), or the id in the clear in rows written
    /// before, until `telematics keys rotate` seals them.
    public var sessionID: String
    /// The message counter of the message that carried the session.
    public var sequence: UInt64
    /// When that message was recorded (ms since the epoch).
    public var recordedAtMs: Int64
    /// Start of charging (ms since the epoch).
    public var startedAtMs: Int64
    /// End of charging (ms since the epoch).
    public var endedAtMs: Int64
    /// State of charge at the start, per mille.
    public var socStartPermille: UInt32
    /// State of charge at the end, per mille.
    public var socEndPermille: UInt32
    /// Energy charged.
    public var energyWh: UInt32
    /// Highest charging power seen.
    public var maxPowerW: UInt32
    /// Raw number of `ChargingCurrent`.
    public var current: Int32
    /// Raw number of `ChargingSite`.
    public var site: Int32
    /// Raw number of `ChargeEndReason`.
    public var endReason: Int32
    /// The encrypted position, or nil when there was none or the
    /// `charging_location` consent removed it.
    public var sealedPosition: [UInt8]?
    /// Which key sealed the position and the session id (for key
    /// rotation), nil when nothing is sealed.
    public var keyID: String?
    /// The vehicle's session id, encrypted; nil in rows written before schema 5.
    public var sealedSessionID: [UInt8]?

    /// A session from its parts.
    public init(
        vin: VIN, sessionID: String, sequence: UInt64, recordedAtMs: Int64, startedAtMs: Int64 = 0,
        endedAtMs: Int64 = 0, socStartPermille: UInt32 = 0, socEndPermille: UInt32 = 0, energyWh: UInt32 = 0,
        maxPowerW: UInt32 = 0, current: Int32 = 0, site: Int32 = 0, endReason: Int32 = 0,
        sealedPosition: [UInt8]? = nil, keyID: String? = nil, sealedSessionID: [UInt8]? = nil
    ) {
        self.vin = vin
        self.sessionID = sessionID
        self.sequence = sequence
        self.recordedAtMs = recordedAtMs
        self.startedAtMs = startedAtMs
        self.endedAtMs = endedAtMs
        self.socStartPermille = socStartPermille
        self.socEndPermille = socEndPermille
        self.energyWh = energyWh
        self.maxPowerW = maxPowerW
        self.current = current
        self.site = site
        self.endReason = endReason
        self.sealedPosition = sealedPosition
        self.keyID = keyID
        self.sealedSessionID = sealedSessionID
    }
}

/// One pseudonymised RTTI point. It carries no VIN: the pipeline replaced
/// it by a daily-rotated pseudonym before handing the point over.
public struct ProbePoint: Hashable, Sendable {
    /// Keyed hash of VIN and day; never a VIN. Must not be empty.
    public var pseudonym: String
    /// The message counter of the probe the point came from.
    public var sequence: UInt64
    /// Index of the point in its probe; (pseudonym, sequence, pointIndex) identifies it.
    public var pointIndex: Int
    /// Time of the point (ms since the epoch).
    public var tMs: Int64
    /// Latitude, degrees x 10^7.
    public var latE7: Int32
    /// Longitude, degrees x 10^7.
    public var lonE7: Int32
    /// Speed in tenths of km/h (`speed_dkmh` of the wire).
    public var speedDkmh: UInt32
    /// Heading, 0...359 degrees.
    public var headingDeg: UInt32
    /// The road tile the pipeline placed the point in.
    public var tile: Int64

    /// A point from its parts.
    public init(
        pseudonym: String, sequence: UInt64, pointIndex: Int, tMs: Int64, latE7: Int32 = 0, lonE7: Int32 = 0,
        speedDkmh: UInt32, headingDeg: UInt32 = 0, tile: Int64
    ) {
        self.pseudonym = pseudonym
        self.sequence = sequence
        self.pointIndex = pointIndex
        self.tMs = tMs
        self.latE7 = latE7
        self.lonE7 = lonE7
        self.speedDkmh = speedDkmh
        self.headingDeg = headingDeg
        self.tile = tile
    }

    /// The start of the point's minute (ms since the epoch): the time key of
    /// the traffic aggregates. Floors, so points before 1970 stay in their minute.
    @inlinable
    public var minuteMs: Int64 { Self.minute(ofMs: tMs) }

    /// The start of the minute of `tMs` (floored).
    @inlinable
    public static func minute(ofMs tMs: Int64) -> Int64 {
        let r = tMs % 60_000
        return r < 0 ? tMs - r - 60_000 : tMs - r
    }
}

/// Everything one batch of records causes in the stores. A store applies it
/// in one transaction (all or nothing) in the order of the properties, and
/// every data write is idempotent: applying the same batch again
/// (redelivery after a crash) changes no data.
///
/// The ``counters`` are the exception by design: they are deltas, added in
/// the same transaction, so a redelivered batch is counted again under
/// `processed.*` (and its records under `duplicates.*`, as the store finds
/// them already present). The counters say what the pipeline did, not how
/// many distinct records exist; ``TelematicsStore/stats()`` says the latter.
public struct StoreBatch: Sendable {
    /// Consent states, in the order they were read.
    public var consentChanges: [ConsentChange]
    /// Teleservice calls, in processing order (case transitions follow it).
    public var teleserviceCalls: [TeleserviceCallRecord]
    /// Finished charging sessions.
    public var chargeSessions: [ChargeSessionRecord]
    /// Pseudonymised RTTI points given as values (tests, tools); the
    /// pipeline packs its probes into ``probes`` instead.
    public var probePoints: [ProbePoint]
    /// Pseudonymised RTTI probes, packed as they were routed
    /// (``appendProbe(pseudonym:sequence:points:)``).
    public private(set) var probes = ProbeRows()
    /// Deltas of the pipeline's running totals, by name (see
    /// ``PipelineCounter``), added to `pipeline_counters` in the batch's
    /// transaction. The store adds the names it alone can know
    /// (``StoreBatchResult/counters``) to these itself.
    public var counters: [String: Int]
    /// ``probes``' aggregate deltas, sorted ahead (``prepareProbes()``).
    var preparedTraffic: SortedTrafficDelta?

    /// Adds an RTTI probe under its pseudonym (never a VIN): packed into a
    /// row and reduced to aggregate deltas now, while the pipeline routes,
    /// on a core the store does not use.
    public mutating func appendProbe(pseudonym: String, sequence: UInt64, points: RttiPoints) {
        probes.append(pseudonym: pseudonym, sequence: sequence, points: points)
        preparedTraffic = nil
    }

    /// Adds everything of `other` after this batch's own (the shards of one
    /// routed batch; a vehicle's records are all in one shard, so the order
    /// per vehicle is kept). Counters add up.
    public mutating func append(contentsOf other: StoreBatch) {
        consentChanges += other.consentChanges
        teleserviceCalls += other.teleserviceCalls
        chargeSessions += other.chargeSessions
        probePoints += other.probePoints
        probes.append(contentsOf: other.probes)
        counters.merge(other.counters, uniquingKeysWith: +)
        preparedTraffic = nil
    }

    /// Sorts the aggregate deltas of ``probes`` now, outside the store's
    /// transaction. Call it last, once every probe is appended.
    public mutating func prepareProbes() {
        probes.releaseScratch()
        preparedTraffic = probes.isEmpty ? nil : probes.sortedTraffic()
    }

    /// The probes to write: ``probes`` with ``probePoints`` packed after
    /// them, and their deltas (sorted ahead when nothing changed since).
    func probeRows() -> (rows: ProbeRows, traffic: SortedTrafficDelta)? {
        if probePoints.isEmpty {
            guard !probes.isEmpty else { return nil }
            return (probes, preparedTraffic ?? probes.sortedTraffic())
        }
        var rows = probes
        rows.append(points: probePoints)
        return (rows, rows.sortedTraffic())
    }

    /// A batch from its parts; all empty by default.
    public init(
        consentChanges: [ConsentChange] = [], teleserviceCalls: [TeleserviceCallRecord] = [],
        chargeSessions: [ChargeSessionRecord] = [], probePoints: [ProbePoint] = [], counters: [String: Int] = [:]
    ) {
        self.consentChanges = consentChanges
        self.teleserviceCalls = teleserviceCalls
        self.chargeSessions = chargeSessions
        self.probePoints = probePoints
        self.counters = counters
    }

    /// Nothing to write: a store returns at once without a transaction.
    /// A batch of counters alone (say, only rejected records) is not empty:
    /// its counts must become durable with its offsets.
    public var isEmpty: Bool {
        consentChanges.isEmpty && teleserviceCalls.isEmpty && chargeSessions.isEmpty && probePoints.isEmpty
            && probes.isEmpty && counters.values.allSatisfy { $0 == 0 }
    }

    /// Records of all kinds in the batch.
    public var count: Int {
        consentChanges.count + teleserviceCalls.count + chargeSessions.count + probePoints.count + probes.pointCount
    }
}

/// Names of the pipeline's counters (`pipeline_counters.name`): a group, a
/// dot and a member, or a bare name for the totals without members.
public enum PipelineCounter {
    /// `processed.<kind>`: records decoded, by kind (`rtti_probe`, ...).
    public static func processed(_ kind: String) -> String { "processed.\(kind)" }
    /// `rejected.<error code>`: records dead-lettered, by WIRE.md code.
    public static func rejected(_ code: String) -> String { "rejected.\(code)" }
    /// `dropped.<reason>`: records dropped for consent (`smart_maintenance`,
    /// `teleservices`, `charging_history`, `rtti`).
    public static func dropped(_ reason: String) -> String { "dropped.\(reason)" }
    /// Call-centre alerts published (HV warn, breakdown and accident calls).
    public static let alerts = "alerts"
    /// Hazards published on `traffic.probes`.
    public static let hazards = "hazards"
    /// Teleservice calls stored for the first time.
    public static let storedTeleserviceCall = "stored.teleservice_call"
    /// Charge sessions stored for the first time.
    public static let storedChargeSession = "stored.charge_session"
    /// Probe points stored for the first time.
    public static let storedProbePoint = "stored.probe_point"
    /// Teleservice calls found already stored (redelivered or repeated).
    public static let duplicateTeleserviceCall = "duplicates.teleservice_call"
    /// Charge sessions found already stored.
    public static let duplicateChargeSession = "duplicates.charge_session"
    /// Probe points found already stored.
    public static let duplicateProbePoint = "duplicates.probe_point"
    /// Maintenance cases opened.
    public static let casesOpened = "cases.opened"
    /// Maintenance cases updated (partner re-notified).
    public static let casesUpdated = "cases.updated"
    /// Maintenance cases closed.
    public static let casesClosed = "cases.closed"
    /// Charge sessions deleted because consent took the charging history away.
    public static let deletedChargeSessionsByConsent = "deleted.charge_session_by_consent"
}

/// What applying a batch did: per kind, what was new and what was already
/// stored (a redelivery shows all "already present" and nothing new).
public struct StoreBatchResult: Hashable, Sendable {
    /// Consent changes newer than the stored state, which replaced it.
    public var consentsApplied = 0
    /// Consent changes not newer than the stored state, so ignored.
    public var consentsIgnored = 0
    /// Charge sessions deleted because consent took the charging history away.
    public var sessionsDeletedByConsent = 0
    /// Teleservice calls stored for the first time.
    public var callsInserted = 0
    /// Teleservice calls that were already stored (nothing re-applied).
    public var callsAlreadyPresent = 0
    /// Vehicles whose technical state was replaced by a newer call.
    public var vehicleStatesUpdated = 0
    /// Maintenance cases opened.
    public var casesOpened = 0
    /// Maintenance cases updated, i.e. their service partner re-notified.
    public var casesUpdated = 0
    /// Maintenance cases closed because their need was reported gone.
    public var casesClosed = 0
    /// Charge sessions stored for the first time.
    public var sessionsInserted = 0
    /// Charge sessions that were already stored.
    public var sessionsAlreadyPresent = 0
    /// Probe points stored for the first time (and counted in the aggregates).
    public var probePointsInserted = 0
    /// Probe points that were already stored (not counted again).
    public var probePointsAlreadyPresent = 0

    /// An empty result.
    public init() {}

    /// The counters only the store can know, from this result: stored,
    /// duplicates, cases and deletions. Zeros left out.
    public var counters: [String: Int] {
        let all: [(String, Int)] = [
            (PipelineCounter.storedTeleserviceCall, callsInserted),
            (PipelineCounter.storedChargeSession, sessionsInserted),
            (PipelineCounter.storedProbePoint, probePointsInserted),
            (PipelineCounter.duplicateTeleserviceCall, callsAlreadyPresent),
            (PipelineCounter.duplicateChargeSession, sessionsAlreadyPresent),
            (PipelineCounter.duplicateProbePoint, probePointsAlreadyPresent),
            (PipelineCounter.casesOpened, casesOpened),
            (PipelineCounter.casesUpdated, casesUpdated),
            (PipelineCounter.casesClosed, casesClosed),
            (PipelineCounter.deletedChargeSessionsByConsent, sessionsDeletedByConsent),
        ]
        return Dictionary(uniqueKeysWithValues: all.filter { $0.1 != 0 })
    }

    /// Whether the batch wrote anything: false for a pure redelivery.
    public var wroteAnything: Bool {
        consentsApplied + sessionsDeletedByConsent + callsInserted + vehicleStatesUpdated + casesOpened
            + casesUpdated + casesClosed + sessionsInserted + probePointsInserted > 0
    }
}
