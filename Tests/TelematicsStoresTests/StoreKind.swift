import Foundation
import TelematicsStores
import TelematicsTestSupport
import Testing

/// The backends the behaviour suite runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A new, empty store of this kind, with a closure that removes it.
    /// PostgreSQL: a fresh database on the test server (``TestPostgres``,
    /// shared with the other test targets); SQLite: a fresh temporary data
    /// directory.
    func makeStore() async throws -> (any TelematicsStore, @Sendable () async -> Void) {
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
}
