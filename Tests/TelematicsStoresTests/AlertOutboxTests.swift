import Foundation
import TelematicsStores
import TelematicsTestSupport
import Testing

/// The call-centre alert store keeps escalations until a desk notes them
/// published: a desk that stops between marking and publishing leaves them
/// to the next one.
@Suite("Alert store: the escalation outbox")
struct AlertOutboxTests {
    private func alert(_ event: String) -> CallCentreAlert {
        CallCentreAlert(priority: "P0", type: "hv_warn_call", vin: "WBA00000000000001", sequence: 1, recordedAtMs: 1_000, eventID: event)
    }

    private func open(_ database: V1Database) async throws -> any AlertStore {
        switch database {
        case .sqlite(let directory): try await SQLiteAlertStore(directory: directory)
        case .postgres(let url): try await PostgresAlertStore(url: url)
        }
    }

    @Test("escalations wait until noted published, across a reopen; a table made before the outbox counts its escalations as published",
          arguments: StoreKind.allCases)
    func outbox(kind: StoreKind) async throws {
        let database: V1Database
        switch kind {
        case .sqlite: database = .sqlite(FileManager.default.temporaryDirectory.appendingPathComponent("tm-outbox-\(UUID().uuidString)").path)
        case .postgres: database = .postgres(try await TestPostgres.url())
        }
        do {
            try await check(database)
        } catch {
            await database.remove()
            throw error
        }
        await database.remove()
    }

    private func check(_ database: V1Database) async throws {
        var store = try await open(database)
        let a = try await store.upsert([alert("a")], receivedAtMs: 1_000)[0].record
        let b = try await store.upsert([alert("b")], receivedAtMs: 2_000)[0].record
        _ = try await store.upsert([alert("c")], receivedAtMs: 3_000)
        #expect(try await store.markEscalated(id: a.id, atMs: 61_000) != nil)
        #expect(try await store.markEscalated(id: b.id, atMs: 70_000) != nil)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 60_999, limit: 10).isEmpty)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 61_000, limit: 10).map(\.id) == [a.id])
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).map(\.id) == [a.id, b.id])
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 1).map(\.id) == [a.id])
        try await store.markEscalationPublished(id: a.id, atMs: 61_100)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).map(\.id) == [b.id])
        await store.close()

        // Durable: the next store on the same data still has b waiting.
        store = try await open(database)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).map(\.id) == [b.id])
        await store.close()

        // The table as it was before the outbox: b's escalation was then
        // published from memory, so after the upgrade nothing waits, and a
        // new escalation does.
        try await database.execute([
            "DROP INDEX callcentre_alerts_escalation_outbox",
            "ALTER TABLE callcentre_alerts DROP COLUMN escalation_published_at_ms",
        ], file: SQLiteAlertStore.fileName)
        store = try await open(database)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).isEmpty)
        let c = try #require(try await store.alerts(openOnly: true, priority: nil, limit: 10).first { $0.alert.eventID == "c" })
        #expect(try await store.markEscalated(id: c.id, atMs: 80_000) != nil)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).map(\.id) == [c.id])
        await store.close()
        // Opening the upgraded table again changes nothing.
        store = try await open(database)
        #expect(try await store.unpublishedEscalations(escalatedAtOrBeforeMs: 99_000, limit: 10).map(\.id) == [c.id])
        await store.close()
    }
}
