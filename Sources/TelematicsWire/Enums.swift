/// A protobuf enum of telematics.proto. Open, as proto3 enums are: a number
/// the schema does not list is kept as it is (newer vehicles may send it).
public protocol ProtoEnum: RawRepresentable, Hashable, Sendable, CustomStringConvertible where RawValue == Int32 {
    /// The schema's names, indexed by number (numbers are 0, 1, 2, ...).
    static var names: [StaticString] { get }
    init(rawValue: Int32)
}

extension ProtoEnum {
    /// The schema's name of this number, or nil when the schema does not list it.
    @inlinable
    public var name: StaticString? {
        let names = Self.names
        return rawValue >= 0 && Int(rawValue) < names.count ? names[Int(rawValue)] : nil
    }

    /// The schema's name, or the number when it is not listed.
    public var description: String {
        name.map { "\($0)" } ?? String(rawValue)
    }

    /// Every listed value.
    public static var allListed: [Self] {
        (0..<Int32(names.count)).map { Self(rawValue: $0) }
    }
}

/// Why a teleservice call was sent.
public struct Trigger: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Trigger(rawValue: 0)
    public static let stateChange = Trigger(rawValue: 1)
    public static let monthly = Trigger(rawValue: 2)
    public static let smartMaintenance = Trigger(rawValue: 3)
    public static let manual = Trigger(rawValue: 4)
    public static let breakdown = Trigger(rawValue: 5)
    public static let accident = Trigger(rawValue: 6)
    public static let names: [StaticString] = [
        "TRIGGER_UNSPECIFIED", "TRIGGER_STATE_CHANGE", "TRIGGER_MONTHLY", "TRIGGER_SMART_MAINTENANCE",
        "TRIGGER_MANUAL", "TRIGGER_BREAKDOWN", "TRIGGER_ACCIDENT",
    ]
}

/// What a condition-based service item is about.
public struct ServiceItemType: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ServiceItemType(rawValue: 0)
    public static let engineOil = ServiceItemType(rawValue: 1)
    public static let hvBatteryCheck = ServiceItemType(rawValue: 9)
    public static let names: [StaticString] = [
        "TYPE_UNSPECIFIED", "TYPE_ENGINE_OIL", "TYPE_BRAKE_PADS_FRONT", "TYPE_BRAKE_PADS_REAR",
        "TYPE_BRAKE_FLUID", "TYPE_VEHICLE_CHECK", "TYPE_MICROFILTER", "TYPE_SPARK_PLUGS",
        "TYPE_STATUTORY_INSPECTION", "TYPE_HV_BATTERY_CHECK",
    ]
}

/// Whether a service item is due.
public struct ServiceStatus: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ServiceStatus(rawValue: 0)
    public static let ok = ServiceStatus(rawValue: 1)
    public static let dueSoon = ServiceStatus(rawValue: 2)
    public static let overdue = ServiceStatus(rawValue: 3)
    public static let names: [StaticString] = ["STATUS_UNSPECIFIED", "STATUS_OK", "STATUS_DUE_SOON", "STATUS_OVERDUE"]
}

/// How serious a check-control message is.
public struct Severity: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Severity(rawValue: 0)
    public static let info = Severity(rawValue: 1)
    public static let warning = Severity(rawValue: 2)
    public static let critical = Severity(rawValue: 3)
    public static let names: [StaticString] = [
        "SEVERITY_UNSPECIFIED", "SEVERITY_INFO", "SEVERITY_WARNING", "SEVERITY_CRITICAL",
    ]
}

/// What the high-voltage battery reported.
public struct Thermal: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Thermal(rawValue: 0)
    public static let temperatureRise = Thermal(rawValue: 1)
    public static let pressureRise = Thermal(rawValue: 2)
    public static let temperatureAndPressureRise = Thermal(rawValue: 3)
    public static let names: [StaticString] = [
        "THERMAL_UNSPECIFIED", "THERMAL_TEMPERATURE_RISE", "THERMAL_PRESSURE_RISE",
        "THERMAL_TEMPERATURE_AND_PRESSURE_RISE",
    ]
}

/// Battery-electric or plug-in hybrid.
public struct Powertrain: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = Powertrain(rawValue: 0)
    public static let bev = Powertrain(rawValue: 1)
    public static let phev = Powertrain(rawValue: 2)
    public static let names: [StaticString] = ["POWERTRAIN_UNSPECIFIED", "POWERTRAIN_BEV", "POWERTRAIN_PHEV"]
}

/// Parked or charging, when an HV warn call was sent.
public struct VehicleState: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = VehicleState(rawValue: 0)
    public static let parked = VehicleState(rawValue: 1)
    public static let charging = VehicleState(rawValue: 2)
    public static let names: [StaticString] = [
        "VEHICLE_STATE_UNSPECIFIED", "VEHICLE_STATE_PARKED", "VEHICLE_STATE_CHARGING",
    ]
}

/// What a vehicle saw on the road.
public struct HazardType: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = HazardType(rawValue: 0)
    public static let trafficJam = HazardType(rawValue: 1)
    public static let obstacle = HazardType(rawValue: 2)
    public static let accident = HazardType(rawValue: 3)
    public static let names: [StaticString] = [
        "TYPE_UNSPECIFIED", "TYPE_TRAFFIC_JAM", "TYPE_OBSTACLE", "TYPE_ACCIDENT", "TYPE_SLIPPERY_ROAD",
        "TYPE_POOR_VISIBILITY", "TYPE_BROKEN_DOWN_VEHICLE",
    ]
}

/// AC or DC charging.
public struct ChargingCurrent: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ChargingCurrent(rawValue: 0)
    public static let ac = ChargingCurrent(rawValue: 1)
    public static let dc = ChargingCurrent(rawValue: 2)
    public static let names: [StaticString] = ["CURRENT_UNSPECIFIED", "CURRENT_AC", "CURRENT_DC"]
}

/// Where a vehicle charged.
public struct ChargingSite: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ChargingSite(rawValue: 0)
    public static let home = ChargingSite(rawValue: 1)
    public static let names: [StaticString] = [
        "SITE_UNSPECIFIED", "SITE_HOME", "SITE_WORK", "SITE_PUBLIC", "SITE_HIGH_POWER",
    ]
}

/// Why a charging session ended.
public struct ChargeEndReason: ProtoEnum {
    public let rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let unspecified = ChargeEndReason(rawValue: 0)
    public static let names: [StaticString] = [
        "END_REASON_UNSPECIFIED", "END_REASON_TARGET_REACHED", "END_REASON_UNPLUGGED",
        "END_REASON_USER_STOPPED", "END_REASON_FAULT",
    ]
}
