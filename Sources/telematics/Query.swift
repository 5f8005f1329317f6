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
        return try await closing({ await store.close() }) { try await body(store) }
    }
}

/// `body`, then `close` whatever happened; a store error becomes a message
/// and status 1.
func closing<T>(_ close: () async -> Void, _ body: () async throws -> T) async throws -> T {
    do {
        let value = try await body()
        await close()
        return value
    } catch let error as StoreError {
        await close()
        throw queryFailure("\(error)")
    } catch {
        await close()
        throw error
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
