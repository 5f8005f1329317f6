import Foundation
import TelematicsStores

/// How long each kind of data is kept (RULES.md), each period a
/// configuration value with its default:
///
/// | period | default | what it deletes |
/// | --- | --- | --- |
/// | `hv-alerts` | 183 days | call-centre alerts, by the event's time (000:1755) |
/// | `raw-probes` | 24 hours | pseudonymised RTTI probes and the pseudonym-to-tile rows behind vehicle counts |
/// | `traffic-aggregates` | 30 days | per tile and minute aggregates (no vehicle reference) |
/// | `personal-data` | 28 days | charge sessions; teleservice calls once no case of the vehicle is open; closed maintenance cases (003:809, 000:4638-4642) |
///
/// Vehicle technical state is kept for the vehicle's life (003:825-831) and
/// consent state as long as it applies: no period deletes them.
public struct RetentionPolicy: Sendable, Hashable {
    /// A configurable period.
    public enum Period: String, CaseIterable, Sendable, Hashable {
        case hvAlerts = "hv-alerts"
        case rawProbes = "raw-probes"
        case trafficAggregates = "traffic-aggregates"
        case personalData = "personal-data"

        /// RULES.md's default, in milliseconds.
        public var defaultMs: Int64 {
            switch self {
            case .hvAlerts: 183 * Duration.dayMs
            case .rawProbes: 24 * Duration.hourMs
            case .trafficAggregates: 30 * Duration.dayMs
            case .personalData: 28 * Duration.dayMs
            }
        }

        /// The store rules the period drives (alerts are the alert store's).
        public var rules: [RetentionRule] {
            switch self {
            case .hvAlerts: []
            case .rawProbes: [.rawProbes, .trafficMemberships]
            case .trafficAggregates: [.trafficAggregates, .trafficSpeedBuckets]
            case .personalData: [.chargeSessions, .teleserviceCalls, .closedCases]
            }
        }
    }

    /// Each period in milliseconds.
    public private(set) var periodsMs: [Period: Int64]

    /// RULES.md's defaults.
    public init() {
        periodsMs = Dictionary(uniqueKeysWithValues: Period.allCases.map { ($0, $0.defaultMs) })
    }

    /// The defaults with `settings` (`raw-probes=48h`, ...) applied.
    public init(settings: [String]) throws(RetentionSettingError) {
        self.init()
        for setting in settings { try set(setting) }
    }

    /// The period in milliseconds.
    public subscript(period: Period) -> Int64 { periodsMs[period] ?? period.defaultMs }

    /// Applies one `NAME=DURATION` setting (`24h`, `30d`, `4w`, `90m`, `3600s`).
    public mutating func set(_ setting: String) throws(RetentionSettingError) {
        let parts = setting.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let period = Period(rawValue: parts[0]) else {
            throw RetentionSettingError(
                setting: setting,
                problem: "expected NAME=DURATION with NAME one of \(Period.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let ms = Duration.parseMs(parts[1]), ms > 0 else {
            throw RetentionSettingError(setting: setting, problem: "the duration must be a positive number with a unit: s, m, h, d or w (e.g. 24h, 30d)")
        }
        periodsMs[period] = ms
    }

    /// "raw-probes=24h, ..." in period order.
    public var description: String {
        Period.allCases.map { "\($0.rawValue)=\(Duration.describeMs(self[$0]))" }.joined(separator: ", ")
    }
}

/// A retention setting that cannot be used.
public struct RetentionSettingError: Error, CustomStringConvertible {
    public let setting: String
    public let problem: String
    public var description: String { "retention setting '\(setting)': \(problem)" }
}

extension Duration {
    static let hourMs: Int64 = 3_600_000
    static let dayMs: Int64 = 86_400_000

    /// Milliseconds of "24h", "30d", "4w", "90m", "3600s"; nil otherwise.
    public static func parseMs(_ text: String) -> Int64? {
        guard let unit = text.last, let number = Int64(text.dropLast()), number >= 0 else { return nil }
        let scale: Int64
        switch unit {
        case "s": scale = 1_000
        case "m": scale = 60_000
        case "h": scale = hourMs
        case "d": scale = dayMs
        case "w": scale = 7 * dayMs
        default: return nil
        }
        let (ms, overflow) = number.multipliedReportingOverflow(by: scale)
        return overflow ? nil : ms
    }

    /// The largest whole unit of `ms` up to days: "183d", "24h", "90m", "1500ms".
    public static func describeMs(_ ms: Int64) -> String {
        for (unit, scale) in [("d", dayMs), ("h", hourMs), ("m", Int64(60_000)), ("s", Int64(1_000))] where ms >= scale && ms % scale == 0 {
            return "\(ms / scale)\(unit)"
        }
        return "\(ms)ms"
    }
}
