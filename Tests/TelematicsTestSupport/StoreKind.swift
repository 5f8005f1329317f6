import Foundation
import TelematicsStores
import Testing

/// The backends the behaviour suite runs against.
public enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    public var testDescription: String { rawValue }

    /// A new, empty store of this kind, with a closure that removes it.
    /// PostgreSQL: a fresh database on the test server (``TestPostgres``,
    /// shared with the other test targets); SQLite: a fresh temporary data
    /// directory.
    public func makeStore() async throws -> (any TelematicsStore, @Sendable () async -> Void) {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("telematics-stores-\(UUID().uuidString)").path
            let store = try await SQLiteStore(directory: directory)
            return (store, {
                await store.close()
                try? FileManager.default.removeItem(atPath: directory)
            })
        case .postgres:
            let url = try await TestPostgres.url()
            let store = try await PostgresStore(url: url)
            return (store, {
                await store.close()
                await TestPostgres.dropDatabase(url: url)
            })
        }
    }

    /// A new, empty pipeline store and alert store of this kind (one data
    /// directory or one database, as `telematics run` keeps them), with a
    /// closure that removes both.
    public func makeStores() async throws -> (any TelematicsStore, any AlertStore, @Sendable () async -> Void) {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("telematics-stores-\(UUID().uuidString)").path
            let store = try await SQLiteStore(directory: directory)
            let alerts = try await SQLiteAlertStore(directory: directory)
            return (store, alerts, {
                await store.close()
                await alerts.close()
                try? FileManager.default.removeItem(atPath: directory)
            })
        case .postgres:
            let url = try await TestPostgres.url()
            let store = try await PostgresStore(url: url)
            let alerts = try await PostgresAlertStore(url: url)
            return (store, alerts, {
                await store.close()
                await alerts.close()
                await TestPostgres.dropDatabase(url: url)
            })
        }
    }
}
