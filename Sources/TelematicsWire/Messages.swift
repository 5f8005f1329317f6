// Owned values of the telematics.proto messages: what the encoder writes
// and what a view materialises into. The hot path reads views instead
// (Views.swift); these allocate for their strings and arrays.

/// WGS84 position in degrees x 10^7.
public struct Position: Hashable, Sendable {
    public var latE7: Int32
    public var lonE7: Int32
    @inlinable
    public init(latE7: Int32, lonE7: Int32) {
        self.latE7 = latE7
        self.lonE7 = lonE7
    }
    /// Latitude range of the schema.
    public static let latitudeRange: ClosedRange<Int64> = -900_000_000...900_000_000
    /// Longitude range of the schema.
    public static let longitudeRange: ClosedRange<Int64> = -1_800_000_000...1_800_000_000
}

/// A condition-based service item.
public struct ServiceItem: Hashable, Sendable {
    public var type: ServiceItemType
    public var status: ServiceStatus
    public var dueInDays: Int32
    public var dueInKm: Int32
    public init(type: ServiceItemType = .unspecified, status: ServiceStatus = .unspecified, dueInDays: Int32 = 0, dueInKm: Int32 = 0) {
        self.type = type
        self.status = status
        self.dueInDays = dueInDays
        self.dueInKm = dueInKm
    }
}

/// An active check-control message.
public struct CheckControl: Hashable, Sendable {
    public var code: UInt32
    public var severity: Severity
    public init(code: UInt32 = 0, severity: Severity = .unspecified) {
        self.code = code
        self.severity = severity
    }
}

/// kind 1: a teleservice call.
public struct TeleserviceCall: Hashable, Sendable {
    public var trigger: Trigger = .unspecified
    public var mileageKm: UInt32 = 0
    public var serviceItems: [ServiceItem] = []
    public var checkControls: [CheckControl] = []
    public var battery12vMv: UInt32 = 0
    public var position: Position? = nil
    public var servicePartnerID: String = ""
    public var inWorkshop: Bool = false
    public init() {}
}

/// kind 2: a high-voltage battery warn call.
public struct HvWarnCall: Hashable, Sendable {
    public var eventID: String = ""
    public var thermal: Thermal = .unspecified
    public var powertrain: Powertrain = .unspecified
    public var position: Position? = nil
    public var pluggedIn = false
    public var doorsOpen = false
    public var trunkOpen = false
    public var engineRunning = false
    public var ignitionOn = false
    public var vehicleState: VehicleState = .unspecified
    public var maxCellTempDc: Int32 = 0
    public var socPermille: UInt32 = 0
    public init() {}
}

/// A hazard a vehicle reported at one point of an RTTI probe.
public struct Hazard: Hashable, Sendable {
    public var type: HazardType
    public var pointIndex: UInt32
    public init(type: HazardType = .unspecified, pointIndex: UInt32 = 0) {
        self.type = type
        self.pointIndex = pointIndex
    }
}

/// One absolute point of an RTTI probe.
public struct RttiPoint: Hashable, Sendable {
    /// Milliseconds since the Unix epoch (envelope time + dt_ms; may need
    /// more than 64 bits only for hostile input, hence the wide type).
    public var tMs: Int64
    public var latE7: Int64
    public var lonE7: Int64
    public var speedDkmh: UInt32
    public var headingDeg: UInt32
    public init(tMs: Int64, latE7: Int64, lonE7: Int64, speedDkmh: UInt32, headingDeg: UInt32) {
        self.tMs = tMs
        self.latE7 = latE7
        self.lonE7 = lonE7
        self.speedDkmh = speedDkmh
        self.headingDeg = headingDeg
    }
}

/// kind 3: an RTTI probe, column-wise as on the wire (relative times,
/// first position absolute and then deltas).
public struct RttiProbe: Hashable, Sendable {
    public var dtMs: [Int32] = []
    public var dlatE7: [Int32] = []
    public var dlonE7: [Int32] = []
    public var speedDkmh: [UInt32] = []
    public var headingDeg: [UInt32] = []
    public var hazards: [Hazard] = []
    public init() {}

    /// Builds the columns from absolute points; nil when a time or a delta
    /// does not fit the wire's 32-bit columns.
    public init?(points: [RttiPoint], recordedAtMs: Int64, hazards: [Hazard] = []) {
        var previous: RttiPoint?
        for p in points {
            guard let dt = Int32(exactly: p.tMs - recordedAtMs),
                  let dlat = Int32(exactly: p.latE7 - (previous?.latE7 ?? 0)),
                  let dlon = Int32(exactly: p.lonE7 - (previous?.lonE7 ?? 0))
            else { return nil }
            dtMs.append(dt)
            dlatE7.append(dlat)
            dlonE7.append(dlon)
            speedDkmh.append(p.speedDkmh)
            headingDeg.append(p.headingDeg)
            previous = p
        }
        self.hazards = hazards
    }
}

/// kind 4: a finished charging session.
public struct ChargeSession: Hashable, Sendable {
    public var sessionID: String = ""
    public var startedAtMs: Int64 = 0
    public var endedAtMs: Int64 = 0
    public var socStartPermille: UInt32 = 0
    public var socEndPermille: UInt32 = 0
    public var energyWh: UInt32 = 0
    public var maxPowerW: UInt32 = 0
    public var current: ChargingCurrent = .unspecified
    public var site: ChargingSite = .unspecified
    public var endReason: ChargeEndReason = .unspecified
    public var position: Position? = nil
    public init() {}
}

/// kind 5: the vehicle's privacy-menu and account state. A plain value:
/// six booleans need no view.
public struct ConsentState: Hashable, Sendable, Codable {
    public var teleservices: Bool
    public var smartMaintenance: Bool
    public var chargingHistory: Bool
    public var chargingLocation: Bool
    public var rtti: Bool
    public var accountDeleted: Bool

    public init(teleservices: Bool, smartMaintenance: Bool, chargingHistory: Bool, chargingLocation: Bool, rtti: Bool, accountDeleted: Bool) {
        self.teleservices = teleservices
        self.smartMaintenance = smartMaintenance
        self.chargingHistory = chargingHistory
        self.chargingLocation = chargingLocation
        self.rtti = rtti
        self.accountDeleted = accountDeleted
    }

    /// All fields false: what an empty body decodes to.
    public static let allOff = ConsentState(
        teleservices: false, smartMaintenance: false, chargingHistory: false,
        chargingLocation: false, rtti: false, accountDeleted: false)

    /// WIRE.md's state of a vehicle that has sent no consent state yet.
    public static let defaults = ConsentState(
        teleservices: true, smartMaintenance: false, chargingHistory: true,
        chargingLocation: true, rtti: true, accountDeleted: false)
}

/// The body of a message of any kind, owned.
public enum MessageBody: Hashable, Sendable {
    case teleserviceCall(TeleserviceCall)
    case hvWarnCall(HvWarnCall)
    case rttiProbe(RttiProbe)
    case chargeSession(ChargeSession)
    case consentState(ConsentState)

    /// The envelope kind of this body.
    public var kind: MessageKind {
        switch self {
        case .teleserviceCall: .teleserviceCall
        case .hvWarnCall: .hvWarnCall
        case .rttiProbe: .rttiProbe
        case .chargeSession: .chargeSession
        case .consentState: .consentState
        }
    }
}

/// A whole message, owned: envelope fields plus body.
public struct TelematicsMessage: Hashable, Sendable {
    public var vin: VIN
    public var sequence: UInt64
    public var recordedAtMs: Int64
    public var body: MessageBody
    public init(vin: VIN, sequence: UInt64, recordedAtMs: Int64, body: MessageBody) {
        self.vin = vin
        self.sequence = sequence
        self.recordedAtMs = recordedAtMs
        self.body = body
    }
}
