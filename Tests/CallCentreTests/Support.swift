import CallCentre
import Foundation
import Synchronization
import TelematicsStores
import TelematicsTestSupport
import Testing

/// The backends the alert store suite runs against.
enum AlertStoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A new, empty alert store of this kind; `reopen` opens another store
    /// on the same data (to check durability); `remove` closes and deletes.
    struct Made: Sendable {
        var store: any AlertStore
        var reopen: @Sendable () async throws -> any AlertStore
        var remove: @Sendable () async -> Void
    }

    func makeStore() async throws -> Made {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("telematics-alerts-\(UUID().uuidString)").path
            let store = try await SQLiteAlertStore(directory: directory)
            return Made(
                store: store,
                reopen: { try await SQLiteAlertStore(directory: directory) },
                remove: {
                    await store.close()
                    try? FileManager.default.removeItem(atPath: directory)
                })
        case .postgres:
            let url = try await TestPostgres.url()
            let store = try await PostgresAlertStore(url: url)
            return Made(
                store: store,
                reopen: { try await PostgresAlertStore(url: url) },
                remove: {
                    await store.close()
                    await TestPostgres.dropDatabase(url: url)
                })
        }
    }
}

/// A clock the test moves by hand (ms since the epoch).
final class ManualClock: Sendable {
    private let now: Mutex<Int64>
    init(_ start: Int64 = 1_750_000_000_000) { now = Mutex(start) }
    func callAsFunction() -> Int64 { now.withLock { $0 } }
    func advance(by ms: Int64) { now.withLock { $0 += ms } }
    /// For the desk's `clock:` parameter.
    var closure: @Sendable () -> Int64 { { self() } }
}

/// What a desk published (escalations), in order.
final class Published: Sendable {
    private let records = Mutex<[AlertRecord]>([])
    /// How many publishes to fail before succeeding.
    private let failures = Mutex(0)
    init(failFirst: Int = 0) { failures.withLock { $0 = failFirst } }

    struct Refused: Error {}

    var all: [AlertRecord] { records.withLock { $0 } }
    var publish: @Sendable (AlertRecord) async throws -> Void {
        { record in
            if self.failures.withLock({ f in defer { f = max(0, f - 1) }; return f > 0 }) { throw Refused() }
            self.records.withLock { $0.append(record) }
        }
    }
}

/// Alerts as the pipeline makes them.
enum Sample {
    static let vin = "WBA00000000000001"

    static func hvWarn(
        vin: String = Sample.vin, event: String = "evt-1", sequence: UInt64 = 10, recordedAtMs: Int64 = 1_750_000_000_000,
        latE7: Int32 = 481_371_540, pluggedIn: Bool = true, doorsOpen: Bool = false
    ) -> CallCentreAlert {
        CallCentreAlert(
            priority: "P0", type: "hv_warn_call", vin: vin, sequence: sequence, recordedAtMs: recordedAtMs, eventID: event,
            position: AlertPosition(latE7: latE7, lonE7: 115_753_890), thermal: "THERMAL_RUNAWAY_SUSPECTED", powertrain: "BEV",
            pluggedIn: pluggedIn, doorsOpen: doorsOpen, trunkOpen: false, engineRunning: false, ignitionOn: false,
            vehicleState: "PARKED", maxCellTempDc: 812, socPermille: 734)
    }

    static func breakdown(vin: String = Sample.vin, sequence: UInt64 = 20, recordedAtMs: Int64 = 1_750_000_000_000) -> CallCentreAlert {
        CallCentreAlert(
            priority: "P1", type: "breakdown", vin: vin, sequence: sequence, recordedAtMs: recordedAtMs,
            position: AlertPosition(latE7: 525_200_000, lonE7: 134_050_000), mileageKm: 42_000, battery12vMv: 11_800,
            servicePartnerID: "DE-0042")
    }
}

/// Runs `body`, failing if it takes longer than `seconds`.
func withTimeout<T: Sendable>(
    _ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimedOut(what: what, seconds: seconds)
        }
        return value
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var seconds: Double
    var description: String { "timed out after \(seconds) s waiting for \(what)" }
}

/// Runs `body` on a new store of `kind`, then closes and removes it (also when `body` throws).
func withAlertStore(_ kind: AlertStoreKind, _ body: (AlertStoreKind.Made) async throws -> Void) async throws {
    let made = try await kind.makeStore()
    do {
        try await body(made)
    } catch {
        await made.remove()
        throw error
    }
    await made.remove()
}
