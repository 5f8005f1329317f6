import ArgumentParser
import Foundation
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

/// `telematics query`: reads of the stores for workshops, apps and
/// operators, as JSON on standard output.
struct Query: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the stores: a vehicle's data, maintenance cases, charging history, traffic, statistics.",
        discussion: """
            Reads SQLite under --sqlite DIR (default data) or PostgreSQL at --postgres URL, \
            the stores `telematics run` writes, and prints JSON on standard output: one \
            object, or one object per line for lists. Keys are snake_case, VINs text, \
            enums their telematics.proto names, times ms since the epoch. A bad VIN or a \
            store that cannot be opened prints a message on standard error and exits 1.
            """,
        subcommands: [QueryVehicle.self, QueryCases.self, QueryCharging.self, QueryTraffic.self, QueryStats.self]
    )
}

/// Which store a query reads.
struct QueryStoreOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Read the SQLite store in this directory (the default).", valueName: "DIR"))
    var sqlite = "data"

    @Option(help: ArgumentHelp("Read PostgreSQL at this URL instead of SQLite.", valueName: "postgres://USER:PASSWORD@HOST:PORT/DB"))
    var postgres: String?

    /// Opens the store, or fails with a message and status 1. A missing
    /// SQLite database is an error here, not created: a query with a
    /// mistyped directory must not leave an empty store behind.
    func open() async throws -> any TelematicsStore {
        do {
            if let postgres { return try await PostgresStore(url: postgres) }
            let file = (sqlite as NSString).appendingPathComponent(SQLiteStore.fileName)
            guard FileManager.default.fileExists(atPath: file) else {
                throw queryFailure("no store in \(sqlite): \(file) does not exist (use --sqlite DIR or --postgres URL)")
            }
            return try await SQLiteStore(directory: sqlite)
        } catch let error as StoreError {
            throw queryFailure("\(error)")
        }
    }

    /// Opens the store, runs `body` on it and closes it; a store error is a
    /// message and status 1.
    func with<T>(_ body: (any TelematicsStore) async throws -> T) async throws -> T {
        let store = try await open()
        do {
            let value = try await body(store)
            await store.close()
            return value
        } catch let error as StoreError {
            await store.close()
            throw queryFailure("\(error)")
        } catch {
            await store.close()
            throw error
        }
    }
}

/// Prints `message` on standard error; the exit status 1 to throw.
func queryFailure(_ message: String) -> ExitCode {
    writeStandardError("telematics query: \(message)\n")
    return ExitCode.failure
}

/// A VIN argument, or a message and status 1.
func parseVIN(_ text: String) throws -> VIN {
    guard let vin = VIN(text) else {
        throw queryFailure("not a VIN: \"\(text)\" (17 characters of 0-9 and A-Z without I, O, Q)")
    }
    return vin
}

/// `telematics query vehicle VIN`
struct QueryVehicle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vehicle",
        abstract: "A vehicle's technical state, teleservice calls, maintenance cases, charge sessions and consent, as one object.",
        discussion: "Charge sessions show whether a sealed position is stored (position_sealed) and its key_id, never the sealed bytes.")

    @OptionGroup var store: QueryStoreOptions

    @Argument(help: "The vehicle identification number.")
    var vin: String

    func run() async throws {
        let vin = try parseVIN(self.vin)
        let json = try await store.with { store in
            let state = try await store.vehicleState(vin)
            let calls = try await store.teleserviceCalls(vin)
            let cases = try await store.maintenanceCases(vin, includeClosed: true)
            let sessions = try await store.chargeSessions(vin)
            let consent = try await store.consent(for: [vin])[vin]
            return JSON.object([
                ("vin", .string(vin.description)),
                ("consent", consent.map(JSON.consent) ?? .null),
                ("technical_state", state.map(JSON.technicalState) ?? .null),
                ("teleservice_calls", .array(calls.map(JSON.call))),
                ("open_cases", .array(cases.filter { $0.state != .closed }.map(JSON.maintenanceCase))),
                ("closed_cases", .array(cases.filter { $0.state == .closed }.map(JSON.maintenanceCase))),
                ("charge_sessions", .array(sessions.map(JSON.session))),
            ])
        }
        writeStandardOutputLine(json.text)
    }
}

/// `telematics query cases [--partner ID] [--open] [--limit N]`
struct QueryCases: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cases",
        abstract: "Maintenance cases across vehicles, newest first, one JSON object per line.")

    @OptionGroup var store: QueryStoreOptions

    @Option(help: ArgumentHelp("Only the cases of this service partner.", valueName: "ID"))
    var partner: String?

    @Flag(help: "Only cases not closed (open or updated).")
    var open = false

    @Option(help: "At most this many cases.")
    var limit = 100

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must not be negative") }
    }

    func run() async throws {
        let cases = try await store.with { try await $0.maintenanceCases(partner: partner, openOnly: open, limit: limit) }
        writeLines(cases.map(JSON.maintenanceCase))
    }
}

/// `telematics query charging VIN`
struct QueryCharging: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "charging",
        abstract: "A vehicle's charging history by start time, one JSON object per line (sealed positions shown as position_sealed and key_id).")

    @OptionGroup var store: QueryStoreOptions

    @Argument(help: "The vehicle identification number.")
    var vin: String

    func run() async throws {
        let vin = try parseVIN(self.vin)
        let sessions = try await store.with { try await $0.chargeSessions(vin) }
        writeLines(sessions.map(JSON.session))
    }
}

/// `telematics query traffic [--since MINUTES_AGO | --since-ms MS] [--tile ID] [--limit N]`
struct QueryTraffic: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traffic",
        abstract: "Traffic per road tile and minute, newest first, one JSON object per line: points, vehicles, mean and p85 speed.")

    @OptionGroup var store: QueryStoreOptions

    @Option(help: ArgumentHelp("Only minutes from this many minutes ago on.", valueName: "MINUTES_AGO"))
    var since: Int?

    @Option(name: .customLong("since-ms"), help: ArgumentHelp("Only minutes from this time on (ms since the epoch).", valueName: "MS"))
    var sinceMs: Int64?

    @Option(help: ArgumentHelp("Only this road tile.", valueName: "ID"))
    var tile: Int64?

    @Option(help: "At most this many tile-minutes.")
    var limit = 100

    func validate() throws {
        if since != nil && sinceMs != nil { throw ValidationError("give --since or --since-ms, not both") }
        if let since, since < 0 { throw ValidationError("--since must not be negative") }
        guard limit >= 0 else { throw ValidationError("--limit must not be negative") }
    }

    func run() async throws {
        var first = Int64.min
        if let sinceMs { first = sinceMs }
        if let since { first = Int64(Date().timeIntervalSince1970 * 1000) - Int64(since) * 60_000 }
        // Aggregates are keyed by the minute's start: floor, so that the
        // minute `first` falls in is included.
        if first != .min {
            let r = first % 60_000
            first = r < 0 ? first - r - 60_000 : first - r
        }
        let (tile, limit) = (self.tile, self.limit)
        let aggregates = try await store.with { store -> [TrafficAggregate] in
            guard let tile else { return try await store.trafficAggregates(sinceMinute: first, limit: limit) }
            // One tile: its range read, which comes oldest first.
            return Array(try await store.trafficAggregates(tile: tile, fromMinute: first, toMinute: .max).reversed().prefix(limit))
        }
        writeLines(aggregates.map(JSON.traffic))
    }
}

/// `telematics query stats`
struct QueryStats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Row counts of every table and the pipeline's counters, as one object.",
        discussion: """
            "rows" holds the row counts. The counters are grouped by the part of their \
            name before the dot ("processed", "rejected", "dropped", "stored", \
            "duplicates", "cases", "deleted"); "alerts" and "hazards" are plain numbers. \
            Counters are committed with the batches they describe; a batch delivered \
            again (after a crash or a rebalance) is counted again under processed and \
            under duplicates, while the row counts stay exact.
            """)

    @OptionGroup var store: QueryStoreOptions

    func run() async throws {
        let (stats, counters) = try await store.with { store in (try await store.stats(), try await store.counters()) }
        writeStandardOutputLine(JSON.stats(stats, counters: counters).text)
    }
}

/// Prints one JSON object per line.
private func writeLines(_ values: [JSON]) {
    guard !values.isEmpty else { return }
    writeStandardOutputLine(values.map(\.text).joined(separator: "\n"))
}

/// A JSON value with keys in the order given (a reader sees "vin" first),
/// rendered compactly.
enum JSON {
    case null
    case bool(Bool)
    /// A number, already as its decimal text (exact for u64 sequences).
    case number(String)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    static func int(_ value: some BinaryInteger) -> JSON { .number(String(value)) }
    static func optionalInt(_ value: Int64?) -> JSON { value.map { .number(String($0)) } ?? .null }

    /// The compact JSON text.
    var text: String {
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
    static func position(_ p: Position?) -> JSON {
        guard let p else { return .null }
        return .object([("lat_e7", .int(p.latE7)), ("lon_e7", .int(p.lonE7))])
    }

    static func serviceItems(_ items: [ServiceItem]) -> JSON {
        .array(items.map {
            .object([
                ("type", .string($0.type.description)), ("status", .string($0.status.description)),
                ("due_in_days", .int($0.dueInDays)), ("due_in_km", .int($0.dueInKm)),
            ])
        })
    }

    static func checkControls(_ controls: [CheckControl]) -> JSON {
        .array(controls.map { .object([("code", .int($0.code)), ("severity", .string($0.severity.description))]) })
    }

    static func consent(_ c: StoredConsent) -> JSON {
        .object([
            ("teleservices", .bool(c.state.teleservices)), ("smart_maintenance", .bool(c.state.smartMaintenance)),
            ("charging_history", .bool(c.state.chargingHistory)), ("charging_location", .bool(c.state.chargingLocation)),
            ("rtti", .bool(c.state.rtti)), ("account_deleted", .bool(c.state.accountDeleted)),
            ("recorded_at_ms", .int(c.recordedAtMs)), ("sequence", .int(c.sequence)),
        ])
    }

    static func technicalState(_ s: VehicleTechnicalState) -> JSON {
        .object([
            ("recorded_at_ms", .int(s.recordedAtMs)), ("sequence", .int(s.sequence)),
            ("mileage_km", .int(s.mileageKm)), ("battery_12v_mv", .int(s.battery12vMv)),
            ("service_items", serviceItems(s.serviceItems)), ("check_controls", checkControls(s.checkControls)),
        ])
    }

    static func call(_ c: TeleserviceCallRecord) -> JSON {
        .object([
            ("sequence", .int(c.sequence)), ("recorded_at_ms", .int(c.recordedAtMs)),
            ("trigger", .string(Trigger(rawValue: c.trigger).description)),
            ("mileage_km", .int(c.mileageKm)), ("battery_12v_mv", .int(c.battery12vMv)),
            ("position", position(c.position)), ("service_partner_id", .string(c.servicePartnerID)),
            ("in_workshop", .bool(c.inWorkshop)),
            ("service_items", serviceItems(c.serviceItems)), ("check_controls", checkControls(c.checkControls)),
        ])
    }

    static func maintenanceCase(_ c: MaintenanceCase) -> JSON {
        .object([
            ("case_id", optionalInt(c.id)), ("vin", .string(c.vin.description)), ("need", .string(c.need.key)),
            ("state", .string(c.state.rawValue)), ("service_partner_id", .string(c.servicePartnerID)),
            ("opened_at_ms", .int(c.openedAtMs)), ("updated_at_ms", optionalInt(c.updatedAtMs)),
            ("closed_at_ms", optionalInt(c.closedAtMs)), ("last_sequence", .int(c.lastSequence)),
            ("notifications", .int(c.notifications)),
        ])
    }

    /// A session without its sealed bytes: whether there are any, and the key.
    static func session(_ s: ChargeSessionRecord) -> JSON {
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

    static func traffic(_ a: TrafficAggregate) -> JSON {
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
    static func stats(_ s: StoreStats, counters: [String: Int]) -> JSON {
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
