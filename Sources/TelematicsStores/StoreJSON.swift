import Foundation
import TelematicsWire

// The JSON the `query` and `privacy` commands and the console's privacy API
// write: store values with their keys in a fixed order.

/// A JSON value with keys in the order given (a reader sees "vin" first),
/// rendered compactly.
public enum JSON: Sendable {
    case null
    case bool(Bool)
    /// A number, already as its decimal text (exact for u64 sequences).
    case number(String)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])
    /// JSON text rendered elsewhere (a Codable value), written as it is.
    case raw(String)

    public static func int(_ value: some BinaryInteger) -> JSON { .number(String(value)) }
    public static func optionalInt(_ value: Int64?) -> JSON { value.map { .number(String($0)) } ?? .null }

    /// The compact JSON text.
    public var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let text): out += text
        case .double(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): JSON.quote(s, into: &out)
        case .raw(let text): out += text
        case .array(let values):
            out += "["
            for (i, v) in values.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

// MARK: store values as JSON

extension JSON {
    public static func position(_ p: Position?) -> JSON {
        guard let p else { return .null }
        return .object([("lat_e7", .int(p.latE7)), ("lon_e7", .int(p.lonE7))])
    }

    public static func serviceItems(_ items: [ServiceItem]) -> JSON {
        .array(items.map {
            .object([
                ("type", .string($0.type.description)), ("status", .string($0.status.description)),
                ("due_in_days", .int($0.dueInDays)), ("due_in_km", .int($0.dueInKm)),
            ])
        })
    }

    public static func checkControls(_ controls: [CheckControl]) -> JSON {
        .array(controls.map { .object([("code", .int($0.code)), ("severity", .string($0.severity.description))]) })
    }

    public static func consent(_ c: StoredConsent) -> JSON {
        .object([
            ("teleservices", .bool(c.state.teleservices)), ("smart_maintenance", .bool(c.state.smartMaintenance)),
            ("charging_history", .bool(c.state.chargingHistory)), ("charging_location", .bool(c.state.chargingLocation)),
            ("rtti", .bool(c.state.rtti)), ("account_deleted", .bool(c.state.accountDeleted)),
            ("recorded_at_ms", .int(c.recordedAtMs)), ("sequence", .int(c.sequence)),
        ])
    }

    public static func technicalState(_ s: VehicleTechnicalState) -> JSON {
        .object([
            ("recorded_at_ms", .int(s.recordedAtMs)), ("sequence", .int(s.sequence)),
            ("mileage_km", .int(s.mileageKm)), ("battery_12v_mv", .int(s.battery12vMv)),
            ("service_items", serviceItems(s.serviceItems)), ("check_controls", checkControls(s.checkControls)),
        ])
    }

    public static func call(_ c: TeleserviceCallRecord) -> JSON {
        .object([
            ("sequence", .int(c.sequence)), ("recorded_at_ms", .int(c.recordedAtMs)),
            ("trigger", .string(Trigger(rawValue: c.trigger).description)),
            ("mileage_km", .int(c.mileageKm)), ("battery_12v_mv", .int(c.battery12vMv)),
            ("position", position(c.position)), ("service_partner_id", .string(c.servicePartnerID)),
            ("in_workshop", .bool(c.inWorkshop)),
            ("service_items", serviceItems(c.serviceItems)), ("check_controls", checkControls(c.checkControls)),
        ])
    }

    public static func maintenanceCase(_ c: MaintenanceCase) -> JSON {
        .object([
            ("case_id", optionalInt(c.id)), ("vin", .string(c.vin.description)), ("need", .string(c.need.key)),
            ("state", .string(c.state.rawValue)), ("service_partner_id", .string(c.servicePartnerID)),
            ("opened_at_ms", .int(c.openedAtMs)), ("updated_at_ms", optionalInt(c.updatedAtMs)),
            ("closed_at_ms", optionalInt(c.closedAtMs)), ("last_sequence", .int(c.lastSequence)),
            ("notifications", .int(c.notifications)),
        ])
    }

    /// A session without its sealed bytes: whether there are any, and the key.
    public static func session(_ s: ChargeSessionRecord) -> JSON {
        .object([
            ("vin", .string(s.vin.description)), ("session_id", .string(s.sessionID)),
            ("sequence", .int(s.sequence)), ("recorded_at_ms", .int(s.recordedAtMs)),
            ("started_at_ms", .int(s.startedAtMs)), ("ended_at_ms", .int(s.endedAtMs)),
            ("soc_start_permille", .int(s.socStartPermille)), ("soc_end_permille", .int(s.socEndPermille)),
            ("energy_wh", .int(s.energyWh)), ("max_power_w", .int(s.maxPowerW)),
            ("current", .string(ChargingCurrent(rawValue: s.current).description)),
            ("site", .string(ChargingSite(rawValue: s.site).description)),
            ("end_reason", .string(ChargeEndReason(rawValue: s.endReason).description)),
            ("position_sealed", .bool(s.sealedPosition?.isEmpty == false)),
            ("key_id", s.keyID.map { .string($0) } ?? .null),
        ])
    }

    public static func traffic(_ a: TrafficAggregate) -> JSON {
        // 0.1 km/h is the wire's resolution; more digits would be noise.
        func kmh(_ v: Double) -> JSON { .double((v * 10).rounded() / 10) }
        return .object([
            ("tile", .int(a.tile)), ("minute_ms", .int(a.minuteMs)), ("count", .int(a.pointCount)),
            ("vehicles", .int(a.vehicleCount)), ("mean_speed_kmh", kmh(a.meanSpeedKmh)),
            ("p85_speed_kmh", kmh(a.p85SpeedKmh)),
        ])
    }

    /// Row counts, then the counters grouped by the part before the dot.
    /// The groups and members the pipeline knows are always present (0 when
    /// never counted), so a reader need not guess whether a key is missing;
    /// names this version does not know are kept, sorted, after them.
    public static func stats(_ s: StoreStats, counters: [String: Int]) -> JSON {
        let rows: JSON = .object([
            ("consents", .int(s.consents)), ("vehicle_states", .int(s.vehicleStates)),
            ("teleservice_calls", .int(s.teleserviceCalls)), ("maintenance_cases", .int(s.maintenanceCases)),
            ("open_maintenance_cases", .int(s.openMaintenanceCases)), ("charge_sessions", .int(s.chargeSessions)),
            ("probe_points", .int(s.probePoints)), ("traffic_aggregates", .int(s.trafficAggregates)),
            ("traffic_vehicles", .int(s.trafficVehicles)), ("traffic_speed_buckets", .int(s.trafficSpeedBuckets)),
        ])
        let kinds = MessageKind.allCases.map { "\($0.name)" }
        let stored = ["teleservice_call", "charge_session", "probe_point"]
        let known: [(String, [String])] = [
            ("processed", kinds),
            ("rejected", WireError.Code.allCases.map(\.rawValue)),
            ("dropped", ["smart_maintenance", "teleservices", "charging_history", "rtti"]),
            ("stored", stored),
            ("duplicates", stored),
            ("cases", ["opened", "updated", "closed"]),
            ("deleted", ["charge_session_by_consent"]),
            ("retention", RetentionRule.allCases.map(\.rawValue)),
            ("erased", ["vehicles", "teleservice_calls", "maintenance_cases", "charge_sessions", "probes", "traffic_vehicles"]),
        ]
        var groups: [String: [String: Int]] = [:]
        var plain: [String: Int] = [:]
        for (name, value) in counters {
            if let dot = name.firstIndex(of: ".") {
                groups[String(name[..<dot]), default: [:]][String(name[name.index(after: dot)...])] = value
            } else {
                plain[name] = value
            }
        }
        var members: [(String, JSON)] = [("rows", rows)]
        let knownGroups = Set(known.map(\.0))
        for (group, names) in known + groups.keys.filter({ !knownGroups.contains($0) }).sorted().map({ ($0, []) }) {
            let values = groups[group] ?? [:]
            let extra = values.keys.filter { !names.contains($0) }.sorted()
            members.append((group, .object((names + extra).map { ($0, .int(values[$0] ?? 0)) })))
        }
        for name in ([PipelineCounter.alerts, PipelineCounter.hazards] + plain.keys.filter { $0 != PipelineCounter.alerts && $0 != PipelineCounter.hazards }.sorted()) {
            members.append((name, .int(plain[name] ?? 0)))
        }
        return .object(members)
    }
}
