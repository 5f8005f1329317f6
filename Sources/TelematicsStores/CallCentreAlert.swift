import TelematicsWire

/// A message for the call centre on `callcentre.alerts` (JSON, key VIN):
/// P0 for every HV warn call, P1 for breakdown and accident calls.
public struct CallCentreAlert: Codable, Hashable, Sendable {
    /// RULES.md's priority: "P0" emergency or "P1" urgent.
    public var priority: String
    /// "hv_warn_call", "breakdown" or "accident".
    public var type: String
    public var vin: String
    public var sequence: UInt64
    public var recordedAtMs: Int64
    /// The vehicle's event id (HV warn calls; one alert per (VIN, event id)).
    public var eventID: String?
    public var position: AlertPosition?
    public var thermal: String?
    public var powertrain: String?
    public var pluggedIn: Bool?
    public var doorsOpen: Bool?
    public var trunkOpen: Bool?
    public var engineRunning: Bool?
    public var ignitionOn: Bool?
    public var vehicleState: String?
    public var maxCellTempDc: Int32?
    public var socPermille: UInt32?
    public var mileageKm: UInt32?
    public var battery12vMv: UInt32?
    public var servicePartnerID: String?
    public var escalated: Bool

    enum CodingKeys: String, CodingKey {
        case priority, type, vin, sequence, position, thermal, powertrain, escalated
        case recordedAtMs = "recorded_at_ms", eventID = "event_id", pluggedIn = "plugged_in", doorsOpen = "doors_open"
        case trunkOpen = "trunk_open", engineRunning = "engine_running", ignitionOn = "ignition_on"
        case vehicleState = "vehicle_state", maxCellTempDc = "max_cell_temp_dc", socPermille = "soc_permille"
        case mileageKm = "mileage_km", battery12vMv = "battery_12v_mv", servicePartnerID = "service_partner_id"
    }

    /// An alert from its parts (tests, tools; the pipeline uses the
    /// initialisers from decoded messages below).
    public init(
        priority: String, type: String, vin: String, sequence: UInt64, recordedAtMs: Int64, eventID: String? = nil,
        position: AlertPosition? = nil, thermal: String? = nil, powertrain: String? = nil, pluggedIn: Bool? = nil,
        doorsOpen: Bool? = nil, trunkOpen: Bool? = nil, engineRunning: Bool? = nil, ignitionOn: Bool? = nil,
        vehicleState: String? = nil, maxCellTempDc: Int32? = nil, socPermille: UInt32? = nil, mileageKm: UInt32? = nil,
        battery12vMv: UInt32? = nil, servicePartnerID: String? = nil, escalated: Bool = false
    ) {
        self.priority = priority
        self.type = type
        self.vin = vin
        self.sequence = sequence
        self.recordedAtMs = recordedAtMs
        self.eventID = eventID
        self.position = position
        self.thermal = thermal
        self.powertrain = powertrain
        self.pluggedIn = pluggedIn
        self.doorsOpen = doorsOpen
        self.trunkOpen = trunkOpen
        self.engineRunning = engineRunning
        self.ignitionOn = ignitionOn
        self.vehicleState = vehicleState
        self.maxCellTempDc = maxCellTempDc
        self.socPermille = socPermille
        self.mileageKm = mileageKm
        self.battery12vMv = battery12vMv
        self.servicePartnerID = servicePartnerID
        self.escalated = escalated
    }

    /// The P0 alert of an HV warn call.
    public init(hvWarnCall m: HvWarnCallView, envelope e: Envelope) {
        priority = "P0"
        type = "hv_warn_call"
        vin = e.vin.description
        sequence = e.sequence
        recordedAtMs = e.recordedAtMs
        eventID = m.eventID.string
        position = m.position.map(AlertPosition.init)
        thermal = m.thermal.description
        powertrain = m.powertrain.description
        pluggedIn = m.pluggedIn
        doorsOpen = m.doorsOpen
        trunkOpen = m.trunkOpen
        engineRunning = m.engineRunning
        ignitionOn = m.ignitionOn
        vehicleState = m.vehicleState.description
        maxCellTempDc = m.maxCellTempDc
        socPermille = m.socPermille
        escalated = false
    }

    /// The P1 alert of a breakdown or accident call: vehicle status and position.
    public init(urgentCall m: TeleserviceCallView, envelope e: Envelope) {
        priority = "P1"
        type = m.trigger == .accident ? "accident" : "breakdown"
        vin = e.vin.description
        sequence = e.sequence
        recordedAtMs = e.recordedAtMs
        position = m.position.map(AlertPosition.init)
        mileageKm = m.mileageKm
        battery12vMv = m.battery12vMv
        servicePartnerID = m.servicePartnerID.string
        escalated = false
    }
}

/// A position in an output message, degrees x 10^7.
public struct AlertPosition: Codable, Hashable, Sendable {
    public var latE7: Int32
    public var lonE7: Int32
    enum CodingKeys: String, CodingKey { case latE7 = "lat_e7", lonE7 = "lon_e7" }
    /// A position from degrees x 10^7.
    public init(latE7: Int32, lonE7: Int32) {
        self.latE7 = latE7
        self.lonE7 = lonE7
    }
    /// The position of a decoded message.
    public init(_ p: Position) {
        latE7 = p.latE7
        lonE7 = p.lonE7
    }
}
