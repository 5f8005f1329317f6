/// Writes records as WIRE.md's canonical JSON, one line each, into a
/// reusable byte buffer: after the buffer has grown once, writing a record
/// allocates nothing.
public struct CanonicalJSONWriter {
    /// The JSON text written so far (UTF-8).
    public var bytes: [UInt8] = []

    public init(capacity: Int = 1 << 20) {
        bytes.reserveCapacity(capacity)
    }

    /// Empties the buffer, keeping its capacity.
    public mutating func reset() { bytes.removeAll(keepingCapacity: true) }

    /// Writes one decoded record and a newline.
    public mutating func write(_ record: DecodedRecord) {
        let e = record.envelope
        raw("{\"kind\":\"")
        raw(e.kind.name)
        raw("\",\"vin\":\"")
        e.vin.withBytes { bytes.append(contentsOf: $0) }
        raw("\",\"sequence\":")
        unsigned(e.sequence)
        raw(",\"recorded_at_ms\":")
        signed(e.recordedAtMs)
        raw(",\"body\":")
        switch record.body {
        case .teleserviceCall(let m): teleserviceCall(m)
        case .hvWarnCall(let m): hvWarnCall(m)
        case .rttiProbe(let m): rttiProbe(m)
        case .chargeSession(let m): chargeSession(m)
        case .consentState(let m): consentState(m)
        }
        raw("}\n")
    }

    /// Writes a rejected record's line: `{"error":CODE,"detail":TEXT}`.
    public mutating func write(_ error: WireError) {
        raw("{\"error\":\"")
        bytes.append(contentsOf: error.code.rawValue.utf8)
        raw("\",\"detail\":")
        string(error.detail)
        raw("}\n")
    }

    // MARK: bodies

    private mutating func teleserviceCall(_ m: TeleserviceCallView) {
        raw("{\"trigger\":")
        enumeration(m.trigger)
        raw(",\"mileage_km\":")
        unsigned(UInt64(m.mileageKm))
        raw(",\"service_items\":[")
        var first = true
        for item in m.serviceItems {
            if !first { raw(",") }
            first = false
            raw("{\"type\":")
            enumeration(item.type)
            raw(",\"status\":")
            enumeration(item.status)
            raw(",\"due_in_days\":")
            signed(Int64(item.dueInDays))
            raw(",\"due_in_km\":")
            signed(Int64(item.dueInKm))
            raw("}")
        }
        raw("],\"check_controls\":[")
        first = true
        for cc in m.checkControls {
            if !first { raw(",") }
            first = false
            raw("{\"code\":")
            unsigned(UInt64(cc.code))
            raw(",\"severity\":")
            enumeration(cc.severity)
            raw("}")
        }
        raw("],\"battery_12v_mv\":")
        unsigned(UInt64(m.battery12vMv))
        raw(",\"position\":")
        position(m.position)
        raw(",\"service_partner_id\":")
        string(m.servicePartnerID.bytes)
        raw(",\"in_workshop\":")
        boolean(m.inWorkshop)
        raw("}")
    }

    private mutating func hvWarnCall(_ m: HvWarnCallView) {
        raw("{\"event_id\":")
        string(m.eventID.bytes)
        raw(",\"thermal\":")
        enumeration(m.thermal)
        raw(",\"powertrain\":")
        enumeration(m.powertrain)
        raw(",\"position\":")
        position(m.position)
        raw(",\"plugged_in\":")
        boolean(m.pluggedIn)
        raw(",\"doors_open\":")
        boolean(m.doorsOpen)
        raw(",\"trunk_open\":")
        boolean(m.trunkOpen)
        raw(",\"engine_running\":")
        boolean(m.engineRunning)
        raw(",\"ignition_on\":")
        boolean(m.ignitionOn)
        raw(",\"vehicle_state\":")
        enumeration(m.vehicleState)
        raw(",\"max_cell_temp_dc\":")
        signed(Int64(m.maxCellTempDc))
        raw(",\"soc_permille\":")
        unsigned(UInt64(m.socPermille))
        raw("}")
    }

    private mutating func rttiProbe(_ m: RttiProbeView) {
        raw("{\"points\":[")
        var first = true
        for p in m.points {
            if !first { raw(",") }
            first = false
            raw("{\"t_ms\":")
            // The exact sum, even where hostile input overflows 64 bits.
            let dt = Int32(truncatingIfNeeded: p.tMs &- m.recordedAtMs)
            wide(Int128(m.recordedAtMs) + Int128(dt))
            raw(",\"lat_e7\":")
            signed(p.latE7)
            raw(",\"lon_e7\":")
            signed(p.lonE7)
            raw(",\"speed_dkmh\":")
            unsigned(UInt64(p.speedDkmh))
            raw(",\"heading_deg\":")
            unsigned(UInt64(p.headingDeg))
            raw("}")
        }
        raw("],\"hazards\":[")
        first = true
        for h in m.hazards {
            if !first { raw(",") }
            first = false
            raw("{\"type\":")
            enumeration(h.type)
            raw(",\"point_index\":")
            unsigned(UInt64(h.pointIndex))
            raw("}")
        }
        raw("]}")
    }

    private mutating func chargeSession(_ m: ChargeSessionView) {
        raw("{\"session_id\":")
        string(m.sessionID.bytes)
        raw(",\"started_at_ms\":")
        signed(m.startedAtMs)
        raw(",\"ended_at_ms\":")
        signed(m.endedAtMs)
        raw(",\"soc_start_permille\":")
        unsigned(UInt64(m.socStartPermille))
        raw(",\"soc_end_permille\":")
        unsigned(UInt64(m.socEndPermille))
        raw(",\"energy_wh\":")
        unsigned(UInt64(m.energyWh))
        raw(",\"max_power_w\":")
        unsigned(UInt64(m.maxPowerW))
        raw(",\"current\":")
        enumeration(m.current)
        raw(",\"site\":")
        enumeration(m.site)
        raw(",\"end_reason\":")
        enumeration(m.endReason)
        raw(",\"position\":")
        position(m.position)
        raw("}")
    }

    private mutating func consentState(_ m: ConsentState) {
        raw("{\"teleservices\":")
        boolean(m.teleservices)
        raw(",\"smart_maintenance\":")
        boolean(m.smartMaintenance)
        raw(",\"charging_history\":")
        boolean(m.chargingHistory)
        raw(",\"charging_location\":")
        boolean(m.chargingLocation)
        raw(",\"rtti\":")
        boolean(m.rtti)
        raw(",\"account_deleted\":")
        boolean(m.accountDeleted)
        raw("}")
    }

    // MARK: values

    private mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func boolean(_ value: Bool) {
        if value { raw("true") } else { raw("false") }
    }

    private mutating func position(_ p: Position?) {
        guard let p else {
            raw("null")
            return
        }
        raw("{\"lat_e7\":")
        signed(Int64(p.latE7))
        raw(",\"lon_e7\":")
        signed(Int64(p.lonE7))
        raw("}")
    }

    /// An enum as its schema name, or its number when unlisted.
    private mutating func enumeration(_ value: some ProtoEnum) {
        if let name = value.name {
            raw("\"")
            raw(name)
            raw("\"")
        } else {
            signed(Int64(value.rawValue))
        }
    }

    private mutating func unsigned(_ value: UInt64) {
        let start = bytes.count
        var v = value
        repeat {
            bytes.append(UInt8(truncatingIfNeeded: v % 10) + 0x30)
            v /= 10
        } while v != 0
        bytes[start...].reverse()
    }

    private mutating func signed(_ value: Int64) {
        if value < 0 { bytes.append(0x2D) }
        unsigned(value.magnitude)
    }

    private mutating func wide(_ value: Int128) {
        if let narrow = Int64(exactly: value) { return signed(narrow) }
        if value < 0 { bytes.append(0x2D) }
        let start = bytes.count
        var v = value.magnitude
        repeat {
            bytes.append(UInt8(truncatingIfNeeded: v % 10) + 0x30)
            v /= 10
        } while v != 0
        bytes[start...].reverse()
    }

    /// Appends `text` as a JSON string literal (see ``quoted(_:)``).
    public mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }

    /// A JSON string of valid UTF-8: quotes, backslashes and control
    /// characters escaped, everything else as it is.
    private mutating func string(_ utf8: UnsafeRawBufferPointer) {
        bytes.append(0x22)
        for b in utf8 {
            switch b {
            case 0x22: raw("\\\"")
            case 0x5C: raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0x00..<0x20:
                raw("\\u00")
                bytes.append(hexDigit(b >> 4))
                bytes.append(hexDigit(b & 15))
            default: bytes.append(b)
            }
        }
        bytes.append(0x22)
    }

    private func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }
}

extension CanonicalJSONWriter {
    /// `text` as a JSON string literal, escaped as canonical JSON escapes
    /// strings (quotes, backslashes, control characters).
    public static func quoted(_ text: String) -> String {
        var writer = CanonicalJSONWriter(capacity: text.utf8.count + 2)
        writer.string(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
